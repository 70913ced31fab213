/**
 * BN recalibration: the running statistics become the population mean and variance of every value each BN layer
 * saw over the recalibration batches (training-mode passes), checked against the moments of those values collected
 * directly, layer by layer, on a tiny network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../trainer/backend/index.js';
import { conv2d } from '../trainer/backend/conv.js';
import type { Split } from '../trainer/data/index.js';
import { makeBatch } from '../trainer/data/index.js';
import { rng } from '../trainer/data/random.js';
import { batchNorm } from '../trainer/layers/batchnorm.js';
import { binarize, quantizeInt8 } from '../trainer/layers/binary.js';
import { lif, lifConstants } from '../trainer/layers/lif.js';
import { shortcutCurrent } from '../trainer/layers/shortcut.js';
import type { NetConfig, NetParams } from '../trainer/model.js';
import { DEFAULT_NET, initParams, plan } from '../trainer/model.js';
import {
  disposeBnStatistics,
  RECALIBRATE_BATCHES,
  recalibrateBn,
  recalibration,
  recalibrationBatches,
} from '../trainer/recalibrate.js';

await initBackend();

const net: NetConfig = { ...DEFAULT_NET, width: 2, T: 2, input: [8, 8, 1], classes: 3 };
const r = rng(11);
const count = 40;
const split: Split = {
  count,
  shape: [8, 8, 1],
  images: Uint8Array.from({ length: count * 64 }, () => Math.floor(r() * 256)),
  labels: new Uint8Array(count),
};

/** Every BN layer's input over one batch, written out step by step (the oracle; model.forward is not used). */
function bnInputs(p: NetParams, raw: tf.Tensor4D): tf.Tensor[] {
  const layers = plan(net);
  const seen: tf.Tensor[] = [];
  const bn = (x: tf.Tensor, i: number) => {
    seen.push(tf.keep(tf.reshape(x, [-1, x.shape[3]!])));
    return batchNorm(x, p.layers[i]!.bn, true);
  };
  let current = bn(
    conv2d(tf.div(raw, 255) as tf.Tensor4D, quantizeInt8(p.layers[0]!.w) as tf.Tensor4D, 1, 1),
    0,
  ) as tf.Tensor4D;
  current = tf.concat([current, current], 0);
  let act = lif(current, net.T, lifConstants(current.shape[3]!, net.theta, net.beta)) as tf.Tensor4D;
  for (let i = 1; i < layers.length; i++) {
    const l = layers[i]!;
    let next = bn(conv2d(act, binarize(p.layers[i]!.w) as tf.Tensor4D, l.stride, l.pad), i) as tf.Tensor4D;
    const sc = shortcutCurrent(l.shortcut, current, l.cout);
    if (sc) next = tf.add(next, sc);
    current = next;
    act = lif(current, net.T, lifConstants(current.shape[3]!, net.theta, net.beta)) as tf.Tensor4D;
  }
  return seen;
}

test('recalibration sets each BN running mean/variance to the population statistics of the batches', () => {
  const params = initParams(net, 3, 'recal/');
  const opts = { batches: 3, batchSize: 8, seed: 4 };
  const batches = recalibrationBatches(count, opts);
  assert.equal(batches.length, 3);
  assert.ok(new Set(batches.flatMap((b) => [...b])).size === 24, 'batches draw distinct frames');
  // The oracle: all values each layer saw, over all batches, then one moments() over the lot.
  const perLayer: tf.Tensor[][] = params.layers.map(() => []);
  for (const idx of batches) {
    const { x } = makeBatch(split, idx);
    tf.tidy(() => bnInputs(params, tf.tensor4d(x, [idx.length, 8, 8, 1]))).forEach((t, i) => perLayer[i]!.push(t));
  }
  const rec = recalibrateBn(net, params, split, opts);
  params.layers.forEach((l, i) => {
    const [mean, variance] = tf.tidy(() => {
      const m = tf.moments(tf.concat(perLayer[i]!, 0), 0);
      return [m.mean.dataSync(), m.variance.dataSync()];
    });
    perLayer[i]!.forEach((t) => t.dispose());
    const gotMean = rec.layers[i]!.bn.mean.dataSync(),
      gotVar = rec.layers[i]!.bn.variance.dataSync();
    for (let c = 0; c < mean!.length; c++) {
      assert.ok(
        Math.abs(gotMean[c]! - mean![c]!) <= 1e-5 * (1 + Math.abs(mean![c]!)),
        `layer ${i} channel ${c}: mean ${gotMean[c]} vs ${mean![c]}`,
      );
      assert.ok(
        Math.abs(gotVar[c]! - variance![c]!) <= 1e-4 * variance![c]! + 1e-7,
        `layer ${i} channel ${c}: variance ${gotVar[c]} vs ${variance![c]}`,
      );
    }
    // Layers past the first see batch-normalised spikes, so the statistics must really have moved off the init.
    assert.ok(
      gotVar.some((v) => Math.abs(v - 1) > 1e-3),
      `layer ${i}: variance still the initial 1`,
    );
    // The trained parameters are shared, the input's running statistics untouched.
    assert.equal(rec.layers[i]!.w, l.w);
    assert.equal(rec.layers[i]!.bn.gamma, l.bn.gamma);
    assert.deepEqual([...l.bn.mean.dataSync()], new Array(l.bn.mean.size).fill(0));
    assert.deepEqual([...l.bn.variance.dataSync()], new Array(l.bn.variance.size).fill(1));
  });
  disposeBnStatistics(rec, params);
  assert.equal(
    recalibrateBn(net, params, split, { ...opts, batches: 0 }),
    params,
    '0 batches: the running averages stay',
  );
});

test('a run recalibrates on batches of what batch norm saw at once in training: the micro-batch, else the batch', () => {
  assert.deepEqual(recalibration({ batchSize: 256, microBatch: 128, seed: 3 }), {
    batches: RECALIBRATE_BATCHES,
    batchSize: 128,
    seed: 3,
  });
  assert.deepEqual(recalibration({ batchSize: 64, seed: 1 }, 7), { batches: 7, batchSize: 64, seed: 1 });
  // A micro-batch larger than the batch means the whole batch (as in training).
  assert.equal(recalibration({ batchSize: 32, microBatch: 64, seed: 1 }).batchSize, 32);
});
