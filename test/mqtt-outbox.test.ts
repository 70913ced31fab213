// The outbox across a broker outage: metrics written while the broker is down wait in SQLite and drain in order
// when it comes back; nothing is lost, even when the agent itself restarts during the outage. Mosquitto and Aedes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { aedes, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

const PREFIX = 'sei/test/dev1/';
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sei-outbox-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function until(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Setup {
  readonly name: string;
  readonly skip: string | false;
  /** The broker and the backend subscriber. */
  start(): Promise<{ broker: TestBroker; backend: Operator; restart: () => Promise<void> }>;
}

const setups: Setup[] = [
  {
    // Mosquitto keeps the backend's persistent session (and what is queued for it) across its restart.
    name: 'Mosquitto (persistent session)',
    skip: !mosquittoAvailable && 'no mosquitto',
    async start() {
      const broker = await mosquitto();
      const backend = await Operator.connect(broker.url, 5, {
        clientId: 'backend',
        clean: false,
        properties: { sessionExpiryInterval: 3600 },
      });
      return { broker, backend, restart: () => broker.start() };
    },
  },
  {
    // Aedes keeps sessions in memory, so a restarted Aedes knows no subscriber: it lets the device in only once
    // the backend has subscribed again, as a broker with persistence would have it subscribed all along.
    name: 'Aedes (backend resubscribes first)',
    skip: false,
    async start() {
      const broker = await aedes();
      const backend = await Operator.connect(broker.url, 4, { clientId: 'backend' });
      const restart = async () => {
        await broker.start();
        const a = broker.broker().aedes;
        let ready = false;
        a.on('subscribe', (_subs, client) => (ready ||= client?.id === 'backend'));
        a.authenticate = (client, _u, _p, done) => done(null, client.id === 'backend' || ready);
      };
      return { broker, backend, restart };
    },
  },
];

for (const setup of setups) {
  test(`${setup.name}: metrics written during a broker stop/start and an agent restart all arrive, once each in order`, {
    skip: setup.skip,
  }, async () => {
    const { broker, backend, restart } = await setup.start();
    try {
      await backend.subscribe(`${PREFIX}metrics`);
      const store = join(dir, `${setup.name.split(' ')[0]}.db`);
      const config = agentConfig({
        dir,
        model: modelFile(dir),
        url: broker.url,
        extra: { reporting: { metricsInterval: 0.1 }, store: { path: store } },
      });
      const sent: number[] = [];
      const start = async () => {
        const agent = new Agent({ config });
        agent.on('metrics', (m) => sent.push(m.ts));
        agent.on('error', () => {});
        const online = new Promise((r) => agent.once('online', r));
        await agent.start();
        return { agent, online };
      };

      let { agent, online } = await start();
      await online;
      await backend.waitFor((m) => m.topic === `${PREFIX}metrics`, 'metrics before the outage');

      await broker.stop();
      const atStop = sent.length;
      await until(() => sent.length >= atStop + 8, 'metrics written during the outage');
      assert.ok(agent.store.outboxCount() >= 8, `outbox holds the backlog (${agent.store.outboxCount()})`);
      // The agent restarts while the broker is still down: the backlog is in SQLite, not in memory.
      await agent.stop();
      const firstRun = sent.length;
      ({ agent, online } = await start());
      await until(() => sent.length >= atStop + 14, 'more metrics from the restarted agent');

      await restart();
      await online;
      await until(() => agent.store.outboxCount() <= 1, 'the outbox to drain');
      await agent.stop();
      const all = sent.slice();
      await until(
        () => new Set(backend.messages.map((m) => m.json.ts)).size >= all.length,
        `all ${all.length} metrics at the backend`,
        20_000,
      );

      const received = backend.messages.filter((m) => m.topic === `${PREFIX}metrics`).map((m) => m.json.ts as number);
      // QoS 1 is at-least-once: a message whose ack was cut by the outage may come twice; the first copies keep order.
      const firsts = received.filter((ts, i) => received.indexOf(ts) === i);
      assert.deepEqual(firsts, all, 'every metrics message arrives, in the order it was written');
      // `seq` numbers each agent's metrics messages from 1, so a consumer sees the loss this test rules out.
      const seqs = firsts.map((ts) => backend.messages.find((m) => m.json?.ts === ts)!.json.seq as number);
      const count = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
      assert.deepEqual(seqs, [...count(firstRun), ...count(all.length - firstRun)], 'seq: 1, 2, … per agent run');
      assert.ok(
        received.length - firsts.length <= 2,
        `duplicates only at the cut (${received.length - firsts.length})`,
      );
    } finally {
      await backend.close();
      await broker.close();
    }
  });
}
