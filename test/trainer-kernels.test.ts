/**
 * The trainer's WebAssembly kernels for the LIF and training-mode batch norm (trainer/backend/assembly/lif.ts,
 * batchnorm.ts) against the JavaScript loops they replace (useTrainerKernels(false)): channel counts with and
 * without a multiple of 4 (the kernels' vector lanes and their scalar tail), 1 to 3 steps, both surrogates. The
 * forward values are the same bit for bit, and so is every gradient but the LIF's dβ, one float64 sum that the
 * kernel accumulates in several lanes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../trainer/backend/index.js';
import { trainerKernels, useTrainerKernels } from '../trainer/backend/wasm-kernels.js';
import type { BnUpdate } from '../trainer/layers/batchnorm.js';
import { applyBnUpdates, batchNorm } from '../trainer/layers/batchnorm.js';
import type { Surrogate } from '../trainer/layers/lif.js';
import { lif, lifBackward, lifForward } from '../trainer/layers/lif.js';
import { rng } from '../trainer/data/random.js';

await initBackend();

const CHANNELS = [1, 3, 4, 5, 16, 33];
const STEPS = [1, 2, 3];
const SURROGATES: Surrogate[] = ['fixed', 'theta'];

function sameBits(a: Float32Array | Float64Array, b: Float32Array | Float64Array, what: string): void {
  assert.equal(a.constructor, b.constructor, what);
  assert.equal(a.length, b.length, what);
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
    y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  const at = x.findIndex((v, i) => v !== y[i]);
  if (at >= 0) {
    const i = Math.floor(at / a.BYTES_PER_ELEMENT);
    assert.fail(`${what}: element ${i} of ${a.length} differs: ${a[i]} vs ${b[i]}`);
  }
}

function relClose(a: number, b: number, tol: number, what: string): void {
  const d = Math.abs(a - b) / Math.max(1e-30, Math.abs(b));
  assert.ok(d <= tol, `${what}: ${a} vs ${b}, relative difference ${d} > ${tol}`);
}

/** Runs `fn` with the trainer's kernels off, restoring the switch. */
function withoutKernels<T>(fn: () => T): T {
  const was = useTrainerKernels(false);
  try {
    return fn();
  } finally {
    useTrainerKernels(was);
  }
}

/** Currents that cross the thresholds often, some landing on θ exactly (the `>=`), and thresholds per channel. */
function lifInputs(r: () => number, T: number, M: number, C: number): { I: Float32Array; theta: Float32Array } {
  const theta = Float32Array.from({ length: C }, () => 0.5 + r());
  const I = Float32Array.from({ length: T * M }, (_, k) => (r() < 0.05 ? theta[k % C]! : r() * 2.5 - 0.6));
  return { I, theta };
}

test("the trainer's WebAssembly kernels are built and load", () => {
  assert.ok(trainerKernels(), 'trainer/backend/assembly/kernels.wasm missing: npm run build:wasm');
});

test('LIF kernels: membranes and spikes bit for bit the JavaScript loops, dI and dθ too, dβ to float64 rounding', () => {
  const kernels = trainerKernels();
  assert.ok(kernels);
  const r = rng(41);
  const beta = Math.fround(0.8);
  let spikes = 0,
    values = 0;
  for (const C of CHANNELS) {
    for (const T of STEPS) {
      for (const surrogate of SURROGATES) {
        const label = `C=${C} T=${T} ${surrogate}`;
        const M = 7 * C;
        const { I, theta } = lifInputs(r, T, M, C);
        const u = new Float32Array(T * M),
          s = new Float32Array(T * M);
        lifForward(I, theta, beta, T, u, s);
        const ku = new Float32Array(T * M),
          ks = new Float32Array(T * M);
        kernels.run([I, theta], [ku, ks], ([pi, pt], [pu, ps]) =>
          kernels.exports.lifForward(pi!, pt!, pu!, ps!, beta, T, M, C),
        );
        sameBits(ku, u, `membranes ${label}`);
        sameBits(ks, s, `spikes ${label}`);
        spikes += s.reduce((a, b) => a + b, 0);
        values += s.length;

        const g = Float32Array.from({ length: T * M }, () => r() * 2 - 1);
        const dI = new Float32Array(T * M);
        const want = lifBackward(g, u, theta, beta, T, surrogate, dI);
        const kdI = new Float32Array(T * M),
          kdTheta = new Float64Array(C);
        let kdBeta = 0;
        kernels.run([g, u, theta], [kdI, kdTheta], ([pg, pu, pt], [pd, pdt]) => {
          kdBeta = kernels.exports.lifBackward(pg!, pu!, pt!, pd!, pdt!, beta, T, M, C, surrogate === 'theta' ? 1 : 0);
        });
        sameBits(kdI, dI, `dI ${label}`);
        sameBits(kdTheta, want.dTheta, `dθ ${label}`);
        if (T === 1) assert.equal(kdBeta, 0, `dβ ${label}`);
        else relClose(kdBeta, want.dBeta, 1e-12, `dβ ${label}`);
      }
    }
  }
  assert.ok(spikes > 0.2 * values && spikes < 0.8 * values, `${spikes} spikes of ${values} values check little`);
});

test('lif() with the kernels equals lif() without: spikes, dI and dθ bit for bit, dβ within 1e-6', () => {
  const r = rng(42);
  for (const C of CHANNELS) {
    for (const T of STEPS) {
      for (const surrogate of SURROGATES) {
        const label = `C=${C} T=${T} ${surrogate}`;
        const n = 3,
          shape = [T * n, 2, 3, C];
        const M = n * 6 * C;
        const { I, theta } = lifInputs(r, T, M, C);
        const weights = Float32Array.from({ length: T * M }, () => r() * 2 - 1);
        const run = () =>
          tf.tidy(() => {
            const x = tf.tensor(I, shape),
              th = tf.tensor1d(theta),
              b = tf.tensor1d([0.75]),
              w = tf.tensor(weights, shape);
            const s = lif(x, T, { theta: th, beta: b }, surrogate);
            const grads = tf.grads((xi: tf.Tensor, ti: tf.Tensor, bi: tf.Tensor) =>
              tf.sum(tf.mul(lif(xi, T, { theta: ti, beta: bi }, surrogate), w)),
            )([x, th, b]);
            return [s, ...grads].map((t) => t.dataSync() as Float32Array);
          });
        const [s, dI, dTheta, dBeta] = run();
        const [js, jdI, jdTheta, jdBeta] = withoutKernels(run);
        sameBits(s!, js!, `spikes ${label}`);
        sameBits(dI!, jdI!, `dI ${label}`);
        sameBits(dTheta!, jdTheta!, `dθ ${label}`);
        if (T === 1) assert.equal(dBeta![0], 0, `dβ ${label}`);
        else relClose(dBeta![0]!, jdBeta![0]!, 1e-6, `dβ ${label}`);
      }
    }
  }
});

test('training batch norm with the kernels equals it without: y, batch statistics, dx, dγ, dβ bit for bit', () => {
  const r = rng(43);
  for (const C of CHANNELS) {
    for (const shape of [
      [11, C],
      [6, 3, 2, C],
    ]) {
      const label = `[${shape.join(', ')}]`;
      const size = shape.reduce((a, b) => a * b, 1);
      // Channels with their own offset and spread, so a wrong channel index shows.
      const offset = Float32Array.from({ length: C }, () => r() * 4 - 2),
        spread = Float32Array.from({ length: C }, () => 0.1 + 3 * r());
      const xs = Float32Array.from({ length: size }, (_, i) => offset[i % C]! + spread[i % C]! * (r() * 2 - 1));
      const weights = Float32Array.from({ length: size }, () => r() * 2 - 1);
      const gammas = Float32Array.from({ length: C }, () => 0.5 + r()),
        betas = Float32Array.from({ length: C }, () => r() - 0.5);
      const run = () => {
        const bn = {
          gamma: tf.variable(tf.tensor1d(gammas)),
          beta: tf.variable(tf.tensor1d(betas)),
          mean: tf.variable(tf.zeros([C])),
          variance: tf.variable(tf.ones([C])),
        };
        const updates: BnUpdate[] = [];
        const out = tf.tidy(() => {
          const x = tf.tensor(xs, shape),
            w = tf.tensor(weights, shape);
          const y = batchNorm(x, bn, true, updates);
          const grads = tf.grads((xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
            tf.sum(tf.mul(batchNorm(xi, { ...bn, gamma: gi as tf.Variable, beta: bi as tf.Variable }, true), w)),
          )([x, bn.gamma, bn.beta]);
          return [y, ...grads].map((t) => t.dataSync() as Float32Array);
        });
        const stats = [updates[0]!.mean.dataSync() as Float32Array, updates[0]!.variance.dataSync() as Float32Array];
        applyBnUpdates(updates);
        for (const v of Object.values(bn)) v.dispose();
        return [...out, ...stats];
      };
      const got = run();
      const want = withoutKernels(run);
      ['y', 'dx', 'dγ', 'dβ', 'mean', 'variance'].forEach((what, i) =>
        sameBits(got[i]!, want[i]!, `${what} C=${C} ${label}`),
      );
    }
  }
});
