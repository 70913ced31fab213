/**
 * The training loop: seeded, checkpointed every epoch (and on interruption), resumable mid-epoch, reporting
 * progress through callbacks (the CLI draws the bar). One `fit` trains either the SNN student or the ANN teacher.
 */
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../runtime/errors.js';
import { SOLO } from './parallel/collective.js';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import type { Augment, DataOptions, Dataset, Split } from './data/index.js';
import { epochOrder, makeBatch } from './data/index.js';
import { stream } from './data/random.js';
import type { NetConfig, NetParams } from './model.js';
import { initParams, namedVariables, netDifference } from './model.js';
import { constrainParams, ParamOptimizer, signSnapshot, signFlips } from './optimizer.js';
import {
  disposeBnStatistics,
  RECALIBRATE_BATCHES,
  type RecalibrateOptions,
  recalibrateBnOn,
  recalibration,
} from './recalibrate.js';
import type { Teacher } from './recipe/kd.js';
import { softTargets } from './recipe/kd.js';
import type { LossOptions } from './recipe/loss.js';
import { GradientPool, type WorkerSetup } from './parallel/pool.js';
import { evaluateBatches, evaluateOnPool, type PredictionBatch, variableValues } from './parallel/evaluate.js';
import type { Shard, ShardResult } from './parallel/shard.js';
import { applyShards, shardGradients, splitBatch } from './parallel/shard.js';

export interface TeacherSpec {
  /**
   * `ann`: train the ANN twin first (same layout, ReLU, float weights); `run`: the ANN teacher another run trained
   * (`dir`: its folder, or its `teacher/` folder); `onnx`: soft labels from an ONNX classifier.
   */
  readonly kind: 'ann' | 'onnx' | 'run';
  /** Epochs of the ANN teacher. */
  readonly epochs?: number;
  readonly file?: string;
  readonly dir?: string;
}

/**
 * One phase of a run's learning-rate schedule: linear warm-up from 5 % to `lr` over `warmupEpochs`, then cosine
 * decay to `lr * lrFinal` at the phase's end. A run starts with one phase; `sei train --resume --extend N` appends
 * another (its own warm-up). The schedule is fixed once a phase starts: resuming never reshapes it.
 */
export interface SchedulePhase {
  readonly startEpoch: number;
  readonly epochs: number;
  readonly lr: number;
  readonly lrFinal: number;
  readonly warmupEpochs: number;
}

export interface TrainConfig {
  readonly net: NetConfig;
  /** Epochs of the whole schedule (the sum of its phases). */
  readonly epochs: number;
  /** Frames per optimizer step. */
  readonly batchSize: number;
  /**
   * Frames per forward/backward pass (BN statistics are taken over each micro-batch, across threads); the gradients
   * of `batchSize / microBatch` micro-batches are averaged into one step. Absent: the whole batch at once.
   */
  readonly microBatch?: number;
  /** Peak learning rate (Adam), reached after `warmupEpochs`, then cosine decay to `lr * lrFinal`. */
  readonly lr: number;
  readonly lrFinal: number;
  readonly warmupEpochs: number;
  /**
   * Peak learning rate of the latent weights of the binary layers (same schedule shape, their own Adam; they are
   * clipped to [-1, 1] after every step, where the STE passes gradient). Absent: `lr`.
   */
  readonly latentLr?: number;
  /** The schedule's phases; absent in runs made before phases existed: one phase from the fields above. */
  readonly schedule?: readonly SchedulePhase[];
  /** Start the student from this checkpoint folder's parameters (two-stage training: FP-weight SNN, then binary). */
  readonly initFrom?: string;
  readonly seed: number;
  readonly data: DataOptions;
  /** null: no augmentation. */
  readonly augment: Augment | null;
  readonly loss: LossOptions;
  readonly teacher: TeacherSpec | null;
  /**
   * BN recalibration batches (of `batchSize` training frames) before each epoch's validation
   * (trainer/recalibrate.ts); 0 validates on the running averages. Absent in older runs: RECALIBRATE_BATCHES, the
   * same frames `sei export` recalibrates on by default, so `val` measures exactly the statistics it ships.
   */
  readonly valRecalibrate?: number;
}

export interface EpochRecord {
  readonly epoch: number;
  readonly loss: number;
  readonly trainAccuracy: number;
  readonly valAccuracy: number;
  readonly seconds: number;
  readonly imagesPerSecond: number;
  /** Learning rate at the epoch's end. */
  readonly lr?: number;
  /** Per binary layer: fraction of latent weights whose sign changed during the epoch. */
  readonly signFlips?: number[];
  /** Per layer: spike rate on the validation frames (recalibrated BN). */
  readonly spikeRates?: number[];
}

/** What a checkpoint's JSON holds besides the tensor directory. */
export interface RunState {
  readonly format: 'sei-checkpoint-1';
  readonly role: 'student' | 'teacher';
  readonly config: TrainConfig;
  /** The whole run's config (a teacher's `config` is its own variant of it); what `--resume` starts from. */
  readonly runConfig?: TrainConfig;
  /** Epochs fully done. */
  readonly epoch: number;
  /** Batches done in the epoch after `epoch` (non-zero only for an interrupted run). */
  readonly batchInEpoch: number;
  /** The tallies of those batches, so the epoch's record, once resumed, covers the whole epoch. */
  readonly partialEpoch?: PartialEpoch;
  readonly history: EpochRecord[];
  /** Training wall time so far, seconds, across resumed runs. */
  readonly wallSeconds: number;
  readonly engine: string;
  /** The command line that started the run, for model cards. */
  readonly command?: string;
}

/** An interrupted epoch's running sums, and the latent weights' signs at its start (for its sign flips). */
export interface PartialEpoch {
  readonly seen: number;
  readonly lossSum: number;
  readonly correct: number;
  /** Steps taken. */
  readonly done: number;
  /** Training seconds spent in the epoch so far. */
  readonly seconds: number;
  /** Per binary layer, the signs (1: w ≥ 0) at the epoch's start, bit-packed, base64. */
  readonly signs: string[];
}

const packSigns = (signs: readonly Uint8Array[]): string[] =>
  signs.map((s) => {
    const bits = new Uint8Array(Math.ceil(s.length / 8));
    s.forEach((v, j) => {
      if (v) bits[j >> 3]! |= 1 << (j & 7);
    });
    return Buffer.from(bits).toString('base64');
  });

const unpackSigns = (packed: readonly string[], like: readonly Uint8Array[]): Uint8Array[] =>
  like.map((s, k) => {
    const bits = Buffer.from(packed[k] ?? '', 'base64');
    return Uint8Array.from({ length: s.length }, (_, j) => ((bits[j >> 3] ?? 0) >> (j & 7)) & 1);
  });

export interface BatchEvent {
  readonly role: 'student' | 'teacher';
  readonly epoch: number;
  readonly epochs: number;
  readonly batch: number;
  readonly batches: number;
  readonly loss: number;
  readonly accuracy: number;
  readonly imagesPerSecond: number;
}

export interface FitHooks {
  onBatch?(e: BatchEvent): void;
  onEpoch?(role: 'student' | 'teacher', r: EpochRecord): void;
  onInfo?(line: string): void;
  /** Polled after every batch: true saves a checkpoint and returns. */
  shouldStop?(): boolean;
}

export interface FitResult {
  readonly params: NetParams;
  readonly state: RunState;
  readonly interrupted: boolean;
}

/** The run's schedule: its phases, or for older runs the one phase its fields describe. */
export function schedule(cfg: TrainConfig): readonly SchedulePhase[] {
  return (
    cfg.schedule ?? [
      { startEpoch: 0, epochs: cfg.epochs, lr: cfg.lr, lrFinal: cfg.lrFinal, warmupEpochs: cfg.warmupEpochs },
    ]
  );
}

/** `cfg` with a phase of `epochs` more epochs appended (peak `lr`, decay to `lr * lrFinal`, its own warm-up). */
export function extendSchedule(
  cfg: TrainConfig,
  epochs: number,
  phase: { lr: number; lrFinal: number; warmupEpochs: number },
): TrainConfig {
  const phases = schedule(cfg);
  return { ...cfg, epochs: cfg.epochs + epochs, schedule: [...phases, { startEpoch: cfg.epochs, epochs, ...phase }] };
}

/** Learning rate at a fractional epoch of the schedule (the `lr` scale of the phase it falls in). */
export function learningRate(cfg: TrainConfig, epochFloat: number): number {
  const phases = schedule(cfg);
  let ph = phases[0]!;
  for (const p of phases) if (epochFloat >= p.startEpoch) ph = p;
  const e = epochFloat - ph.startEpoch;
  if (e < ph.warmupEpochs) return ph.lr * Math.max(0.05, e / ph.warmupEpochs);
  const span = Math.max(1e-9, ph.epochs - ph.warmupEpochs);
  const q = Math.min(1, (e - ph.warmupEpochs) / span);
  const lo = ph.lr * ph.lrFinal;
  return lo + 0.5 * (ph.lr - lo) * (1 + Math.cos(Math.PI * q));
}

/** Phases must agree one for one (a resumed run may only add phases after them). */
function samePhases(a: readonly SchedulePhase[], b: readonly SchedulePhase[]): boolean {
  return a.every((p, i) => b[i] !== undefined && JSON.stringify(p) === JSON.stringify(b[i]));
}

export interface Predictions {
  readonly predictions: Uint8Array;
  /** Mean logits over the T steps, [count, classes]. */
  readonly logits: Float32Array;
  /** Per layer: the spike rate over the split's frames. */
  readonly spikeRates: number[];
}

/** Predictions of the (unfolded, eval-mode) network on a split, and each layer's spike rate over it. */
export function predict(net: NetConfig, params: NetParams, split: Split, batchSize = 500): Predictions {
  const { count, input } = predictionInput(split, batchSize);
  return gatherPredictions(net, params, split, evaluateBatches(net, params, split.shape, 'predict', count, input));
}

/**
 * `predict` with the batches spread over `pool` (trainer/parallel/evaluate.ts): each thread a contiguous run of
 * the same batches, gathered in order, so the same predictions, logits and spike rates bit for bit.
 */
export async function predictOn(
  pool: GradientPool | undefined,
  net: NetConfig,
  params: NetParams,
  split: Split,
  batchSize = 500,
): Promise<Predictions> {
  const { count, input } = predictionInput(split, batchSize);
  const batches = await evaluateOnPool(pool, net, params, split.shape, 'predict', count, input);
  return gatherPredictions(net, params, split, batches);
}

/** The split in consecutive batches of `batchSize` frames (the last one shorter). */
function predictionInput(split: Split, batchSize: number): { count: number; input: (b: number) => Float32Array } {
  return {
    count: Math.ceil(split.count / batchSize),
    input: (b) => {
      const start = b * batchSize;
      const idx = Array.from({ length: Math.min(batchSize, split.count - start) }, (_, k) => start + k);
      return makeBatch(split, idx).x;
    },
  };
}

/** The batches' results in order; spike rates are frame-weighted over the batches (summed in batch order). */
function gatherPredictions(net: NetConfig, params: NetParams, split: Split, batches: PredictionBatch[]): Predictions {
  const predictions = new Uint8Array(split.count);
  const logits = new Float32Array(split.count * net.classes);
  const rateSums = new Float64Array(params.layers.length);
  let at = 0;
  for (const b of batches) {
    predictions.set(b.predictions, at);
    logits.set(b.logits, at * net.classes);
    b.rateSums.forEach((r, l) => {
      rateSums[l]! += r;
    });
    at += b.predictions.length;
  }
  return { predictions, logits, spikeRates: Array.from(rateSums, (r) => r / Math.max(1, split.count)) };
}

export function accuracy(predictions: Uint8Array, labels: Uint8Array): number {
  let ok = 0;
  for (let i = 0; i < predictions.length; i++) if (predictions[i] === labels[i]) ok++;
  return ok / Math.max(1, predictions.length);
}

export function checkpointTensors(params: NetParams): Array<{ name: string; tensor: tf.Tensor }> {
  return namedVariables(params).map(({ name, v }) => ({ name: `param/${name}`, tensor: v }));
}

/** LIF parameters were constants before they became variables: a checkpoint without them keeps the config's. */
const OPTIONAL_PARAM = /\.(theta|lifBeta)$/;

/**
 * Copies a checkpoint's tensors into `params` by name; every shape must match. `what` names the checkpoint and
 * `field` the option in errors.
 */
function assignParams(params: NetParams, tensors: Map<string, tf.Tensor>, what: string, field: string): void {
  for (const { name, v } of namedVariables(params)) {
    const t = tensors.get(`param/${name}`);
    if (!t) {
      if (OPTIONAL_PARAM.test(name)) continue;
      throw new ConfigError(`${what}: tensor param/${name} missing (different network?)`, field);
    }
    if (t.shape.join() !== v.shape.join())
      throw new ConfigError(`${what}: ${name} has shape [${t.shape}], expected [${v.shape}]`, field);
    v.assign(t);
  }
}

/** Loads a checkpoint's network parameters (config and state from its JSON). */
export function loadParams(dir: string, name = 'last', prefix = 'eval/'): { params: NetParams; state: RunState } {
  const ck = loadCheckpoint<RunState>(dir, name);
  const state = ck.meta;
  const net = state.role === 'teacher' ? teacherNet(state.config.net) : state.config.net;
  const params = initParams(net, state.config.seed, prefix);
  assignParams(params, ck.tensors, `checkpoint ${dir}/${name}`, 'checkpoint');
  ck.tensors.forEach((t) => t.dispose());
  return { params, state };
}

/** The ANN twin of a student network: same layout, ReLU, float weights, one step. */
export function teacherNet(net: NetConfig): NetConfig {
  return { ...net, neuron: 'relu', weights: 'float', T: 1 };
}

/** What a training step needs besides the batch. `pool` (from `startPool`) computes shards on other cores. */
export interface StepContext {
  readonly net: NetConfig;
  readonly params: NetParams;
  readonly trainables: tf.Variable[];
  readonly optimizer: Pick<tf.Optimizer, 'applyGradients'>;
  readonly frame: readonly [number, number, number];
  readonly loss: LossOptions;
  readonly pool?: GradientPool;
  /** Frames per forward/backward pass (TrainConfig.microBatch); absent: the whole batch. */
  readonly microBatch?: number;
}

/**
 * One optimisation step on a batch of raw frames: forward over T steps, SEI loss (with the teacher's logits `soft`
 * when given), backward, Adam, the latent-weight constraints, then the BN running statistics. The batch is cut into
 * micro-batches (gradients accumulated), each split into one shard per core (trainer/parallel/) with batch norm
 * synchronised across the shards. Returns [loss, correct predictions].
 */
export async function trainStep(ctx: StepContext, batch: Shard): Promise<[number, number]> {
  const { net, params, trainables, frame, pool } = ctx;
  const frameSize = frame[0] * frame[1] * frame[2];
  const n = batch.y.length;
  const micro = splitBatch(batch, frameSize, net.classes, Math.ceil(n / Math.min(n, ctx.microBatch ?? n)));
  const values = pool ? trainables.map((v) => (v.dataSync() as Float32Array).slice()) : [];
  const results: ShardResult[][] = [];
  for (const part of micro) {
    const shards = splitBatch(part, frameSize, net.classes, 1 + (pool?.size ?? 0));
    pool?.group.reset(shards.length);
    const remote = pool ? pool.run(shards.slice(1), values) : Promise.resolve([]);
    let local: ShardResult;
    try {
      local = shardGradients(net, params, trainables, shards[0]!, frame, ctx.loss, pool ? pool.group.join(0) : SOLO);
    } catch (err) {
      await remote.catch(() => undefined);
      throw err;
    }
    results.push([local, ...(await remote)]);
  }
  const out = applyShards(
    ctx.optimizer,
    trainables,
    params.layers.map((l) => l.bn),
    results,
  );
  constrainParams(net, params);
  return out;
}

/**
 * Worker threads for data-parallel steps: `threads` cores in all (this one included); undefined for one. Each
 * worker's network starts as `params` (a step then sends only the trainable variables).
 */
export async function startPool(
  threads: number,
  engine: string,
  setup: WorkerSetup,
  params: NetParams,
): Promise<GradientPool | undefined> {
  // Native TensorFlow already computes on every core.
  if (threads <= 1 || engine !== 'wasm') return undefined;
  const pool = await GradientPool.start(threads - 1, setup);
  try {
    await pool.assign(variableValues(params));
  } catch (err) {
    await pool.close();
    throw err;
  }
  return pool;
}

/**
 * Validation accuracy and spike rates with recalibrated BN statistics, both spread over the step's `pool` (this
 * thread and its workers; the results are one thread's); `params` keeps its running averages (they are what
 * training resumes from).
 */
async function validate(
  pool: GradientPool | undefined,
  net: NetConfig,
  params: NetParams,
  data: Dataset,
  recalibrate: RecalibrateOptions,
): Promise<{ accuracy: number; spikeRates: number[] }> {
  const rec = await recalibrateBnOn(pool, net, params, data.train, recalibrate);
  try {
    const p = await predictOn(pool, net, rec, data.val);
    return { accuracy: accuracy(p.predictions, data.val.labels), spikeRates: p.spikeRates };
  } finally {
    disposeBnStatistics(rec, params);
  }
}

/**
 * Trains one network (student or teacher) in `dir`, resuming from `dir/last` when `resume` is set.
 * `teacher` supplies soft targets per batch for the student.
 */
export async function fit(
  role: 'student' | 'teacher',
  cfg: TrainConfig,
  data: Dataset,
  dir: string,
  opts: {
    resume: boolean;
    engine: string;
    hooks?: FitHooks;
    saveEvery?: number;
    command?: string;
    threads?: number;
    teacher?: Teacher;
  },
): Promise<FitResult> {
  const net = role === 'teacher' ? teacherNet(cfg.net) : cfg.net;
  const epochs = role === 'teacher' ? (cfg.teacher?.epochs ?? cfg.epochs) : cfg.epochs;
  // The teacher's own schedule: one phase over its epochs, no distillation, no latent weights.
  const { schedule: _studentSchedule, latentLr: _latent, initFrom: _init, ...shared } = cfg;
  const runCfg: TrainConfig =
    role === 'teacher'
      ? { ...shared, epochs, loss: { ...cfg.loss, kdWeight: 0, perStep: 0 } }
      : { ...cfg, schedule: schedule(cfg) };
  const hooks = opts.hooks ?? {};
  const params = initParams(net, cfg.seed, `${role}/`);
  const trainables = namedVariables(params)
    .filter((v) => v.trainable)
    .map((v) => v.v);
  const optimizer = new ParamOptimizer(net, params, runCfg.lr, runCfg.latentLr);
  let state: RunState = {
    format: 'sei-checkpoint-1',
    role,
    config: runCfg,
    runConfig: cfg,
    epoch: 0,
    batchInEpoch: 0,
    history: [],
    wallSeconds: 0,
    engine: opts.engine,
    ...(opts.command ? { command: opts.command } : {}),
  };
  if (opts.resume && hasCheckpoint(dir, 'last')) {
    const ck = loadCheckpoint<RunState>(dir, 'last');
    // Parameters of the same shapes load into another network too (another T, shortcut layout or neuron):
    // a run continues only as the network it started as.
    const storedNet = role === 'teacher' ? teacherNet(ck.meta.config.net) : ck.meta.config.net;
    const differs = netDifference(storedNet, net);
    if (differs)
      throw new ConfigError(
        `resume: the ${role} in ${dir} is another network (${differs.field} ${differs.a}; asked for ${differs.b}); pick another --out or the run's own flags`,
        'resume',
      );
    assignParams(params, ck.tensors, `checkpoint ${dir}`, 'resume');
    await optimizer.setWeights(ck.tensors);
    // The caller passes the resumed run's config (see resumeConfig in scripts/commands/train.ts). The schedule of a
    // run is fixed: only new phases may follow the stored ones (`--extend`).
    const stored = schedule(ck.meta.config);
    const wanted = role === 'teacher' ? stored : schedule(runCfg);
    if (!samePhases(stored, wanted) || (role === 'teacher' && epochs !== ck.meta.config.epochs)) {
      const flag = role === 'teacher' ? '--teacher-epochs' : '--epochs';
      throw new ConfigError(
        `${flag}: a run's schedule is fixed when it starts (the ${role} in ${dir} has ${ck.meta.config.epochs} epochs: ${JSON.stringify(stored)}); add epochs with --extend N`,
        flag,
      );
    }
    state = { ...ck.meta, config: role === 'teacher' ? ck.meta.config : runCfg, runConfig: cfg };
    hooks.onInfo?.(
      `${role}: resumed from ${dir} at epoch ${state.epoch}${state.batchInEpoch ? ` + ${state.batchInEpoch} batches` : ''}`,
    );
  } else if (role === 'student' && cfg.initFrom) {
    const ck = loadCheckpoint<RunState>(cfg.initFrom, hasCheckpoint(cfg.initFrom, 'best') ? 'best' : 'last');
    assignParams(params, ck.tensors, `--init-from ${cfg.initFrom}`, '--init-from');
    ck.tensors.forEach((t) => t.dispose());
    hooks.onInfo?.(
      `student: initialised from ${cfg.initFrom} (${ck.meta.config.net.weights} weights, ${ck.meta.epoch} epochs)`,
    );
  }
  const total = state.config.epochs;
  const save = async (name: string) => {
    saveCheckpoint(dir, name, state, [...checkpointTensors(params), ...(await optimizer.getWeights())]);
  };
  const teacher = role === 'student' ? opts.teacher : undefined;
  const pool = await startPool(
    opts.threads ?? 1,
    opts.engine,
    {
      net,
      seed: cfg.seed,
      frame: data.train.shape,
      loss: runCfg.loss,
      ...(teacher?.kind === 'network' ? { teacher: teacher.net } : {}),
    },
    params,
  );
  if (pool) hooks.onInfo?.(`${role}: data-parallel over ${pool.size + 1} threads (one wasm backend each)`);
  const ctx: StepContext = {
    net,
    params,
    trainables,
    optimizer,
    frame: data.train.shape,
    loss: runCfg.loss,
    ...(pool ? { pool } : {}),
    ...(cfg.microBatch ? { microBatch: cfg.microBatch } : {}),
  };
  let interrupted = false;
  try {
    let bestVal = state.history.reduce((m, h) => Math.max(m, h.valAccuracy), -1);
    for (let epoch = state.epoch; epoch < total && !interrupted; epoch++) {
      const batches = epochOrder(data.train.count, cfg.batchSize, cfg.seed, epoch);
      const augRng = stream(cfg.seed, 'augment', epoch);
      const start = performance.now();
      const wallBase = state.wallSeconds;
      // A resumed epoch carries on the tallies and the sign snapshot its first sitting saved.
      const partial = state.batchInEpoch ? state.partialEpoch : undefined;
      const now = signSnapshot(net, params);
      const signs = partial ? unpackSigns(partial.signs, now) : now;
      const packedSigns = partial?.signs ?? packSigns(signs);
      const secondsBefore = partial?.seconds ?? 0;
      let seen = partial?.seen ?? 0,
        lossSum = partial?.lossSum ?? 0,
        correct = partial?.correct ?? 0,
        done = partial?.done ?? 0;
      const pause = (b: number, secs: number): RunState => ({
        ...state,
        batchInEpoch: b + 1,
        partialEpoch: { seen, lossSum, correct, done, seconds: secondsBefore + secs, signs: packedSigns },
        wallSeconds: wallBase + secs,
      });
      for (let b = 0; b < batches.length; b++) {
        const idx = batches[b]!;
        // Draw augmentation for skipped batches too, so a resumed epoch sees the same frames.
        const { x, y } = makeBatch(data.train, idx, runCfg.augment ?? undefined, augRng);
        if (b < state.batchInEpoch) continue;
        optimizer.setLearningRate(learningRate(state.config, epoch + b / batches.length));
        const soft = teacher ? await softTargets(teacher, idx, x, data.train.shape, pool) : undefined;
        const [lossV, okV] = await trainStep(ctx, { x, y, ...(soft ? { soft } : {}) });
        seen += idx.length;
        done++;
        lossSum += lossV;
        correct += okV;
        const secs = (performance.now() - start) / 1000;
        hooks.onBatch?.({
          role,
          epoch,
          epochs: total,
          batch: b + 1,
          batches: batches.length,
          loss: lossSum / done,
          accuracy: correct / seen,
          imagesPerSecond: seen / (secondsBefore + secs),
        });
        if (opts.saveEvery && (b + 1) % opts.saveEvery === 0 && b + 1 < batches.length) {
          state = pause(b, secs);
          await save('last');
        }
        // Let signal handlers (Ctrl+C) run: the batch loop is otherwise synchronous and never yields.
        await new Promise((resolve) => setImmediate(resolve));
        if (hooks.shouldStop?.()) {
          interrupted = b + 1 < batches.length;
          if (interrupted) {
            state = pause(b, secs);
            await save('last');
            hooks.onInfo?.(
              `${role}: interrupted; checkpoint saved to ${join(dir, 'last.json')} (epoch ${epoch} batch ${b + 1}); --resume continues`,
            );
          }
          break;
        }
      }
      if (interrupted) break;
      const secs = (performance.now() - start) / 1000;
      const val = data.val.count
        ? await validate(pool, net, params, data, recalibration(cfg, cfg.valRecalibrate ?? RECALIBRATE_BATCHES))
        : undefined;
      const valAccuracy = val?.accuracy ?? NaN;
      const flips = signFlips(net, params, signs);
      const record: EpochRecord = {
        epoch: epoch + 1,
        loss: lossSum / Math.max(1, done),
        trainAccuracy: correct / Math.max(1, seen),
        valAccuracy,
        seconds: secondsBefore + secs,
        imagesPerSecond: seen / (secondsBefore + secs),
        lr: learningRate(state.config, epoch + 1 - 1e-9),
        ...(flips.length ? { signFlips: flips } : {}),
        ...(val && net.neuron === 'lif' ? { spikeRates: val.spikeRates } : {}),
      };
      const { partialEpoch: _, ...rest } = state;
      state = {
        ...rest,
        epoch: epoch + 1,
        batchInEpoch: 0,
        history: [...state.history, record],
        wallSeconds: wallBase + secs,
      };
      await save('last');
      if (valAccuracy > bestVal) {
        bestVal = valAccuracy;
        await save('best');
      }
      hooks.onEpoch?.(role, record);
      if (hooks.shouldStop?.()) interrupted = epoch + 1 < total;
    }
  } finally {
    await pool?.close();
  }
  optimizer.dispose();
  return { params, state, interrupted };
}
