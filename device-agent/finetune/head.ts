/**
 * Training the float head on cached features: softmax cross-entropy, Adam, and an L2 pull toward the parent head
 * (not toward zero: a few hundred frames should adjust the head, not forget what the lab trained).
 * Plain Float64Array maths, no dependencies, deterministic for a given seed.
 */
import { ConfigError, rng, shuffle } from '../../runtime/index.js';
import type { Head } from '../../runtime/index.js';
import type { FeatureSet } from './features.js';
import { runSteps } from './steps.js';

/** Head parameters as one vector: weight [out][in] row-major, then bias [out]. */
export interface HeadParams {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly values: Float64Array;
}

export function headParams(head: Head): HeadParams {
  const values = new Float64Array(head.outFeatures * head.inFeatures + head.outFeatures);
  values.set(head.weight);
  values.set(head.bias, head.weight.length);
  return { inFeatures: head.inFeatures, outFeatures: head.outFeatures, values };
}

/** The float32 head a model stores (the runtime multiplies float32 weights). */
export function toHead(p: HeadParams): Head {
  const n = p.outFeatures * p.inFeatures;
  return {
    inFeatures: p.inFeatures,
    outFeatures: p.outFeatures,
    weight: Float32Array.from(p.values.subarray(0, n)),
    bias: Float32Array.from(p.values.subarray(n)),
  };
}

/**
 * Mean softmax cross-entropy over `rows` of `set` plus `decay/2 * |values - anchor|^2`; writes the gradient into
 * `grad` (same layout as values) and returns the loss.
 */
export function lossAndGradient(
  p: HeadParams,
  set: FeatureSet,
  rows: ArrayLike<number>,
  anchor: Float64Array,
  decay: number,
  grad: Float64Array,
): number {
  const { inFeatures: nin, outFeatures: nout, values } = p;
  const wEnd = nout * nin;
  grad.fill(0);
  const z = new Float64Array(nout);
  const scale = 1 / rows.length;
  let loss = 0;
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    const x = set.x.subarray(row * nin, (row + 1) * nin);
    let max = -Infinity;
    for (let o = 0; o < nout; o++) {
      let s = values[wEnd + o]!;
      for (let c = 0; c < nin; c++) s += values[o * nin + c]! * x[c]!;
      z[o] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let o = 0; o < nout; o++) sum += Math.exp(z[o]! - max);
    const label = set.labels[row]!;
    loss += (Math.log(sum) + max - z[label]!) * scale;
    for (let o = 0; o < nout; o++) {
      // d(CE)/dz_o = softmax_o - [o == label]
      const dz = (Math.exp(z[o]! - max) / sum - (o === label ? 1 : 0)) * scale;
      grad[wEnd + o]! += dz;
      for (let c = 0; c < nin; c++) grad[o * nin + c]! += dz * x[c]!;
    }
  }
  if (decay > 0) {
    let penalty = 0;
    for (let i = 0; i < values.length; i++) {
      const d = values[i]! - anchor[i]!;
      penalty += d * d;
      grad[i]! += decay * d;
    }
    loss += 0.5 * decay * penalty;
  }
  return loss;
}

export interface TrainOptions {
  /** Passes over the training rows. Default 60. */
  readonly epochs?: number;
  /** Rows per Adam step. Default 32. */
  readonly batchSize?: number;
  /** Adam step size. Default 0.01. */
  readonly learningRate?: number;
  /** L2 strength toward the parent head (weights and biases). Default 1e-3. */
  readonly decay?: number;
  /** Shuffle seed. Default 1. */
  readonly seed?: number;
  /** Called after each epoch with the mean training loss of that epoch. */
  readonly onEpoch?: (epoch: number, loss: number) => void;
}

export const TRAIN_DEFAULTS = { epochs: 60, batchSize: 32, learningRate: 0.01, decay: 1e-3, seed: 1 } as const;

function checkPositive(name: string, value: number, integer: boolean): void {
  if (!(Number.isFinite(value) && value > 0 && (!integer || Number.isInteger(value)))) {
    throw new ConfigError(
      `finetune.${name}: expected a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`,
      `finetune.${name}`,
    );
  }
}

/** Trains from `start` (the parent head) with Adam; returns the new parameters and the per-epoch losses. */
export function trainHead(
  start: Head,
  set: FeatureSet,
  options: TrainOptions = {},
): { readonly params: HeadParams; readonly losses: number[] } {
  return runSteps(trainSteps(start, set, options), ({ epoch, loss }) => options.onEpoch?.(epoch, loss));
}

/** trainHead one epoch at a time: yields each epoch's mean loss, returns the result. */
export function* trainSteps(
  start: Head,
  set: FeatureSet,
  options: Omit<TrainOptions, 'onEpoch'> = {},
): Generator<
  { readonly epoch: number; readonly loss: number },
  { readonly params: HeadParams; readonly losses: number[] }
> {
  const o = { ...TRAIN_DEFAULTS, ...options };
  checkPositive('epochs', o.epochs, true);
  checkPositive('batchSize', o.batchSize, true);
  checkPositive('learningRate', o.learningRate, false);
  if (!(Number.isFinite(o.decay) && o.decay >= 0))
    throw new ConfigError(`finetune.decay: expected a number >= 0, got ${JSON.stringify(o.decay)}`, 'finetune.decay');
  if (set.dim !== start.inFeatures)
    throw new ConfigError(
      `features: expected ${start.inFeatures} per frame (the head's inFeatures), got ${set.dim}`,
      'features',
    );
  const anchor = headParams(start).values;
  const p = headParams(start);
  const n = p.values.length;
  const grad = new Float64Array(n);
  const m = new Float64Array(n);
  const v = new Float64Array(n);
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const order = Array.from({ length: set.count }, (_, i) => i);
  const uniform = rng(o.seed);
  const losses: number[] = [];
  let step = 0;
  for (let epoch = 0; epoch < o.epochs && set.count > 0; epoch++) {
    shuffle(order, uniform);
    let epochLoss = 0;
    for (let s = 0; s < order.length; s += o.batchSize) {
      const batch = order.slice(s, s + o.batchSize);
      epochLoss += lossAndGradient(p, set, batch, anchor, o.decay, grad) * batch.length;
      step++;
      const c1 = 1 - b1 ** step;
      const c2 = 1 - b2 ** step;
      for (let i = 0; i < n; i++) {
        const g = grad[i]!;
        m[i] = b1 * m[i]! + (1 - b1) * g;
        v[i] = b2 * v[i]! + (1 - b2) * g * g;
        p.values[i]! -= (o.learningRate * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + eps);
      }
    }
    losses.push(epochLoss / set.count);
    yield { epoch: epoch + 1, loss: epochLoss / set.count };
  }
  return { params: p, losses };
}

/**
 * Predictions of a stored (float32) head on features, computed the way the engine computes them (same sums in
 * the same order, logits rounded to float32, first index on ties), so the gate sees what the device will do.
 */
export function predict(head: Head, set: FeatureSet): Int32Array {
  const { inFeatures: nin, outFeatures: nout } = head;
  const out = new Int32Array(set.count);
  const logits = new Float32Array(nout);
  for (let r = 0; r < set.count; r++) {
    const base = r * nin;
    for (let o = 0; o < nout; o++) {
      let sum = head.bias[o]!;
      for (let c = 0; c < nin; c++) sum += head.weight[o * nin + c]! * set.x[base + c]!;
      logits[o] = sum;
    }
    let best = 0;
    for (let o = 1; o < nout; o++) if (logits[o]! > logits[best]!) best = o;
    out[r] = best;
  }
  return out;
}

/** Fraction of rows whose prediction matches the label (0 for an empty set). */
export function accuracy(head: Head, set: FeatureSet): number {
  if (set.count === 0) return 0;
  const predictions = predict(head, set);
  let correct = 0;
  predictions.forEach((p, i) => (correct += p === set.labels[i] ? 1 : 0));
  return correct / set.count;
}
