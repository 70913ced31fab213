// Broker security as a deployment has it: Mosquitto with a password file (mosquitto_passwd) and an ACL that
// confines each device to sei/<fleet>/<its user name>/. The device publishes under its own prefix and is
// refused elsewhere; a wrong password never gets in.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

const ACL = `# the fleet backend sees and commands everything
user operator
topic readwrite sei/#

# each device only under its own prefix
pattern readwrite sei/test/%u/#
`;

describe('Mosquitto with a password file and an ACL', { skip: !mosquittoAvailable && 'no mosquitto' }, () => {
  let dir: string;
  let broker: TestBroker;
  let model: string;
  let op: Operator;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sei-acl-'));
    model = modelFile(dir);
    broker = await mosquitto({ users: { operator: 'op-secret', dev1: 'dev1-secret', dev2: 'dev2-secret' }, acl: ACL });
    op = await Operator.connect(broker.url, 5, { username: 'operator', password: 'op-secret' });
    await op.subscribe('sei/#');
  });
  after(async () => {
    await op?.close();
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const device = (name: string, password: string, protocol: 4 | 5, prefix?: string) =>
    new Agent({
      config: agentConfig({
        dir,
        model,
        url: broker.url,
        device: name,
        protocol,
        extra: { mqtt: { username: name, password, protocol }, ...(prefix ? { topicPrefix: prefix } : {}) },
      }),
    });

  for (const protocol of [5, 4] as const) {
    test(`MQTT ${protocol === 5 ? '5' : '3.1.1'}: the device publishes and takes commands under its own prefix`, async () => {
      const agent = device('dev1', 'dev1-secret', protocol);
      agent.on('error', () => {});
      const online = new Promise((r) => agent.once('online', r));
      await agent.start();
      await online;
      const from = op.messages.length;
      await op.waitFor((m) => m.topic === 'sei/test/dev1/metrics', 'dev1 metrics', 10_000, from);
      // A requester speaks the device's protocol version: response topic on 5, replyTo in the payload on 3.1.1.
      const requester =
        protocol === 5 ? op : await Operator.connect(broker.url, 4, { username: 'operator', password: 'op-secret' });
      const reply = await requester.command('sei/test/dev1/', 'status');
      if (requester !== op) await requester.close();
      assert.equal(reply.ok, true);
      assert.equal(reply.result.device, 'dev1');
      await agent.stop();
    });

    test(`MQTT ${protocol === 5 ? '5' : '3.1.1'}: dev1 posing as dev2 is refused; nothing appears under dev2`, async () => {
      const agent = device('dev1', 'dev1-secret', protocol, 'sei/test/dev2/');
      const errors: Error[] = [];
      agent.on('error', (e) => errors.push(e));
      const online = new Promise((r) => agent.once('online', r));
      const from = op.messages.length;
      await agent.start();
      await online;
      if (protocol === 5) {
        // MQTT 5 tells the publisher: the QoS 1 PUBACK carries "Not authorized".
        const refusedMetrics = (e: Error) =>
          /outbox: broker refused sei\/test\/dev2\/metrics: .*not authori[sz]ed/i.test(e.message);
        const deadline = Date.now() + 10_000;
        while (!errors.some(refusedMetrics) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        await agent.stop();
        assert.ok(errors.some(refusedMetrics), errors.map((e) => e.message).join('; '));
        assert.ok(
          errors.some((e) => /publish to sei\/test\/dev2\/status failed: .*not authori[sz]ed/i.test(e.message)),
          'the birth is refused too',
        );
      } else {
        // 3.1.1 has no refusal reason: the broker acks and drops. Give the agent time to publish several metrics.
        await new Promise((r) => setTimeout(r, 1500));
      }
      assert.ok(agent.metrics.frames > 0);
      await agent.stop();
      assert.deepEqual(
        op.messages
          .slice(from)
          .filter((m) => m.topic.startsWith('sei/test/dev2/'))
          .map((m) => m.topic),
        [],
      );
    });
  }

  test('a wrong password never gets in: the agent reports it and keeps retrying with backoff', async () => {
    const agent = device('dev1', 'wrong', 5);
    const errors: Error[] = [];
    agent.on('error', (e) => errors.push(e));
    let online = false;
    agent.on('online', () => (online = true));
    await agent.start();
    const deadline = Date.now() + 10_000;
    while (
      errors.filter((e) => /not authori[sz]ed|bad user ?name or password/i.test(e.message)).length < 2 &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 50));
    await agent.stop();
    assert.equal(online, false);
    assert.ok(
      errors.filter((e) => /not authori[sz]ed|bad user ?name or password/i.test(e.message)).length >= 2,
      errors.map((e) => e.message).join('; '),
    );
  });
});
