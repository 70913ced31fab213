/**
 * `cmd/preview`, the agent command behind the console's live frames, on a real broker: an idle device sends no
 * frames; a request opens a bounded window at a bounded rate and replies with the model card; the frames carry
 * the picture, the prediction, the class probabilities and the firing rate of each layer; the window closes on
 * time; out-of-range requests are refused naming the field.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import { MAX_FPS, MAX_SECONDS } from '../device-agent/commands/preview.js';
import type { PreviewMessage, PreviewResult } from '../device-agent/messages.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { aedes } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

const PREFIX = 'sei/test/dev1/';
let dir: string;
let broker: TestBroker;
let agent: Agent;
let op: Operator;
const frames = () => op.messages.filter((m) => m.topic === `${PREFIX}preview`);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sei-preview-'));
  broker = await aedes();
  op = await Operator.connect(broker.url, 4);
  await op.subscribe(`${PREFIX}#`);
  agent = new Agent({
    config: agentConfig({ dir, model: modelFile(dir, 3, 1), url: broker.url, extra: { source: { frameRate: 100 } } }),
  });
  agent.on('error', () => {});
  await agent.start();
  await op.waitFor((m) => m.topic === `${PREFIX}metrics`, 'metrics');
});

after(async () => {
  await agent?.stop();
  await op?.close();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('an idle device sends no preview frames', async () => {
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(agent.metrics.frames > 50, `only ${agent.metrics.frames} frames inferred`);
  assert.equal(frames().length, 0);
});

test('a request opens a window of `seconds` at `fps` at most, with the model card; then the frames stop', async () => {
  const asked = Date.now();
  const reply = await op.command(PREFIX, 'preview', { seconds: 1, fps: 5 });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  const r = reply.result as PreviewResult;
  assert.equal(r.fps, 5);
  assert.ok(r.until >= asked + 1000 && r.until <= Date.now() + 1000, `until ${r.until - asked} ms after the request`);
  assert.equal(r.model.key, 'random-3@1');
  assert.match(r.model.sha256, /^[0-9a-f]{64}$/);
  assert.equal(r.model.signed, false);
  assert.equal(r.model.keyId, null);
  assert.deepEqual(r.model.input, [28, 28, 1]);
  assert.equal(r.model.layers.at(-1)!.op, 'rate_linear');

  await new Promise((res) => setTimeout(res, r.until - Date.now() + 300));
  const got = frames();
  // 100 frames/s inferred, 5 sent per second at most (one more for where the second boundaries fall).
  assert.ok(got.length >= 3 && got.length <= 6, `${got.length} frames in a 1 s window at 5 fps`);
  for (let i = 1; i < got.length; i++)
    assert.ok(got[i]!.json.ts - got[i - 1]!.json.ts >= 199, 'at most one frame per 1/fps');
  const f = got[0]!.json as PreviewMessage;
  assert.deepEqual(f.shape, [28, 28, 1]);
  assert.equal(Buffer.from(f.data!, 'base64').length, 784);
  assert.equal(f.model, 'random-3@1');
  assert.equal(f.probabilities.length, 10);
  assert.ok(Math.abs(f.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-3);
  assert.equal(f.probabilities.indexOf(Math.max(...f.probabilities)), f.class);
  assert.equal(f.confidence, Math.max(...f.probabilities));
  assert.deepEqual(
    Object.keys(f.spikeRate),
    Object.keys(agent.snapshot().spikeRate),
    'one rate per spiking layer, named as in metrics',
  );
  assert.ok(Object.values(f.spikeRate).every((v) => v >= 0 && v <= 1));
  assert.equal(typeof f.label, 'number', 'the samples carry labels');

  // The window is over: no more frames.
  const count = frames().length;
  await new Promise((res) => setTimeout(res, 700));
  assert.equal(frames().length, count);
});

test('one stream per device: a second request extends the window and may raise the rate, never above the cap', async () => {
  const a = (await op.command(PREFIX, 'preview', { seconds: 2, fps: 1 })).result as PreviewResult;
  const b = (await op.command(PREFIX, 'preview', { seconds: 1, fps: 4 })).result as PreviewResult;
  assert.equal(b.fps, 4);
  assert.equal(b.until, a.until, 'a shorter request does not cut the window');
  const c = (await op.command(PREFIX, 'preview', { seconds: 3 })).result as PreviewResult;
  assert.ok(c.until > a.until);
  assert.equal(c.fps, 4, 'the default rate does not lower a higher one');
});

test('out-of-range requests are refused, naming the field', async () => {
  for (const [args, field, message] of [
    [{ fps: MAX_FPS * 10 }, 'fps', `preview: fps: expected a number in [0.1, ${MAX_FPS}], got ${MAX_FPS * 10}`],
    [
      { seconds: MAX_SECONDS + 1 },
      'seconds',
      `preview: seconds: expected a number in [1, ${MAX_SECONDS}], got ${MAX_SECONDS + 1}`,
    ],
    [{ seconds: 'long' }, 'seconds', 'preview: seconds: expected a number in [1, 60], got "long"'],
  ] as const) {
    const reply = await op.command(PREFIX, 'preview', args);
    assert.equal(reply.ok, false);
    assert.deepEqual(reply.error, { name: 'ConfigError', message, field });
  }
});
