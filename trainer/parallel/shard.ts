/**
 * One training step split into shards: each shard's gradient is computed where the shard runs (this thread or a
 * worker), then combined where the weights and Adam's state live. The combined gradient is the size-weighted mean
 * of the shard gradients, i.e. the gradient of the batch's mean loss: batch norm takes its statistics over the whole
 * batch through a `Collective` (trainer/layers/batchnorm.ts), so a split step computes what one thread computes
 * on the whole batch, up to float rounding. Every shard sees the same whole-batch BN statistics; the running
 * averages get them once.
 */
import * as tf from '@tensorflow/tfjs';
import type { BnParams, BnUpdate } from '../layers/batchnorm.js';
import { applyBnUpdates } from '../layers/batchnorm.js';
import type { NetConfig, NetParams } from '../model.js';
import { forward } from '../model.js';
import type { LossOptions } from '../recipe/loss.js';
import { seiLoss, spikeRateTerm } from '../recipe/loss.js';
import type { Collective } from './collective.js';
import { SOLO } from './collective.js';

/** Frames of one shard: raw pixels [n, ...frame], labels, and the teacher's logits [n, classes] under KD. */
export interface Shard {
  readonly x: Float32Array;
  readonly y: Int32Array;
  readonly soft?: Float32Array;
}

export interface BnStatistics {
  readonly mean: Float32Array;
  readonly variance: Float32Array;
  /** Values per channel the statistics were taken over. */
  readonly count: number;
}

/** What a shard contributes to a step. */
export interface ShardResult {
  readonly frames: number;
  /** Mean loss over the shard's frames. */
  readonly loss: number;
  readonly correct: number;
  /** Gradients of the shard's mean loss, in `trainables` order. */
  readonly grads: Float32Array[];
  /** Whole-batch BN statistics, in the order the forward pass takes them (layer order). */
  readonly bn: BnStatistics[];
}

/** Sizes of `parts` contiguous near-equal runs of `n` items (the first ones one larger), empty runs left out. */
export function splitCounts(n: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, k) => Math.floor(n / parts) + (k < n % parts ? 1 : 0)).filter((s) => s > 0);
}

/** Splits a batch into `parts` contiguous shards of near-equal size (the first ones one frame larger). */
export function splitBatch(batch: Shard, frameSize: number, classes: number, parts: number): Shard[] {
  const out: Shard[] = [];
  let start = 0;
  for (const size of splitCounts(batch.y.length, parts)) {
    const end = start + size;
    out.push({
      x: batch.x.subarray(start * frameSize, end * frameSize),
      y: batch.y.subarray(start, end),
      ...(batch.soft ? { soft: batch.soft.subarray(start * classes, end * classes) } : {}),
    });
    start = end;
  }
  return out;
}

/**
 * Forward over T steps, SEI loss, backward on one shard; the parameters are not touched. `sync` joins the other
 * shards of the step for batch norm; a failure aborts it, so the others stop waiting.
 */
export function shardGradients(
  net: NetConfig,
  params: NetParams,
  trainables: tf.Variable[],
  shard: Shard,
  frame: readonly [number, number, number],
  loss: LossOptions,
  sync: Collective = SOLO,
): ShardResult {
  try {
    return computeShard(net, params, trainables, shard, frame, loss, sync);
  } catch (err) {
    sync.abort();
    throw err;
  }
}

function computeShard(
  net: NetConfig,
  params: NetParams,
  trainables: tf.Variable[],
  shard: Shard,
  frame: readonly [number, number, number],
  loss: LossOptions,
  sync: Collective,
): ShardResult {
  const n = shard.y.length;
  const updates: BnUpdate[] = [];
  // The gradients are read out after the tidy: a tidy walks every element of the typed arrays its callback returns.
  let result = { loss: 0, correct: 0, grads: [] as Float32Array[] };
  tf.tidy(() => {
    const xt = tf.tensor4d(shard.x, [n, ...frame]);
    const yt = tf.tensor1d(shard.y, 'int32');
    const soft = shard.soft ? tf.tensor2d(shard.soft, [n, net.classes]) : undefined;
    let ok: tf.Tensor | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const res = forward(net, params, xt, true, updates, sync);
      const { loss: l, logits } = seiLoss(res.stepLogits, yt, loss, soft);
      ok = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), yt), 'float32')));
      const rate = net.neuron === 'lif' ? spikeRateTerm(res.layerRates, loss) : undefined;
      return rate ? (tf.add(l, rate) as tf.Scalar) : l;
    }, trainables);
    const correct = ok!.dataSync()[0]!;
    ok!.dispose();
    result = {
      loss: value.dataSync()[0]!,
      correct,
      grads: trainables.map((v) => (grads[v.name]!.dataSync() as Float32Array).slice()),
    };
  });
  const out = result;
  const bn = updates.map((u) => {
    const s = {
      mean: (u.mean.dataSync() as Float32Array).slice(),
      variance: (u.variance.dataSync() as Float32Array).slice(),
      count: u.count,
    };
    u.mean.dispose();
    u.variance.dispose();
    return s;
  });
  return { frames: n, ...out, bn };
}

/**
 * Applies the shards' combined gradient with `optimizer` and moves the BN running statistics (`bnParams`, in the
 * order of ShardResult.bn) toward the batch statistics. Returns [mean loss, correct predictions].
 */
export function applyShards(
  optimizer: Pick<tf.Optimizer, 'applyGradients'>,
  trainables: tf.Variable[],
  bnParams: BnParams[],
  micro: ShardResult[] | ShardResult[][],
): [number, number] {
  // One micro-batch or several (accumulated): the gradient is the frame-weighted mean over every shard of all.
  const groups = (Array.isArray(micro[0]) ? micro : [micro]) as ShardResult[][];
  const shards = groups.flat();
  const frames = shards.reduce((s, r) => s + r.frames, 0);
  const weights = shards.map((r) => r.frames / frames);
  const grads: Record<string, tf.Tensor> = {};
  trainables.forEach((v, i) => {
    const sum = new Float32Array(v.size);
    shards.forEach((r, k) => {
      const g = r.grads[i]!,
        w = weights[k]!;
      for (let j = 0; j < sum.length; j++) sum[j]! += w * g[j]!;
    });
    grads[v.name] = tf.tensor(sum, v.shape);
  });
  optimizer.applyGradients(grads);
  tf.dispose(Object.values(grads));
  // Every shard of a micro-batch holds the same whole-micro-batch statistics: the running averages take each
  // micro-batch's once, in order.
  for (const group of groups) {
    applyBnUpdates(
      bnParams.map((bn, i) => {
        const st = group[0]!.bn[i]!;
        return { bn, mean: tf.tensor1d(st.mean), variance: tf.tensor1d(st.variance), count: st.count };
      }),
    );
  }
  return [shards.reduce((s, r, k) => s + weights[k]! * r.loss, 0), shards.reduce((s, r) => s + r.correct, 0)];
}
