/**
 * The trained network: exactly the runtime's graph (runtime/format/model.ts) with its training-time stand-ins.
 *
 *   raw uint8 frame / 255 → int8-QAT conv (zero padding in raw space) → BN ─┐ current I0 (same at every step)
 *   → LIF → [binary conv (sign·alpha, STE) → BN (+ shortcut: previous layer's current) → LIF] × 5
 *   → spike rate per channel (mean over space) per step → float linear head → per-step logits.
 *
 * The T steps are stacked on the batch axis (time-major), so each conv runs once over T·N maps and each BN takes
 * its statistics over all steps at once; only the LIF loops over time. Layout: the 32-64-128 network of
 * runtime/format/random-model.ts FMNIST_BLOCKS, scaled by `width` (channels width, width, 2w, 2w, 4w, 4w).
 *
 * Variants (for the teacher and the ablation): `neuron: 'relu'` is the ANN twin (float weights, ReLU, T = 1);
 * `weights: 'float'` keeps full-precision weights in an SNN; `shortcuts: 'plain'` puts a shortcut only on every
 * second binary conv (the format's shortcut spans one conv, so a shortcut "every two convs" is that).
 *
 * Each layer's LIF threshold θ (per channel) and leak β (per layer) are variables: constants of `theta` and `beta`
 * unless `lif: 'learn'`, when they train with the weights (the runtime stores both, so they fold unchanged).
 */
import * as tf from '@tensorflow/tfjs';
import type { Shortcut } from '../runtime/format/model.js';
import { gaussian, rng } from '../runtime/data/random.js';
import { conv2d } from './backend/conv.js';
import type { BnParams, BnUpdate } from './layers/batchnorm.js';
import { batchNorm } from './layers/batchnorm.js';
import { binarize, quantizeInt8 } from './layers/binary.js';
import type { Surrogate } from './layers/lif.js';
import { lif } from './layers/lif.js';
import type { Collective } from './parallel/collective.js';
import { shortcutCurrent } from './layers/shortcut.js';

export interface NetConfig {
  /** Channels of the first conv and first binary conv; later stages have 2× and 4×. Default 32. */
  readonly width: number;
  /** Time steps (1 for the ANN). */
  readonly T: number;
  /** LIF leak, shared by all layers. */
  readonly beta: number;
  /** LIF threshold, shared by all layers (BN scales the currents to it). */
  readonly theta: number;
  readonly neuron: 'lif' | 'relu';
  readonly weights: 'binary' | 'float';
  readonly shortcuts: 'multi' | 'plain';
  readonly classes: number;
  /** [height, width, channels] of the raw frame. */
  readonly input: readonly [number, number, number];
  /** `learn`: θ per channel and β per layer are trained (absent in older runs: fixed). */
  readonly lif?: 'fixed' | 'learn';
  /**
   * Initial thresholds: `uniform` θ in every layer; `depth` θ·√k in a layer whose current sums k unit-variance BN
   * outputs through its chain of shortcuts (the current's std at initialisation), so deep layers of a multi-shortcut
   * net do not start out firing more than shallow ones. Absent: uniform.
   */
  readonly thetaInit?: 'uniform' | 'depth';
  /** Surrogate window: `fixed` half-width 1, `theta` half-width θ (trainer/layers/lif.ts). Default fixed. */
  readonly surrogate?: Surrogate;
}

export const DEFAULT_NET: NetConfig = {
  width: 32,
  T: 2,
  beta: 0.5,
  theta: 1,
  neuron: 'lif',
  weights: 'binary',
  shortcuts: 'multi',
  classes: 10,
  input: [28, 28, 1],
};

export interface LayerPlan {
  readonly name: string;
  readonly cin: number;
  readonly cout: number;
  readonly stride: 1 | 2;
  readonly kernel: 3;
  readonly pad: 1;
  readonly shortcut: Shortcut;
  readonly inSize: readonly [number, number];
  readonly outSize: readonly [number, number];
}

/** Layer-by-layer plan: index 0 is the int8 first conv, 1.. the binary convs. */
export function plan(cfg: NetConfig): LayerPlan[] {
  const w = cfg.width;
  const specs: Array<[number, 1 | 2]> = [
    [w, 1],
    [w, 1],
    [2 * w, 2],
    [2 * w, 1],
    [4 * w, 2],
    [4 * w, 1],
  ];
  const out: LayerPlan[] = [];
  let [h, wd, cin] = cfg.input;
  specs.forEach(([cout, stride], i) => {
    const oh = Math.floor((h + 2 - 3) / stride) + 1;
    const ow = Math.floor((wd + 2 - 3) / stride) + 1;
    let shortcut: Shortcut = 'none';
    if (i > 0 && (cfg.shortcuts === 'multi' || i % 2 === 0)) {
      shortcut = stride === 1 ? 'identity' : 'avgpool_repeat';
      if (stride === 2 && (h % 2 !== 0 || wd % 2 !== 0 || cout % cin !== 0)) shortcut = 'none';
    }
    out.push({
      name: i === 0 ? 'conv0' : `bconv${i}`,
      cin,
      cout,
      stride,
      kernel: 3,
      pad: 1,
      shortcut,
      inSize: [h, wd],
      outSize: [oh, ow],
    });
    [h, wd, cin] = [oh, ow, cout];
  });
  return out;
}

export interface ConvParams {
  readonly w: tf.Variable;
  readonly bn: BnParams;
  /** LIF threshold per output channel, [cout]. */
  readonly theta: tf.Variable;
  /** LIF leak, [1]. */
  readonly beta: tf.Variable;
}

export interface NetParams {
  readonly layers: ConvParams[];
  readonly headW: tf.Variable;
  readonly headB: tf.Variable;
}

/** Every variable with a stable name (checkpoints, optimizer state); `trainable` false for BN running stats. */
export function namedVariables(p: NetParams): Array<{ name: string; v: tf.Variable; trainable: boolean }> {
  const out: Array<{ name: string; v: tf.Variable; trainable: boolean }> = [];
  p.layers.forEach((l, i) => {
    out.push({ name: `l${i}.w`, v: l.w, trainable: true });
    out.push({ name: `l${i}.gamma`, v: l.bn.gamma, trainable: true });
    out.push({ name: `l${i}.beta`, v: l.bn.beta, trainable: true });
    out.push({ name: `l${i}.mean`, v: l.bn.mean, trainable: false });
    out.push({ name: `l${i}.variance`, v: l.bn.variance, trainable: false });
    out.push({ name: `l${i}.theta`, v: l.theta, trainable: l.theta.trainable });
    out.push({ name: `l${i}.lifBeta`, v: l.beta, trainable: l.beta.trainable });
  });
  out.push({ name: 'head.w', v: p.headW, trainable: true });
  out.push({ name: 'head.b', v: p.headB, trainable: true });
  return out;
}

/** Per layer, how many BN outputs its LIF input current sums through its chain of shortcuts. */
export function currentTerms(cfg: NetConfig): number[] {
  const out: number[] = [];
  plan(cfg).forEach((l, i) => out.push(i > 0 && l.shortcut !== 'none' ? out[i - 1]! + 1 : 1));
  return out;
}

// tfjs variable names are process-global; checkpoints use namedVariables' names, and Adam keys its state by
// position, so these only need to be unique.
let instances = 0;

/** He-normal conv weights, seeded (no tfjs RNG, so a seed reproduces a run on any backend). */
export function initParams(cfg: NetConfig, seed: number, prefix = ''): NetParams {
  const normal = gaussian(rng(seed));
  const instance = instances++;
  let serial = 0;
  const variable = (values: Float32Array, shape: number[], trainable = true) =>
    tf.variable(tf.tensor(values, shape), trainable, `${prefix}${instance}/v${serial++}`);
  const learnLif = cfg.lif === 'learn' && cfg.neuron === 'lif';
  const summed = currentTerms(cfg);
  const layers = plan(cfg).map((l, i) => {
    const fanIn = 9 * l.cin;
    const std = Math.sqrt(2 / fanIn);
    const c = l.cout;
    return {
      w: variable(
        Float32Array.from({ length: fanIn * c }, () => std * normal()),
        [3, 3, l.cin, c],
      ),
      bn: {
        gamma: variable(new Float32Array(c).fill(1), [c]),
        beta: variable(new Float32Array(c), [c]),
        mean: variable(new Float32Array(c), [c], false),
        variance: variable(new Float32Array(c).fill(1), [c], false),
      },
      theta: variable(
        new Float32Array(c).fill(cfg.thetaInit === 'depth' ? cfg.theta * Math.sqrt(summed[i]!) : cfg.theta),
        [c],
        learnLif,
      ),
      beta: variable(Float32Array.of(cfg.beta), [1], learnLif),
    };
  });
  const last = layers[layers.length - 1]!.w.shape[3]!;
  const hs = Math.sqrt(1 / last);
  return {
    layers,
    headW: variable(
      Float32Array.from({ length: last * cfg.classes }, () => hs * normal()),
      [last, cfg.classes],
    ),
    headB: variable(new Float32Array(cfg.classes), [cfg.classes]),
  };
}

export function disposeParams(p: NetParams): void {
  for (const { v } of namedVariables(p)) v.dispose();
}

export interface ForwardOut {
  /** [T, N, classes]: the head applied to each step's spike rates (T = 1 for the ANN). */
  readonly stepLogits: tf.Tensor3D;
  /** Per layer, a scalar: the mean of its output (spike rate; for the ANN, mean activation) over the batch. */
  readonly layerRates: tf.Scalar[];
}

/**
 * Forward pass on raw pixel values ([N, H, W, C] float32 in 0..255). In training mode the BN batch statistics
 * are pushed to `updates`, for the caller to apply after the optimizer step.
 */
export function forward(
  cfg: NetConfig,
  p: NetParams,
  raw: tf.Tensor4D,
  training: boolean,
  updates?: BnUpdate[],
  sync?: Collective,
): ForwardOut {
  const layers = plan(cfg);
  const spiking = cfg.neuron === 'lif';
  const T = spiking ? cfg.T : 1;
  const n = raw.shape[0];
  const fire = (current: tf.Tensor, i: number) =>
    spiking ? lif(current, T, p.layers[i]!, cfg.surrogate) : tf.relu(current);
  const norm = (x: tf.Tensor, i: number) => batchNorm(x, p.layers[i]!.bn, training, updates, sync) as tf.Tensor4D;
  const weightOf = (i: number) => {
    const w = p.layers[i]!.w;
    if (cfg.weights === 'float') return w;
    return i === 0 ? quantizeInt8(w) : binarize(w);
  };
  // The binary convs of an SNN read spike maps with ±alpha weights: the engine's own kernel can compute them.
  const spikeInput = spiking && cfg.weights === 'binary';
  const x = tf.div(raw, 255) as tf.Tensor4D;
  let current = norm(conv2d(x, weightOf(0) as tf.Tensor4D, 1, 1, { inputGrad: false }), 0);
  // concat, not tile: tfjs's Tile gradient is a loop of slices, concat's is one split.
  if (T > 1)
    current = tf.concat(
      Array.from({ length: T }, () => current),
      0,
    );
  let act = fire(current, 0) as tf.Tensor4D;
  const layerRates = [tf.mean(act) as tf.Scalar];
  for (let i = 1; i < layers.length; i++) {
    const l = layers[i]!;
    let next = norm(conv2d(act, weightOf(i) as tf.Tensor4D, l.stride, l.pad, { spikes: spikeInput }), i);
    const sc = shortcutCurrent(l.shortcut, current, l.cout);
    if (sc) next = tf.add(next, sc);
    current = next;
    act = fire(current, i) as tf.Tensor4D;
    layerRates.push(tf.mean(act) as tf.Scalar);
  }
  const rates = tf.mean(act, [1, 2]) as tf.Tensor2D;
  const logits = tf.add(tf.matMul(rates, p.headW as tf.Tensor as tf.Tensor2D), p.headB);
  return { stepLogits: tf.reshape(logits, [T, n, cfg.classes]) as tf.Tensor3D, layerRates };
}

/** Multiply-accumulates of one forward pass of one frame over all steps (the first layer runs once). */
export function macsPerFrame(cfg: NetConfig): number {
  const T = cfg.neuron === 'lif' ? cfg.T : 1;
  return plan(cfg).reduce((sum, l, i) => sum + (i === 0 ? 1 : T) * l.outSize[0] * l.outSize[1] * l.cout * 9 * l.cin, 0);
}
