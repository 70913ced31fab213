/**
 * The trainer's fused host ops (trainer/layers/lif.ts, batchnorm.ts) against independent oracles written as plain
 * tfjs ops with autodiff — forward values and every gradient (input, θ per channel, β, γ, BN's β) — on the wasm
 * backend and on the `cpu` backend (whose host-op path goes through dataSync); and the latent-weight constraints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../trainer/backend/index.js';
import { rng } from '../runtime/data/random.js';
import { batchNorm, BN_EPSILON } from '../trainer/layers/batchnorm.js';
import type { Surrogate } from '../trainer/layers/lif.js';
import { lif } from '../trainer/layers/lif.js';
import { DEFAULT_NET, initParams, namedVariables } from '../trainer/model.js';
import { constrainParams, ParamOptimizer, signFlips, signSnapshot, THETA_MIN } from '../trainer/optimizer.js';

await initBackend();

/** The LIF as autodiff sees it: per-step tf ops, a customGrad only for the Heaviside step. */
function oracleLif(current: tf.Tensor, T: number, theta: tf.Tensor, beta: tf.Tensor, surrogate: Surrogate): tf.Tensor {
  const spike = tf.customGrad((vIn, thIn, save) => {
    const v = vIn as tf.Tensor,
      th = thIn as tf.Tensor;
    (save as (t: tf.Tensor[]) => void)([v, th]);
    return {
      value: tf.cast(tf.greaterEqual(v, th), 'float32'),
      gradFunc: (dy: tf.Tensor, [vs, ts]: tf.Tensor[]) => {
        const w = surrogate === 'theta' ? ts! : tf.onesLike(ts!);
        const sg = tf.div(tf.relu(tf.sub(1, tf.div(tf.abs(tf.sub(vs!, ts!)), w))), w);
        const g = tf.mul(dy, sg);
        // dθ of H(v − θ) is −σ, summed over every axis but the channel one.
        return [g, tf.neg(tf.sum(tf.reshape(g, [-1, ts!.shape[0]!]), 0))];
      },
    };
  }) as (v: tf.Tensor, th: tf.Tensor) => tf.Tensor;
  const steps = tf.split(current, T, 0);
  const out: tf.Tensor[] = [];
  let v: tf.Tensor | undefined;
  for (const I of steps) {
    v = v === undefined ? I : tf.add(tf.mul(v, beta), I);
    const s = spike(v, theta);
    out.push(s);
    v = tf.sub(v, tf.mul(s, theta));
  }
  return tf.concat(out, 0);
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(a.length, b.length, what);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  assert.ok(worst <= tol, `${what}: relative difference ${worst} > ${tol}`);
}

for (const backend of ['wasm', 'cpu'] as const) {
  for (const surrogate of ['fixed', 'theta'] as const) {
    test(`fused LIF (${backend}, ${surrogate} surrogate): spikes and dI, dθ, dβ equal the autodiff oracle`, async () => {
      await tf.setBackend(backend);
      try {
        const r = rng(backend === 'wasm' ? 21 : 22);
        const T = 3,
          n = 4,
          h = 3,
          C = 5;
        const I = tf.tensor4d(
          Float32Array.from({ length: T * n * h * h * C }, () => r() * 2.6 - 0.5),
          [T * n, h, h, C],
        );
        const theta = tf.tensor1d(Float32Array.from({ length: C }, () => 0.6 + r()));
        const beta = tf.tensor1d([0.6]);
        const up = tf.tensor4d(
          Float32Array.from({ length: I.size }, () => r() * 2 - 1),
          I.shape,
        );
        const loss =
          (f: (x: tf.Tensor, t: tf.Tensor, b: tf.Tensor) => tf.Tensor) => (x: tf.Tensor, t: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.mul(f(x, t, b), up));
        const fused = (x: tf.Tensor, t: tf.Tensor, b: tf.Tensor) => lif(x, T, { theta: t, beta: b }, surrogate);
        const oracle = (x: tf.Tensor, t: tf.Tensor, b: tf.Tensor) => oracleLif(x, T, t, b, surrogate);
        assert.deepEqual(Array.from(fused(I, theta, beta).dataSync()), Array.from(oracle(I, theta, beta).dataSync()));
        const spikes = tf.sum(fused(I, theta, beta)).dataSync()[0]!;
        assert.ok(spikes > 0.2 * I.size && spikes < 0.8 * I.size, `${spikes} spikes of ${I.size} test little`);
        const got = tf.grads(loss(fused))([I, theta, beta]);
        const want = tf.grads(loss(oracle))([I, theta, beta]);
        ['dI', 'dθ', 'dβ'].forEach((name, k) => close(got[k]!.dataSync(), want[k]!.dataSync(), 1e-5, name));
        assert.ok(tf.sum(tf.abs(got[1]!)).dataSync()[0]! > 0.1, 'dθ is not trivially zero');
      } finally {
        await tf.setBackend('wasm');
      }
    });
  }

  test(`fused batch norm (${backend}): output and dx, dγ, dβ equal tf.moments with autodiff`, async () => {
    await tf.setBackend(backend);
    try {
      const r = rng(backend === 'wasm' ? 31 : 32);
      const shape: [number, number, number, number] = [6, 4, 3, 7];
      const x = tf.tensor4d(
        Float32Array.from({ length: 6 * 4 * 3 * 7 }, () => r() * 3 + 1),
        shape,
      );
      const params = {
        gamma: tf.variable(tf.tensor1d(Float32Array.from({ length: 7 }, () => 0.5 + r()))),
        beta: tf.variable(tf.tensor1d(Float32Array.from({ length: 7 }, () => r() - 0.5))),
        mean: tf.variable(tf.zeros([7]), false),
        variance: tf.variable(tf.ones([7]), false),
      };
      const up = tf.tensor4d(
        Float32Array.from({ length: x.size }, () => r() * 2 - 1),
        shape,
      );
      const oracle = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
        const m = tf.moments(a, [0, 1, 2]);
        return tf.add(tf.mul(tf.sub(a, m.mean), tf.mul(g, tf.rsqrt(tf.add(m.variance, BN_EPSILON)))), b);
      };
      const fused = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
        batchNorm(a, { ...params, gamma: g as tf.Variable, beta: b as tf.Variable }, true);
      close(fused(x, params.gamma, params.beta).dataSync(), oracle(x, params.gamma, params.beta).dataSync(), 1e-5, 'y');
      const loss = (f: typeof oracle) => (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, g, b), up));
      const got = tf.grads(loss(fused))([x, params.gamma, params.beta]);
      const want = tf.grads(loss(oracle))([x, params.gamma, params.beta]);
      ['dx', 'dγ', 'dβ'].forEach((name, k) => close(got[k]!.dataSync(), want[k]!.dataSync(), 1e-4, name));
    } finally {
      await tf.setBackend('wasm');
    }
  });
}

test('after a step latent binary weights lie in [-1, 1] and thresholds above THETA_MIN; sign flips are counted', () => {
  const net = { ...DEFAULT_NET, width: 4, lif: 'learn' as const };
  const params = initParams(net, 9, 'constrain/');
  const before = signSnapshot(net, params);
  const opt = new ParamOptimizer(net, params, 0.5, 0.5);
  // A huge step drives every trainable variable far out of its domain.
  const grads: tf.NamedTensorMap = {};
  for (const { v, trainable } of namedVariables(params)) if (trainable) grads[v.name] = tf.fill(v.shape, 1);
  for (let i = 0; i < 6; i++) opt.applyGradients(grads);
  assert.ok(
    params.layers[3]!.w.dataSync().some((w) => w < -1),
    'the step left the domain before the constraint',
  );
  constrainParams(net, params);
  params.layers.slice(1).forEach((l, i) =>
    assert.ok(
      l.w.dataSync().every((w) => w >= -1 && w <= 1),
      `layer ${i + 1}`,
    ),
  );
  params.layers.forEach((l) => {
    assert.ok(l.theta.dataSync().every((t) => t >= THETA_MIN - 1e-7));
    assert.ok(l.beta.dataSync().every((b) => b > 0 && b <= 1));
  });
  // The int8 first layer is not a latent binary weight: it is not clipped.
  assert.ok(params.layers[0]!.w.dataSync().some((w) => w < -1));
  const flips = signFlips(net, params, before);
  assert.equal(flips.length, 5);
  flips.forEach((f) => assert.ok(f > 0.3 && f <= 1, `flip fraction ${f}`));
});
