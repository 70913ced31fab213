/**
 * Covariate-shift adaptation of the folded batch norms (AdaBN). Every layer's current is
 * `scale_c * acc + bias_c (+ shortcut)`, where `scale_c * acc + bias_c` is what the layer's batch norm normalised in
 * training, with statistics over all steps and positions. A new camera changes those statistics (an exposure change
 * is an affine change of the first layer's accumulator), so the layer's neurons no longer see what they were trained
 * on. Re-estimating the affine so that each channel's mean and standard deviation on the new frames match those of
 * the frames that ship with the model undoes that, layer by layer from the first (each layer is measured on the
 * output of the layers already adapted). It needs no labels and no gradients: forward passes and per-channel sums.
 * Thresholds stay: a per-channel affine of the current already moves each neuron relative to its threshold.
 */
import { ConfigError, createEngine, layerChannels, show } from '../../runtime/index.js';
import type { BwsnnModel, Frame, HiddenLayer } from '../../runtime/index.js';
import { runSteps } from './steps.js';

/** Per-channel statistics of one layer's own affine part `scale_c * acc + bias_c`, over frames, steps, positions. */
export interface ChannelStats {
  readonly mean: Float64Array;
  readonly std: Float64Array;
}

/**
 * Added to both variances (currents are in threshold units, thresholds about 1): a channel that barely moves on
 * either camera keeps about its scale instead of being blown up.
 */
const EPSILON = 1e-5;

/**
 * At most `count` of `frames`, evenly spaced. Channel statistics settle long before the frames run out (even the
 * last layer's 7×7 map gives 98 values per channel and frame at T=2), and every frame measured costs a forward pass
 * per layer.
 */
export function spread<T>(frames: readonly T[], count: number): T[] {
  if (frames.length <= count) return [...frames];
  return Array.from({ length: count }, (_, i) => frames[Math.floor((i * frames.length) / count)]!);
}

/** The model's first `count` layers under a throwaway head: a forward pass stops where the statistics are needed. */
function prefix(model: BwsnnModel, count: number): BwsnnModel {
  const hidden = model.hidden.slice(0, count - 1);
  const channels = layerChannels(hidden[hidden.length - 1] ?? model.first);
  return {
    ...model,
    hidden,
    labels: ['probe'],
    head: { inFeatures: channels, outFeatures: 1, weight: new Float32Array(channels), bias: new Float32Array(1) },
  };
}

/**
 * Statistics of layers `from`..`count - 1` (0 = the first layer) on `frames`, one frame per step of the generator
 * (so a caller can hand the event loop back). The layers' own part is the recorded current minus the recorded
 * shortcut.
 */
export function* statsSteps(
  model: BwsnnModel,
  frames: readonly Frame[],
  count: number,
  from = 0,
): Generator<number, ChannelStats[]> {
  if (frames.length === 0)
    throw new ConfigError('frames: expected at least one frame to measure the layer statistics on, got none', 'frames');
  const engine = createEngine(prefix(model, count));
  const layers = [model.first, ...model.hidden].slice(from, count);
  const sums = layers.map((l) => ({
    s: new Float64Array(layerChannels(l)),
    q: new Float64Array(layerChannels(l)),
    n: 0,
  }));
  for (let f = 0; f < frames.length; f++) {
    const trace = engine.infer(frames[f]!, { record: true }).trace!.slice(from);
    trace.forEach(({ currents, shortcut }, i) => {
      const { s, q } = sums[i]!;
      const channels = s.length;
      for (let u = 0; u < currents.length; u++) {
        const x = currents[u]! - (shortcut ? shortcut[u]! : 0);
        s[u % channels]! += x;
        q[u % channels]! += x * x;
      }
      sums[i]!.n += currents.length / channels;
    });
    yield f + 1;
  }
  return sums.map(({ s, q, n }) => {
    const mean = s.map((x) => x / n);
    return { mean, std: q.map((x, c) => Math.sqrt(Math.max(0, x / n - mean[c]! ** 2))) };
  });
}

/** Runs statsSteps to the end: the statistics of every layer. */
export function layerStats(model: BwsnnModel, frames: readonly Frame[]): ChannelStats[] {
  return runSteps(statsSteps(model, frames, model.hidden.length + 1));
}

/**
 * The affine `a * x + d` per channel that maps statistics `from` onto `to`, folded into a layer's scale and bias
 * (float32, as the format stores them).
 */
export function matchedAffine(
  layer: { readonly scale: Float32Array; readonly bias: Float32Array },
  from: ChannelStats,
  to: ChannelStats,
): { scale: Float32Array; bias: Float32Array } {
  const scale = new Float32Array(layer.scale.length);
  const bias = new Float32Array(layer.bias.length);
  for (let c = 0; c < scale.length; c++) {
    const a = Math.sqrt((to.std[c]! ** 2 + EPSILON) / (from.std[c]! ** 2 + EPSILON));
    const d = to.mean[c]! - a * from.mean[c]!;
    scale[c] = a * layer.scale[c]!;
    bias[c] = a * layer.bias[c]! + d;
  }
  return { scale, bias };
}

/** The model with layer `index` (0 = the first layer) given a new scale and bias. */
export function withAffine(
  model: BwsnnModel,
  index: number,
  affine: { scale: Float32Array; bias: Float32Array },
): BwsnnModel {
  if (index === 0) return { ...model, first: { ...model.first, ...affine } };
  const hidden = model.hidden.map((l, h) => (h === index - 1 ? ({ ...l, ...affine } as HiddenLayer) : l));
  return { ...model, hidden };
}

/**
 * Adapts every layer's affine, first to last, so that its statistics on `frames` (the new camera; labels are not
 * needed) match `reference` (layerStats of the same model on frames of the original distribution). Yields the
 * frames measured so far (each layer measures every frame once); returns the adapted model (same weights,
 * thresholds, head, version and meta).
 */
export function* adaptSteps(
  model: BwsnnModel,
  frames: readonly Frame[],
  reference: readonly ChannelStats[],
): Generator<number, BwsnnModel> {
  const layers = model.hidden.length + 1;
  if (reference.length !== layers)
    throw new ConfigError(`reference: expected statistics of ${layers} layers, got ${reference.length}`, 'reference');
  let adapted = model;
  for (let i = 0; i < layers; i++) {
    const steps = statsSteps(adapted, frames, i + 1, i);
    let step = steps.next();
    for (; !step.done; step = steps.next()) yield i * frames.length + step.value;
    const layer = i === 0 ? adapted.first : adapted.hidden[i - 1]!;
    adapted = withAffine(adapted, i, matchedAffine(layer, step.value[0]!, reference[i]!));
  }
  return adapted;
}

/** Runs adaptSteps to the end. */
export function adaptAffines(
  model: BwsnnModel,
  frames: readonly Frame[],
  reference: readonly ChannelStats[],
): BwsnnModel {
  return runSteps(adaptSteps(model, frames, reference));
}

/** One layer's affine as JSON: what a version records of the affines its lineage started from. */
export interface AffineRecord {
  readonly scale: number[];
  readonly bias: number[];
}

/** Every layer's affine (first layer first), exactly: float32 values survive JSON as doubles. */
export function affinesOf(model: BwsnnModel): AffineRecord[] {
  return [model.first, ...model.hidden].map((l) => ({ scale: Array.from(l.scale), bias: Array.from(l.bias) }));
}

/**
 * The model with the affines of the original camera: the model itself unless it is a fine-tuned version, which
 * records in `meta.finetune.home` the affines its lineage started from (the lab's). Reference frames are the
 * original camera, so they are measured through these; a second adaptation then aims at the lab's statistics, not
 * at those of an earlier camera.
 */
export function homeModel(model: BwsnnModel): BwsnnModel {
  const home = (model.meta.finetune as { home?: unknown } | undefined)?.home;
  if (home === undefined) return model;
  const layers = [model.first, ...model.hidden];
  const fits = (a: unknown, channels: number) => {
    const r = a as Partial<AffineRecord> | null;
    return (
      Array.isArray(r?.scale) &&
      Array.isArray(r?.bias) &&
      r.scale.length === channels &&
      r.bias.length === channels &&
      [...r.scale, ...r.bias].every((x) => typeof x === 'number' && Number.isFinite(x))
    );
  };
  if (
    !Array.isArray(home) ||
    home.length !== layers.length ||
    !home.every((a, i) => fits(a, layerChannels(layers[i]!)))
  ) {
    throw new ConfigError(
      `meta.finetune.home: expected ${layers.length} layers of finite {scale, bias} per channel, got ${show(home)}`,
      'meta.finetune.home',
    );
  }
  return (home as AffineRecord[]).reduce(
    (m, a, i) => withAffine(m, i, { scale: Float32Array.from(a.scale), bias: Float32Array.from(a.bias) }),
    model,
  );
}
