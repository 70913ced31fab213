/**
 * One fine-tuning run: features (cached) → train the head on part of the labelled frames → gate on the rest and
 * on the reference frames → a new model version recording its parent. Nothing here activates anything: the
 * caller installs an accepted model through the same activation, probation and rollback path as an OTA update.
 */
import { ConfigError } from '../../runtime/index.js';
import type { BwsnnModel, Head } from '../../runtime/index.js';
import { backboneId, featureEngine, featureSteps, joinRows, selectRows } from './features.js';
import type { FeatureCache, FeatureEngine, FeatureSet, TrainingFrame } from './features.js';
import { decide, gateOptions, stratifiedSplit } from './gate.js';
import type { GateDecision, GateOptions } from './gate.js';
import { accuracy, predict, toHead, trainSteps, TRAIN_DEFAULTS } from './head.js';
import type { TrainOptions } from './head.js';

export type FineTuneProgress =
  | { readonly phase: 'features'; readonly done: number; readonly total: number }
  | { readonly phase: 'train'; readonly epoch: number; readonly epochs: number; readonly loss: number }
  | { readonly phase: 'gate' };

export interface FineTuneRequest {
  /** The model to improve (the active one). */
  readonly parent: BwsnnModel;
  /** Computes features with the parent's backbone. Default featureEngine(parent); pass one to reuse it across runs. */
  readonly features?: FeatureEngine;
  /** SHA-256 (hex) of the parent's .bwsnn file, recorded in the new version's meta.parent. */
  readonly parentSha256: string;
  /** Frames labelled on site. */
  readonly frames: readonly TrainingFrame[];
  /** Frames of the original distribution that ship with the model (e.g. models/samples/). */
  readonly reference: readonly TrainingFrame[];
  /** Default: an in-memory cache for this run only. */
  readonly cache?: FeatureCache;
  readonly train?: Omit<TrainOptions, 'onEpoch'>;
  readonly gate?: GateOptions;
  /**
   * Reference frames mixed into training per labelled training frame (rehearsal, so that the head keeps working
   * on the original distribution). The reference set is then split in two: a rehearsal half trained on, and a
   * check half, never trained on, that the gate judges. 0 trains on labelled frames alone and checks on the whole
   * reference set. Default 1.
   */
  readonly rehearsal?: number;
  /** Version of the new model. Default parent version + 1. */
  readonly version?: number;
  /** Timestamp recorded in meta.finetune. Default now. */
  readonly now?: Date;
  readonly onProgress?: (progress: FineTuneProgress) => void;
}

export interface FineTuneResult {
  readonly decision: GateDecision;
  /** The new version when the gate accepted it, else null. */
  readonly model: BwsnnModel | null;
  /** The new version whatever the gate said (to inspect a refusal). */
  readonly candidate: BwsnnModel;
  /**
   * Wall time of each phase, milliseconds; `computed` frames were not in the cache. Reference features depend only
   * on the backbone, so a cache makes them free after the first run.
   */
  readonly timings: { readonly labelledFeaturesMs: number; readonly referenceFeaturesMs: number; readonly trainMs: number; readonly gateMs: number; readonly computed: number };
}

/** Frames the candidate gets right and the parent wrong (fixed), and the reverse (broken). */
function disagreements(parent: Head, candidate: Head, set: FeatureSet): { fixed: number; broken: number } {
  const a = predict(parent, set);
  const b = predict(candidate, set);
  let fixed = 0;
  let broken = 0;
  for (let i = 0; i < set.count; i++) {
    const label = set.labels[i]!;
    if (a[i] !== label && b[i] === label) fixed++;
    if (a[i] === label && b[i] !== label) broken++;
  }
  return { fixed, broken };
}

/** The parent model with a new head and version, its parent recorded in meta. */
export function childModel(parent: BwsnnModel, head: Head, parentSha256: string, version: number, finetune: Record<string, unknown>): BwsnnModel {
  const { parent: _grandparent, finetune: _previous, ...meta } = parent.meta;
  return { ...parent, version, head, meta: { ...meta, parent: { name: parent.name, version: parent.version, sha256: parentSha256 }, finetune } };
}

/** Runs a fine-tuning request to the end in one go (blocking: about a second of CPU per few hundred frames). */
export function fineTune(request: FineTuneRequest): FineTuneResult {
  const steps = fineTuneSteps(request);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    request.onProgress?.(step.value);
  }
}

/**
 * Runs a fine-tuning request, handing the event loop back every `sliceMs` of work (default 20) so that an agent
 * keeps serving MQTT, metrics and progress reports meanwhile. Phase timings then include the time given away.
 */
export async function fineTuneAsync(request: FineTuneRequest, options: { readonly sliceMs?: number } = {}): Promise<FineTuneResult> {
  const sliceMs = options.sliceMs ?? 20;
  const steps = fineTuneSteps(request);
  let since = performance.now();
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    request.onProgress?.(step.value);
    if (performance.now() - since >= sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      since = performance.now();
    }
  }
}

/** The run as a sequence of progress steps: one per frame, one per epoch, one for the gate. */
function* fineTuneSteps(request: FineTuneRequest): Generator<FineTuneProgress, FineTuneResult> {
  const { parent, frames, reference } = request;
  if (!/^[0-9a-f]{64}$/.test(request.parentSha256)) {
    throw new ConfigError(`parentSha256: expected 64 lowercase hex digits, got ${JSON.stringify(request.parentSha256)}`, 'parentSha256');
  }
  const version = request.version ?? parent.version + 1;
  if (!Number.isSafeInteger(version) || version <= parent.version) {
    throw new ConfigError(`version: expected an integer above the parent's ${parent.version}, got ${JSON.stringify(version)}`, 'version');
  }
  const gate = gateOptions(request.gate);
  const rehearsal = request.rehearsal ?? 1;
  if (!(Number.isFinite(rehearsal) && rehearsal >= 0)) throw new ConfigError(`rehearsal: expected a number >= 0, got ${JSON.stringify(rehearsal)}`, 'rehearsal');
  const trainOptions = { ...TRAIN_DEFAULTS, ...request.train };

  let t = performance.now();
  const engine = request.features ?? featureEngine(parent);
  if (engine.backbone !== backboneId(parent)) throw new ConfigError('features: expected a feature engine built from the parent model, got one for another backbone', 'features');
  const total = frames.length + reference.length;
  const classes = parent.head.outFeatures;
  const labelledSteps = featureSteps(engine, classes, frames, request.cache);
  let step = labelledSteps.next();
  for (; !step.done; step = labelledSteps.next()) yield { phase: 'features', done: step.value, total };
  const labelled = step.value;
  const labelledFeaturesMs = performance.now() - t;
  t = performance.now();
  const referenceSteps = featureSteps(engine, classes, reference, request.cache);
  step = referenceSteps.next();
  for (; !step.done; step = referenceSteps.next()) yield { phase: 'features', done: frames.length + step.value, total };
  const ref = step.value;
  const referenceFeaturesMs = performance.now() - t;

  t = performance.now();
  const split = stratifiedSplit(labelled.labels, gate.holdoutFraction, gate.seed);
  const trainSet = selectRows(labelled, split.train);
  const holdoutSet = selectRows(labelled, split.holdout);
  const refSplit = rehearsal > 0 ? stratifiedSplit(ref.labels, 0.5, gate.seed) : { train: [], holdout: Array.from({ length: ref.count }, (_, i) => i) };
  const checkSet = selectRows(ref, refSplit.holdout);
  const rehearsed = selectRows(ref, refSplit.train.slice(0, Math.round(rehearsal * trainSet.count)));
  const training = trainSteps(parent.head, joinRows(trainSet, rehearsed), trainOptions);
  let epoch = training.next();
  for (; !epoch.done; epoch = training.next()) yield { phase: 'train', epoch: epoch.value.epoch, epochs: trainOptions.epochs, loss: epoch.value.loss };
  const { params, losses } = epoch.value;
  const head = toHead(params);
  const trainMs = performance.now() - t;

  t = performance.now();
  yield { phase: 'gate' };
  const compare = (set: typeof trainSet) => ({ frames: set.count, before: accuracy(parent.head, set), after: accuracy(head, set) });
  const decision = decide(compare(trainSet), { ...compare(holdoutSet), ...disagreements(parent.head, head, holdoutSet) }, compare(checkSet), gate, frames.length);
  const gateMs = performance.now() - t;

  const candidate = childModel(parent, head, request.parentSha256, version, {
    createdAt: (request.now ?? new Date()).toISOString(),
    accepted: decision.accepted,
    labelledFrames: frames.length,
    trainFrames: decision.train.frames,
    rehearsalFrames: rehearsed.count,
    holdout: { frames: decision.holdout.frames, before: decision.holdout.before, after: decision.holdout.after, pValue: decision.holdout.pValue },
    reference: { frames: decision.reference.frames, before: decision.reference.before, after: decision.reference.after },
    finalLoss: losses[losses.length - 1] ?? null,
    train: trainOptions,
    gate,
  });
  return { decision, model: decision.accepted ? candidate : null, candidate, timings: { labelledFeaturesMs, referenceFeaturesMs, trainMs, gateMs, computed: labelled.computed + ref.computed } };
}
