/**
 * Batch norm over all of axes 0..rank-2. In the SNN the steps are stacked on axis 0 (T*N rows), so the
 * statistics are taken over all T steps of the batch at once: per-step statistics make training erratic and
 * have no single folded affine at inference.
 */
import * as tf from '@tensorflow/tfjs';

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
  readonly variance: tf.Tensor;
  /** Values per channel the statistics were taken over. */
  readonly count: number;
}

export function batchNorm(x: tf.Tensor, bn: BnParams, training: boolean, updates?: BnUpdate[]): tf.Tensor {
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  let mean: tf.Tensor = bn.mean;
  let variance: tf.Tensor = bn.variance;
  if (training) {
    const m = tf.moments(x, axes);
    mean = m.mean;
    variance = m.variance;
    updates?.push({ bn, mean: tf.keep(mean), variance: tf.keep(variance), count: x.size / x.shape[x.rank - 1]! });
  }
  const inv = tf.mul(bn.gamma, tf.rsqrt(tf.add(variance, BN_EPSILON)));
  return tf.add(tf.mul(tf.sub(x, mean), inv), bn.beta);
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
