/**
 * The training loop: seeded, checkpointed every epoch (and on interruption), resumable mid-epoch, reporting
 * progress through callbacks (the CLI draws the bar). One `fit` trains either the SNN student or the ANN teacher.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../runtime/errors.js';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import type { Augment, DataOptions, Dataset, Split } from './data/index.js';
import { epochOrder, makeBatch } from './data/index.js';
import { stream } from './data/random.js';
import type { NetConfig, NetParams } from './model.js';
import { forward, initParams, namedVariables } from './model.js';
import { disposeBnStatistics, RECALIBRATE_BATCHES, recalibrateBn, type RecalibrateOptions } from './recalibrate.js';
import type { LossOptions } from './recipe/loss.js';
import { GradientPool, type WorkerSetup } from './parallel/pool.js';
import type { Shard } from './parallel/shard.js';
import { applyShards, shardGradients, splitBatch } from './parallel/shard.js';

export interface TeacherSpec {
  /** `ann`: train the ANN twin first (same layout, ReLU, float weights); `onnx`: soft labels from an ONNX classifier. */
  readonly kind: 'ann' | 'onnx';
  /** Epochs of the ANN teacher. */
  readonly epochs?: number;
  readonly file?: string;
}

export interface TrainConfig {
  readonly net: NetConfig;
  readonly epochs: number;
  readonly batchSize: number;
  /** Peak learning rate (Adam), reached after `warmupEpochs`, then cosine decay to `lr * lrFinal`. */
  readonly lr: number;
  readonly lrFinal: number;
  readonly warmupEpochs: number;
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
  readonly history: EpochRecord[];
  /** Training wall time so far, seconds, across resumed runs. */
  readonly wallSeconds: number;
  readonly engine: string;
  /** The command line that started the run, for model cards. */
  readonly command?: string;
}

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

/** Learning rate at a fractional epoch: linear warmup, then cosine to lr * lrFinal. */
export function learningRate(cfg: TrainConfig, epochFloat: number): number {
  if (epochFloat < cfg.warmupEpochs) return cfg.lr * Math.max(0.05, epochFloat / cfg.warmupEpochs);
  const span = Math.max(1e-9, cfg.epochs - cfg.warmupEpochs);
  const p = Math.min(1, (epochFloat - cfg.warmupEpochs) / span);
  const lo = cfg.lr * cfg.lrFinal;
  return lo + 0.5 * (cfg.lr - lo) * (1 + Math.cos(Math.PI * p));
}

/** Predictions of the (unfolded, eval-mode) network on a split. */
export function predict(net: NetConfig, params: NetParams, split: Split, batchSize = 500): { predictions: Uint8Array; logits: Float32Array } {
  const predictions = new Uint8Array(split.count);
  const logits = new Float32Array(split.count * net.classes);
  for (let i = 0; i < split.count; i += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, split.count - i) }, (_, k) => i + k);
    const { x } = makeBatch(split, idx);
    tf.tidy(() => {
      const out = forward(net, params, tf.tensor4d(x, [idx.length, ...split.shape]), false);
      const mean = tf.mean(out.stepLogits, 0);
      logits.set(mean.dataSync() as Float32Array, i * net.classes);
      predictions.set(tf.argMax(mean, 1).dataSync() as Int32Array, i);
    });
  }
  return { predictions, logits };
}

export function accuracy(predictions: Uint8Array, labels: Uint8Array): number {
  let ok = 0;
  for (let i = 0; i < predictions.length; i++) if (predictions[i] === labels[i]) ok++;
  return ok / Math.max(1, predictions.length);
}

export function checkpointTensors(params: NetParams): Array<{ name: string; tensor: tf.Tensor }> {
  return namedVariables(params).map(({ name, v }) => ({ name: `param/${name}`, tensor: v }));
}

/** Loads a checkpoint's network parameters (config and state from its JSON). */
export function loadParams(dir: string, name = 'last', prefix = 'eval/'): { params: NetParams; state: RunState } {
  const ck = loadCheckpoint<RunState>(dir, name);
  const state = ck.meta;
  const net = state.role === 'teacher' ? teacherNet(state.config.net) : state.config.net;
  const params = initParams(net, state.config.seed, prefix);
  for (const { name: n, v } of namedVariables(params)) {
    const t = ck.tensors.get(`param/${n}`);
    if (!t) throw new ConfigError(`checkpoint ${dir}/${name}: tensor param/${n} missing`, 'checkpoint');
    v.assign(t);
  }
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
  readonly optimizer: tf.Optimizer;
  readonly frame: readonly [number, number, number];
  readonly loss: LossOptions;
  readonly pool?: GradientPool;
}

/**
 * One optimisation step on a batch of raw frames: forward over T steps, SEI loss (with the teacher's logits `soft`
 * when given), backward, Adam, then the BN running statistics. With a pool the batch is split into one shard per
 * core (trainer/parallel/). Returns [loss, correct predictions].
 */
export async function trainStep(ctx: StepContext, batch: Shard): Promise<[number, number]> {
  const { net, params, trainables, frame } = ctx;
  const shards = splitBatch(batch, frame[0] * frame[1] * frame[2], net.classes, 1 + (ctx.pool?.size ?? 0));
  const values = ctx.pool ? trainables.map((v) => (v.dataSync() as Float32Array).slice()) : [];
  const remote = ctx.pool ? ctx.pool.run(shards.slice(1), values) : Promise.resolve([]);
  const local = shardGradients(net, params, trainables, shards[0]!, frame, ctx.loss);
  return applyShards(ctx.optimizer, trainables, params.layers.map((l) => l.bn), [local, ...(await remote)]);
}

/** Worker threads for data-parallel steps: `threads` cores in all (this one included); undefined for one. */
export async function startPool(threads: number, engine: string, setup: WorkerSetup): Promise<GradientPool | undefined> {
  // Native TensorFlow already computes on every core.
  if (threads <= 1 || engine !== 'wasm') return undefined;
  return GradientPool.start(threads - 1, setup);
}

/** Validation accuracy with recalibrated BN statistics; `params` keeps its running averages (they are what training resumes from). */
function validate(net: NetConfig, params: NetParams, data: Dataset, recalibrate: RecalibrateOptions): number {
  const rec = recalibrateBn(net, params, data.train, recalibrate);
  try {
    return accuracy(predict(net, rec, data.val).predictions, data.val.labels);
  } finally {
    disposeBnStatistics(rec, params);
  }
}

/**
 * Trains one network (student or teacher) in `dir`, resuming from `dir/last` when `resume` is set.
 * `teacherLogits(idx, x)` supplies soft targets per batch for the student.
 */
export async function fit(
  role: 'student' | 'teacher',
  cfg: TrainConfig,
  data: Dataset,
  dir: string,
  opts: { resume: boolean; engine: string; hooks?: FitHooks; saveEvery?: number; command?: string; threads?: number; teacherLogits?: (idx: Uint32Array, x: tf.Tensor4D) => tf.Tensor2D },
): Promise<FitResult> {
  const net = role === 'teacher' ? teacherNet(cfg.net) : cfg.net;
  const epochs = role === 'teacher' ? (cfg.teacher?.epochs ?? cfg.epochs) : cfg.epochs;
  const runCfg: TrainConfig = role === 'teacher' ? { ...cfg, epochs, loss: { ...cfg.loss, kdWeight: 0, perStep: 0 } } : cfg;
  const hooks = opts.hooks ?? {};
  const params = initParams(net, cfg.seed, `${role}/`);
  const trainables = namedVariables(params).filter((v) => v.trainable).map((v) => v.v);
  const optimizer = tf.train.adam(cfg.lr);
  let state: RunState = { format: 'sei-checkpoint-1', role, config: runCfg, runConfig: cfg, epoch: 0, batchInEpoch: 0, history: [], wallSeconds: 0, engine: opts.engine, ...(opts.command ? { command: opts.command } : {}) };
  if (opts.resume && hasCheckpoint(dir, 'last')) {
    const ck = loadCheckpoint<RunState>(dir, 'last');
    for (const { name, v } of namedVariables(params)) {
      const t = ck.tensors.get(`param/${name}`);
      if (!t) throw new ConfigError(`checkpoint ${dir}: tensor param/${name} missing (different network?)`, 'resume');
      if (t.shape.join() !== v.shape.join()) throw new ConfigError(`checkpoint ${dir}: ${name} has shape [${t.shape}], expected [${v.shape}]`, 'resume');
      v.assign(t);
    }
    const opt = [...ck.tensors].filter(([n]) => n.startsWith('opt/')).map(([n, tensor]) => ({ name: n.slice(4), tensor }));
    if (opt.length) await optimizer.setWeights(opt);
    // The caller passes the resumed run's config (see resumeConfig in scripts/commands/train.ts). A new epoch budget
    // reshapes the rest of the learning-rate schedule; it cannot undo epochs already trained.
    const started = ck.meta.epoch + (ck.meta.batchInEpoch ? 1 : 0);
    if (epochs < started) throw new ConfigError(`--epochs: expected at least ${started} (the ${role} in ${dir} has started epoch ${started}), got ${epochs}`, '--epochs');
    state = { ...ck.meta, config: { ...runCfg, epochs }, runConfig: cfg };
    hooks.onInfo?.(`${role}: resumed from ${dir} at epoch ${state.epoch}${state.batchInEpoch ? ` + ${state.batchInEpoch} batches` : ''}`);
  }
  const total = state.config.epochs;
  const save = async (name: string) => {
    const opt = await optimizer.getWeights();
    saveCheckpoint(dir, name, state, [...checkpointTensors(params), ...opt.map((w) => ({ name: `opt/${w.name}`, tensor: w.tensor }))]);
  };
  const pool = await startPool(opts.threads ?? 1, opts.engine, { net, seed: cfg.seed, frame: data.train.shape, loss: runCfg.loss });
  if (pool) hooks.onInfo?.(`${role}: data-parallel over ${pool.size + 1} threads (one wasm backend each)`);
  const ctx: StepContext = { net, params, trainables, optimizer, frame: data.train.shape, loss: runCfg.loss, ...(pool ? { pool } : {}) };
  let interrupted = false;
  try {
    let bestVal = state.history.reduce((m, h) => Math.max(m, h.valAccuracy), -1);
    for (let epoch = state.epoch; epoch < total && !interrupted; epoch++) {
      const batches = epochOrder(data.train.count, cfg.batchSize, cfg.seed, epoch);
      const augRng = stream(cfg.seed, 'augment', epoch);
      const start = performance.now();
      const wallBase = state.wallSeconds;
      let seen = 0, lossSum = 0, correct = 0, done = 0;
      for (let b = 0; b < batches.length; b++) {
        const idx = batches[b]!;
        // Draw augmentation for skipped batches too, so a resumed epoch sees the same frames.
        const { x, y } = makeBatch(data.train, idx, runCfg.augment ?? undefined, augRng);
        if (b < state.batchInEpoch) continue;
        (optimizer as unknown as { learningRate: number }).learningRate = learningRate(state.config, epoch + b / batches.length);
        const teacher = role === 'student' ? opts.teacherLogits : undefined;
        const soft = teacher ? tf.tidy(() => (teacher(idx, tf.tensor4d(x, [idx.length, ...data.train.shape])).dataSync() as Float32Array).slice()) : undefined;
        const [lossV, okV] = await trainStep(ctx, { x, y, ...(soft ? { soft } : {}) });
        seen += idx.length;
        done++;
        lossSum += lossV;
        correct += okV;
        const secs = (performance.now() - start) / 1000;
        hooks.onBatch?.({ role, epoch, epochs: total, batch: b + 1, batches: batches.length, loss: lossSum / done, accuracy: correct / seen, imagesPerSecond: seen / secs });
        if (opts.saveEvery && (b + 1) % opts.saveEvery === 0 && b + 1 < batches.length) {
          state = { ...state, batchInEpoch: b + 1, wallSeconds: wallBase + secs };
          await save('last');
        }
        // Let signal handlers (Ctrl+C) run: the batch loop is otherwise synchronous and never yields.
        await new Promise((resolve) => setImmediate(resolve));
        if (hooks.shouldStop?.()) {
          interrupted = b + 1 < batches.length;
          if (interrupted) {
            state = { ...state, batchInEpoch: b + 1, wallSeconds: wallBase + secs };
            await save('last');
            hooks.onInfo?.(`${role}: interrupted; checkpoint saved to ${join(dir, 'last.json')} (epoch ${epoch} batch ${b + 1}); --resume continues`);
          }
          break;
        }
      }
      if (interrupted) break;
      const secs = (performance.now() - start) / 1000;
      const valAccuracy = data.val.count ? validate(net, params, data, { batches: cfg.valRecalibrate ?? RECALIBRATE_BATCHES, batchSize: cfg.batchSize, seed: cfg.seed }) : NaN;
      const record: EpochRecord = { epoch: epoch + 1, loss: lossSum / Math.max(1, done), trainAccuracy: correct / Math.max(1, seen), valAccuracy, seconds: secs, imagesPerSecond: seen / secs };
      state = { ...state, epoch: epoch + 1, batchInEpoch: 0, history: [...state.history, record], wallSeconds: wallBase + secs };
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
