/**
 * Head features: the last layer's spike rate per channel (spikes over space and T divided by H*W*T), exactly what
 * the engine's float head multiplies. The backbone is frozen during fine-tuning, so a frame's features are
 * computed once and cached under the backbone's fingerprint; a fine-tuned version (same backbone, new head) reuses
 * them.
 */
import { createHash } from 'node:crypto';
import { ConfigError, createEngine, FrameError } from '../../runtime/index.js';
import type { BwsnnModel, Frame, KernelChoice } from '../../runtime/index.js';
import type { FeatureCache } from '../store/types.js';
import { runSteps } from './steps.js';

/** One frame with its ground truth, as the operator labelled it. */
export interface TrainingFrame {
  /** Stable id of the frame (e.g. its store row); the feature cache key. */
  readonly id: string;
  /** HWC sensor values of the model's input shape. */
  readonly data: Frame;
  /** Class index into the model's labels. */
  readonly label: number;
}

/** Features of many frames as one row-major matrix with their labels. */
export interface FeatureSet {
  readonly count: number;
  /** Features per frame (the head's inFeatures). */
  readonly dim: number;
  /** count × dim, row-major. */
  readonly x: Float64Array;
  readonly labels: Int32Array;
}

/** Computes head features for a model's backbone. */
export interface FeatureEngine {
  /** backboneId() of the model: the cache namespace. */
  readonly backbone: string;
  /** Features per frame (the head's inFeatures). */
  readonly dim: number;
  readonly kernel: 'wasm' | 'reference';
  /** The head's input for one frame; throws FrameError on a bad frame. */
  features(frame: Frame): Float64Array;
}

/** The engine's own head input (InferResult.features): one plain inference per frame, no trace recording. */
export function featureEngine(model: BwsnnModel, options: { readonly kernel?: KernelChoice } = {}): FeatureEngine {
  const engine = createEngine(model, options.kernel ? { kernel: options.kernel } : {});
  return {
    backbone: backboneId(model),
    dim: model.head.inFeatures,
    kernel: engine.kernel,
    features: (frame: Frame): Float64Array => engine.infer(frame).features,
  };
}

/**
 * Fingerprint of everything that shapes the features: every field except the head, version and meta. Two models
 * with the same fingerprint produce the same features for every frame.
 */
export function backboneId(model: BwsnnModel): string {
  const hash = createHash('sha256');
  const add = (value: unknown): void => {
    if (ArrayBuffer.isView(value)) {
      hash.update(value.constructor.name);
      hash.update(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    } else if (Array.isArray(value)) {
      hash.update(`[${value.length}`);
      value.forEach(add);
    } else if (value !== null && typeof value === 'object') {
      for (const key of Object.keys(value).sort()) {
        hash.update(`{${key}`);
        add((value as Record<string, unknown>)[key]);
      }
    } else hash.update(JSON.stringify(value) ?? 'undefined');
  };
  add({ T: model.T, input: model.input, first: model.first, hidden: model.hidden });
  return hash.digest('hex');
}

export interface ExtractOptions {
  readonly cache?: FeatureCache;
  /** Called after each frame (for progress reports). */
  readonly onFrame?: (done: number, total: number) => void;
}

/** Features for labelled frames, from the cache where present, computed (and cached) otherwise. */
export function extractFeatures(
  engine: FeatureEngine,
  classes: number,
  frames: readonly TrainingFrame[],
  options: ExtractOptions = {},
): FeatureSet & { readonly computed: number } {
  return runSteps(featureSteps(engine, classes, frames, options.cache), (done) =>
    options.onFrame?.(done, frames.length),
  );
}

/** extractFeatures one frame at a time: yields the number of frames done, returns the set. */
export function* featureSteps(
  engine: FeatureEngine,
  classes: number,
  frames: readonly TrainingFrame[],
  cache?: FeatureCache,
): Generator<number, FeatureSet & { readonly computed: number }> {
  const { dim, backbone } = engine;
  const x = new Float64Array(frames.length * dim);
  const labels = new Int32Array(frames.length);
  let computed = 0;
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]!;
    if (!Number.isInteger(f.label) || f.label < 0 || f.label >= classes) {
      throw new FrameError(
        `frames[${i}].label: expected an integer class index 0..${classes - 1}, got ${JSON.stringify(f.label)}`,
        `frames[${i}].label`,
      );
    }
    let features = cache?.get(backbone, f.id);
    if (!features || features.length !== dim) {
      features = engine.features(f.data);
      cache?.set(backbone, f.id, features);
      computed++;
    }
    x.set(features, i * dim);
    labels[i] = f.label;
    yield i + 1;
  }
  return { count: frames.length, dim, x, labels, computed };
}

/** The rows of a feature set at `indices`, in that order. */
export function selectRows(set: FeatureSet, indices: readonly number[]): FeatureSet {
  const x = new Float64Array(indices.length * set.dim);
  const labels = new Int32Array(indices.length);
  indices.forEach((r, i) => {
    x.set(set.x.subarray(r * set.dim, (r + 1) * set.dim), i * set.dim);
    labels[i] = set.labels[r]!;
  });
  return { count: indices.length, dim: set.dim, x, labels };
}

/** The rows of `a` followed by those of `b`. */
export function joinRows(a: FeatureSet, b: FeatureSet): FeatureSet {
  if (a.dim !== b.dim)
    throw new ConfigError(`features: expected sets of equal width, got ${a.dim} and ${b.dim}`, 'features');
  const x = new Float64Array(a.x.length + b.x.length);
  x.set(a.x);
  x.set(b.x, a.x.length);
  const labels = new Int32Array(a.count + b.count);
  labels.set(a.labels);
  labels.set(b.labels, a.count);
  return { count: a.count + b.count, dim: a.dim, x, labels };
}
