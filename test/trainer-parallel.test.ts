/**
 * Data-parallel training (trainer/parallel/): a worker thread computes exactly the gradients this thread computes
 * for the same shard and weights, a 2-thread step applies the size-weighted mean of the shard gradients and the
 * pooled BN statistics, and a short 2-thread run on real Fashion-MNIST frames learns.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../trainer/backend/index.js';
import { loadDataset, makeBatch } from '../trainer/data/index.js';
import { DEFAULT_NET, initParams, namedVariables } from '../trainer/model.js';
import { applyShards, shardGradients, splitBatch } from '../trainer/parallel/shard.js';
import { DEFAULT_LOSS } from '../trainer/recipe/loss.js';
import type { TrainConfig } from '../trainer/train.js';
import { accuracy, fit, predict, startPool, trainStep } from '../trainer/train.js';

const backend = await initBackend();
const net = { ...DEFAULT_NET, width: 8, T: 2 };
const frame = [28, 28, 1] as const;
const loss = { ...DEFAULT_LOSS, perStep: 0.5 };
const data = loadDataset({ trainLimit: 2048, valSize: 256, testLimit: 1000 });
const batch = makeBatch(data.train, Array.from({ length: 24 }, (_, i) => i));
const tmp = mkdtempSync(join(tmpdir(), 'sei-parallel-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function network(prefix: string) {
  const params = initParams(net, 3, prefix);
  const trainables = namedVariables(params).filter((v) => v.trainable).map((v) => v.v);
  return { params, trainables };
}

test('splitBatch covers the batch in contiguous near-equal shards', () => {
  const shards = splitBatch({ x: batch.x, y: batch.y }, 784, 10, 5);
  assert.deepEqual(shards.map((s) => s.y.length), [5, 5, 5, 5, 4]);
  assert.deepEqual(Array.from(shards.flatMap((s) => Array.from(s.y))), Array.from(batch.y));
  assert.equal(shards[4]!.x[0], batch.x[20 * 784]);
});

test('a worker thread computes the same shard gradients as this thread; a 2-thread step applies their weighted mean', async () => {
  const a = network('pa/');
  const b = network('pb/');
  const shards = splitBatch({ x: batch.x, y: batch.y }, 784, 10, 2);
  const local = shards.map((s) => shardGradients(net, a.params, a.trainables, s, frame, loss));
  const pool = await startPool(2, backend.engine, { net, seed: 3, frame, loss });
  assert.ok(pool, 'the wasm engine starts a pool for 2 threads');
  try {
    const values = b.trainables.map((v) => (v.dataSync() as Float32Array).slice());
    const [remote] = await pool.run([shards[1]!], values);
    assert.equal(remote!.loss, local[1]!.loss);
    remote!.grads.forEach((g, i) => assert.deepEqual(g, local[1]!.grads[i], `gradient ${i}`));
    assert.deepEqual(remote!.bn.map((s) => s.mean), local[1]!.bn.map((s) => s.mean));

    // The same step two ways: through the pool, and by hand from the locally computed shards.
    const optA = tf.train.adam(1e-2), optB = tf.train.adam(1e-2);
    const [lossA] = applyShards(optA, a.trainables, a.params.layers.map((l) => l.bn), local);
    const [lossB] = await trainStep({ net, params: b.params, trainables: b.trainables, optimizer: optB, frame, loss, pool }, { x: batch.x, y: batch.y });
    assert.ok(Math.abs(lossA - lossB) < 1e-6, `${lossA} vs ${lossB}`);
    a.trainables.forEach((v, i) => {
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(v, b.trainables[i]!))).dataSync()[0]!);
      assert.ok(d < 1e-6, `weight ${v.name} differs by ${d}`);
    });
    // Pooled BN statistics: the running mean moved toward the mean of the shard means.
    const m0 = local.map((r) => r.bn[2]!.mean[0]!);
    const expected = 0.1 * (m0[0]! + m0[1]!) / 2;
    assert.ok(Math.abs(b.params.layers[2]!.bn.mean.dataSync()[0]! - expected) < 1e-5);
    const vA = a.params.layers[3]!.bn.variance.dataSync(), vB = b.params.layers[3]!.bn.variance.dataSync();
    vA.forEach((v, i) => assert.ok(Math.abs(v - vB[i]!) < 1e-5));
  } finally {
    await pool.close();
  }
});

test('a short 2-thread run on 2k Fashion-MNIST frames beats chance by a wide margin', async () => {
  const cfg: TrainConfig = {
    net, epochs: 1, batchSize: 32, lr: 5e-3, lrFinal: 0.1, warmupEpochs: 0.05, seed: 5,
    data: {}, augment: null, loss, teacher: null,
  };
  const info: string[] = [];
  const r = await fit('student', cfg, data, join(tmp, 'two'), { resume: false, engine: backend.engine, threads: 2, hooks: { onInfo: (l) => info.push(l) } });
  assert.ok(info.some((l) => l.includes('data-parallel over 2 threads')), info.join('\n'));
  const acc = accuracy(predict(net, r.params, data.test).predictions, data.test.labels);
  assert.ok(acc > 0.4, `test accuracy ${acc}`);
});
