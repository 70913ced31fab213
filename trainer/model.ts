/**
 * The trained network: exactly the runtime's graph (runtime/format/model.ts) with its training-time stand-ins.
 *
 *   raw uint8 frame / 255 → int8-QAT conv (zero padding in raw space) → BN ─┐ current I0 (same at every step)
 *   → LIF → [binary conv (sign·alpha, STE) → BN (+ shortcut: an earlier layer's current) → LIF] × 5
 *   → spike rate per channel (mean over space) per step → float linear head → per-step logits.
 *
 * The T steps are stacked on the batch axis (time-major), so each conv runs once over T·N maps and each BN takes
 * its statistics over all steps at once; only the LIF loops over time. Layout: the 32-64-128 network of
 * runtime/format/random-model.ts FMNIST_BLOCKS, scaled by `width` (channels width, width, 2w, 2w, 4w, 4w).
 *
 * Variants (for the teacher and the ablation): `neuron: 'relu'` is the ANN twin (float weights, ReLU, T = 1);
 * `weights: 'float'` keeps full-precision weights in an SNN. Shortcut layouts (`shortcuts`): `multi`, a shortcut
 * around every binary conv (SEI's multiple shortcuts, Bi-Real Net's layout); `blocks`, the ResNet baseline, a
 * shortcut around every block of two binary convs (bconv1–2, bconv3–4; bconv5, left over, gets its own), so the
 * currents of conv0, bconv2, bconv4 and bconv5 form an identity path; `downsample`, shortcuts on the two stride-2
 * convs only (no identity path; older runs call it `plain`). The .bwsnn format's shortcut spans one conv (it adds
 * the previous layer's current), so `blocks` trains and scores in the trainer but does not export (`exportable`).
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
  /** Shortcut layout (see the top of this file); `plain` is older runs' name for `downsample`. */
  readonly shortcuts: ShortcutLayout | 'plain';
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

export const SHORTCUT_LAYOUTS = ['multi', 'blocks', 'downsample'] as const;
export type ShortcutLayout = (typeof SHORTCUT_LAYOUTS)[number];

/** A config's shortcut layout by its current name (older runs wrote `plain` for `downsample`). */
export function shortcutLayout(cfg: Pick<NetConfig, 'shortcuts'>): ShortcutLayout {
  return cfg.shortcuts === 'plain' ? 'downsample' : cfg.shortcuts;
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
  /** The layer whose LIF input current the shortcut adds (i - 1 in the format; i - 2 for a block's). */
  readonly shortcutFrom: number;
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
  const layout = shortcutLayout(cfg);
  const last = specs.length - 1;
  // The layer whose current layer i's shortcut adds, or -1 for none.
  const source = (i: number): number => {
    if (i === 0) return -1;
    if (layout === 'multi') return i - 1;
    if (layout === 'downsample') return specs[i]![1] === 2 ? i - 1 : -1;
    return i % 2 === 0 ? i - 2 : i === last ? i - 1 : -1;
  };
  const out: LayerPlan[] = [];
  let [h, wd, cin] = cfg.input;
  specs.forEach(([cout, stride], i) => {
    const oh = Math.floor((h + 2 - 3) / stride) + 1;
    const ow = Math.floor((wd + 2 - 3) / stride) + 1;
    const from = source(i);
    let shortcut: Shortcut = 'none';
    if (from >= 0) {
      // Identity when the source's map is this layer's; a 2×2 average pool with channels repeated when it is twice
      // as large; none when neither fits (odd sizes, channels that do not repeat).
      const src = out[from]!;
      const [sh, sw] = src.outSize;
      if (sh === oh && sw === ow && src.cout === cout) shortcut = 'identity';
      else if (sh === 2 * oh && sw === 2 * ow && cout % src.cout === 0) shortcut = 'avgpool_repeat';
    }
    out.push({
      name: i === 0 ? 'conv0' : `bconv${i}`,
      cin,
      cout,
      stride,
      kernel: 3,
      pad: 1,
      shortcut,
      shortcutFrom: shortcut === 'none' ? -1 : from,
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
  for (const l of plan(cfg)) out.push(l.shortcut !== 'none' ? out[l.shortcutFrom]! + 1 : 1);
  return out;
}

/**
 * The first field in which two configs describe different networks, with both values, or undefined when they are
 * the same network. Unwritten optional fields read as their defaults, `plain` as `downsample`; an ANN (ReLU) has
 * no LIF, so its T, θ, β and their options are not compared.
 */
export function netDifference(a: NetConfig, b: NetConfig): { field: string; a: string; b: string } | undefined {
  const view = (c: NetConfig): Record<string, unknown> => ({
    width: c.width,
    neuron: c.neuron,
    weights: c.weights,
    shortcuts: shortcutLayout(c),
    classes: c.classes,
    input: c.input.join('×'),
    ...(c.neuron === 'lif'
      ? {
          T: c.T,
          beta: c.beta,
          theta: c.theta,
          lif: c.lif ?? 'fixed',
          thetaInit: c.thetaInit ?? 'uniform',
          surrogate: c.surrogate ?? 'fixed',
        }
      : {}),
  });
  const [va, vb] = [view(a), view(b)];
  const key = Object.keys(va).find((k) => va[k] !== vb[k]);
  return key === undefined ? undefined : { field: key, a: String(va[key]), b: String(vb[key]) };
}

/** Whether the .bwsnn format holds the network's shortcuts: each spans one conv (adds the previous layer's current). */
export function exportable(cfg: NetConfig): boolean {
  return plan(cfg).every((l, i) => l.shortcut === 'none' || l.shortcutFrom === i - 1);
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
  const currents = [current];
  const layerRates = [tf.mean(act) as tf.Scalar];
  for (let i = 1; i < layers.length; i++) {
    const l = layers[i]!;
    let next = norm(conv2d(act, weightOf(i) as tf.Tensor4D, l.stride, l.pad, { spikes: spikeInput }), i);
    const sc = l.shortcut === 'none' ? undefined : shortcutCurrent(l.shortcut, currents[l.shortcutFrom]!, l.cout);
    if (sc) next = tf.add(next, sc);
    current = next;
    currents.push(current);
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
