/**
 * One fine-tuning run: re-estimate the layers' folded batch norms on the new frames (adapt.ts) → features → train
 * the head on part of the labelled frames → gate on the rest and on the reference frames → a new model version
 * recording its parent. Nothing here activates anything: the caller installs an accepted model through the same
 * activation, probation and rollback path as an OTA update.
 */
import { ConfigError } from '../../runtime/index.js';
import type { BwsnnModel, Head } from '../../runtime/index.js';
import { adaptSteps, affinesOf, homeModel, spread, statsSteps } from './adapt.js';
import { backboneId, featureEngine, featureSteps, joinRows, selectRows } from './features.js';
import type { FeatureCache } from '../store/types.js';
import type { FeatureEngine, FeatureSet, TrainingFrame } from './features.js';
import { decide, gateOptions, stratifiedSplit } from './gate.js';
import type { Comparison, GateDecision, GateOptions } from './gate.js';
import { accuracy, predict, toHead, trainSteps, TRAIN_DEFAULTS } from './head.js';
import type { TrainOptions } from './head.js';
import { runSteps } from './steps.js';

export type FineTuneProgress =
  | { readonly phase: 'adapt'; readonly done: number; readonly total: number }
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
   * check half, never trained on, that the gate judges; at least 250 frames of the rehearsal half are rehearsed (all
   * of it when smaller). 0 trains on labelled frames alone and checks on the whole reference set. Default 1.
   */
  readonly rehearsal?: number;
  /**
   * Re-estimate every layer's folded batch-norm affine on the labelled frames' pixels (labels unused) so that
   * its per-channel statistics match those of the reference frames (adapt.ts), before the head is trained on the
   * adapted backbone's features. Default true; false trains the head alone on the parent's backbone.
   */
  readonly adapt?: boolean;
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
   * When the affines were adapted: the reference check frames as they are (the original camera) through the parent
   * and through the candidate with its adapted affines. Reported, not gated.
   */
  readonly adaptation: { readonly referenceAsIs: Comparison } | null;
  /**
   * Wall time of each phase, milliseconds; `computed` frames were not in the cache. Reference features depend only
   * on the backbone, so a cache makes them free after the first run.
   */
  readonly timings: {
    readonly adaptMs: number;
    readonly labelledFeaturesMs: number;
    readonly referenceFeaturesMs: number;
    readonly trainMs: number;
    readonly gateMs: number;
    readonly computed: number;
  };
}

/**
 * Frames the candidate gets right and the parent wrong (fixed), and the reverse (broken): the same frames, each
 * model on its own backbone's features.
 */
function disagreements(
  parent: Head,
  parentSet: FeatureSet,
  candidate: Head,
  candidateSet: FeatureSet,
): { fixed: number; broken: number } {
  const a = predict(parent, parentSet);
  const b = predict(candidate, candidateSet);
  let fixed = 0;
  let broken = 0;
  for (let i = 0; i < parentSet.count; i++) {
    const label = parentSet.labels[i]!;
    if (a[i] !== label && b[i] === label) fixed++;
    if (a[i] === label && b[i] !== label) broken++;
  }
  return { fixed, broken };
}

/**
 * `backbone` (the parent, or the parent with adapted affines) with a new head and version, its parent recorded in
 * meta.
 */
export function childModel(
  backbone: BwsnnModel,
  head: Head,
  parentSha256: string,
  version: number,
  finetune: Record<string, unknown>,
): BwsnnModel {
  const { parent: _grandparent, finetune: _previous, ...meta } = backbone.meta;
  return {
    ...backbone,
    version,
    head,
    meta: { ...meta, parent: { name: backbone.name, version: backbone.version, sha256: parentSha256 }, finetune },
  };
}

/** Runs a fine-tuning request to the end in one go (blocking: about a second of CPU per few hundred frames). */
export function fineTune(request: FineTuneRequest): FineTuneResult {
  return runSteps(fineTuneSteps(request), (progress) => request.onProgress?.(progress));
}

/**
 * Runs a fine-tuning request, handing the event loop back every `sliceMs` of work (default 20) so that an agent
 * keeps serving MQTT, metrics and progress reports meanwhile. Phase timings then include the time given away.
 */
export async function fineTuneAsync(
  request: FineTuneRequest,
  options: { readonly sliceMs?: number } = {},
): Promise<FineTuneResult> {
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

/**
 * Frames the adaptation measures at most, evenly spaced: each costs a forward pass per layer. On the bundled
 * Fashion-MNIST model, more reference frames did not change the result; more new-camera frames helped up to 500.
 */
export const ADAPT_FRAMES = { reference: 250, labelled: 500 } as const;

/**
 * Reference frames rehearsed at least (when rehearsing at all): a head trained on 75 labelled frames against as
 * many reference frames drifted 3-6 points off the original distribution on the bundled model, and the gate
 * refused it; 250 held it within a point at no cost on the new camera.
 */
export const MIN_REHEARSED = 250;

/** Relays a generator that counts frames done as progress steps, and returns its result. */
function* relay<R>(
  steps: Generator<number, R>,
  progress: (done: number) => FineTuneProgress,
): Generator<FineTuneProgress, R> {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    yield progress(step.value);
  }
}

/** The run as a sequence of progress steps: one per frame measured or featurised, one per epoch, one for the gate. */
function* fineTuneSteps(request: FineTuneRequest): Generator<FineTuneProgress, FineTuneResult> {
  const { parent, frames, reference } = request;
  if (!/^[0-9a-f]{64}$/.test(request.parentSha256)) {
    throw new ConfigError(
      `parentSha256: expected 64 lowercase hex digits, got ${JSON.stringify(request.parentSha256)}`,
      'parentSha256',
    );
  }
  const version = request.version ?? parent.version + 1;
  if (!Number.isSafeInteger(version) || version <= parent.version) {
    throw new ConfigError(
      `version: expected an integer above the parent's ${parent.version}, got ${JSON.stringify(version)}`,
      'version',
    );
  }
  const gate = gateOptions(request.gate);
  const rehearsal = request.rehearsal ?? 1;
  if (!(Number.isFinite(rehearsal) && rehearsal >= 0))
    throw new ConfigError(`rehearsal: expected a number >= 0, got ${JSON.stringify(rehearsal)}`, 'rehearsal');
  const adapt = request.adapt ?? true;
  if (typeof adapt !== 'boolean')
    throw new ConfigError(`adapt: expected true or false, got ${JSON.stringify(adapt)}`, 'adapt');
  const trainOptions = { ...TRAIN_DEFAULTS, ...request.train };
  const classes = parent.head.outFeatures;
  const engine = request.features ?? featureEngine(parent);
  if (engine.backbone !== backboneId(parent))
    throw new ConfigError(
      'features: expected a feature engine built from the parent model, got one for another backbone',
      'features',
    );

  // The parent's features (cached per backbone): "before" on the labelled frames. The reference frames (rehearsal,
  // reference check) are the original camera: seen through the affines of the parent's lineage before any
  // adaptation, which for a lab model are its own.
  const kernel = engine.kernel === 'reference' ? { kernel: 'reference' as const } : {};
  const home = homeModel(parent);
  const homeEngine = home === parent ? engine : featureEngine(home, kernel);
  let t = performance.now();
  // The reference check half is floor(n / 2) frames (stratifiedSplit), all of them without rehearsal.
  const checkCount = rehearsal > 0 ? Math.floor(reference.length / 2) : reference.length;
  const total = frames.length + reference.length + (adapt ? frames.length + checkCount : 0);
  const parentLabelled = yield* relay(featureSteps(engine, classes, frames, request.cache), (done) => ({
    phase: 'features',
    done,
    total,
  }));
  let labelledFeaturesMs = performance.now() - t;
  t = performance.now();
  const ref = yield* relay(featureSteps(homeEngine, classes, reference, request.cache), (done) => ({
    phase: 'features',
    done: frames.length + done,
    total,
  }));
  let referenceFeaturesMs = performance.now() - t;

  // Adaptation, then the adapted backbone's features: the candidate's, on its new camera. Not cached: the
  // backbone is this run's own (its affines come from these frames).
  t = performance.now();
  let backbone = parent;
  let labelled = parentLabelled;
  if (adapt) {
    const layers = parent.hidden.length + 1;
    const [referenceSample, labelledSample] = [
      spread(reference, ADAPT_FRAMES.reference),
      spread(frames, ADAPT_FRAMES.labelled),
    ].map((set) => set.map((f) => f.data));
    const adaptTotal = referenceSample!.length + layers * labelledSample!.length;
    const referenceStats = yield* relay(statsSteps(home, referenceSample!, layers), (done) => ({
      phase: 'adapt',
      done,
      total: adaptTotal,
    }));
    backbone = yield* relay(adaptSteps(parent, labelledSample!, referenceStats), (done) => ({
      phase: 'adapt',
      done: referenceSample!.length + done,
      total: adaptTotal,
    }));
  }
  const adaptMs = performance.now() - t;
  const candidateEngine = adapt ? featureEngine(backbone, kernel) : engine;
  t = performance.now();
  if (adapt)
    labelled = yield* relay(featureSteps(candidateEngine, classes, frames), (done) => ({
      phase: 'features',
      done: frames.length + reference.length + done,
      total,
    }));
  labelledFeaturesMs += performance.now() - t;

  t = performance.now();
  const split = stratifiedSplit(labelled.labels, gate.holdoutFraction, gate.seed);
  const trainSet = selectRows(labelled, split.train);
  const holdoutSet = selectRows(labelled, split.holdout);
  const refSplit =
    rehearsal > 0
      ? stratifiedSplit(ref.labels, 0.5, gate.seed)
      : { train: [], holdout: Array.from({ length: ref.count }, (_, i) => i) };
  const checkSet = selectRows(ref, refSplit.holdout);
  const rehearsed = selectRows(
    ref,
    refSplit.train.slice(0, Math.max(Math.round(rehearsal * trainSet.count), rehearsal > 0 ? MIN_REHEARSED : 0)),
  );
  const training = trainSteps(parent.head, joinRows(trainSet, rehearsed), trainOptions);
  let epoch = training.next();
  for (; !epoch.done; epoch = training.next())
    yield { phase: 'train', epoch: epoch.value.epoch, epochs: trainOptions.epochs, loss: epoch.value.loss };
  const { params, losses } = epoch.value;
  const head = toHead(params);
  const trainMs = performance.now() - t;

  // The reference check judges the head on the parent's features of the original frames: the adapted affines
  // belong to the new camera, as the parent's belong to the old one. What this version does on the old camera
  // (the reference frames through the adapted affines) is reported, not gated: the way back is the parent.
  t = performance.now();
  const checkFrames = refSplit.holdout.map((i) => reference[i]!);
  const asIs = adapt
    ? yield* relay(featureSteps(candidateEngine, classes, checkFrames), (done) => ({
        phase: 'features',
        done: 2 * frames.length + reference.length + done,
        total,
      }))
    : checkSet;
  referenceFeaturesMs += performance.now() - t;
  t = performance.now();
  yield { phase: 'gate' };
  const compare = (parentSet: FeatureSet, candidateSet: FeatureSet) => ({
    frames: parentSet.count,
    before: accuracy(parent.head, parentSet),
    after: accuracy(head, candidateSet),
  });
  const holdout = {
    ...compare(selectRows(parentLabelled, split.holdout), holdoutSet),
    ...disagreements(parent.head, selectRows(parentLabelled, split.holdout), head, holdoutSet),
  };
  const decision = decide(
    compare(selectRows(parentLabelled, split.train), trainSet),
    holdout,
    compare(checkSet, checkSet),
    gate,
    frames.length,
  );
  const referenceAsIs = compare(checkSet, asIs);
  if (adapt)
    decision.reasons.push(
      `info: on the original camera (reference frames through the adapted affines) ${(100 * referenceAsIs.before).toFixed(1)}% -> ${(100 * referenceAsIs.after).toFixed(1)}%; not gated (the parent is the way back)`,
    );
  const gateMs = performance.now() - t;

  const candidate = childModel(backbone, head, request.parentSha256, version, {
    createdAt: (request.now ?? new Date()).toISOString(),
    accepted: decision.accepted,
    labelledFrames: frames.length,
    trainFrames: decision.train.frames,
    rehearsalFrames: rehearsed.count,
    holdout: {
      frames: decision.holdout.frames,
      before: decision.holdout.before,
      after: decision.holdout.after,
      pValue: decision.holdout.pValue,
    },
    reference: {
      frames: decision.reference.frames,
      before: decision.reference.before,
      after: decision.reference.after,
    },
    adapted: adapt
      ? {
          method: 'batch-norm re-estimation',
          layers: [parent.first, ...parent.hidden].map((l) => l.name),
          frames: frames.length,
          referenceFrames: reference.length,
          referenceAsIs,
        }
      : null,
    // The original camera's affines, handed down the lineage (homeModel): the lab's, whatever was adapted since.
    home: affinesOf(home),
    finalLoss: losses[losses.length - 1] ?? null,
    train: trainOptions,
    gate,
  });
  return {
    decision,
    model: decision.accepted ? candidate : null,
    candidate,
    adaptation: adapt ? { referenceAsIs } : null,
    timings: {
      adaptMs,
      labelledFeaturesMs,
      referenceFeaturesMs,
      trainMs,
      gateMs,
      computed: parentLabelled.computed + ref.computed + (adapt ? labelled.computed + asIs.count : 0),
    },
  };
}
