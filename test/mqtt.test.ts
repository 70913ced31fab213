// The agent over real brokers: Aedes (3.1.1, reached through the MQTT 5 → 3.1.1 fallback), Mosquitto on MQTT 5,
// and Mosquitto forced to 3.1.1. Birth status, metrics, predictions, every command, bad commands, bad frames.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import { sampleFrames } from '../runtime/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { aedes, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

const PREFIX = 'sei/test/dev1/';
const samples = sampleFrames();

const setups: Array<{ name: string; broker: () => Promise<TestBroker>; protocol: 'auto' | 4; expect: 4 | 5 }> = [
  { name: 'Aedes, auto → MQTT 3.1.1', broker: aedes, protocol: 'auto', expect: 4 },
  ...(mosquittoAvailable
    ? [
        { name: 'Mosquitto, auto → MQTT 5', broker: () => mosquitto(), protocol: 'auto' as const, expect: 5 as const },
        { name: 'Mosquitto, MQTT 3.1.1', broker: () => mosquitto(), protocol: 4 as const, expect: 4 as const },
      ]
    : []),
];

for (const setup of setups) {
  describe(setup.name, () => {
    let dir: string;
    let broker: TestBroker;
    let agent: Agent;
    let op: Operator;
    const errors: Error[] = [];

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'sei-mqtt-'));
      const models = join(dir, 'models');
      const { mkdirSync } = await import('node:fs');
      mkdirSync(models);
      const v1 = modelFile(models, 1, 1);
      modelFile(models, 2, 2);
      broker = await setup.broker();
      op = await Operator.connect(broker.url, setup.expect);
      await op.subscribe(`${PREFIX}#`);
      agent = new Agent({
        config: agentConfig({
          dir,
          model: v1,
          url: broker.url,
          protocol: setup.protocol,
          extra: { model: { path: v1, dir: models, kernel: 'reference' } },
        }),
      });
      agent.on('error', (e) => errors.push(e));
      const online = new Promise<4 | 5>((r) => agent.once('online', r));
      await agent.start();
      assert.equal(await online, setup.expect);
    });

    after(async () => {
      await agent?.stop();
      await op?.close();
      await broker?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('birth: a retained status "online" with the model, seen by a client that subscribes later', async () => {
      await op.waitFor((m) => m.topic === `${PREFIX}status` && m.json.state === 'online', 'birth');
      const late = await Operator.connect(broker.url, setup.expect);
      await late.subscribe(`${PREFIX}status`);
      const retained = await late.waitFor((m) => m.topic === `${PREFIX}status`, 'retained status');
      await late.close();
      assert.equal(retained.retain, true);
      assert.equal(retained.json.state, 'online');
      assert.equal(retained.json.model, 'random-1@1');
      assert.equal(retained.json.protocol, setup.expect);
      assert.equal(retained.json.device, 'dev1');
    });

    test('metrics arrive every interval with the documented figures', async () => {
      const from = op.messages.length;
      await op.waitFor((m) => m.topic === `${PREFIX}metrics` && m.json.frames > 0, 'metrics', 10_000, from);
      const second = await op.waitFor(
        (m) => m.topic === `${PREFIX}metrics` && m.json.frames > 0,
        'a second metrics message',
        10_000,
        op.messages.indexOf(op.messages.slice(from).find((m) => m.topic === `${PREFIX}metrics` && m.json.frames > 0)!) +
          1,
      );
      const m = second.json;
      for (const key of [
        'ts',
        'model',
        'frames',
        'framesPerSecond',
        'latencyMs',
        'queueDepth',
        'dropped',
        'spikeRate',
        'synOpsPerFrame',
        'accuracy',
        'rssBytes',
        'cpuTemperatureC',
        'outbox',
      ])
        assert.ok(key in m, key);
      assert.equal(m.model, 'random-1@1');
      assert.ok(m.latencyMs.p50 > 0 && m.latencyMs.p50 <= m.latencyMs.p90 && m.latencyMs.p90 <= m.latencyMs.p99);
      assert.deepEqual(Object.keys(m.spikeRate), ['conv0', 'bconv1', 'bconv2', 'bconv3', 'bconv4', 'bconv5']);
      assert.ok(Object.values(m.spikeRate as Record<string, number>).every((r) => r > 0 && r < 1));
      assert.ok(m.synOpsPerFrame > 0);
      assert.ok(m.accuracy.labelled > 0 && m.accuracy.correct <= m.accuracy.labelled);
      assert.ok(m.rssBytes !== null && m.rssBytes > 10 * 2 ** 20);
    });

    test('predictions: frame ids increase, each with class, confidence and the sample label', async () => {
      const from = op.messages.length;
      await op.waitFor((m) => m.topic === `${PREFIX}predictions`, 'predictions', 10_000, from);
      await op.waitFor(
        (m) =>
          m.topic === `${PREFIX}predictions` &&
          m !== op.messages.slice(from).find((x) => x.topic === `${PREFIX}predictions`),
        'more predictions',
        10_000,
        from,
      );
      const items = op.messages
        .slice(from)
        .filter((m) => m.topic === `${PREFIX}predictions`)
        .flatMap((m) => m.json.predictions);
      const frames = items.map((p: { frame: number }) => p.frame);
      assert.deepEqual(
        frames,
        [...frames].sort((a, b) => a - b),
      );
      for (const p of items) {
        assert.ok(Number.isInteger(p.class) && p.class >= 0 && p.class < 10);
        assert.ok(p.confidence > 0 && p.confidence <= 1);
        assert.equal(p.name, `class${p.class}`);
        // The samples replay in order from frame id 1, so frame id n carries sample (n-1) % 1000's label.
        assert.equal(p.label, samples.labels[(p.frame - 1) % 1000]);
      }
    });

    test('cmd/status replies with the state, the model and live metrics', async () => {
      const r = await op.command(PREFIX, 'status');
      assert.equal(r.ok, true);
      assert.equal(r.command, 'status');
      assert.equal(r.result.model, 'random-1@1');
      assert.equal(r.result.source, 'samples');
      assert.ok(r.result.metrics.frames > 0);
    });

    test('cmd/models lists the registry; cmd/activate switches version; an unknown version is refused', async () => {
      const models = await op.command(PREFIX, 'models');
      assert.deepEqual(
        models.result.models.map((m: { version: string; state: string }) => [m.version, m.state]),
        [
          ['random-1@1', 'active'],
          ['random-2@2', 'available'],
        ],
      );
      assert.match(models.result.models[0].sha256, /^[0-9a-f]{64}$/);
      const act = await op.command(PREFIX, 'activate', { version: 'random-2@2' });
      assert.equal(act.ok, true);
      assert.equal(act.result.active, 'random-2@2');
      assert.equal(agent.modelVersion, 'random-2@2');
      await op.waitFor(
        (m) => m.topic === `${PREFIX}status` && m.json.model === 'random-2@2',
        'status with the new model',
      );
      await op.waitFor(
        (m) => m.topic === `${PREFIX}predictions` && m.json.model === 'random-2@2',
        'predictions of the new model',
      );
      const bad = await op.command(PREFIX, 'activate', { version: 'random-9@9' });
      assert.equal(bad.ok, false);
      assert.equal(bad.error.name, 'ConfigError');
      assert.match(bad.error.message, /expected one of random-1@1, random-2@2, got "random-9@9"/);
      assert.equal(agent.modelVersion, 'random-2@2');
      const back = await op.command(PREFIX, 'activate', { version: 'random-1@1' });
      assert.equal(back.ok, true);
    });

    test('cmd/config changes frame rate and reporting; a bad value is refused naming the field', async () => {
      const r = await op.command(PREFIX, 'config', { source: { frameRate: 50 }, reporting: { metricsInterval: 0.3 } });
      assert.equal(r.ok, true);
      assert.equal(r.result.source.frameRate, 50);
      assert.equal(r.result.reporting.metricsInterval, 0.3);
      assert.equal(agent.config.source.frameRate, 50);
      const current = await op.command(PREFIX, 'config');
      assert.equal(current.result.source.frameRate, 50);
      assert.equal(current.result.mqtt.password, null);
      const bad = await op.command(PREFIX, 'config', { source: { frameRate: -3 } });
      assert.equal(bad.ok, false);
      assert.equal(bad.error.name, 'ConfigError');
      assert.equal(bad.error.field, 'source.frameRate');
      assert.match(bad.error.message, /source\.frameRate: expected a number in \[0, 100000\], got -3/);
      const forbidden = await op.command(PREFIX, 'config', { mqtt: { url: 'mqtt://elsewhere:1883' } });
      assert.equal(forbidden.ok, false);
      assert.equal(forbidden.error.field, 'mqtt');
      assert.equal(agent.config.source.frameRate, 50);
      // Switching the source: frames keep flowing from the new one.
      const sw = await op.command(PREFIX, 'config', { source: { spec: 'fmnist', frameRate: 100, queueSize: 5 } });
      assert.equal(sw.result.source.spec, 'fmnist');
      assert.equal(sw.result.source.queueSize, 5);
      const before = agent.metrics.frames;
      await op.waitFor((m) => m.topic === `${PREFIX}metrics` && m.json.frames > before, 'frames from the new source');
    });

    test('cmd/label stores ground truth for frames still held; unknown frames are listed; bad labels refused', async () => {
      const from = op.messages.length;
      const msg = await op.waitFor((m) => m.topic === `${PREFIX}predictions`, 'a prediction to label', 10_000, from);
      const frame = msg.json.predictions.at(-1).frame as number;
      const r = await op.command(PREFIX, 'label', {
        labels: [
          { frame, label: 3 },
          { frame: frame + 1_000_000, label: 2 },
        ],
      });
      assert.equal(r.ok, true);
      assert.equal(r.result.saved, 1);
      assert.deepEqual(r.result.missing, [frame + 1_000_000]);
      const stored = agent.store.labelledFrames();
      assert.equal(stored.length, 1);
      assert.equal(stored[0]!.frame, frame);
      assert.equal(stored[0]!.label, 3);
      assert.equal(stored[0]!.data.length, 784);
      const bad = await op.command(PREFIX, 'label', { frame, label: 12 });
      assert.equal(bad.ok, false);
      assert.match(bad.error.message, /label: expected a class index 0\.\.9, got 12/);
    });

    test('bad commands get a clear error reply and the agent keeps running', async () => {
      const unknown = await op.command(PREFIX, 'reboot');
      assert.equal(unknown.ok, false);
      assert.match(
        unknown.error.message,
        /command: expected one of status, config, models, activate, label, finetune, preview, capture, captures, capture-read, got "reboot"/,
      );
      if (setup.expect === 5) {
        const notObject = await op.command(PREFIX, 'status', {}, '[1, 2]');
        assert.equal(notObject.ok, false);
        assert.match(notObject.error.message, /cmd\/status: payload: expected a JSON object, got an array/);
      }
      // On 3.1.1 a payload that is not JSON carries no reply topic: the reply goes to the device's reply/<name>.
      const from = op.messages.length;
      await op.client.publishAsync(`${PREFIX}cmd/config`, '{not json', { qos: 1 });
      const r = await op.waitFor(
        (m) => m.topic === `${PREFIX}reply/config`,
        'reply on the default topic',
        10_000,
        from,
      );
      assert.equal(r.json.ok, false);
      assert.equal(r.json.error.name, 'SyntaxError');
      const frames = agent.metrics.frames;
      await op.waitFor((m) => m.topic === `${PREFIX}metrics` && m.json.frames > frames, 'frames after bad commands');
    });

    test('malformed frames on frames/in: an error message, the agent keeps running; good frames are inferred', async () => {
      // frames/in feeds the `mqtt` source only.
      await op.command(PREFIX, 'config', { source: { spec: 'mqtt' } });
      const from = op.messages.length;
      const errorsBefore = agent.metrics.frameErrors;
      await op.client.publishAsync(`${PREFIX}frames/in`, Buffer.alloc(100, 7), { qos: 1 });
      await op.client.publishAsync(`${PREFIX}frames/in`, '{"data": 5}', { qos: 1 });
      await op.client.publishAsync(`${PREFIX}frames/in`, Buffer.from('P5 28 28 255\n\x00\x01'), { qos: 1 });
      const e1 = await op.waitFor((m) => m.topic === `${PREFIX}errors`, 'an error message', 10_000, from);
      assert.equal(e1.json.origin, 'frames/in');
      assert.equal(e1.json.error.name, 'FrameError');
      assert.match(
        e1.json.error.message,
        /frames\/in: expected 784 raw bytes \(28x28x1\) or a PNG\/PGM picture, got 100 bytes/,
      );
      await op.waitFor(
        (m) => m.topic === `${PREFIX}errors` && /data: expected a base64 string/.test(m.json.error.message),
        'JSON error',
        10_000,
        from,
      );
      await op.waitFor(
        (m) => m.topic === `${PREFIX}errors` && /PGM 28x28 needs 784 sample bytes/.test(m.json.error.message),
        'PGM error',
        10_000,
        from,
      );
      assert.equal(agent.metrics.frameErrors, errorsBefore + 3);
      // A good frame as JSON with its label is inferred like any other.
      const seen = new Promise<number | null>((resolve) => {
        const on = (r: { label: number | null }) => {
          if (r.label === 42 - 40) {
            agent.off('result', on);
            resolve(r.label);
          }
        };
        agent.on('result', on);
      });
      await op.client.publishAsync(
        `${PREFIX}frames/in`,
        JSON.stringify({ data: Buffer.from(samples.frame(0)).toString('base64'), label: 2 }),
        { qos: 1 },
      );
      assert.equal(await seen, 2);
      await op.command(PREFIX, 'config', { source: { spec: 'samples' } });
    });

    test('stop: the retained status becomes "offline" (stopped)', async () => {
      await agent.stop();
      const last = await op.waitFor(
        (m) => m.topic === `${PREFIX}status` && m.json.state === 'offline',
        'offline status',
      );
      assert.equal(last.json.reason, 'stopped');
      assert.equal(last.retain, false, 'a live subscriber receives the message without the retain flag');
      const late = await Operator.connect(broker.url, setup.expect);
      await late.subscribe(`${PREFIX}status`);
      const retained = await late.waitFor((m) => m.topic === `${PREFIX}status`, 'retained offline');
      await late.close();
      assert.equal(retained.json.state, 'offline');
      assert.equal(retained.retain, true);
      assert.deepEqual(
        errors.filter((e) => !['ConfigError', 'FrameError', 'SyntaxError'].includes(e.name)),
        [],
      );
    });
  });
}
