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
 * (trainer/backend/host.ts) with float64 sums.
 */
import * as tf from '@tensorflow/tfjs';
import { hostOp } from '../backend/host.js';
import type { Collective } from '../parallel/collective.js';
import { SOLO } from '../parallel/collective.js';

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

/** Per-channel sums of x and x² over the rows, and the row count, reduced over all threads. */
function statistics(
  x: Float32Array,
  C: number,
  sync: Collective,
): { mean: Float64Array; variance: Float64Array; rows: number; localRows: number } {
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
  const localRows = n / C;
  const sums = new Float64Array(2 * C + 1);
  sums.set(s1, 0);
  sums.set(s2, C);
  sums[2 * C] = localRows;
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

/** dx = inv·(γ·dy − a − x̂·k), folded into dx = p·dy + q·x + r per channel. */
function inputGradient(
  dy: Float32Array,
  x: Float32Array,
  mean: Float64Array,
  inv: Float64Array,
  gamma: Float32Array,
  a: Float64Array,
  k: Float64Array,
  dx: Float32Array,
): void {
  const C = mean.length,
    n = x.length;
  const p = new Float64Array(C),
    q = new Float64Array(C),
    r = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    p[c] = inv[c]! * gamma[c]!;
    q[c] = -inv[c]! * inv[c]! * k[c]!;
    r[c] = -inv[c]! * a[c]! - q[c]! * mean[c]!;
  }
  for (let i = 0; i < n; i += C) for (let c = 0; c < C; c++) dx[i + c] = p[c]! * dy[i + c]! + q[c]! * x[i + c]! + r[c]!;
}

function trainingBatchNorm(x: tf.Tensor, bn: BnParams, sync: Collective, updates?: BnUpdate[]): tf.Tensor {
  const C = x.shape[x.rank - 1]!;
  const f = tf.customGrad((xIn, gammaIn, betaIn, save) => {
    const xt = xIn as tf.Tensor,
      gamma = gammaIn as tf.Tensor,
      beta = betaIn as tf.Tensor;
    const g = gamma.dataSync() as Float32Array,
      b = beta.dataSync() as Float32Array;
    const stats: Array<ReturnType<typeof statistics>> = [];
    const inv = new Float64Array(C);
    const [y] = hostOp([xt], [xt.shape], ([xv], [yv]) => {
      const st = statistics(xv!, C, sync);
      stats.push(st);
      const scale = new Float32Array(C),
        shift = new Float32Array(C);
      for (let c = 0; c < C; c++) {
        inv[c] = 1 / Math.sqrt(st.variance[c]! + BN_EPSILON);
        scale[c] = g[c]! * inv[c]!;
        shift[c] = b[c]! - st.mean[c]! * scale[c]!;
      }
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
          const s = gradientSums(gv!, xv!, mean, inv);
          sums.push(s);
          const local = new Float64Array(2 * C);
          for (let c = 0; c < C; c++) {
            local[c] = share * g[c]! * s.dBeta[c]!;
            local[C + c] = share * g[c]! * s.dGamma[c]!;
          }
          // dx = (γ·dy − (Σ w·γ·dy)/(rows·w_k) − x̂ · (Σ w·γ·dy·x̂)/(rows·w_k)) / σ, the sums taken over every thread.
          const all = sync.allReduce(local);
          const a = new Float64Array(C),
            k = new Float64Array(C);
          for (let c = 0; c < C; c++) {
            a[c] = all[c]! / (rows * share);
            k[c] = all[C + c]! / (rows * share);
          }
          inputGradient(gv!, xv!, mean, inv, g, a, k, dxv!);
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
