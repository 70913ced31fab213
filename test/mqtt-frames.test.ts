// `frames/in` feeds the `mqtt` source and only it: an agent on `source: mqtt` predicts on published frames through
// its source, and stops taking them once switched to a file source; an agent on a file source never takes them
// (no results, no errors), even when frames are published to it. Real broker (the embedded Aedes).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import type { AgentResult } from '../device-agent/index.js';
import { sampleFrames } from '../runtime/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { aedes } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

const samples = sampleFrames();
/** A label no file source here gives (the samples are classes 0-9): a result carrying it came from frames/in. */
const SENT = 4242;

let dir: string;
let model: string;
let broker: TestBroker;
let op: Operator;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sei-mqtt-frames-'));
  model = modelFile(dir);
  broker = await aedes();
  op = await Operator.connect(broker.url, 4);
});

after(async () => {
  await op.close();
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An agent on `spec`, started; resolves once the retained online status shows it subscribed (it is sent after). */
async function startAgent(
  device: string,
  spec: string,
): Promise<{ agent: Agent; results: AgentResult[]; errors: Error[] }> {
  const agent = new Agent({
    config: agentConfig({ dir, model, url: broker.url, device, extra: { source: { spec } } }),
  });
  const results: AgentResult[] = [];
  const errors: Error[] = [];
  agent.on('result', (r) => results.push(r));
  agent.on('error', (e) => errors.push(e));
  await op.subscribe(`sei/test/${device}/#`);
  const from = op.messages.length;
  await agent.start();
  await op.waitFor(
    (m) => m.topic === `sei/test/${device}/status` && m.json.state === 'online',
    `${device} online`,
    10_000,
    from,
  );
  return { agent, results, errors };
}

/** Publishes sample frame i to a device's frames/in, labelled `label`. */
async function send(device: string, i: number, label: number): Promise<void> {
  await op.client.publishAsync(
    `sei/test/${device}/frames/in`,
    JSON.stringify({ data: Buffer.from(samples.frame(i)).toString('base64'), label }),
    { qos: 1 },
  );
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('an agent on the mqtt source predicts on published frames through its source; on a file source it takes none', async () => {
  const { agent, results, errors } = await startAgent('push', 'mqtt');
  try {
    assert.equal(agent.snapshot().frames, 0, 'nothing but frames/in feeds it');
    for (let i = 0; i < 5; i++) await send('push', i, SENT + i);
    await until('5 results', () => results.length === 5);
    assert.deepEqual(
      results.map((r) => [r.frame, r.label]),
      [0, 1, 2, 3, 4].map((i) => [i + 1, SENT + i]),
    );
    // The same picture gives the same prediction as the model gives it directly.
    assert.equal(results[0]!.result.prediction, agent.activeEngine!.infer(samples.frame(0)).prediction);
    // A malformed one is answered on `errors`; the source goes on.
    const from = op.messages.length;
    await op.client.publishAsync('sei/test/push/frames/in', Buffer.alloc(10), { qos: 1 });
    const e = await op.waitFor((m) => m.topic === 'sei/test/push/errors', 'an error message', 10_000, from);
    assert.equal(e.json.origin, 'frames/in');
    await send('push', 5, SENT + 5);
    await until('the 6th result', () => results.length === 6);
    assert.equal(agent.metrics.frameErrors, 1);

    // Switched to a file source: frames/in is no longer taken (the subscription is gone with the source).
    const reply = await op.command('sei/test/push/', 'config', { source: { spec: 'samples' } });
    assert.equal(reply.ok, true, JSON.stringify(reply));
    await send('push', 6, SENT + 6);
    await op.client.publishAsync('sei/test/push/frames/in', Buffer.alloc(10), { qos: 1 });
    const sampled = results.length;
    await until('frames from the samples', () => results.length > sampled + 30);
    assert.deepEqual(
      results.filter((r) => r.label !== null && r.label >= SENT).map((r) => r.label),
      [0, 1, 2, 3, 4, 5].map((i) => SENT + i),
    );
    assert.equal(agent.metrics.frameErrors, 1);
    assert.deepEqual(
      errors.map((x) => x.name),
      ['FrameError'],
    );
  } finally {
    await agent.stop();
  }
});

test('an agent on a file source does not take frames/in, while one on the mqtt source beside it does', async () => {
  const file = await startAgent('file', 'samples');
  const push = await startAgent('beside', 'mqtt');
  try {
    const from = op.messages.length;
    for (let i = 0; i < 3; i++) {
      await send('file', i, SENT);
      await send('beside', i, SENT);
    }
    await op.client.publishAsync('sei/test/file/frames/in', Buffer.alloc(10), { qos: 1 });
    await op.client.publishAsync('sei/test/beside/frames/in', Buffer.alloc(10), { qos: 1 });
    // Both were published in one order by one client: once the mqtt agent has all of its own, the broker has
    // delivered the file agent's too, had it been subscribed.
    await op.waitFor(
      (m) => m.topic === 'sei/test/beside/errors',
      'the mqtt agent refusing its malformed frame',
      10_000,
      from,
    );
    await until('the mqtt agent inferring its 3 frames', () => push.results.length === 3);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(file.results.length > 0, 'the file agent runs its samples');
    assert.deepEqual(
      file.results.filter((r) => r.label === SENT),
      [],
    );
    assert.equal(file.agent.metrics.frameErrors, 0);
    assert.equal(op.messages.filter((m) => m.topic === 'sei/test/file/errors').length, 0);
    assert.deepEqual(file.errors, []);
  } finally {
    await Promise.all([file.agent.stop(), push.agent.stop()]);
  }
});
