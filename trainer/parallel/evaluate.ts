/**
 * Evaluation work split over the data-parallel pool: BN recalibration's training-mode passes and prediction's
 * inference passes are both lists of independent batches (no gradient, no state carried from one batch to the
 * next), so each thread computes a contiguous run of whole batches and the results are gathered in batch order.
 * The batches are the ones one thread computes, run by the same functions on the same kind of backend with the
 * same weights, so the combined results (trainer/recalibrate.ts, `predict` in trainer/train.ts) equal one
 * thread's bit for bit. Batch norm takes each recalibration batch's own statistics (the solo collective), never the
 * all-reduce of a training step.
 */
import * as tf from '@tensorflow/tfjs';
import type { BnUpdate } from '../layers/batchnorm.js';
import type { NetConfig, NetParams } from '../model.js';
import { forward, namedVariables } from '../model.js';
import { SOLO } from './collective.js';
import type { BnStatistics } from './shard.js';
import { splitCounts } from './shard.js';

export type EvalMode = 'recalibrate' | 'predict';

/** Which of a worker's networks a request is for: the one being trained, or the KD teacher it holds beside it. */
export type Network = 'student' | 'teacher';

/** One prediction batch: mean logits over the T steps [n, classes], argmax, and per layer spike rate × frames. */
export interface PredictionBatch {
  readonly logits: Float32Array;
  readonly predictions: Uint8Array;
  readonly rateSums: Float64Array;
}

/** What a batch gives: recalibration, each BN layer's statistics (layer order); prediction, a PredictionBatch. */
export type EvalResults<M extends EvalMode> = M extends 'recalibrate' ? BnStatistics[][] : PredictionBatch[];

/** Frames in a batch of raw values; anything but whole frames is refused. */
function framesOf(x: Float32Array, frame: readonly [number, number, number]): number {
  const size = frame[0] * frame[1] * frame[2];
  if (x.length === 0 || x.length % size !== 0)
    throw new RangeError(`evaluation batch: ${x.length} values are not whole frames of [${frame.join(', ')}]`);
  return x.length / size;
}

/** A training-mode forward pass over one batch of raw frames: each BN layer's batch mean, variance and count. */
export function recalibrationBatch(
  net: NetConfig,
  params: NetParams,
  x: Float32Array,
  frame: readonly [number, number, number],
): BnStatistics[] {
  const n = framesOf(x, frame);
  const bns = params.layers.map((l) => l.bn);
  const updates: BnUpdate[] = [];
  tf.tidy(() => {
    forward(net, params, tf.tensor4d(x, [n, ...frame]), true, updates, SOLO);
  });
  const out: BnStatistics[] = new Array(bns.length);
  for (const u of updates) {
    out[bns.indexOf(u.bn)] = {
      mean: (u.mean.dataSync() as Float32Array).slice(),
      variance: (u.variance.dataSync() as Float32Array).slice(),
      count: u.count,
    };
    u.mean.dispose();
    u.variance.dispose();
  }
  return out;
}

/** An inference forward pass (running BN statistics) over one batch of raw frames. */
export function predictionBatch(
  net: NetConfig,
  params: NetParams,
  x: Float32Array,
  frame: readonly [number, number, number],
): PredictionBatch {
  const n = framesOf(x, frame);
  const rateSums = new Float64Array(params.layers.length);
  let logits = new Float32Array(0),
    predictions = new Uint8Array(0);
  tf.tidy(() => {
    const out = forward(net, params, tf.tensor4d(x, [n, ...frame]), false);
    const mean = tf.mean(out.stepLogits, 0);
    logits = (mean.dataSync() as Float32Array).slice();
    predictions = Uint8Array.from(tf.argMax(mean, 1).dataSync() as Int32Array);
    out.layerRates.forEach((r, l) => {
      rateSums[l] = r.dataSync()[0]! * n;
    });
  });
  return { logits, predictions, rateSums };
}

/** What one thread computes: `mode` on batches 0..count-1 in order (`input(b)`: batch b's raw frames). */
export function evaluateBatches<M extends EvalMode>(
  net: NetConfig,
  params: NetParams,
  frame: readonly [number, number, number],
  mode: M,
  count: number,
  input: (b: number) => Float32Array,
): EvalResults<M> {
  const run = mode === 'recalibrate' ? recalibrationBatch : predictionBatch;
  return Array.from({ length: count }, (_, b) => run(net, params, input(b), frame)) as EvalResults<M>;
}

/** Every variable's values in `namedVariables` order: what a worker assigns before evaluating. */
export function variableValues(params: NetParams): Float32Array[] {
  return namedVariables(params).map(({ v }) => (v.dataSync() as Float32Array).slice());
}

/** What evaluateOnPool needs of a pool: trainer/parallel/pool.ts's GradientPool (named structurally, so that the
 * pool, which carries these types in its messages, and this module do not import each other). */
export interface EvaluatingPool {
  readonly size: number;
  evaluate<M extends EvalMode>(
    mode: M,
    values: Float32Array[],
    batches: Float32Array[][],
    network?: Network,
  ): Promise<EvalResults<M>[]>;
}

/**
 * `mode` on `count` batches spread over `pool` (this thread computes the first run of batches, each worker the
 * next; without a pool this thread computes them all); results in batch order. A worker's batches are copied to
 * it up front (its share of the frames is in memory at once); this thread builds its own one at a time. `network`
 * says which of the workers' networks `net` is (the KD teacher's copy, or the student's).
 */
export async function evaluateOnPool<M extends EvalMode>(
  pool: EvaluatingPool | undefined,
  net: NetConfig,
  params: NetParams,
  frame: readonly [number, number, number],
  mode: M,
  count: number,
  input: (b: number) => Float32Array,
  network: Network = 'student',
): Promise<EvalResults<M>> {
  const sizes = splitCounts(count, 1 + (pool?.size ?? 0));
  const starts = sizes.map((_, k) => sizes.slice(0, k).reduce((a, b) => a + b, 0));
  let remote: Promise<EvalResults<M>[]> = Promise.resolve([]);
  if (pool && sizes.length > 1) {
    const values = variableValues(params);
    remote = pool.evaluate(
      mode,
      values,
      sizes.slice(1).map((size, k) => Array.from({ length: size }, (_, b) => input(starts[k + 1]! + b))),
      network,
    );
  }
  let local: EvalResults<M>;
  try {
    local = evaluateBatches(net, params, frame, mode, sizes[0] ?? 0, input);
  } catch (err) {
    await remote.catch(() => undefined);
    throw err;
  }
  return [local, ...(await remote)].flat() as EvalResults<M>;
}
