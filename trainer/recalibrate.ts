/**
 * BN recalibration. With binary weights the signs flip every step, so the momentum-averaged running statistics
 * describe a mixture of past networks and lag the final one; validation, evaluation and the folded `.bwsnn` all
 * use them. Recalibration freezes the weights, runs training-mode forward passes (batch statistics over all T
 * steps of each batch, as in training; no gradient, no augmentation) over a fixed sample of training batches and
 * sets each BN layer's running mean and variance to the population statistics of everything those batches fed it:
 * the count-weighted mean of the batch means, and the variance by the law of total variance (mean of the batch
 * variances + variance of the batch means) — exact for the union of the batches, and stable in float64.
 */
import * as tf from '@tensorflow/tfjs';
import type { Split } from './data/index.js';
import { makeBatch } from './data/index.js';
import { permutation, stream } from './data/random.js';
import type { BnParams } from './layers/batchnorm.js';
import type { NetConfig, NetParams } from './model.js';
import { evaluateBatches, evaluateOnPool } from './parallel/evaluate.js';
import type { GradientPool } from './parallel/pool.js';
import type { BnStatistics } from './parallel/shard.js';

/** `sei export`'s default: 100 batches (6400 frames at the default batch of 64). */
export const RECALIBRATE_BATCHES = 100;

export interface RecalibrateOptions {
  /** Batches to run (0: none — the input parameters are returned as they are). */
  readonly batches: number;
  readonly batchSize: number;
  /** Seed of the frame sample (a fixed stream: the same frames for the same seed). */
  readonly seed: number;
}

/**
 * How a run's networks are recalibrated, the same for each epoch's validation, `sei export` and `sei ablate`:
 * `batches` batches of the frames batch norm saw at once in training (the micro-batch, else the batch), so the
 * training-mode statistics of a recalibration batch are those of a training pass, and the sample does not grow
 * with gradient accumulation.
 */
export function recalibration(
  run: { readonly batchSize: number; readonly microBatch?: number; readonly seed: number },
  batches: number = RECALIBRATE_BATCHES,
): RecalibrateOptions {
  return { batches, batchSize: Math.min(run.batchSize, run.microBatch ?? run.batchSize), seed: run.seed };
}

/** The frames of each recalibration batch: a seeded sample without repetition (fewer batches if the split is small). */
export function recalibrationBatches(count: number, opts: RecalibrateOptions): Uint32Array[] {
  const order = permutation(count, stream(opts.seed, 'recalibrate'));
  const size = Math.min(opts.batchSize, count);
  const out: Uint32Array[] = [];
  for (let b = 0; b < opts.batches && (b + 1) * size <= count; b++) out.push(order.subarray(b * size, (b + 1) * size));
  return out;
}

/**
 * `params` with fresh BN running statistics (see the file comment). The result shares every other variable with
 * `params` (weights, gamma, beta, head), which is left untouched; free its new statistics with `disposeBnStatistics`.
 */
export function recalibrateBn(net: NetConfig, params: NetParams, split: Split, opts: RecalibrateOptions): NetParams {
  const batches = recalibrationBatches(split.count, opts);
  if (!batches.length) return params;
  const input = (b: number) => makeBatch(split, batches[b]!).x;
  return withStatistics(params, evaluateBatches(net, params, split.shape, 'recalibrate', batches.length, input));
}

/**
 * `recalibrateBn` with the batches spread over `pool` (trainer/parallel/evaluate.ts): the same batches computed by
 * the same code, combined the same way, so the same statistics bit for bit.
 */
export async function recalibrateBnOn(
  pool: GradientPool | undefined,
  net: NetConfig,
  params: NetParams,
  split: Split,
  opts: RecalibrateOptions,
): Promise<NetParams> {
  const batches = recalibrationBatches(split.count, opts);
  if (!batches.length) return params;
  const input = (b: number) => makeBatch(split, batches[b]!).x;
  return withStatistics(
    params,
    await evaluateOnPool(pool, net, params, split.shape, 'recalibrate', batches.length, input),
  );
}

/** `params` with each BN layer's statistics the population statistics of its batches' (`perBatch[b][layer]`). */
function withStatistics(params: NetParams, perBatch: BnStatistics[][]): NetParams {
  const layers = params.layers.map((l, i) => {
    const s = perBatch.map((b) => b[i]!);
    const c = l.bn.mean.shape[0]!;
    const total = s.reduce((a, b) => a + b.count, 0);
    const mean = new Float64Array(c),
      variance = new Float64Array(c);
    s.forEach((b) => {
      for (let k = 0; k < c; k++) mean[k]! += (b.count / total) * b.mean[k]!;
    });
    s.forEach((b) => {
      const w = b.count / total;
      for (let k = 0; k < c; k++) variance[k]! += w * (b.variance[k]! + (b.mean[k]! - mean[k]!) ** 2);
    });
    const bn: BnParams = {
      gamma: l.bn.gamma,
      beta: l.bn.beta,
      mean: tf.tidy(() => tf.variable(tf.tensor1d(Float32Array.from(mean)), false)),
      variance: tf.tidy(() => tf.variable(tf.tensor1d(Float32Array.from(variance)), false)),
    };
    return { ...l, bn };
  });
  return { layers, headW: params.headW, headB: params.headB };
}

/** Frees the statistics `recalibrateBn` created (nothing when it returned its input). */
export function disposeBnStatistics(recalibrated: NetParams, original: NetParams): void {
  recalibrated.layers.forEach((l, i) => {
    if (l.bn.mean === original.layers[i]!.bn.mean) return;
    l.bn.mean.dispose();
    l.bn.variance.dispose();
  });
}
