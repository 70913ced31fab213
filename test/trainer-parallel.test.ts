/**
 * Data-parallel training (trainer/parallel/): a 2-thread step with synchronised batch norm computes the gradient
 * and the BN statistics of the whole batch (what one thread computes), a failing thread releases the others,
 * validation spread over 2 threads (BN recalibration, then prediction) gives one thread's results bit for bit, and a
 * short 2-thread run on real Fashion-MNIST frames learns and records the validation one thread computes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../trainer/backend/index.js';
import { loadDataset, makeBatch } from '../trainer/data/index.js';
import { DEFAULT_NET, forward, initParams, namedVariables } from '../trainer/model.js';
import { evaluateOnPool } from '../trainer/parallel/evaluate.js';
import { shardGradients, splitBatch, splitCounts } from '../trainer/parallel/shard.js';
import {
  disposeBnStatistics,
  RECALIBRATE_BATCHES,
  recalibrateBn,
  recalibrateBnOn,
  recalibration,
} from '../trainer/recalibrate.js';
import { annTeacher, softTargets } from '../trainer/recipe/kd.js';
import { DEFAULT_LOSS } from '../trainer/recipe/loss.js';
import type { TrainConfig } from '../trainer/train.js';
import { accuracy, fit, predict, predictOn, startPool, teacherNet, trainStep } from '../trainer/train.js';

const backend = await initBackend();
const net = { ...DEFAULT_NET, width: 8, T: 2 };
const frame = [28, 28, 1] as const;
const loss = { ...DEFAULT_LOSS, perStep: 0.5 };
const data = loadDataset({ trainLimit: 2048, valSize: 256, testLimit: 1000 });
const batch = makeBatch(
  data.train,
  Array.from({ length: 24 }, (_, i) => i),
);
const tmp = mkdtempSync(join(tmpdir(), 'sei-parallel-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function network(prefix: string) {
  const params = initParams(net, 3, prefix);
  const trainables = namedVariables(params)
    .filter((v) => v.trainable)
    .map((v) => v.v);
  return { params, trainables };
}

test('splitBatch covers the batch in contiguous near-equal shards', () => {
  const shards = splitBatch({ x: batch.x, y: batch.y }, 784, 10, 5);
  assert.deepEqual(
    shards.map((s) => s.y.length),
    [5, 5, 5, 5, 4],
  );
  assert.deepEqual(Array.from(shards.flatMap((s) => Array.from(s.y))), Array.from(batch.y));
  assert.equal(shards[4]!.x[0], batch.x[20 * 784]);
  assert.deepEqual(splitCounts(10, 3), [4, 3, 3]);
  assert.deepEqual(splitCounts(1, 3), [1]);
});

test("validation over 2 threads: recalibrated BN statistics, predictions, logits and spike rates are one thread's, bit for bit", async () => {
  // A network the workers do not start with (their copies are seeded 3): the request must carry every value.
  const { params } = network('pv/');
  const trained = initParams(net, 9, 'pv-src/');
  namedVariables(params).forEach(({ v }, i) => v.assign(namedVariables(trained)[i]!.v));
  const pool = await startPool(2, backend.engine, { net, seed: 3, frame, loss }, initParams(net, 3, 'pv-w/'));
  assert.ok(pool, 'the wasm engine starts a pool for 2 threads');
  // 5 batches: 3 on this thread, 2 on the worker.
  const opts = { batches: 5, batchSize: 32, seed: 4 };
  const one = recalibrateBn(net, params, data.train, opts);
  let two = params;
  try {
    two = await recalibrateBnOn(pool, net, params, data.train, opts);
    one.layers.forEach((l, i) => {
      const o = two.layers[i]!.bn;
      assert.notEqual(o.mean, params.layers[i]!.bn.mean, 'fresh statistics');
      assert.deepEqual(Array.from(o.mean.dataSync()), Array.from(l.bn.mean.dataSync()), `layer ${i} mean`);
      assert.deepEqual(Array.from(o.variance.dataSync()), Array.from(l.bn.variance.dataSync()), `layer ${i} variance`);
    });
    // 256 validation frames in batches of 50: 3 batches here, 3 (the last one 6 frames) on the worker.
    const p1 = predict(net, one, data.val, 50);
    const p2 = await predictOn(pool, net, two, data.val, 50);
    assert.equal(p2.predictions.length, data.val.count);
    assert.deepEqual(Array.from(p2.predictions), Array.from(p1.predictions));
    assert.deepEqual(Array.from(p2.logits), Array.from(p1.logits));
    assert.deepEqual(p2.spikeRates, p1.spikeRates);
    assert.ok(
      p1.spikeRates.every((r) => r > 0 && r < 1),
      `spike rates ${p1.spikeRates}`,
    );

    // A worker that fails on its batches rejects the evaluation (no hang), and the pool still serves the next one.
    const frameSize = 28 * 28;
    const good = makeBatch(data.val, [0, 1, 2]).x;
    await assert.rejects(
      evaluateOnPool(pool, net, two, frame, 'predict', 2, (b) => (b === 0 ? good : new Float32Array(frameSize + 1))),
      /training worker: RangeError: evaluation batch: 785 values are not whole frames/,
    );
    // This thread failing still waits for the worker, then throws its own error.
    await assert.rejects(
      evaluateOnPool(pool, net, two, frame, 'recalibrate', 2, (b) => (b === 0 ? new Float32Array(3) : good)),
      /evaluation batch: 3 values are not whole frames/,
    );
    const again = await predictOn(pool, net, two, data.val, 50);
    assert.deepEqual(Array.from(again.logits), Array.from(p1.logits));
    // Without a pool (one thread, or native TensorFlow) this thread computes every batch.
    const solo = await predictOn(undefined, net, one, data.val, 50);
    assert.deepEqual(Array.from(solo.logits), Array.from(p1.logits));
  } finally {
    disposeBnStatistics(one, params);
    disposeBnStatistics(two, params);
    await pool.close();
  }
});

test("a 2-thread step takes batch norm over the whole batch: its gradient and statistics equal one thread's", async () => {
  const a = network('pa/');
  const b = network('pb/');
  const whole = shardGradients(net, a.params, a.trainables, { x: batch.x, y: batch.y }, frame, loss);
  const shards = splitBatch({ x: batch.x, y: batch.y }, 784, 10, 2);
  const pool = await startPool(2, backend.engine, { net, seed: 3, frame, loss }, b.params);
  assert.ok(pool, 'the wasm engine starts a pool for 2 threads');
  try {
    const values = b.trainables.map((v) => (v.dataSync() as Float32Array).slice());
    pool.group.reset(2);
    const remote = pool.run([shards[1]!], values);
    const local = shardGradients(net, b.params, b.trainables, shards[0]!, frame, loss, pool.group.join(0));
    const [other] = await remote;
    // Every thread holds the same whole-batch statistics, equal to one thread's over the whole batch.
    assert.deepEqual(
      other!.bn.map((s) => Array.from(s.mean)),
      local.bn.map((s) => Array.from(s.mean)),
    );
    local.bn.forEach((s, i) => {
      assert.equal(s.count, whole.bn[i]!.count);
      s.mean.forEach((m, c) =>
        assert.ok(Math.abs(m - whole.bn[i]!.mean[c]!) < 1e-5, `layer ${i} mean ${c}: ${m} vs ${whole.bn[i]!.mean[c]}`),
      );
      s.variance.forEach((v, c) =>
        assert.ok(Math.abs(v - whole.bn[i]!.variance[c]!) < 1e-5 * Math.max(1, v), `layer ${i} variance ${c}`),
      );
    });
    // The size-weighted mean of the shard gradients is the whole batch's gradient.
    const w0 = local.frames / whole.frames,
      w1 = other!.frames / whole.frames;
    assert.ok(Math.abs(w0 * local.loss + w1 * other!.loss - whole.loss) < 1e-5, 'loss');
    whole.grads.forEach((g, i) => {
      const scale = g.reduce((m, x) => Math.max(m, Math.abs(x)), 1e-12);
      g.forEach((x, j) => {
        const mixed = w0 * local.grads[i]![j]! + w1 * other!.grads[i]![j]!;
        assert.ok(Math.abs(mixed - x) <= 1e-4 * scale, `gradient ${i}[${j}]: ${mixed} vs ${x}`);
      });
    });

    // A whole step through the pool: same loss and running statistics as one thread's.
    const optA = tf.train.adam(1e-2),
      optB = tf.train.adam(1e-2);
    const [lossA] = await trainStep(
      { net, params: a.params, trainables: a.trainables, optimizer: optA, frame, loss },
      { x: batch.x, y: batch.y },
    );
    const [lossB] = await trainStep(
      { net, params: b.params, trainables: b.trainables, optimizer: optB, frame, loss, pool },
      { x: batch.x, y: batch.y },
    );
    assert.ok(Math.abs(lossA - lossB) < 1e-5, `${lossA} vs ${lossB}`);
    const mA = a.params.layers[2]!.bn.mean.dataSync(),
      mB = b.params.layers[2]!.bn.mean.dataSync();
    mA.forEach((m, c) => assert.ok(Math.abs(m - mB[c]!) < 1e-5));

    // A thread that fails releases the others instead of leaving them waiting at the barrier.
    pool.group.reset(2);
    const bad = pool.run([{ x: new Float32Array(5), y: Int32Array.of(1) }], values);
    assert.throws(
      () => shardGradients(net, b.params, b.trainables, shards[0]!, frame, loss, pool.group.join(0)),
      /another training thread failed/,
    );
    await assert.rejects(bad, /training worker/);
  } finally {
    await pool.close();
  }
});

test("a short 2-thread run on 2k Fashion-MNIST frames beats chance by a wide margin and records one thread's validation", async () => {
  const cfg: TrainConfig = {
    net,
    epochs: 1,
    batchSize: 32,
    lr: 5e-3,
    lrFinal: 0.1,
    warmupEpochs: 0.05,
    seed: 5,
    data: {},
    augment: null,
    loss,
    teacher: null,
  };
  const info: string[] = [];
  const r = await fit('student', cfg, data, join(tmp, 'two'), {
    resume: false,
    engine: backend.engine,
    threads: 2,
    hooks: { onInfo: (l) => info.push(l) },
  });
  assert.ok(
    info.some((l) => l.includes('data-parallel over 2 threads')),
    info.join('\n'),
  );
  const acc = accuracy(predict(net, r.params, data.test).predictions, data.test.labels);
  assert.ok(acc > 0.4, `test accuracy ${acc}`);
  // The epoch's validation ran over both threads; one thread recalibrating and predicting gets the same record.
  const rec = recalibrateBn(net, r.params, data.train, recalibration(cfg, RECALIBRATE_BATCHES));
  const val = predict(net, rec, data.val);
  disposeBnStatistics(rec, r.params);
  const record = r.state.history[0]!;
  assert.equal(record.valAccuracy, accuracy(val.predictions, data.val.labels));
  assert.deepEqual(record.spikeRates, val.spikeRates);
});

test('a pool starts from the network it is given, what a step does not send included (a fixed θ)', async () => {
  // θ is a constant here (--lif fixed): steps carry only the trainable variables, so the workers must get it at start.
  const a = network('pf-a/');
  const b = network('pf-b/');
  for (const p of [a.params, b.params]) p.layers.forEach((l) => l.theta.assign(tf.mul(l.theta, 1.4)));
  assert.ok(!a.params.layers[1]!.theta.trainable, 'θ is not trained at --lif fixed');
  const pool = await startPool(2, backend.engine, { net, seed: 3, frame, loss }, b.params);
  assert.ok(pool);
  try {
    const [lossA] = await trainStep(
      { net, params: a.params, trainables: a.trainables, optimizer: tf.train.adam(1e-2), frame, loss },
      { x: batch.x, y: batch.y },
    );
    const [lossB] = await trainStep(
      { net, params: b.params, trainables: b.trainables, optimizer: tf.train.adam(1e-2), frame, loss, pool },
      { x: batch.x, y: batch.y },
    );
    assert.ok(Math.abs(lossA - lossB) < 1e-5, `one thread ${lossA}, two ${lossB}`);
  } finally {
    await pool.close();
  }
});

test("a KD teacher's soft targets spread over 2 threads are one thread's, bit for bit; a pool without the teacher refuses", async () => {
  const tnet = teacherNet(net);
  const tparams = initParams(tnet, 4, 'kd-t/');
  const teacher = annTeacher(tnet, tparams);
  const idx = Uint32Array.from({ length: 24 }, (_, i) => i);
  const solo = await softTargets(teacher, idx, batch.x, frame);
  // The same logits as the teacher's forward pass on the whole batch at once.
  const whole = tf.tidy(
    () => forward(tnet, tparams, tf.tensor4d(batch.x, [24, ...frame]), false).stepLogits.dataSync() as Float32Array,
  );
  assert.equal(solo.length, 24 * net.classes);
  solo.forEach((v, i) => assert.ok(Math.abs(v - whole[i]!) < 1e-5, `logit ${i}: ${v} vs ${whole[i]}`));
  const pool = await startPool(
    2,
    backend.engine,
    { net, seed: 3, frame, loss, teacher: tnet },
    initParams(net, 3, 'kd-s/'),
  );
  const bare = await startPool(2, backend.engine, { net, seed: 3, frame, loss }, initParams(net, 3, 'kd-b/'));
  assert.ok(pool && bare);
  try {
    assert.deepEqual(await softTargets(teacher, idx, batch.x, frame, pool), solo);
    await assert.rejects(softTargets(teacher, idx, batch.x, frame, bare), /holds no teacher/);
  } finally {
    await pool.close();
    await bare.close();
  }
});
