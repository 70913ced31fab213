/**
 * Batch norm over all of axes 0..rank-2. In the SNN the steps are stacked on axis 0 (T*N rows), so the
 * statistics are taken over all T steps of the batch at once: per-step statistics make training erratic and
 * have no single folded affine at inference.
 *
 * In training mode the statistics are those of the whole batch even when the batch is split over threads
 * (trainer/parallel/): each thread sums its rows, the per-channel sums go through a `Collective`, and the backward
 * pass exchanges its two per-channel sums the same way (synchronised BN). A thread's shard contributes to the
 * step's gradient with weight w_k = rows_k / rows (trainer/parallel/shard.ts averages shard gradients by size), so
 * the backward sums are exchanged pre-multiplied by w_k and the shard's input gradient is divided by it: the
 * combination then equals the single-thread gradient of the whole batch. Forward and backward are one host op each
 * (trainer/backend/host.ts) with float64 sums. The op's passes over the values are the trainer's WebAssembly kernels
 * (trainer/backend/assembly/batchnorm.ts: the same float64 arithmetic in the same order, so the same results bit for
 * bit) when the trainer's kernels are on, the JavaScript loops below otherwise; the all-reduce between the passes
 * and the per-channel coefficients are JavaScript either way.
 */
import * as tf from '@tensorflow/tfjs';
import { hostOp } from '../backend/host.js';
import type { Collective } from '../parallel/collective.js';
import { SOLO } from '../parallel/collective.js';
import type { TrainerKernels } from '../backend/wasm-kernels.js';
import { trainerKernels } from '../backend/wasm-kernels.js';

export const BN_EPSILON = 1e-5;
export const BN_MOMENTUM = 0.9;

export interface BnParams {
  readonly gamma: tf.Variable;
  readonly beta: tf.Variable;
  /** Running statistics (not trained; updated after each step from the batch statistics). */
  readonly mean: tf.Variable;
  readonly variance: tf.Variable;
}

/** Batch statistics a training forward pass hands back, applied to the running averages after the step. */
export interface BnUpdate {
  readonly bn: BnParams;
  readonly mean: tf.Tensor;
  /** Biased (population) variance of the batch. */
  readonly variance: tf.Tensor;
  /** Values per channel the statistics were taken over (the whole batch's, on every thread). */
  readonly count: number;
}

interface Statistics {
  readonly mean: Float64Array;
  readonly variance: Float64Array;
  readonly rows: number;
  readonly localRows: number;
}

/** Per-channel sums of x and x² over the rows, and the row count, reduced over all threads. */
function statistics(x: Float32Array, C: number, sync: Collective): Statistics {
  const s1 = new Float64Array(C),
    s2 = new Float64Array(C);
  const n = x.length;
  for (let i = 0; i < n; i += C) {
    for (let c = 0; c < C; c++) {
      const v = x[i + c]!;
      s1[c] = s1[c]! + v;
      s2[c] = s2[c]! + v * v;
    }
  }
  const sums = new Float64Array(2 * C + 1);
  sums.set(s1, 0);
  sums.set(s2, C);
  sums[2 * C] = n / C;
  return reduceStatistics(sums, C, sync);
}

/** Mean and variance per channel from this thread's Σx (C), Σx² (C) and row count, reduced over all threads. */
function reduceStatistics(sums: Float64Array, C: number, sync: Collective): Statistics {
  const localRows = sums[2 * C]!;
  const all = sync.allReduce(sums);
  const rows = all[2 * C]!;
  const mean = new Float64Array(C),
    variance = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    mean[c] = all[c]! / rows;
    variance[c] = Math.max(0, all[C + c]! / rows - mean[c]! ** 2);
  }
  return { mean, variance, rows, localRows };
}

/** The affine of the normalisation, y = x·scale_c + shift_c, and 1/σ_c into `inv`. */
function normalisation(
  st: Statistics,
  gamma: Float32Array,
  beta: Float32Array,
  inv: Float64Array,
): { scale: Float32Array; shift: Float32Array } {
  const C = inv.length;
  const scale = new Float32Array(C),
    shift = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    inv[c] = 1 / Math.sqrt(st.variance[c]! + BN_EPSILON);
    scale[c] = gamma[c]! * inv[c]!;
    shift[c] = beta[c]! - st.mean[c]! * scale[c]!;
  }
  return { scale, shift };
}

/** y = x·scale_c + shift_c. */
function affine(x: Float32Array, scale: Float32Array, shift: Float32Array, y: Float32Array): void {
  const C = scale.length,
    n = x.length;
  for (let i = 0; i < n; i += C) for (let c = 0; c < C; c++) y[i + c] = x[i + c]! * scale[c]! + shift[c]!;
}

/** Per channel Σ dy and Σ dy·x̂ (x̂ = (x − mean)·inv). */
function gradientSums(
  dy: Float32Array,
  x: Float32Array,
  mean: Float64Array,
  inv: Float64Array,
): { dBeta: Float64Array; dGamma: Float64Array } {
  const C = mean.length,
    n = x.length;
  const dBeta = new Float64Array(C),
    dGamma = new Float64Array(C);
  for (let i = 0; i < n; i += C) {
    for (let c = 0; c < C; c++) {
      const d = dy[i + c]!;
      dBeta[c] = dBeta[c]! + d;
      dGamma[c] = dGamma[c]! + d * (x[i + c]! - mean[c]!);
    }
  }
  for (let c = 0; c < C; c++) dGamma[c] = dGamma[c]! * inv[c]!;
  return { dBeta, dGamma };
}

/**
 * The two per-channel terms of the input gradient, a = (Σ w·γ·dy)/(rows·w_k) and k = (Σ w·γ·dy·x̂)/(rows·w_k), the
 * sums taken over every thread (`share` = w_k, this thread's rows / all rows).
 */
function reduceGradientSums(
  s: { dBeta: Float64Array; dGamma: Float64Array },
  gamma: Float32Array,
  share: number,
  rows: number,
  sync: Collective,
): { a: Float64Array; k: Float64Array } {
  const C = gamma.length;
  const local = new Float64Array(2 * C);
  for (let c = 0; c < C; c++) {
    local[c] = share * gamma[c]! * s.dBeta[c]!;
    local[C + c] = share * gamma[c]! * s.dGamma[c]!;
  }
  // dx = (γ·dy − (Σ w·γ·dy)/(rows·w_k) − x̂ · (Σ w·γ·dy·x̂)/(rows·w_k)) / σ, the sums taken over every thread.
  const all = sync.allReduce(local);
  const a = new Float64Array(C),
    k = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    a[c] = all[c]! / (rows * share);
    k[c] = all[C + c]! / (rows * share);
  }
  return { a, k };
}

/** dx = inv·(γ·dy − a − x̂·k), folded into dx = p·dy + q·x + r per channel. */
function inputGradientCoefficients(
  mean: Float64Array,
  inv: Float64Array,
  gamma: Float32Array,
  a: Float64Array,
  k: Float64Array,
): { p: Float64Array; q: Float64Array; r: Float64Array } {
  const C = mean.length;
  const p = new Float64Array(C),
    q = new Float64Array(C),
    r = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    p[c] = inv[c]! * gamma[c]!;
    q[c] = -inv[c]! * inv[c]! * k[c]!;
    r[c] = -inv[c]! * a[c]! - q[c]! * mean[c]!;
  }
  return { p, q, r };
}

/** dx = p·dy + q·x + r per channel (inputGradientCoefficients). */
function inputGradient(
  dy: Float32Array,
  x: Float32Array,
  coefficients: { p: Float64Array; q: Float64Array; r: Float64Array },
  dx: Float32Array,
): void {
  const { p, q, r } = coefficients;
  const C = p.length,
    n = x.length;
  for (let i = 0; i < n; i += C) for (let c = 0; c < C; c++) dx[i + c] = p[c]! * dy[i + c]! + q[c]! * x[i + c]! + r[c]!;
}

/**
 * The forward pass by the trainer's kernels: Σx and Σx² (bnSums), reduced here, then the affine (bnAffine), on one
 * copy of x in the module's memory. Fills `inv` as `normalisation` does.
 */
function kernelForward(
  kernels: TrainerKernels,
  x: Float32Array,
  C: number,
  gamma: Float32Array,
  beta: Float32Array,
  sync: Collective,
  inv: Float64Array,
  y: Float32Array,
): Statistics {
  let st: Statistics | undefined;
  const n = x.length;
  // Scratch: the sums (2C float64), then scale and shift (2C float64).
  kernels.run(
    [x],
    [y],
    ([px], [py], scratch) => {
      const ex = kernels.exports;
      ex.bnSums(px!, scratch, n, C);
      const sums = new Float64Array(2 * C + 1);
      sums.set(new Float64Array(ex.memory.buffer, scratch, 2 * C));
      sums[2 * C] = n / C;
      st = reduceStatistics(sums, C, sync);
      const { scale, shift } = normalisation(st, gamma, beta, inv);
      const coef = new Float64Array(ex.memory.buffer, scratch + 16 * C, 2 * C);
      coef.set(scale, 0);
      coef.set(shift, C);
      ex.bnAffine(px!, scratch + 16 * C, py!, n, C);
    },
    32 * C,
  );
  return st!;
}

/**
 * The backward pass by the trainer's kernels: Σdy and Σdy·(x − mean) (bnGradSums), reduced here, then dx
 * (bnInputGrad), on one copy of dy and x in the module's memory. Returns dL/dβ and dL/dγ as gradientSums does.
 */
function kernelBackward(
  kernels: TrainerKernels,
  dy: Float32Array,
  x: Float32Array,
  mean: Float64Array,
  inv: Float64Array,
  gamma: Float32Array,
  share: number,
  rows: number,
  sync: Collective,
  dx: Float32Array,
): { dBeta: Float64Array; dGamma: Float64Array } {
  let sums: { dBeta: Float64Array; dGamma: Float64Array } | undefined;
  const C = mean.length,
    n = x.length;
  // Scratch: the sums (2C float64), then p, q and r (3C float64).
  kernels.run(
    [dy, x, mean],
    [dx],
    ([pdy, px, pm], [pdx], scratch) => {
      const ex = kernels.exports;
      ex.bnGradSums(pdy!, px!, pm!, scratch, n, C);
      const raw = new Float64Array(ex.memory.buffer, scratch, 2 * C);
      const dBeta = raw.slice(0, C),
        dGamma = raw.slice(C);
      for (let c = 0; c < C; c++) dGamma[c] = dGamma[c]! * inv[c]!;
      sums = { dBeta, dGamma };
      const { a, k } = reduceGradientSums(sums, gamma, share, rows, sync);
      const { p, q, r } = inputGradientCoefficients(mean, inv, gamma, a, k);
      const coef = new Float64Array(ex.memory.buffer, scratch + 16 * C, 3 * C);
      coef.set(p, 0);
      coef.set(q, C);
      coef.set(r, 2 * C);
      ex.bnInputGrad(pdy!, px!, scratch + 16 * C, pdx!, n, C);
    },
    40 * C,
  );
  return sums!;
}

function trainingBatchNorm(x: tf.Tensor, bn: BnParams, sync: Collective, updates?: BnUpdate[]): tf.Tensor {
  const C = x.shape[x.rank - 1]!;
  const f = tf.customGrad((xIn, gammaIn, betaIn, save) => {
    const xt = xIn as tf.Tensor,
      gamma = gammaIn as tf.Tensor,
      beta = betaIn as tf.Tensor;
    const g = gamma.dataSync() as Float32Array,
      b = beta.dataSync() as Float32Array;
    const stats: Statistics[] = [];
    const inv = new Float64Array(C);
    const [y] = hostOp([xt], [xt.shape], ([xv], [yv]) => {
      const kernels = trainerKernels();
      if (kernels) {
        stats.push(kernelForward(kernels, xv!, C, g, b, sync, inv, yv!));
        return;
      }
      const st = statistics(xv!, C, sync);
      stats.push(st);
      const { scale, shift } = normalisation(st, g, b, inv);
      affine(xv!, scale, shift, yv!);
    });
    const { mean, variance, rows, localRows } = stats[0]!;
    updates?.push({
      bn,
      mean: tf.keep(tf.tensor1d(Float32Array.from(mean))),
      variance: tf.keep(tf.tensor1d(Float32Array.from(variance))),
      count: rows,
    });
    (save as (tensors: tf.Tensor[]) => void)([xt]);
    const share = localRows / rows;
    return {
      value: y!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const sums: Array<ReturnType<typeof gradientSums>> = [];
        const [dx] = hostOp([dy, saved[0]!], [dy.shape], ([gv, xv], [dxv]) => {
          const kernels = trainerKernels();
          if (kernels) {
            sums.push(kernelBackward(kernels, gv!, xv!, mean, inv, g, share, rows, sync, dxv!));
            return;
          }
          const s = gradientSums(gv!, xv!, mean, inv);
          sums.push(s);
          const { a, k } = reduceGradientSums(s, g, share, rows, sync);
          inputGradient(gv!, xv!, inputGradientCoefficients(mean, inv, g, a, k), dxv!);
        });
        const { dGamma, dBeta } = sums[0]!;
        return [dx!, tf.tensor1d(Float32Array.from(dGamma)), tf.tensor1d(Float32Array.from(dBeta))];
      },
    };
  });
  return f(x, bn.gamma, bn.beta) as tf.Tensor;
}

/**
 * `training`: normalise with the batch statistics (over every thread of `sync`) and push them to `updates`;
 * otherwise with the running statistics.
 */
export function batchNorm(
  x: tf.Tensor,
  bn: BnParams,
  training: boolean,
  updates?: BnUpdate[],
  sync: Collective = SOLO,
): tf.Tensor {
  if (training) return trainingBatchNorm(x, bn, sync, updates);
  const inv = tf.mul(bn.gamma, tf.rsqrt(tf.add(bn.variance, BN_EPSILON)));
  return tf.add(tf.mul(tf.sub(x, bn.mean), inv), bn.beta);
}

/** Moves the running statistics towards the batch ones (unbiased variance, as TensorFlow does) and frees them. */
export function applyBnUpdates(updates: BnUpdate[]): void {
  for (const u of updates) {
    tf.tidy(() => {
      const n = u.count;
      const unbiased = tf.mul(u.variance, n / Math.max(1, n - 1));
      u.bn.mean.assign(tf.add(tf.mul(u.bn.mean, BN_MOMENTUM), tf.mul(u.mean, 1 - BN_MOMENTUM)));
      u.bn.variance.assign(tf.add(tf.mul(u.bn.variance, BN_MOMENTUM), tf.mul(unbiased, 1 - BN_MOMENTUM)));
    });
    u.mean.dispose();
    u.variance.dispose();
  }
  updates.length = 0;
}
