/**
 * `sei eval`: accuracy of a .bwsnn model through the runtime engine — what a device computes — on the
 * Fashion-MNIST test set (10k frames) or an image folder's frames (fitted to the model's input with its fit
 * policy, class folders matched to its labels by name), with per-class precision and recall and the confusion
 * matrix; `--markdown` writes them as tables, `--errors` sorts the misclassified frames into `true__predicted`
 * folders. `--compare` also runs the trainer's folded evaluation and reports the per-sample agreement.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { FASHION_MNIST_DIR, readMnistSplit } from '../../runtime/data/idx.js';
import { fitFrame, modelFit } from '../../runtime/data/fit.js';
import { ConfigError } from '../../runtime/errors.js';
import type { BwsnnModel } from '../../runtime/format/model.js';
import { loadModel } from '../../runtime/index.js';
import type { KernelChoice } from '../../runtime/index.js';
import type { Holdout, Split, Subset } from '../../trainer/data/index.js';
import { dataKind, folderFramesForModel, SUBSETS } from '../../trainer/data/index.js';
import type { Classification } from '../../trainer/data/metrics.js';
import { classificationMarkdown, classify, writeErrors } from '../../trainer/data/metrics.js';
import { choiceOption, fromFile, holdout, kernelOption, positiveInt, stepsOption } from '../options.js';
import { printJson } from '../output.js';

interface EvalFlags {
  model: string;
  data?: string;
  subset: Subset;
  run?: string;
  holdout?: Holdout;
  limit?: number;
  kernel: KernelChoice;
  steps?: number;
  compare?: boolean;
  markdown?: string;
  errors?: string;
  json?: boolean;
}

export interface EvalOptions {
  /** IDX folder (its t10k files) or image folder; default Debian's Fashion-MNIST. */
  readonly data?: string;
  /** Image folders: which frames (default `test`: the same hold-out `sei train` makes, or the folder's test/). */
  readonly subset?: Subset;
  /** Image folders: the split recorded in this run folder. */
  readonly run?: string;
  readonly holdout?: Holdout;
  readonly limit?: number;
  readonly kernel?: KernelChoice;
  /** Time steps per frame; default the model's T. */
  readonly steps?: number;
}

export interface EvalResult {
  readonly accuracy: number;
  readonly n: number;
  /** The time steps each frame ran for. */
  readonly T: number;
  /** The T the model's file states (what it was trained for). */
  readonly trainedT: number;
  readonly predictions: Uint8Array;
  /** The frames evaluated (labels are indices of the model's labels). */
  readonly frames: Split;
  readonly classification: Classification;
  /** What was evaluated, in words. */
  readonly source: string;
  readonly seconds: number;
  readonly kernel: string;
}

/** The IDX test files as frames of the model's input (fitted when their shape differs); `sei bench` reads them too. */
export function idxTestFrames(dir: string, model: BwsnnModel): Split {
  const t = readMnistSplit(dir, 't10k');
  const bad = t.labels.findIndex((l) => l >= model.labels.length);
  if (bad >= 0)
    throw new ConfigError(
      `--data: expected labels below the model's ${model.labels.length} classes, got ${t.labels[bad]} for test frame ${bad}`,
      '--data',
    );
  const to = model.input,
    size = to[0] * to[1] * to[2];
  const images = new Uint8Array(t.count * size);
  for (let i = 0; i < t.count; i++) images.set(fitFrame(t.frame(i), t.frameShape, to, modelFit(model)), i * size);
  return { count: t.count, shape: [to[0], to[1], to[2]], images, labels: t.labels };
}

export async function evalModel(file: string, opts: EvalOptions = {}): Promise<EvalResult> {
  const engine = await fromFile('--model', 'a .bwsnn model', file, () =>
    loadModel(file, { kernel: opts.kernel ?? 'auto', ...(opts.steps !== undefined ? { steps: opts.steps } : {}) }),
  );
  const model = engine.model;
  const dir = opts.data ?? FASHION_MNIST_DIR;
  const subset = opts.subset ?? 'test';
  let frames: Split;
  let source: string;
  if (dataKind(dir) === 'idx') {
    frames = idxTestFrames(dir, model);
    source = `the test files of ${dir}`;
  } else {
    const picked = await folderFramesForModel(
      dir,
      { input: model.input, labels: model.labels, fit: modelFit(model) },
      {
        subset,
        ...(opts.holdout ? { holdout: opts.holdout } : {}),
        ...(opts.run ? { run: opts.run } : {}),
      },
    );
    frames = picked.split;
    source = `${subset} frames of ${dir} (${picked.data.report.splitRule})`;
  }
  const n = Math.min(frames.count, opts.limit ?? frames.count);
  const size = frames.shape[0] * frames.shape[1] * frames.shape[2];
  const predictions = new Uint8Array(n);
  const t0 = performance.now();
  for (let i = 0; i < n; i++)
    predictions[i] = engine.infer(frames.images.subarray(i * size, (i + 1) * size)).prediction;
  const seconds = (performance.now() - t0) / 1000;
  const evaluated: Split =
    n === frames.count
      ? frames
      : {
          ...frames,
          count: n,
          images: frames.images.subarray(0, n * size),
          labels: frames.labels.subarray(0, n),
          ...(frames.files ? { files: frames.files.slice(0, n) } : {}),
        };
  const classification = classify(evaluated.labels, predictions, model.labels);
  return {
    accuracy: classification.accuracy,
    n,
    T: engine.steps,
    trainedT: model.T,
    predictions,
    frames: evaluated,
    classification,
    source,
    seconds,
    kernel: engine.kernel,
  };
}

const pct = (x: number | null) => (x === null ? '   –  ' : `${(100 * x).toFixed(1).padStart(5)}%`);

export function register(program: Command): void {
  program
    .command('eval')
    .description(
      'accuracy, per-class precision and recall and the confusion matrix of a .bwsnn model on the runtime engine',
    )
    .requiredOption('--model <file>', 'the .bwsnn model')
    .option(
      '--data <dir>',
      "an image folder (class folders named after the model's labels) or a Fashion-MNIST IDX folder (its test files); default /usr/share/datasets/fashion-mnist",
    )
    .addOption(
      choiceOption(
        '--subset <which>',
        "image folders: the frames to evaluate (test: the folder's test/, else the hold-out sei train makes; all: every frame)",
        SUBSETS,
        'test',
      ),
    )
    .option('--run <dir>', 'image folders: the split recorded by this training run (its split.json)')
    .option(
      '--holdout <val,test>',
      'image folders without val/ or test/: the hold-out fractions the model was trained with (default 0.1,0.1)',
      holdout('--holdout'),
    )
    .option('--limit <n>', 'first N frames only', positiveInt('--limit'))
    .addOption(kernelOption('runtime kernel'))
    .addOption(stepsOption())
    .option('--compare', "also run the trainer's folded evaluation and report per-sample agreement")
    .option('--markdown <file>', 'write the per-class table and the confusion matrix as Markdown')
    .option('--errors <dir>', 'copy every misclassified frame into <dir>/<true>__<predicted>/')
    .option('--json', 'print {"accuracy", "n", "T", "perClass", "confusion", ...} on the last line')
    .action(async (f: EvalFlags) => {
      if (f.compare && f.steps !== undefined)
        throw new ConfigError(
          `--compare: expected without --steps (the trainer's folded evaluation runs the model at its own T), got --steps ${f.steps}`,
          'compare',
        );
      const r = await evalModel(f.model, {
        subset: f.subset,
        kernel: f.kernel,
        ...(f.steps !== undefined ? { steps: f.steps } : {}),
        ...(f.data ? { data: f.data } : {}),
        ...(f.run ? { run: f.run } : {}),
        ...(f.holdout ? { holdout: f.holdout } : {}),
        ...(f.limit ? { limit: f.limit } : {}),
      });
      const c = r.classification;
      const out: Record<string, unknown> = {
        accuracy: r.accuracy,
        n: r.n,
        T: r.T,
        trainedT: r.trainedT,
        labels: c.labels,
        perClass: c.perClass,
        confusion: c.confusion,
        source: r.source,
      };
      const log = (line: string) => process.stderr.write(line + '\n');
      log(
        `${f.model}: ${(100 * r.accuracy).toFixed(2)}% on ${r.n} ${r.source} (runtime engine, ${r.kernel} kernel, T = ${r.T}${r.T === r.trainedT ? '' : `, trained for ${r.trainedT}`}, ${r.seconds.toFixed(1)} s)`,
      );
      const w = Math.max(5, ...c.labels.map((l) => l.length));
      log(`  ${'class'.padEnd(w)}  frames  precision  recall`);
      for (const m of c.perClass)
        log(
          `  ${m.label.padEnd(w)}  ${String(m.support).padStart(6)}  ${pct(m.precision).padStart(9)}  ${pct(m.recall).padStart(6)}`,
        );
      if (f.compare) {
        // The trainer (tfjs) is loaded only when asked: eval itself needs nothing but the runtime.
        const { compareWithTrainer } = await import('../../trainer/export/compare.js');
        const cmp = await compareWithTrainer(f.model, r.predictions, r.frames);
        log(
          `trainer folded evaluation ${(100 * cmp.trainerAccuracy).toFixed(2)}%; per-sample agreement ${(100 * cmp.agreement).toFixed(3)}%`,
        );
        Object.assign(out, cmp);
      }
      if (f.markdown) {
        writeFileSync(
          f.markdown,
          classificationMarkdown(c, `${f.model}: evaluation`, [
            `${r.source}; runtime engine, ${r.kernel} kernel, T = ${r.T}.`,
          ]),
        );
        out['markdown'] = f.markdown;
        log(`wrote ${f.markdown}`);
      }
      if (f.errors) {
        const frames = Array.from(r.predictions, (prediction, i) => {
          const file = r.frames.files?.[i];
          const size = r.frames.shape[0] * r.frames.shape[1] * r.frames.shape[2];
          return {
            truth: r.frames.labels[i]!,
            prediction,
            ...(file ? { file } : { name: `frame-${i}`, pixels: r.frames.images.subarray(i * size, (i + 1) * size) }),
          };
        });
        const counts = await writeErrors(f.errors, frames, c.labels, r.frames.shape);
        out['errors'] = { dir: f.errors, folders: counts };
        log(
          `copied ${Object.values(counts).reduce((a, b) => a + b, 0)} misclassified frames into ${Object.keys(counts).length} folders under ${f.errors}`,
        );
      }
      if (f.json) printJson(out);
    });
}
