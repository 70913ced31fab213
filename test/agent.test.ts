// The Agent without a broker and the `sei agent` command: config validation, events, metrics and Prometheus text,
// the prediction log, live video on stdin with the drop-oldest queue, model selection and registry.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Agent, loadConfigFile, parseConfig, SqliteStore, startBroker } from '../device-agent/index.js';
import type { AgentResult, MetricsSnapshot } from '../device-agent/index.js';
import { ConfigError, sampleFrames } from '../runtime/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const samples = sampleFrames();
let dir: string;
let model: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sei-agent-'));
  model = modelFile(dir);
});
after(() => rmSync(dir, { recursive: true, force: true }));

function refuses(raw: unknown, field: string, message: RegExp): void {
  assert.throws(
    () => parseConfig(raw),
    (e: Error) => e instanceof ConfigError && e.field === field && message.test(e.message),
    `${field}`,
  );
}

describe('config', () => {
  test('every field has a default', () => {
    const c = parseConfig({ device: 'pi-7' });
    assert.equal(c.topicPrefix, 'sei/default/pi-7/');
    assert.deepEqual(c.source.spec, { kind: 'fmnist' });
    assert.equal(c.mqtt.url, null);
    assert.equal(c.mqtt.protocol, 'auto');
    assert.equal(c.mqtt.clientId, 'sei-default-pi-7');
    assert.equal(c.reporting.metricsInterval, 10);
    assert.equal(c.metrics.httpPort, 9464);
    assert.equal(c.store.path, 'sei-agent.db');
  });

  test('bad values are refused naming the field, the expected and the actual value', () => {
    refuses(
      { source: { frameRate: 'fast' } },
      'source.frameRate',
      /^source\.frameRate: expected a number in \[0, 100000\], got "fast"$/,
    );
    refuses({ source: { queueSize: 2.5 } }, 'source.queueSize', /expected an integer in \[1, 100000\], got 2\.5/);
    refuses({ source: { spec: 'stdin:yuv420:abc' } }, 'source.spec', /expected a frame size WxH/);
    refuses({ mqtt: { url: 'http://x' } }, 'mqtt.url', /expected a broker URL .* got "http:\/\/x"/);
    refuses({ mqtt: { protocol: 3 } }, 'mqtt.protocol', /expected one of "auto", 5, 4, got 3/);
    refuses({ mqtt: { tls: { cert: '/c.pem' } } }, 'mqtt.tls.key', /both mqtt\.tls\.cert and mqtt\.tls\.key/);
    refuses(
      { mqtt: { reconnectMinMs: 1000, reconnectMaxMs: 100 } },
      'mqtt.reconnectMaxMs',
      /a value >= mqtt\.reconnectMinMs \(1000\), got 100/,
    );
    refuses({ fleet: 'a/b' }, 'fleet', /without "\/"/);
    refuses({ topicPrefix: 'sei/x' }, 'topicPrefix', /ending in "\/"/);
    refuses(
      { reporting: { metricsIntervall: 5 } },
      'reporting.metricsIntervall',
      /unknown setting \(a typo\?\), got 5/,
    );
    refuses({ store: 'x' }, 'store', /expected a mapping, got "x"/);
    refuses({ source: { crop: { x: 0, y: 0, width: 10 } } }, 'source.crop.height', /expected an integer/);
  });

  test('YAML and JSON files load the same config; a broken file names itself', () => {
    const yaml = join(dir, 'agent.yaml');
    writeFileSync(
      yaml,
      'fleet: plant-3\ndevice: line-2\nsource:\n  spec: stdin:yuv420:640x480\n  crop: {x: 80, y: 0, width: 480, height: 480}\nmqtt:\n  url: mqtts://broker:8883\n  username: line-2\n',
    );
    const json = join(dir, 'agent.json');
    writeFileSync(
      json,
      JSON.stringify({
        fleet: 'plant-3',
        device: 'line-2',
        source: { spec: 'stdin:yuv420:640x480', crop: { x: 80, y: 0, width: 480, height: 480 } },
        mqtt: { url: 'mqtts://broker:8883', username: 'line-2' },
      }),
    );
    assert.deepEqual(loadConfigFile(yaml), loadConfigFile(json));
    assert.equal(loadConfigFile(yaml).topicPrefix, 'sei/plant-3/line-2/');
    assert.equal(loadConfigFile(yaml, { source: { frameRate: 5 } }).source.frameRate, 5);
    writeFileSync(join(dir, 'bad.yaml'), 'source: [unclosed\n');
    assert.throws(
      () => loadConfigFile(join(dir, 'bad.yaml')),
      (e: Error) => e instanceof ConfigError && /bad\.yaml/.test(e.message),
    );
    assert.throws(
      () => loadConfigFile(join(dir, 'missing.yaml')),
      (e: Error) => e instanceof ConfigError && /missing\.yaml/.test(e.message),
    );
  });
});

describe('Agent (no broker)', () => {
  test('typed events, metrics, Prometheus text and the SQLite prediction log', async () => {
    const store = join(dir, 'events.db');
    const agent = new Agent({
      config: agentConfig({
        dir,
        model,
        url: null,
        extra: { source: { frameRate: 0 }, metrics: { httpPort: 0 }, store: { path: store, predictionRows: 100 } },
      }),
    });
    const results: AgentResult[] = [];
    const snaps: MetricsSnapshot[] = [];
    let frames = 0;
    agent.on('frame', () => frames++);
    agent.on('result', (r) => results.push(r));
    agent.on('metrics', (s) => snaps.push(s));
    await agent.start();
    while (snaps.length < 2) await new Promise((r) => setTimeout(r, 50));
    const res = await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`);
    const text = await res.text();
    await agent.stop();

    assert.ok(results.length > 50 && frames >= results.length);
    results.slice(0, 50).forEach((r, i) => {
      assert.equal(r.frame, i + 1);
      assert.equal(r.label, samples.labels[i]);
      assert.equal(r.model, 'random-1@0');
      assert.equal(r.result.logits.length, 10);
    });
    const s = snaps[1]!;
    assert.ok(s.framesPerSecond > 0 && s.frames > 0);
    assert.equal(s.accuracy!.labelled, s.frames);
    assert.equal(s.accuracy!.correct, results.slice(0, s.frames).filter((r) => r.result.prediction === r.label).length);

    assert.equal(res.status, 200);
    for (const line of [
      /^sei_agent_frames_total\{device="dev1",fleet="test"\} \d+$/m,
      /^sei_agent_frames_dropped_total\{[^}]*\} 0$/m,
      /^sei_agent_inference_latency_seconds\{quantile="0\.99",[^}]*\} [0-9.e-]+$/m,
      /^sei_agent_layer_spike_rate_ratio\{layer="bconv3",[^}]*\} 0\.\d+$/m,
      /^sei_agent_model_info\{version="random-1@0",[^}]*\} 1$/m,
      /^sei_agent_accuracy_ratio\{[^}]*\} [0-9.]+$/m,
      /^process_resident_memory_bytes\{[^}]*\} \d+$/m,
      /^# TYPE sei_agent_frames_total counter$/m,
    ])
      assert.match(text, line);

    const db = new SqliteStore(store, { predictionRows: 100 });
    const logged = db.recentPredictions(1000);
    assert.ok(logged.length > 0 && logged.length <= 100, `${logged.length} rows`);
    assert.equal(logged.at(-1)!.frame, results.at(-1)!.frame, 'stop flushes the log');
    assert.equal(db.getModel('random-1@0')!.state, 'active');
    assert.equal(db.recentMetrics(10).length, snaps.length);
    db.close();
  });

  test('live yuv420 video on stdin: every frame is inferred or counted as dropped', async () => {
    const ffmpeg = spawn(
      'ffmpeg',
      [
        '-loglevel',
        'error',
        '-f',
        'lavfi',
        '-i',
        'testsrc=size=320x240:rate=100',
        '-t',
        '3',
        '-f',
        'rawvideo',
        '-pix_fmt',
        'yuv420p',
        '-',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const agent = new Agent({
      config: agentConfig({
        dir,
        model,
        url: null,
        extra: {
          source: { spec: 'stdin:yuv420:320x240', queueSize: 2, crop: { x: 40, y: 0, width: 240, height: 240 } },
        },
      }),
      stdin: ffmpeg.stdout,
    });
    const labels = new Set<number | null>();
    const errors: Error[] = [];
    agent.on('result', (r) => labels.add(r.label));
    agent.on('error', (e) => errors.push(e));
    await agent.start();
    await new Promise((r) => ffmpeg.once('close', r));
    await new Promise((r) => setTimeout(r, 300));
    const s = agent.snapshot();
    await agent.stop();
    assert.equal(s.frames + s.dropped, 300);
    assert.ok(s.frames > 0);
    assert.deepEqual([...labels], [null]);
    assert.equal(s.accuracy, null);
    assert.deepEqual(
      errors.map((e) => e.message),
      ['source: expected frames to keep coming, got the end of stdin yuv420 320x240'],
    );
  });

  test('model selection: the newest version in model.dir, a registry entry per file; a missing model is a ConfigError', async () => {
    const models = join(dir, 'models');
    mkdirSync(models);
    modelFile(models, 3, 1);
    modelFile(models, 4, 7);
    modelFile(models, 5, 2);
    const agent = new Agent({
      config: agentConfig({ dir, model: '', url: null, extra: { model: { path: null, dir: models, kernel: 'auto' } } }),
    });
    await agent.start();
    assert.equal(agent.modelVersion, 'random-4@7');
    assert.deepEqual(
      agent.store.listModels().map((m) => `${m.version}:${m.state}`),
      ['random-3@1:available', 'random-4@7:active', 'random-5@2:available'],
    );
    await agent.stop();
    const none = new Agent({
      config: agentConfig({
        dir,
        model: '',
        url: null,
        extra: { model: { path: null, dir: join(dir, 'empty'), kernel: 'auto' } },
      }),
    });
    // With no model anywhere the bundled one is used; without a bundled one, a ConfigError names model.path.
    await none.start().then(
      () => none.stop(),
      (e: Error) => assert.ok(e instanceof ConfigError && e.field === 'model.path', e.message),
    );
  });
});

test('with no error listener, bad frames and bad commands do not stop the agent', async () => {
  const broker = await startBroker({ port: 0 });
  const op = await Operator.connect(broker.url, 4);
  // The `mqtt` source: only it takes frames/in.
  const agent = new Agent({
    config: agentConfig({ dir, model, url: broker.url, extra: { source: { spec: 'mqtt' } } }),
  });
  try {
    const online = new Promise((r) => agent.once('online', r));
    await agent.start();
    await online;
    await op.subscribe('sei/test/dev1/#');
    await op.client.publishAsync('sei/test/dev1/frames/in', Buffer.alloc(3), { qos: 1 });
    const reply = await op.command('sei/test/dev1/', 'activate', { version: 'none@0' });
    assert.equal(reply.ok, false);
    const frames = agent.metrics.frames;
    await op.client.publishAsync('sei/test/dev1/frames/in', Buffer.from(samples.frame(0)), { qos: 1 });
    await op.waitFor(
      (m) => m.topic === 'sei/test/dev1/metrics' && m.json.frames > frames && m.json.frameErrors === 1,
      'metrics after the errors',
    );
  } finally {
    await agent.stop();
    await op.close();
    await broker.close();
  }
});

describe('sei agent', () => {
  const run = promisify(execFile);
  test('runs from a YAML config for a set duration and prints its figures as JSON', async () => {
    const cfg = join(dir, 'cli.yaml');
    writeFileSync(
      cfg,
      `device: cli-1\nmodel:\n  path: ${model}\nsource:\n  spec: samples\n  frameRate: 200\nmetrics:\n  httpPort: null\nreporting:\n  metricsInterval: 0.5\nstore:\n  path: ${join(dir, 'cli.db')}\n`,
    );
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'scripts/cli.ts', 'agent', '--config', cfg, '--duration', '2', '--json'],
      { cwd: ROOT },
    );
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!);
    assert.ok(summary.frames > 0);
    assert.equal(summary.model, 'random-1@0');
    assert.match(stdout, /frames\/s, latency p50/);
  });

  test('a bad config exits with status 2 and a message naming the field', async () => {
    const cfg = join(dir, 'bad.json');
    writeFileSync(cfg, JSON.stringify({ source: { frameRate: -1 } }));
    await assert.rejects(
      run(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'agent', '--config', cfg], { cwd: ROOT }),
      (e: { code: number; stderr: string }) => {
        assert.equal(e.code, 2);
        assert.match(e.stderr, /ConfigError: source\.frameRate: expected a number in \[0, 100000\], got -1/);
        return true;
      },
    );
  });
});
