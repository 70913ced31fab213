// What the agent's memory figures rest on (device-agent/README.md, "Memory on a small box"): its MQTT client keeps
// no cache of mqtt-packet's 65,536 packet-id buffers (about 6 MB of live heap). The agent runs here against
// Mosquitto in its own process, so that no other MQTT client or broker in this process writes a packet first.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import { agentConfig, modelFile } from './helpers/agent.js';
import { mosquitto, mosquittoAvailable } from './helpers/brokers.js';

const require = createRequire(import.meta.url);

test('the agent publishes QoS 1 metrics without filling mqtt-packet’s packet-id cache', {
  skip: !mosquittoAvailable && 'no mosquitto',
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sei-agent-memory-'));
  const broker = await mosquitto();
  // The module mqtt.js writes packets with (one copy in node_modules).
  const numbers = require(require.resolve('mqtt-packet/numbers.js', { paths: [require.resolve('mqtt')] })) as {
    cache: Record<number, Buffer>;
  };
  const agent = new Agent({
    config: agentConfig({
      dir,
      model: modelFile(dir),
      url: broker.url,
      extra: { reporting: { metricsInterval: 0.1 } },
    }),
  });
  agent.on('error', () => {});
  try {
    const online = new Promise((r) => agent.once('online', r));
    await agent.start();
    await online;
    // QoS 1 metrics go out with packet ids: about ten in a second, then until all are acknowledged.
    await new Promise((r) => setTimeout(r, 1000));
    const deadline = Date.now() + 10_000;
    while (agent.store.outboxCount() > 0) {
      if (Date.now() > deadline) throw new Error('the outbox did not drain');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(agent.metrics.frames > 0, 'the agent ran');
    assert.equal(Object.keys(numbers.cache).length, 0, 'packet-id buffers cached');
  } finally {
    await agent.stop();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
