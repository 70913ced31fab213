// A source that cannot open (device-agent/README.md, Sources): at start it is a start-up error that leaves nothing
// running; in a `config` command it refuses the command and the running source carries on. Config fields that
// name files (model.path, mqtt.tls.*) are refused at start the same way.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, startBroker } from '../device-agent/index.js';
import type { EmbeddedBroker } from '../device-agent/index.js';
import { ConfigError, FrameError } from '../runtime/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';

let dir: string;
let model: string;
let broker: EmbeddedBroker;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sei-agent-startup-'));
  model = modelFile(dir);
  broker = await startBroker({ port: 0 });
});
after(async () => {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

const clients = () => Object.keys((broker.aedes as unknown as { clients: Record<string, unknown> }).clients).length;

describe('start-up errors', () => {
  for (const spec of ['idx:/nope/images.gz', 'images:/nope']) {
    test(`${spec} at start: start rejects with a FrameError naming source.spec, and nothing stays running`, async () => {
      const agent = new Agent({
        config: agentConfig({ dir, model, url: broker.url, extra: { source: { spec }, metrics: { httpPort: 0 } } }),
      });
      const errors: Error[] = [];
      agent.on('error', (e) => errors.push(e));
      await assert.rejects(agent.start(), (e: Error) => {
        assert.ok(e instanceof FrameError, `${e.name}: ${e.message}`);
        assert.equal(e.field, 'source.spec');
        assert.match(e.message, /^source: expected (a )?readable .*\/nope/);
        return true;
      });
      // The broker link and the metrics endpoint opened before the source are closed again.
      const deadline = Date.now() + 5000;
      while (clients() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(clients(), 0, 'the agent left its broker connection open');
      assert.equal(agent.connected, false);
      await assert.rejects(
        fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`),
        'the metrics endpoint still answers',
      );
      assert.deepEqual(errors, []);
    });
  }

  test('a config field that names a missing file is refused at start naming the field, and nothing stays running', async () => {
    for (const [extra, field] of [
      [{ model: { path: join(dir, 'nope.bwsnn') } }, 'model.path'],
      [{ mqtt: { url: broker.url, tls: { ca: join(dir, 'nope.pem') } } }, 'mqtt.tls.ca'],
    ] as const) {
      const agent = new Agent({ config: agentConfig({ dir, model, url: broker.url, extra }) });
      await assert.rejects(
        agent.start(),
        (e: Error) => e instanceof ConfigError && e.field === field && e.message.includes('nope.'),
        field,
      );
      assert.equal(agent.connected, false);
      assert.equal(clients(), 0);
    }
  });

  test('in cmd/config: the command is refused naming source.spec and the previous source keeps running', async () => {
    const agent = new Agent({ config: agentConfig({ dir, model, url: broker.url, protocol: 4 }) });
    await agent.start();
    const op = await Operator.connect(broker.url, 4);
    try {
      const prefix = agent.config.topicPrefix;
      await op.subscribe(`${prefix}metrics`);
      const refused = await op.command(prefix, 'config', { source: { spec: 'images:/nope', frameRate: 50 } });
      assert.equal(refused.ok, false);
      assert.equal(refused.error.name, 'FrameError');
      assert.equal(refused.error.field, 'source.spec');
      assert.equal(agent.config.source.frameRate, 100, 'the config is the previous one');
      assert.equal((await op.command(prefix, 'config')).result.source.spec, 'samples');
      const from = op.messages.length;
      const first = await op.waitFor((m) => m.topic === `${prefix}metrics`, 'metrics', 10_000, from);
      await op.waitFor(
        (m) => m.topic === `${prefix}metrics` && m.json.frames > first.json.frames,
        'frames from the previous source',
        10_000,
        from,
      );
    } finally {
      await op.close();
      await agent.stop();
    }
  });
});
