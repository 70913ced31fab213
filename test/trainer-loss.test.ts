/** The SEI loss (trainer/recipe/loss.ts) against a scalar computation: ensemble CE, per-step CE, KD on the mean and per step, the firing-rate term. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../trainer/backend/index.js';
import { lif, lifConstants } from '../trainer/layers/lif.js';
import { seiLoss, spikeRateTerm } from '../trainer/recipe/loss.js';

await initBackend();

const logSoftmax = (z: number[]) => {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  return z.map((v) => v - lse);
};
const kl = (teacher: number[], student: number[], tau: number) => {
  const lt = logSoftmax(teacher.map((v) => v / tau)),
    ls = logSoftmax(student.map((v) => v / tau));
  return lt.reduce((s, l, k) => s + Math.exp(l) * (l - ls[k]!), 0);
};

test('seiLoss = (1 − w)·(CE(mean) + p·mean_t CE_t) + w·τ²·(KL(mean) + q·mean_t KL_t)', () => {
  const T = 2,
    N = 3,
    K = 4;
  const steps = [
    [
      [1, 0.5, -1, 2],
      [0, 0, 1, -0.5],
      [3, -2, 0.5, 0],
    ],
    [
      [0.2, 1.5, -0.3, 1],
      [1, -1, 0.5, 0],
      [2, -1, 1.5, 0.5],
    ],
  ];
  const teacher = [
    [2, 1, -2, 3],
    [-1, 0, 2, 0],
    [4, -3, 0, 1],
  ];
  const labels = [3, 2, 0];
  const opts = { perStep: 0.5, kdWeight: 0.7, kdTemperature: 2, labelSmoothing: 0, kdPerStep: 0.5 };
  const got = seiLoss(
    tf.tensor3d(steps, [T, N, K]),
    tf.tensor1d(labels, 'int32'),
    opts,
    tf.tensor2d(teacher),
  ).loss.dataSync()[0]!;
  const mean = steps[0]!.map((row, n) => row.map((v, k) => (v + steps[1]![n]![k]!) / 2));
  const ce = (z: number[][]) => z.reduce((s, row, n) => s - logSoftmax(row)[labels[n]!]!, 0) / N;
  const klm = (z: number[][]) => z.reduce((s, row, n) => s + kl(teacher[n]!, row, 2), 0) / N;
  const hard = ce(mean) + (0.5 * (ce(steps[0]!) + ce(steps[1]!))) / 2;
  const soft = klm(mean) + (0.5 * (klm(steps[0]!) + klm(steps[1]!))) / 2;
  const want = 0.3 * hard + 0.7 * 4 * soft;
  assert.ok(Math.abs(got - want) < 1e-5, `${got} vs ${want}`);
  // Without a teacher only the hard part counts, unweighted.
  const plain = seiLoss(tf.tensor3d(steps, [T, N, K]), tf.tensor1d(labels, 'int32'), opts).loss.dataSync()[0]!;
  assert.ok(Math.abs(plain - hard) < 1e-5, `${plain} vs ${hard}`);
});

test('the firing-rate term is the mean of max(0, rate − target)² and pushes the currents of busy layers down', () => {
  const opts = { perStep: 0, kdWeight: 0, kdTemperature: 1, labelSmoothing: 0, spikePenalty: 2, spikeTarget: 0.1 };
  const rates = [0.3, 0.05, 0.5].map((r) => tf.scalar(r));
  const got = spikeRateTerm(rates, opts)!.dataSync()[0]!;
  assert.ok(Math.abs(got - 2 * ((0.2 ** 2 + 0 + 0.4 ** 2) / 3)) < 1e-6, `${got}`);
  assert.equal(spikeRateTerm(rates, { ...opts, spikePenalty: 0 }), undefined);
  // Through the LIF's surrogate: the gradient on the input current is positive where neurons fire near threshold.
  const I = tf.tensor2d([0.9, 1.2, 1.5, -0.5], [4, 1]);
  const g = tf
    .grad((x: tf.Tensor) => spikeRateTerm([tf.mean(lif(x, 1, lifConstants(1, 1, 0.5))) as tf.Scalar], opts)!)(I)
    .dataSync();
  assert.ok(g[0]! > 0 && g[1]! > 0 && g[2]! > 0, `${Array.from(g)}`);
  assert.equal(g[3], 0);
});
