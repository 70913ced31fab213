/**
 * Throughput mode (runtime/pool): worker threads with an engine each. Two workers compute exactly what one does
 * and what the engine does in this thread (logits, spikes, features, synOps, at the model's T and at another);
 * results come back in the order frames went in; a worker that dies fails the frames it held with a WorkerError
 * and is started again; a worker that cannot start fails the pool; a process with a pool ends on its own.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { bundledModel } from '../device-agent/models.js';
import {
  ConfigError,
  createEngine,
  FrameError,
  readBwsnnFile,
  readIdx,
  SAMPLE_IMAGES,
  WorkerError,
} from '../runtime/index.js';
import type { Engine, InferResult } from '../runtime/index.js';
import { FMNIST_BLOCKS, randomModel } from '../runtime/format/random-model.js';
import { EnginePool } from '../runtime/pool/index.js';

// The bundled model (real predictions that differ from frame to frame), else a random one of its layout.
const bundled = bundledModel();
const model = bundled ? readBwsnnFile(bundled) : randomModel({ seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 });
const images = readIdx(SAMPLE_IMAGES).data;
const frame = (i: number) => images.subarray(i * 784, (i + 1) * 784);
const frames = Array.from({ length: 40 }, (_, i) => frame(i));
const CRASHING = new URL('./fixtures/pool/crashing-worker.mjs', import.meta.url);

/** Every field of a result that the engine computes (latency aside), as bytes where it is floats. */
function bits(r: InferResult) {
  const b = (a: Float32Array | Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
  return {
    prediction: r.prediction,
    confidence: r.confidence,
    logits: b(r.logits),
    spikeRates: b(r.spikeRates),
    features: b(r.features),
    synOps: r.synOps,
  };
}

async function viaPool(engine: Engine, threads: number, input: readonly Uint8Array[]) {
  const pool = await EnginePool.start(engine, { threads });
  try {
    assert.equal(pool.threads, threads);
    const out = [];
    for await (const item of pool.stream(input)) {
      assert.ok(item.ok, `frame ${item.index}`);
      out.push({ index: item.index, ...bits(item.result) });
    }
    return out;
  } finally {
    await pool.close();
  }
}

for (const steps of [undefined, 1]) {
  test(`two workers give what one worker and the engine itself give, bit for bit, in frame order (steps ${steps ?? "the model's"})`, async () => {
    const engine = createEngine(model, { kernel: 'wasm', ...(steps ? { steps } : {}) });
    const local = frames.map((f, index) => ({ index, ...bits(engine.infer(f)) }));
    const [one, two] = [await viaPool(engine, 1, frames), await viaPool(engine, 2, frames)];
    assert.deepEqual(one, local);
    assert.deepEqual(two, local);
    assert.equal(new Set(local.map((r) => r.logits)).size, local.length, 'every frame has its own logits');
  });
}

test('infer settles in call order; a bad frame is a FrameError in its place and the others go on', async () => {
  const engine = createEngine(model);
  const pool = await EnginePool.start(engine, { threads: 2 });
  try {
    const settled: number[] = [];
    const input: Uint8Array[] = frames.slice(0, 12);
    input[5] = new Uint8Array(10);
    const all = input.map((f, i) =>
      pool.infer(f).then(
        (r) => {
          settled.push(i);
          return r.prediction;
        },
        (err: Error) => {
          settled.push(i);
          return err;
        },
      ),
    );
    const results = await Promise.all(all);
    assert.deepEqual(settled, [...input.keys()]);
    assert.ok(results[5] instanceof FrameError && results[5].field === 'frame.length', String(results[5]));
    results.forEach((r, i) => {
      if (i !== 5) assert.equal(r, engine.infer(input[i]!).prediction, `frame ${i}`);
    });
    assert.equal(pool.pending, 0);
  } finally {
    await pool.close();
  }
  await assert.rejects(
    pool.infer(frames[0]!),
    (err: unknown) => err instanceof WorkerError && /closed/.test(String(err)),
  );
});

test('a worker that dies fails the frame it held with a WorkerError, is started again, and the pool goes on', async () => {
  const engine = createEngine(model);
  const restarts: WorkerError[] = [];
  const pool = await EnginePool.start(engine, {
    threads: 2,
    depth: 1,
    entry: CRASHING,
    onRestart: (err) => restarts.push(err),
  });
  try {
    const boom = Uint8Array.from(frames[4]!);
    boom.set([66, 79, 79, 77]);
    const input = [...frames.slice(0, 4), boom, ...frames.slice(5, 12)];
    const items = [];
    for await (const item of pool.stream(input)) items.push(item);
    assert.deepEqual(
      items.map((i) => i.index),
      [...input.keys()],
    );
    const failed = items.filter((i) => !i.ok);
    assert.equal(failed.length, 1, 'one worker held one frame: only that frame is lost');
    const lost = failed[0]!;
    assert.equal(lost.index, 4);
    assert.ok(!lost.ok && lost.error instanceof WorkerError, String(!lost.ok && lost.error));
    assert.match(
      (lost as { error: Error }).error.message,
      /engine worker \d: expected it to keep running, got an exit with code 7 with frame #4/,
    );
    for (const item of items)
      if (item.ok) assert.deepEqual(bits(item.result), bits(engine.infer(input[item.index]!)), `frame ${item.index}`);
    assert.equal(pool.restarts, 1);
    assert.equal(restarts.length, 1);
    assert.equal(restarts[0]!.message, (lost as { error: Error }).error.message);
    // Both workers serve again, the restarted one included.
    const after = await Promise.all(frames.slice(12, 20).map((f) => pool.infer(f)));
    assert.deepEqual(
      after.map((r) => r.prediction),
      frames.slice(12, 20).map((f) => engine.infer(f).prediction),
    );
  } finally {
    await pool.close();
  }
});

test('a worker that cannot start fails the pool with a WorkerError; bad thread counts are ConfigErrors', async () => {
  const engine = createEngine(model);
  await assert.rejects(
    EnginePool.start(engine, { threads: 2, entry: new URL('./fixtures/pool/no-such-worker.mjs', import.meta.url) }),
    (err: unknown) => err instanceof WorkerError && /engine worker \d: expected it to keep running/.test(String(err)),
  );
  for (const threads of [0, 65, 1.5])
    await assert.rejects(
      EnginePool.start(engine, { threads }),
      (err: unknown) => err instanceof ConfigError && err.field === 'threads',
      String(threads),
    );
});

test('a process with a pool ends on its own, closed or not (idle workers keep nothing alive)', async () => {
  const run = promisify(execFile);
  const script = join(import.meta.dirname, 'fixtures/pool/shutdown.ts');
  const engine = createEngine(model);
  const expected = JSON.stringify(frames.slice(0, 8).map((f) => engine.infer(f).prediction));
  for (const mode of ['close', 'leave']) {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', script, mode, bundled ?? 'random'], {
      timeout: 60_000,
    });
    assert.equal(stdout.trim(), expected, mode);
  }
});

test('frames that are views into one larger buffer (a Node Buffer too) are copied; the buffer stays whole', async () => {
  const engine = createEngine(model);
  const big = Buffer.from(images.subarray(0, 6 * 784));
  const pool = await EnginePool.start(engine, { threads: 2 });
  try {
    const views = [0, 1, 2, 3, 4, 5].map((i) => big.subarray(i * 784, (i + 1) * 784));
    const got = await Promise.all(views.map((v) => pool.infer(v)));
    assert.equal(big.byteLength, 6 * 784, 'not detached');
    assert.deepEqual(big, Buffer.from(images.subarray(0, 6 * 784)));
    assert.deepEqual(
      got.map(bits),
      views.map((v) => bits(engine.infer(v))),
    );
  } finally {
    await pool.close();
  }
});
