// The loop of README.md "Your own images", end to end on a real broker (Mosquitto when installed, else Aedes) with
// a real agent process (`sei agent`): collect on the box (cmd/capture, labelled, and unlabelled frames labelled
// afterwards with cmd/label) → `sei capture pull` → `sei train` on the pulled folder (tiny) → `sei export` →
// `sei deploy` to the agent → the agent runs the new model, its predictions named by the pulled folder's classes.
// And a colour, non-square model (24x32x3, letterbox) through the agent's stdin yuv420 source.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Agent, yuv420ToRgb } from '../device-agent/index.js';
import { randomModel } from '../runtime/format/random-model.js';
import { fitFrame, readBwsnnFile, writeBwsnn } from '../runtime/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { aedes, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

const CLI = fileURLToPath(new URL('../scripts/cli.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const PREFIX = 'sei/loop/box1/';

let dir: string;
let broker: TestBroker;
const env = () => ({ ...process.env, SEI_CACHE_DIR: join(dir, 'cache') });

function sei(args: string[]): Promise<{ code: number; stdout: string; stderr: string; json: any }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', TSX, CLI, ...args],
      { timeout: 240_000, cwd: dir, env: env(), maxBuffer: 1 << 24 },
      (err, stdout, stderr) => {
        let json: unknown = null;
        try {
          json = JSON.parse(stdout.trim().split('\n').at(-1)!);
        } catch {
          // not a --json run
        }
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, json });
      },
    );
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sei-capture-loop-'));
  broker = mosquittoAvailable ? await mosquitto() : await aedes();
});

after(async () => {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('your own images: collect on the box, label, pull, train, deploy', () => {
  let agent: ChildProcess | null = null;
  after(() => {
    agent?.kill('SIGTERM');
  });

  test('capture → label → pull → train → export → deploy → the agent runs the new model', async () => {
    const keys = await sei(['keys', 'gen', '--out', join(dir, 'keys'), '--json']);
    assert.equal(keys.code, 0, keys.stderr);
    const config = join(dir, 'agent.json');
    writeFileSync(
      config,
      JSON.stringify(
        agentConfig({
          dir,
          model: modelFile(dir, 3, 0),
          url: broker.url,
          device: 'box1',
          extra: {
            fleet: 'loop',
            source: { spec: 'samples', frameRate: 20, queueSize: 4 },
            ota: {
              trustedKeys: [keys.json.public],
              requestTimeoutMs: 500,
              probation: { frames: 5, seconds: 20, maxLatencyRatio: 1000, minConfidenceRatio: 0 },
            },
          },
        }),
      ),
    );
    const op = await Operator.connect(broker.url, mosquittoAvailable ? 5 : 4);
    try {
      await op.subscribe(`${PREFIX}#`);
      agent = spawn(process.execPath, ['--import', TSX, CLI, 'agent', '--config', config], {
        cwd: dir,
        env: env(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let agentErr = '';
      agent.stderr!.on('data', (b: Buffer) => (agentErr += b.toString()));
      await op.waitFor((m) => m.topic === `${PREFIX}status` && m.json?.state === 'online', 'the agent online', 60_000);

      // Collect: two classes by command, three unlabelled frames labelled afterwards.
      const good = await op.command(PREFIX, 'capture', { count: 10, label: 'good' });
      assert.equal(good.ok, true, JSON.stringify(good));
      const bad = await op.command(PREFIX, 'capture', { count: 7, label: 'scratch' });
      assert.equal(bad.result.ids.length, 7);
      const later = await op.command(PREFIX, 'capture', { count: 4 });
      const labelled = await op.command(PREFIX, 'label', {
        labels: later.result.ids.slice(0, 3).map((capture: number) => ({ capture, label: 'scratch' })),
      });
      assert.deepEqual(labelled.result.captures, { labelled: 3, missing: [] });

      // Pull.
      const data = join(dir, 'parts');
      const pulled = await sei([
        'capture',
        'pull',
        '--device',
        'box1',
        '--fleet',
        'loop',
        '--out',
        data,
        '--mqtt',
        broker.url,
        '--json',
      ]);
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.deepEqual(pulled.json.classes, { good: 10, scratch: 10, _unlabelled: 1 });
      assert.equal(readdirSync(join(data, 'good')).length, 10);

      // Train (tiny), export, deploy.
      const run = join(dir, 'run');
      const trained = await sei([
        'train',
        '--data',
        data,
        '--out',
        run,
        '--input',
        '28x28x1',
        '--holdout',
        '0.2,0.2',
        '--epochs',
        '1',
        '--width',
        '8',
        '--T',
        '1',
        '--batch',
        '16',
        '--threads',
        '1',
        '--recalibrate',
        '0',
        '--json',
      ]);
      assert.equal(trained.code, 0, trained.stderr);
      assert.match(trained.stderr, /2 classes, 20 frames/, 'the unlabelled frame is no class');
      const model = join(dir, 'parts.bwsnn');
      const exported = await sei([
        'export',
        '--checkpoint',
        run,
        '--out',
        model,
        '--name',
        'parts',
        '--version',
        '1',
        '--json',
      ]);
      assert.equal(exported.code, 0, exported.stderr);
      assert.deepEqual(readBwsnnFile(model).labels, ['good', 'scratch']);
      const deployed = await sei([
        'deploy',
        '--model',
        model,
        '--key',
        keys.json.private,
        '--device',
        'box1',
        '--fleet',
        'loop',
        '--broker',
        broker.url,
        '--block-size',
        '2048',
        '--timeout',
        '90',
        '--json',
      ]);
      assert.equal(deployed.code, 0, `${deployed.stdout}\n${deployed.stderr}\n${agentErr}`);
      assert.equal(deployed.json.ok, true);

      // The agent runs it: its status names it and its predictions carry the pulled folder's class names.
      const from = op.messages.length;
      const p = await op.waitFor(
        (m) => m.topic === `${PREFIX}predictions` && m.json?.model === 'parts@1',
        'a prediction of the new model',
        30_000,
        from,
      );
      const names = (p.json.predictions ?? [p.json]).map((x: { name: string }) => x.name);
      assert.ok(
        names.every((n: string) => n === 'good' || n === 'scratch'),
        names.join(', '),
      );
      const status = await op.command(PREFIX, 'status', {});
      assert.equal(status.result.model, 'parts@1');
    } finally {
      agent?.kill('SIGTERM');
      if (agent && agent.exitCode === null) await new Promise((r) => agent!.once('exit', r));
      agent = null;
      await op.close();
    }
  });
});

describe('a colour, non-square model through the camera source', () => {
  test("24x32x3 letterbox: stdin yuv420 becomes the RGB frame training would make; predictions named by the model's classes", async () => {
    const labels = ['good', 'scratch', 'dent'];
    const m = {
      ...randomModel({ seed: 5, input: [24, 32, 3], classes: 3 }),
      labels,
      fit: 'letterbox' as const,
      version: 1,
    };
    const path = join(dir, 'rgb.bwsnn');
    writeFileSync(path, writeBwsnn(m));
    const stdin = new PassThrough();
    const agent = new Agent({
      config: agentConfig({
        dir,
        model: path,
        url: broker.url,
        device: 'cam1',
        extra: { fleet: 'loop', source: { spec: 'stdin:yuv420:64x36', queueSize: 8 } },
      }),
      stdin,
    });
    agent.on('error', () => {});
    const op = await Operator.connect(broker.url, mosquittoAvailable ? 5 : 4);
    try {
      await op.subscribe('sei/loop/cam1/predictions');
      const seen: Array<{ data: Uint8Array; id: number }> = [];
      agent.on('frame', (f) => seen.push({ data: f.data, id: f.id }));
      await agent.start();
      await new Promise<void>((r) => (agent.connected ? r() : agent.once('online', () => r())));
      const [w, h] = [64, 36];
      const frames = [0, 1, 2].map((k) =>
        Uint8Array.from({ length: (w * h * 3) / 2 }, (_, i) =>
          i < w * h ? (i * (k + 2) + (i >> 3)) & 255 : 40 + ((i * 13 + k * 7) % 170),
        ),
      );
      for (const f of frames) stdin.write(f);
      const p = await op.waitFor((x) => x.topic === 'sei/loop/cam1/predictions', 'a prediction', 20_000);
      while (seen.length < 3) await new Promise((r) => setTimeout(r, 20));
      seen.forEach((s, k) =>
        assert.deepEqual(
          s.data,
          fitFrame(yuv420ToRgb(frames[k]!, w, h, new Uint8Array(w * h * 3)), [h, w, 3], [24, 32, 3], 'letterbox'),
          `frame ${k}`,
        ),
      );
      const preds = p.json.predictions ?? [p.json];
      for (const x of preds) assert.equal(x.name, labels[x.class ?? x.prediction], JSON.stringify(x));
    } finally {
      await agent.stop();
      await op.close();
    }
  });
});
