/**
 * `sei finetune`: fine-tunes a model's float head offline on labelled frames (IDX), gated by a holdout and the
 * shipped reference frames; writes the new version when the gate accepts it.
 * `sei finetune-experiment`: simulated camera shifts on Fashion-MNIST; accuracy before the shift, after it, and
 * after fine-tuning on 100/250/500 labelled shifted frames, each run timed and its memory measured as a separate
 * `sei finetune` process (what a box would run). Writes the table that models/FINETUNE.md holds.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { bundledModel, sha256 } from '../../device-agent/index.js';
import {
  accuracy,
  ADAPT_FRAMES,
  applyShift,
  extractFeatures,
  featureEngine,
  fineTune,
  GATE_DEFAULTS,
  MIN_REHEARSED,
  SHIFTS,
  TRAIN_DEFAULTS,
  trainHead,
  toHead,
} from '../../device-agent/finetune/index.js';
import type {
  FeatureSet,
  FineTuneResult,
  GateOptions,
  Shift,
  TrainOptions,
  TrainingFrame,
} from '../../device-agent/finetune/index.js';
import {
  ConfigError,
  encodeIdx,
  FASHION_MNIST_DIR,
  FASHION_MNIST_LABELS,
  labelledFrames,
  readBwsnn,
  readIdx,
  readMnistSplit,
  SAMPLE_IMAGES,
  SAMPLE_LABELS,
  writeBwsnn,
} from '../../runtime/index.js';
import type { BwsnnModel, LabelledFrames } from '../../runtime/index.js';
import { FMNIST_BLOCKS, randomModel } from '../../runtime/format/random-model.js';
import { peakRssBytes } from '../bench/proc.js';
import { printJson, writeMarkedSection } from '../output.js';
import { fitFrame, modelFit } from '../../runtime/data/fit.js';
import { fromFile, int, list, num, positive, positiveInt } from '../options.js';

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));
const MB = 1024 * 1024;

/**
 * Reads IDX images + labels as training frames of the model's input shape; ids are `<name>#<index>`. IDX files
 * hold frames, taken as they are; `fit` (the shipped samples, pictures for any model) fits them to the model's
 * input with its fit policy.
 */
export function readTrainingFrames(
  images: string,
  labels: string,
  model: BwsnnModel,
  flag: string,
  name = flag.replace(/^--/, ''),
  fit = false,
): TrainingFrame[] {
  const idx = (path: string) => fromFile(flag, 'a readable IDX file', path, () => readIdx(path));
  const set: LabelledFrames = fromFile(flag, `IDX images with one label each in ${labels}`, images, () =>
    labelledFrames(idx(images), idx(labels)),
  );
  if (fit ? set.frameShape[2] !== 1 && set.frameShape[2] !== 3 : set.frameShape.join() !== model.input.join()) {
    throw new ConfigError(
      `${flag}: expected frames of shape [${model.input.join(', ')}] for model ${model.name}, got [${set.frameShape.join(', ')}] in ${images}`,
      flag.slice(2),
    );
  }
  const policy = modelFit(model);
  return Array.from({ length: set.count }, (_, i) => ({
    id: `${name}#${i}`,
    data: fitFrame(set.frame(i), set.frameShape, model.input, policy),
    label: set.labels[i]!,
  }));
}

/** Every picture of an image folder as training frames of the model (class folders matched to its labels); ids are the files. */
async function folderTrainingFrames(dir: string, model: BwsnnModel, flag: string): Promise<TrainingFrame[]> {
  // The image-folder reader (and its decoder, a server-side package) loads only for a folder.
  const { folderFramesForModel } = await import('../../trainer/data/index.js');
  const { split } = await folderFramesForModel(
    dir,
    { input: model.input, labels: model.labels, fit: modelFit(model) },
    { subset: 'all', flag },
  );
  const size = model.input[0] * model.input[1] * model.input[2];
  return Array.from({ length: split.count }, (_, i) => ({
    id: split.files![i]!,
    data: split.images.subarray(i * size, (i + 1) * size),
    label: split.labels[i]!,
  }));
}

export interface FinetuneFileOptions {
  readonly model: string;
  /** The labelled frames: IDX images and labels, or `data` (an image folder's, already read). */
  readonly frames?: string;
  readonly labels?: string;
  readonly data?: (model: BwsnnModel) => Promise<TrainingFrame[]>;
  /** The reference frames from an image folder, instead of `referenceFrames`/`referenceLabels`. */
  readonly referenceData?: (model: BwsnnModel) => Promise<TrainingFrame[]>;
  /** Default: the shipped samples (models/samples/). */
  readonly referenceFrames?: string;
  readonly referenceLabels?: string;
  readonly train?: Omit<TrainOptions, 'onEpoch'>;
  readonly gate?: GateOptions;
  readonly rehearsal?: number;
  /** Re-estimate the layers' batch-norm affines on the labelled frames first. Default true. */
  readonly adapt?: boolean;
}

export interface FinetuneFileReport {
  readonly result: FineTuneResult;
  readonly parent: { readonly name: string; readonly version: number; readonly sha256: string };
  readonly seconds: number;
  /** CPU time (user + system) of the run: wall time minus waiting for a busy machine's cores. */
  readonly cpuSeconds: number;
  /** RSS before the run (model and frames loaded), the process's peak RSS, and the difference (an upper bound of the run's extra memory). */
  readonly memory: { readonly baselineMB: number; readonly peakMB: number; readonly extraMB: number };
}

/** The offline fine-tuning run behind `sei finetune`. */
export async function finetuneFile(opts: FinetuneFileOptions): Promise<FinetuneFileReport> {
  const bytes = fromFile(
    '--model',
    'a readable .bwsnn file',
    opts.model,
    () => new Uint8Array(readFileSync(opts.model)),
  );
  const parent = fromFile('--model', 'a .bwsnn model', opts.model, () => readBwsnn(bytes));
  if (
    opts.data
      ? opts.frames !== undefined || opts.labels !== undefined
      : opts.frames === undefined || opts.labels === undefined
  ) {
    throw new ConfigError(
      '--frames: expected --frames with --labels (IDX), or --data (an image folder), got neither or both',
      'frames',
    );
  }
  const frames = opts.data
    ? await opts.data(parent)
    : readTrainingFrames(opts.frames!, opts.labels!, parent, '--frames', 'labelled');
  if ((opts.referenceFrames === undefined) !== (opts.referenceLabels === undefined)) {
    throw new ConfigError(
      '--reference-frames: expected together with --reference-labels, got only one of them',
      'reference-frames',
    );
  }
  if (opts.referenceData && opts.referenceFrames !== undefined)
    throw new ConfigError(
      '--reference-data: expected it or --reference-frames/--reference-labels, got both',
      'reference-data',
    );
  const reference = opts.referenceData
    ? await opts.referenceData(parent)
    : readTrainingFrames(
        opts.referenceFrames ?? SAMPLE_IMAGES,
        opts.referenceLabels ?? SAMPLE_LABELS,
        parent,
        '--reference-frames',
        'reference',
        opts.referenceFrames === undefined,
      );
  const outside = reference.find((r) => r.label >= parent.labels.length);
  if (outside) {
    throw new ConfigError(
      `--reference-frames: expected labels below model ${parent.name}'s ${parent.labels.length} classes, got ${outside.label} (${outside.id}); give the model's own frames with --reference-data DIR or --reference-frames/--reference-labels`,
      'reference-frames',
    );
  }
  const baseline = process.memoryUsage().rss;
  const started = performance.now();
  const cpu = process.cpuUsage();
  const result = fineTune({
    parent,
    parentSha256: sha256(bytes),
    frames,
    reference,
    ...(opts.train ? { train: opts.train } : {}),
    ...(opts.gate ? { gate: opts.gate } : {}),
    ...(opts.rehearsal !== undefined ? { rehearsal: opts.rehearsal } : {}),
    ...(opts.adapt !== undefined ? { adapt: opts.adapt } : {}),
  });
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const peak = peakRssBytes() ?? 0;
  return {
    result,
    parent: { name: parent.name, version: parent.version, sha256: sha256(bytes) },
    seconds,
    cpuSeconds: (used.user + used.system) / 1e6,
    memory: { baselineMB: baseline / MB, peakMB: peak / MB, extraMB: Math.max(0, peak - baseline) / MB },
  };
}

/**
 * A stand-in for a trained model: the seeded random Fashion-MNIST backbone with its head trained (by this
 * module's optimiser, no pull toward the random head) on clean training frames. Only for when no trained model
 * is bundled; its accuracy is far below a trained network's.
 */
export function standInModel(seed: number, trainFrames: number, data: LabelledFrames = trainSplit()): BwsnnModel {
  const backbone = randomModel({ seed, blocks: FMNIST_BLOCKS, firstChannels: 32 });
  const frames = Array.from({ length: trainFrames }, (_, i) => ({
    id: `train#${i}`,
    data: data.frame(i),
    label: data.labels[i]!,
  }));
  const set = extractFeatures(featureEngine(backbone), backbone.head.outFeatures, frames);
  const { params } = trainHead(backbone.head, set, { epochs: 100, learningRate: 0.03, decay: 0, seed });
  return {
    ...backbone,
    name: `standin-random${seed}`,
    labels: [...FASHION_MNIST_LABELS],
    head: toHead(params),
    meta: {
      producer: 'sei finetune-experiment (stand-in)',
      note: `random backbone seed ${seed}, head trained on ${trainFrames} Fashion-MNIST training frames`,
    },
  };
}

export interface ExperimentOptions {
  /** .bwsnn file; default the bundled model, else a stand-in. */
  readonly model?: string;
  /** Shifted frames evaluated per shift (never trained on). Default 2000. */
  readonly evalFrames?: number;
  readonly sizes?: readonly number[];
  readonly shifts?: readonly string[];
  readonly seed?: number;
  /**
   * Shifted training-split frames for the comparison head: the parent's head retrained on many shifted frames
   * (no rehearsal, no gate), a yardstick for what this backbone's features allow. 0 skips it. Default 3000.
   */
  readonly retrainFrames?: number;
  readonly onLine?: (line: string) => void;
}

export interface ExperimentRow {
  readonly shift: string;
  readonly labelled: number;
  readonly clean: number;
  readonly shifted: number;
  /** The retrained comparison head on the shifted evaluation frames (ExperimentOptions.retrainFrames); null when skipped. */
  readonly retrained: number | null;
  /** The candidate's adapted backbone under the parent's head, on the held-out shifted frames (the adaptation alone). */
  readonly adapted: number;
  /** The candidate (adapted backbone and retrained head) on the held-out shifted frames. */
  readonly finetuned: number;
  /** (finetuned - shifted) / (clean - shifted). */
  readonly recovered: number;
  readonly accepted: boolean;
  readonly reasons: string[];
  readonly holdout: { readonly before: number; readonly after: number; readonly pValue: number };
  readonly reference: { readonly before: number; readonly after: number };
  /** The reference check frames as they are (the original camera) through the candidate's adapted affines. */
  readonly referenceAsIs: number;
  /** Wall and CPU time of the whole `sei finetune` run (features of labelled and reference frames, training, gate). */
  readonly seconds: number;
  readonly cpuSeconds: number;
  /** Adaptation (reference statistics and the layer-by-layer re-estimation), features of the labelled frames, of the reference frames, and training, wall seconds. */
  readonly adaptSeconds: number;
  readonly labelledFeaturesSeconds: number;
  readonly referenceFeaturesSeconds: number;
  readonly trainSeconds: number;
  /** Frames whose features the run computed (none were cached). */
  readonly featurised: number;
  readonly extraMB: number;
}

export interface ExperimentReport {
  readonly model: {
    readonly name: string;
    readonly version: number;
    readonly T: number;
    readonly standIn: boolean;
    readonly path: string | null;
  };
  readonly evalFrames: number;
  readonly referenceFrames: number;
  readonly train: typeof TRAIN_DEFAULTS;
  readonly gate: typeof GATE_DEFAULTS;
  readonly clean: number;
  readonly retrainFrames: number;
  readonly rows: ExperimentRow[];
  readonly machine: {
    readonly cpu: string;
    readonly cores: number;
    readonly loadavg: number[];
    readonly node: string;
    readonly date: string;
  };
  readonly seconds: number;
}

// Test-set layout: frames 0..999 ship as the reference set (models/samples/), so the experiment draws from 1000 on.
const EVAL_FROM = 1000;

export async function finetuneExperiment(opts: ExperimentOptions = {}): Promise<ExperimentReport> {
  const started = performance.now();
  const line = opts.onLine ?? (() => {});
  const evalCount = opts.evalFrames ?? 2000;
  const sizes = opts.sizes ?? [100, 250, 500];
  const seed = opts.seed ?? 1;
  const retrainFrames = opts.retrainFrames ?? 3000;
  const shiftNames = opts.shifts ?? Object.keys(SHIFTS);
  for (const s of shiftNames)
    if (!(s in SHIFTS))
      throw new ConfigError(
        `--shifts: expected names from ${Object.keys(SHIFTS).join(', ')}, got ${JSON.stringify(s)}`,
        'shifts',
      );
  const test = readMnistSplit(FASHION_MNIST_DIR, 't10k');
  const poolFrom = EVAL_FROM + evalCount;
  const maxSize = Math.max(...sizes);
  if (poolFrom + maxSize > test.count)
    throw new ConfigError(
      `--eval: expected at most ${test.count - EVAL_FROM - maxSize} evaluation frames next to ${maxSize} labelled ones, got ${evalCount}`,
      'eval',
    );

  const dir = mkdtempSync(join(tmpdir(), 'sei-finetune-exp-'));
  try {
    const path = opts.model ?? bundledModel();
    let model: BwsnnModel;
    let modelPath: string;
    if (path) {
      model = fromFile('--model', 'a .bwsnn model', path, () => readBwsnn(new Uint8Array(readFileSync(path))));
      modelPath = path;
      line(`model ${model.name} v${model.version} (T=${model.T}) from ${path}`);
    } else {
      line(
        'no models/*.bwsnn bundled: building a stand-in (random backbone, head trained on 3000 clean training frames)',
      );
      model = standInModel(seed, 3000);
      modelPath = join(dir, 'standin.bwsnn');
      writeFileSync(modelPath, writeBwsnn(model));
    }
    const engine = featureEngine(model);
    const shape = model.input;
    const frameSize = shape[0] * shape[1] * shape[2];
    if (frameSize !== 28 * 28)
      throw new ConfigError(
        `--model: expected a 28×28×1 Fashion-MNIST model, got input [${shape.join(', ')}]`,
        'model',
      );
    const range = (from: number, n: number, shift?: Shift) =>
      Array.from({ length: n }, (_, i) => {
        const at = from + i;
        return {
          id: `t10k#${at}`,
          data: shift ? applyShift(shift, test.frame(at), shape, seed, at) : test.frame(at),
          label: test.labels[at]!,
        };
      });
    const evaluate = (frames: TrainingFrame[]): FeatureSet => extractFeatures(engine, model.head.outFeatures, frames);
    const clean = accuracy(model.head, evaluate(range(EVAL_FROM, evalCount)));
    line(`clean accuracy on test frames ${EVAL_FROM}..${EVAL_FROM + evalCount - 1}: ${pct(clean)}`);

    // The first process to load the sources compiles them; do that once outside the measured runs.
    await promisify(execFile)(process.execPath, ['--import', 'tsx', CLI, 'finetune', '--help']);
    const rows: ExperimentRow[] = [];
    for (const name of shiftNames) {
      const shift: Shift = SHIFTS[name as keyof typeof SHIFTS];
      const evalFrames = range(EVAL_FROM, evalCount, shift);
      const evalSet = evaluate(evalFrames);
      const shifted = accuracy(model.head, evalSet);
      const retrained = retrainFrames > 0 ? retrainedHead(engine, model, shift, retrainFrames, seed, evalSet) : null;
      const pool = range(poolFrom, maxSize, shift);
      for (const n of sizes) {
        const images = join(dir, `${name}-${n}-images.idx`);
        const labels = join(dir, `${name}-${n}-labels.idx`);
        const candidate = join(dir, `${name}-${n}.bwsnn`);
        const chosen = pool.slice(0, n);
        const pixels = new Uint8Array(n * frameSize);
        chosen.forEach((f, i) => pixels.set(f.data as Uint8Array, i * frameSize));
        writeFileSync(images, encodeIdx([n, shape[0], shape[1]], pixels));
        writeFileSync(
          labels,
          encodeIdx(
            [n],
            Uint8Array.from(chosen, (f) => f.label),
          ),
        );
        const run = await runFinetuneProcess([
          '--model',
          modelPath,
          '--frames',
          images,
          '--labels',
          labels,
          '--candidate',
          candidate,
        ]);
        // The candidate is a whole model (adapted affines and a new head): its own backbone's features.
        const child = readBwsnn(new Uint8Array(readFileSync(candidate)));
        const childSet = extractFeatures(featureEngine(child), model.head.outFeatures, evalFrames);
        const [adapted, finetuned] = [accuracy(model.head, childSet), accuracy(child.head, childSet)];
        const row: ExperimentRow = {
          shift: name,
          labelled: n,
          clean,
          shifted,
          retrained,
          adapted,
          finetuned,
          recovered: clean - shifted > 0 ? (finetuned - shifted) / (clean - shifted) : NaN,
          accepted: run.accepted,
          reasons: run.reasons,
          holdout: { before: run.holdout.before, after: run.holdout.after, pValue: run.holdout.pValue },
          reference: { before: run.reference.before, after: run.reference.after },
          referenceAsIs: run.adaptation?.referenceAsIs.after ?? run.reference.after,
          seconds: run.seconds,
          cpuSeconds: run.cpuSeconds,
          adaptSeconds: run.timings.adaptMs / 1000,
          labelledFeaturesSeconds: run.timings.labelledFeaturesMs / 1000,
          referenceFeaturesSeconds: run.timings.referenceFeaturesMs / 1000,
          trainSeconds: run.timings.trainMs / 1000,
          featurised: run.timings.computed,
          extraMB: run.memory.extraMB,
        };
        rows.push(row);
        line(formatRow(row));
      }
    }
    return {
      model: { name: model.name, version: model.version, T: model.T, standIn: path === null, path },
      evalFrames: evalCount,
      referenceFrames: 1000,
      train: TRAIN_DEFAULTS,
      gate: GATE_DEFAULTS,
      clean,
      retrainFrames,
      rows,
      machine: machine(),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// The comparison head trains on the training split from this frame on (the stand-in's head uses the first 3000).
const RETRAIN_FROM = 10_000;

function retrainedHead(
  engine: ReturnType<typeof featureEngine>,
  model: BwsnnModel,
  shift: Shift,
  count: number,
  seed: number,
  evalSet: FeatureSet,
): number {
  const train = trainSplit();
  const frames = Array.from({ length: count }, (_, i) => {
    const at = RETRAIN_FROM + i;
    return {
      id: `train#${at}`,
      data: applyShift(shift, train.frame(at), model.input, seed, at),
      label: train.labels[at]!,
    };
  });
  const set = extractFeatures(engine, model.head.outFeatures, frames);
  return accuracy(
    toHead(trainHead(model.head, set, { epochs: 100, learningRate: 0.03, decay: 0, seed }).params),
    evalSet,
  );
}

let trainData: LabelledFrames | undefined;
const trainSplit = () => (trainData ??= readMnistSplit(FASHION_MNIST_DIR, 'train'));

interface ChildReport {
  accepted: boolean;
  reasons: string[];
  holdout: { before: number; after: number; pValue: number };
  reference: { before: number; after: number };
  seconds: number;
  cpuSeconds: number;
  timings: {
    adaptMs: number;
    labelledFeaturesMs: number;
    referenceFeaturesMs: number;
    trainMs: number;
    gateMs: number;
    computed: number;
  };
  adaptation: { referenceAsIs: { before: number; after: number } } | null;
  memory: { extraMB: number };
}

/** Runs `sei finetune … --json` as its own process, so its time and peak memory are its own. */
async function runFinetuneProcess(args: string[]): Promise<ChildReport> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', CLI, 'finetune', ...args, '--json'],
    { maxBuffer: 16 * MB },
  );
  const last = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as ChildReport;
}

function machine(): ExperimentReport['machine'] {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const mhz = /cpu MHz\s*:\s*([\d.]+)/.exec(info)?.[1];
    cpu = `${/model name\s*:\s*(.*)/.exec(info)?.[1] ?? cpu}${mhz ? ` @ ${Math.round(Number(mhz))} MHz` : ''}`;
  } catch {
    // not Linux: os.cpus() names the CPU
  }
  return {
    cpu,
    cores: cpus().length,
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
    node: process.version,
    date: new Date().toISOString(),
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
/** Recovery is undefined when the shift cost nothing (clean <= shifted). */
const recovery = (x: number) => (Number.isFinite(x) ? pct(x) : '–');

function formatRow(r: ExperimentRow): string {
  return `${r.shift.padEnd(9)} n=${String(r.labelled).padEnd(4)} clean ${pct(r.clean)}  shifted ${pct(r.shifted)}  retrained ${r.retrained === null ? '-' : pct(r.retrained)}  adapted ${pct(r.adapted)}  fine-tuned ${pct(r.finetuned)}  recovered ${recovery(r.recovered)}  gate ${r.accepted ? 'accepted' : 'refused '}  ${r.seconds.toFixed(2)} s (${r.cpuSeconds.toFixed(2)} s CPU)  +${r.extraMB.toFixed(1)} MB`;
}

/** The table of models/FINETUNE.md. */
export function markdownTable(report: ExperimentReport): string {
  const head =
    '| shift | labelled frames | clean | shifted | head retrained on many shifted frames | adapted affines, parent head | fine-tuned | recovered | gate | holdout before → after (p) | reference before → after (gated) | reference as is, adapted affines | wall s (CPU s) | of which: adaptation + labelled features + reference features + training | extra RSS |';
  const rule = '|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|---:|';
  const rows = report.rows.map(
    (r) =>
      `| ${r.shift} | ${r.labelled} | ${pct(r.clean)} | ${pct(r.shifted)} | ${r.retrained === null ? '–' : pct(r.retrained)} | ${pct(r.adapted)} | ${pct(r.finetuned)} | ${recovery(r.recovered)} | ${r.accepted ? 'accepted' : 'refused'} | ${pct(r.holdout.before)} → ${pct(r.holdout.after)} (${r.holdout.pValue.toPrecision(1)}) | ${pct(r.reference.before)} → ${pct(r.reference.after)} | ${pct(r.referenceAsIs)} | ${r.seconds.toFixed(2)} (${r.cpuSeconds.toFixed(2)}) | ${r.adaptSeconds.toFixed(2)} + ${r.labelledFeaturesSeconds.toFixed(2)} + ${r.referenceFeaturesSeconds.toFixed(2)} + ${r.trainSeconds.toFixed(2)} | ${r.extraMB.toFixed(1)} MB |`,
  );
  return [head, rule, ...rows].join('\n');
}

const BEGIN = '<!-- finetune-table:begin (npm run finetune:exp rewrites this part) -->';
const END = '<!-- finetune-table:end -->';

/** The generated part of models/FINETUNE.md: what was run, where, and the table. */
export function tableSection(report: ExperimentReport): string {
  const m = report.model;
  const runs = report.rows.filter((r) => r.labelled === 500);
  const fps = runs.length
    ? runs.reduce((a, r) => a + r.featurised / (r.labelledFeaturesSeconds + r.referenceFeaturesSeconds), 0) /
      runs.length
    : NaN;
  return [
    BEGIN,
    `Generated ${report.machine.date} by \`npm run finetune:exp\` (\`sei finetune-experiment --markdown --write-table models/FINETUNE.md\`) in ${report.seconds.toFixed(0)} s.`,
    '',
    `- Model: **${m.name}** v${m.version}, T=${m.T}, ${m.standIn ? '**a stand-in** (random backbone, head trained on 3000 clean Fashion-MNIST training frames): not the bundled model' : `\`${m.path}\``}.`,
    `- Machine: ${report.machine.cpu}, ${report.machine.cores} cores (shared; load average at the end ${report.machine.loadavg.join(' ')}), Node ${report.machine.node}.`,
    `- Clean accuracy on test frames ${EVAL_FROM}..${EVAL_FROM + report.evalFrames - 1}: **${pct(report.clean)}**. Evaluation: the same ${report.evalFrames} frames shifted; never trained on.`,
    `- Each run is one \`sei finetune\` process, cold: statistics of ${Math.min(ADAPT_FRAMES.reference, report.referenceFrames)} of the ${report.referenceFrames} reference frames, every layer's affine re-estimated on the labelled frames (at most ${ADAPT_FRAMES.labelled}, one pass per layer), features (parent and adapted backbone on the labelled frames, parent on the reference frames, adapted on the reference check half), training, gate. Feature extraction in the 500-frame runs: ${fps.toFixed(0)} frames/s (wall clock on the shared machine).`,
    "- *adapted affines, parent head*: the candidate's backbone under the parent's head (the adaptation alone); *fine-tuned*: the candidate (adapted affines and retrained head); both on the shifted evaluation frames, whatever the gate said. *reference before → after (gated)*: the parent and the candidate's head on the reference check frames under the parent's affines; *as is, adapted affines*: the whole candidate on those frames as they are (the original camera; reported, not gated).",
    report.retrainFrames > 0
      ? `- Head retrained on many shifted frames: the parent's head retrained on ${report.retrainFrames} shifted training-split frames (no rehearsal, no gate; 100 epochs, step 0.03, no pull), on the same evaluation frames: a yardstick for what a new head on this backbone's features can reach.`
      : '- Retrained comparison head: not measured.',
    `- Training: ${JSON.stringify(report.train)}; gate: ${JSON.stringify(report.gate)}; rehearsal 1 (reference frames trained on per labelled training frame, at least ${MIN_REHEARSED}; the gate checks the other half).`,
    '',
    markdownTable(report),
    END,
  ].join('\n');
}

/** Replaces the generated section of `path` (or appends it when the markers are missing). */
export function writeTableSection(path: string, report: ExperimentReport): void {
  writeMarkedSection(path, BEGIN, END, tableSection(report));
}

export function register(program: Command): void {
  program
    .command('finetune')
    .description(
      "fine-tune a model's float head on labelled frames, gated by a holdout and the reference frames; writes the new version only when the gate accepts it",
    )
    .requiredOption('--model <file>', 'the parent .bwsnn model')
    .option('--frames <idx>', "labelled frames (IDX images of the model's input shape, gzip or not)")
    .option('--labels <idx>', 'their labels (IDX, one per frame)')
    .option(
      '--data <dir>',
      "instead of --frames/--labels: an image folder, class folders named after the model's labels (every picture)",
    )
    .option('--reference-frames <idx>', 'frames of the original distribution (default: the samples in models/samples/)')
    .option('--reference-labels <idx>', 'labels of --reference-frames')
    .option(
      '--reference-data <dir>',
      "instead of --reference-frames/--reference-labels: an image folder of the original distribution (e.g. the model's training pictures)",
    )
    .option('--out <file>', 'where to write the new version when the gate accepts it')
    .option('--candidate <file>', 'write the fine-tuned candidate here whatever the gate says (for inspection)')
    .option('--epochs <n>', `training passes (default ${TRAIN_DEFAULTS.epochs})`, positiveInt('--epochs'))
    .option('--lr <x>', `Adam step size (default ${TRAIN_DEFAULTS.learningRate})`, positive('--lr'))
    .option('--decay <x>', `L2 pull toward the parent head (default ${TRAIN_DEFAULTS.decay})`, num('--decay', 0))
    .option(
      '--rehearsal <ratio>',
      'reference frames trained on per labelled training frame; the gate checks the other half of the reference set (default 1; 0: none, the gate checks all of it)',
      num('--rehearsal', 0),
    )
    .option('--seed <n>', 'seed of the shuffle and the train/holdout split (default 1)', int('--seed'))
    .option(
      '--holdout <fraction>',
      `fraction of labelled frames held out (default ${GATE_DEFAULTS.holdoutFraction})`,
      num('--holdout'),
    )
    .option(
      '--min-gain <x>',
      `required holdout accuracy gain, absolute (default ${GATE_DEFAULTS.minGain})`,
      num('--min-gain'),
    )
    .option(
      '--max-reference-drop <x>',
      `allowed reference accuracy fall, absolute (default ${GATE_DEFAULTS.maxReferenceDrop})`,
      num('--max-reference-drop'),
    )
    .option(
      '--max-p-value <x>',
      `sign test on holdout frames fixed vs broken, 1 disables (default ${GATE_DEFAULTS.maxPValue})`,
      num('--max-p-value'),
    )
    .option(
      '--no-adapt',
      "train the head alone on the parent's backbone (default: first re-estimate every layer's batch-norm affine on the labelled frames)",
    )
    .option('--json', 'print the decision as one JSON object on the last line')
    .action(
      async (o: {
        model: string;
        frames?: string;
        labels?: string;
        data?: string;
        referenceData?: string;
        referenceFrames?: string;
        referenceLabels?: string;
        out?: string;
        candidate?: string;
        epochs?: number;
        lr?: number;
        decay?: number;
        rehearsal?: number;
        seed?: number;
        holdout?: number;
        minGain?: number;
        maxReferenceDrop?: number;
        maxPValue?: number;
        adapt: boolean;
        json?: boolean;
      }) => {
        const pick = <T extends object>(entries: Record<string, unknown>) =>
          Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== undefined)) as T;
        const report = await finetuneFile({
          model: o.model,
          ...pick<object>({ frames: o.frames, labels: o.labels }),
          ...(o.data ? { data: (m: BwsnnModel) => folderTrainingFrames(o.data!, m, '--data') } : {}),
          ...(o.referenceData
            ? { referenceData: (m: BwsnnModel) => folderTrainingFrames(o.referenceData!, m, '--reference-data') }
            : {}),
          ...pick<object>({
            referenceFrames: o.referenceFrames,
            referenceLabels: o.referenceLabels,
            rehearsal: o.rehearsal,
          }),
          adapt: o.adapt,
          train: pick<TrainOptions>({ epochs: o.epochs, learningRate: o.lr, decay: o.decay, seed: o.seed }),
          gate: pick<GateOptions>({
            holdoutFraction: o.holdout,
            minGain: o.minGain,
            maxReferenceDrop: o.maxReferenceDrop,
            maxPValue: o.maxPValue,
            seed: o.seed,
          }),
        });
        const { result } = report;
        const { decision, candidate } = result;
        if (o.candidate) writeFileSync(o.candidate, writeBwsnn(candidate));
        const written = decision.accepted && o.out ? o.out : null;
        if (written) writeFileSync(written, writeBwsnn(candidate));
        if (o.json) {
          printJson({
            accepted: decision.accepted,
            reasons: decision.reasons,
            train: decision.train,
            holdout: decision.holdout,
            reference: decision.reference,
            options: decision.options,
            adaptation: result.adaptation,
            parent: report.parent,
            version: candidate.version,
            written,
            seconds: report.seconds,
            cpuSeconds: report.cpuSeconds,
            timings: result.timings,
            memory: report.memory,
          });
          return;
        }
        console.log(
          `parent ${report.parent.name} v${report.parent.version} (sha256 ${report.parent.sha256.slice(0, 12)}…), candidate v${candidate.version}`,
        );
        for (const r of decision.reasons) console.log(`  ${r}`);
        console.log(
          `${decision.accepted ? 'ACCEPTED' : 'REFUSED'}${written ? `: wrote ${written}` : decision.accepted ? ' (no --out given, nothing written)' : ': nothing written'}`,
        );
        const t = result.timings;
        console.log(
          `${report.seconds.toFixed(2)} s wall, ${report.cpuSeconds.toFixed(2)} s CPU (adaptation ${(t.adaptMs / 1000).toFixed(2)} s, features ${((t.labelledFeaturesMs + t.referenceFeaturesMs) / 1000).toFixed(2)} s for ${t.computed} frames, training ${(t.trainMs / 1000).toFixed(2)} s), +${report.memory.extraMB.toFixed(1)} MB peak RSS`,
        );
      },
    );

  program
    .command('finetune-experiment')
    .description(
      'simulated camera shifts on Fashion-MNIST: accuracy before/after the shift and after fine-tuning on 100, 250 and 500 labelled shifted frames, with time and memory of each run',
    )
    .option(
      '--model <file>',
      'the model (default: the bundled models/*.bwsnn, else a stand-in built from a random backbone)',
    )
    .option('--eval <n>', 'shifted frames evaluated per shift, never trained on (default 2000)', positiveInt('--eval'))
    .option('--shifts <names>', `comma-separated subset of ${Object.keys(SHIFTS).join(', ')}`)
    .option('--sizes <list>', 'labelled-frame counts (default 100,250,500)', list('--sizes', int('--sizes', 2)))
    .option('--seed <n>', 'seed of the shifts (default 1)', int('--seed'))
    .option(
      '--retrain <n>',
      'shifted training frames for the comparison head retrained on them, 0 to skip (default 3000)',
      int('--retrain', 0),
    )
    .option('--markdown', 'also print the table as Markdown')
    .option(
      '--write-table <file>',
      'replace the generated table section of this Markdown file (e.g. models/FINETUNE.md)',
    )
    .option('--json', 'print the report as one JSON object on the last line')
    .action(
      async (o: {
        model?: string;
        eval?: number;
        shifts?: string;
        sizes?: number[];
        seed?: number;
        retrain?: number;
        markdown?: boolean;
        writeTable?: string;
        json?: boolean;
      }) => {
        const report = await finetuneExperiment({
          ...(o.model !== undefined ? { model: o.model } : {}),
          ...(o.eval !== undefined ? { evalFrames: o.eval } : {}),
          ...(o.shifts !== undefined ? { shifts: o.shifts.split(',') } : {}),
          ...(o.sizes ? { sizes: o.sizes } : {}),
          ...(o.seed !== undefined ? { seed: o.seed } : {}),
          ...(o.retrain !== undefined ? { retrainFrames: o.retrain } : {}),
          onLine: (l) => console.log(l),
        });
        if (o.markdown) console.log(`\n${markdownTable(report)}\n`);
        if (o.writeTable) {
          writeTableSection(o.writeTable, report);
          console.log(`wrote the table to ${o.writeTable}`);
        }
        console.log(
          `${report.rows.length} runs in ${report.seconds.toFixed(1)} s on ${report.machine.cpu} (load ${report.machine.loadavg.join(' ')})`,
        );
        if (o.json) printJson({ ...report });
      },
    );
}
