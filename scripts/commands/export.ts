/**
 * `sei export`: folds a training checkpoint (BN, alpha, input scaling, int8 quantisation) into a .bwsnn model,
 * measures it on the test set with the folded arithmetic (the trainer's own test accuracy of what ships), and
 * optionally writes the ONNX float twin.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import { writeBwsnn } from '../../runtime/format/index.js';
import type { BwsnnModel } from '../../runtime/format/model.js';
import { describeBackend, initBackend } from '../../trainer/backend/index.js';
import { loadData } from '../../trainer/data/index.js';
import type { LoadedData, Split } from '../../trainer/data/index.js';
import { foldModel } from '../../trainer/export/bwsnn.js';
import { evaluateFolded } from '../../trainer/export/evaluate.js';
import { snnTwinOnnx } from '../../trainer/export/onnx.js';
import { modelCard } from '../../trainer/export/card.js';
import type { CardBaseline } from '../../trainer/export/card.js';
import { createEngine } from '../../runtime/index.js';
import { hasCheckpoint, loadCheckpointMeta } from '../../trainer/checkpoint.js';
import type { RunState } from '../../trainer/train.js';
import { disposeParams, shortcutLayout } from '../../trainer/model.js';
import { scoreNetwork } from '../../trainer/score.js';
import { ConfigError } from '../../runtime/errors.js';
import { distilledCheckpoint, teacherCheckpoint } from '../../trainer/run.js';
import { accuracy, loadParams, predict, schedule } from '../../trainer/train.js';
import { RECALIBRATE_BATCHES, recalibrateBn, recalibration } from '../../trainer/recalibrate.js';
import { choiceOption, int, list } from '../options.js';
import { printJson } from '../output.js';

interface ExportFlags {
  checkpoint: string;
  which: 'last' | 'best';
  out: string;
  onnx?: string;
  name?: string;
  version: number;
  data?: string;
  evaluate: boolean;
  recalibrate: number;
  card?: string;
  trainCommand?: string;
  notes?: string;
  baseline?: string[];
  json?: boolean;
}

/** The card's words for an image-folder run: the folder, its classes, the test frames and how they were fitted. */
function folderCard(data: LoadedData, test: Split): { name: string; test: string } {
  const classes = data.labels.length <= 12 ? `: ${data.labels.join(', ')}` : '';
  return {
    name: `the image folder ${data.dir} (${data.labels.length} classes${classes})`,
    test: `${test.count} test frames of the run's split, fitted to ${data.input.join('×')} by ${data.fit}`,
  };
}

export function register(program: Command): void {
  program
    .command('export')
    .description('fold a training checkpoint into a .bwsnn model (and its ONNX twin)')
    .requiredOption('--checkpoint <dir>', 'run folder written by `sei train --out`')
    .addOption(choiceOption('--which <name>', 'checkpoint: last or best (validation)', ['last', 'best'], 'last'))
    .requiredOption('--out <file>', 'the .bwsnn to write, e.g. models/fmnist-sei-t2.bwsnn')
    .option('--onnx <file>', 'also write the unrolled float SNN twin (ONNX)')
    .option('--name <name>', 'model name (default: the file name without .bwsnn)')
    .option('--version <n>', 'model version (OTA refuses downgrades)', int('--version', 0), 1)
    .option(
      '--data <dir>',
      "the run's data folder, when it is no longer where the run found it (an image folder: the frames its split.json names)",
    )
    .option('--no-evaluate', 'skip the test-set evaluation')
    .option(
      '--recalibrate <batches>',
      `BN recalibration: training batches (of the run's micro-batch, else its batch: what batch norm saw at once) whose population statistics replace the running averages; 0 keeps the running averages`,
      int('--recalibrate', 0),
      RECALIBRATE_BATCHES,
    )
    .option('--card <file>', 'write a model card (markdown; runs the runtime engine on the test set too)')
    .option('--train-command <text>', 'training command for the card (default: the one stored in the checkpoint)')
    .option('--notes <text>', 'a notes paragraph for the card')
    .option(
      '--baseline <runs>',
      "run folders to score beside the model in the card (comma-separated): an FP-weight twin, an ANN, another recipe; the run's teacher is always one",
      list('--baseline', (v) => v),
    )
    .option('--json', 'print a JSON summary on the last line')
    .action(async (f: ExportFlags) => {
      // A baseline that is not a run is refused before any work.
      const baselineDirs = (f.baseline ?? []).map(baselineDir);
      const backend = await initBackend();
      process.stderr.write(describeBackend(backend) + '\n');
      const { params: trained, state } = loadParams(f.checkpoint, f.which);
      const net = state.config.net;
      // The run's own splits (same validation hold-out), so recalibration sees only training frames.
      const data = await loadData(
        { ...state.config.data, ...(f.data ? { dir: f.data } : {}) },
        { run: f.checkpoint, reuse: true },
      );
      const t0 = performance.now();
      const rec = recalibration(state.config, f.recalibrate);
      const params = recalibrateBn(net, trained, data.train, rec);
      if (f.recalibrate > 0)
        process.stderr.write(
          `BN recalibrated on ${f.recalibrate} batches of ${rec.batchSize} training frames (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`,
        );
      const name = f.name ?? basename(f.out).replace(/\.bwsnn$/, '');
      const summary: Record<string, unknown> = {
        out: f.out,
        name,
        T: net.T,
        epochs: state.epoch,
        batchInEpoch: state.batchInEpoch,
        trainWallSeconds: state.wallSeconds,
        recalibrateBatches: f.recalibrate,
      };
      // A short provenance: the recipe (the run's whole config) goes into the model card, not into every file.
      const meta: Record<string, unknown> = {
        producer: 'sei-edge trainer',
        epochs: state.epoch + state.batchInEpoch / Math.max(1, Math.floor(data.train.count / state.config.batchSize)),
        trainWallSeconds: Math.round(state.wallSeconds),
        engine: state.engine,
        bnRecalibration: f.recalibrate > 0 ? { batches: f.recalibrate, batchSize: rec.batchSize } : 'running averages',
      };
      // The fit policy rides in the header: the box fits its camera's pictures as training fitted these (modelFit).
      let model: BwsnnModel = {
        ...foldModel(net, params, { name, version: f.version, labels: data.labels, meta }),
        fit: data.fit,
      };
      let folded: Uint8Array | undefined;
      let test: Split | undefined;
      if (f.evaluate || f.card) {
        test = data.test;
        folded = evaluateFolded(model, test).predictions;
        // The fold is checked at float32 against the unfolded network; what the compact storage (float16 vectors,
        // q8 head) then changes is measured on its own.
        const exact = evaluateFolded(
          foldModel(net, params, { name, labels: data.labels }, 'float32'),
          test,
        ).predictions;
        const unfolded = predict(net, params, test).predictions;
        const agreement = (a: Uint8Array, b: Uint8Array) =>
          a.reduce((n, p, i) => n + (p === b[i] ? 1 : 0), 0) / test!.count;
        const agree = agreement(exact, unfolded) * test.count;
        const acc = accuracy(folded, test.labels);
        Object.assign(summary, {
          testAccuracy: acc,
          n: test.count,
          unfoldedTestAccuracy: accuracy(unfolded, test.labels),
          foldedVsUnfoldedAgreement: agree / test.count,
          float32TestAccuracy: accuracy(exact, test.labels),
          compactVsFloat32Agreement: agreement(folded, exact),
        });
        model = { ...model, meta: { ...model.meta, testAccuracy: acc, testFrames: test.count } };
        process.stderr.write(
          `test accuracy (folded, runtime arithmetic) ${(100 * acc).toFixed(2)}%; unfolded network ${(100 * (summary['unfoldedTestAccuracy'] as number)).toFixed(2)}%; ` +
            `fold agreement (float32) ${((100 * agree) / test.count).toFixed(2)}%; compact storage vs float32 ${(100 * (summary['compactVsFloat32Agreement'] as number)).toFixed(2)}% of predictions, accuracy ${(100 * (summary['float32TestAccuracy'] as number)).toFixed(2)}% at float32\n`,
        );
      }
      // The card's baselines are scored before anything is written: one that cannot compare refuses the export.
      const teacher = f.card ? teacherRecord(f.checkpoint, state) : undefined;
      const baselines: CardBaseline[] = [];
      if (f.card && test) {
        const dirs = [...new Set([...(teacher ? [teacher.dir] : []), ...baselineDirs])];
        // The teacher as the student distilled from it; any other run at the end of its schedule, as the model is.
        for (const dir of dirs)
          baselines.push(
            await scoreBaseline(dir, dir === teacher?.dir ? distilledCheckpoint(dir) : 'last', data, f.recalibrate),
          );
        for (const b of baselines)
          process.stderr.write(`baseline ${b.name} (${b.dir}): ${(100 * b.testAccuracy).toFixed(2)}%\n`);
        summary['baselines'] = baselines.map((b) => ({ name: b.name, dir: b.dir, testAccuracy: b.testAccuracy }));
      }
      const bytes = writeBwsnn(model);
      mkdirSync(dirname(f.out), { recursive: true });
      writeFileSync(f.out, bytes);
      summary['bytes'] = statSync(f.out).size;
      process.stderr.write(`wrote ${f.out} (${bytes.length} bytes)\n`);
      if (f.onnx) {
        const onnx = snnTwinOnnx(model);
        writeFileSync(f.onnx, onnx);
        summary['onnx'] = f.onnx;
        process.stderr.write(`wrote ${f.onnx} (${onnx.length} bytes)\n`);
      }
      if (f.card && folded && test) {
        // The card's headline number is the runtime engine's, on the file just written.
        const engine = createEngine(model);
        let correct = 0,
          agree = 0;
        const rates = new Float64Array(model.hidden.length + 1);
        const frameSize = model.input[0] * model.input[1] * model.input[2];
        for (let i = 0; i < test.count; i++) {
          const r = engine.infer(test.images.subarray(i * frameSize, (i + 1) * frameSize));
          if (r.prediction === test.labels[i]) correct++;
          if (r.prediction === folded[i]) agree++;
          r.spikeRates.forEach((x, l) => {
            rates[l]! += x / test!.count;
          });
        }
        const command = f.trainCommand ?? state.command ?? '(not recorded)';
        writeFileSync(
          f.card,
          modelCard(model, {
            file: f.out,
            bytes: summary['bytes'] as number,
            engineAccuracy: correct / test.count,
            trainerAccuracy: summary['testAccuracy'] as number,
            agreement: agree / test.count,
            testFrames: test.count,
            epochs: meta['epochs'] as number,
            wallSeconds: state.wallSeconds,
            trainEngine: state.engine,
            command,
            ...(data.kind === 'image-folder' ? { dataset: folderCard(data, test) } : {}),
            recipe: state.config,
            ...(f.notes ? { notes: f.notes } : {}),
            schedule: schedule(state.config),
            history: state.history,
            engineSpikeRates: Array.from(rates),
            ...(teacher ? { teacherHistory: teacher.history, teacherFrom: teacher.dir } : {}),
            baselines,
          }),
        );
        Object.assign(summary, {
          engineAccuracy: correct / test.count,
          engineVsTrainerAgreement: agree / test.count,
          card: f.card,
        });
        process.stderr.write(
          `runtime engine ${((100 * correct) / test.count).toFixed(2)}%, agreement with the trainer ${((100 * agree) / test.count).toFixed(3)}%; wrote ${f.card}\n`,
        );
      }
      if (f.json) printJson(summary);
    });
}

/**
 * The ANN teacher a run distilled from and its per-epoch log: the one it trained itself (`RUN/teacher`), or the
 * one `--teacher-from` named (that run's folder), when its checkpoint is still there.
 */
function teacherRecord(run: string, state: RunState): { dir: string; history: RunState['history'] } | undefined {
  const t = state.config.teacher;
  let dir = join(run, 'teacher');
  if (t?.kind === 'run' && t.dir) {
    try {
      dir = teacherCheckpoint(t.dir);
    } catch {
      return undefined;
    }
  }
  return hasCheckpoint(dir, 'last') ? { dir, history: loadCheckpointMeta<RunState>(dir, 'last').history } : undefined;
}

/** Whether two test splits hold the same frames with the same labels, in the same order. */
function sameFrames(a: Split, b: Split): boolean {
  const eq = (x: Uint8Array, y: Uint8Array) => Buffer.compare(x, y) === 0;
  return a.count === b.count && a.shape.join() === b.shape.join() && eq(a.labels, b.labels) && eq(a.images, b.images);
}

const describeData = (d: LoadedData) => `${d.dir}, ${d.input.join('×')}, fit ${d.fit}, ${d.test.count} test frames`;

/** A `--baseline` run folder's checkpoint folder: its own `last`, or its teacher's. */
function baselineDir(dir: string): string {
  for (const d of [dir, join(dir, 'teacher')]) if (hasCheckpoint(d, 'last')) return d;
  throw new ConfigError(
    `--baseline: expected a run folder with a checkpoint (last.json or teacher/last.json), found none in ${dir}`,
    '--baseline',
  );
}

/**
 * A run's checkpoint scored on the model's test frames as its own run scores it (BN recalibrated on its own training
 * frames, the same number of batches as the model): refused when its data's test frames are not the model's.
 */
async function scoreBaseline(
  dir: string,
  which: 'best' | 'last',
  data: LoadedData,
  recalibrate: number,
): Promise<CardBaseline> {
  const { params, state } = loadParams(dir, which);
  const cfg = state.config;
  try {
    // A teacher's checkpoint sits in its run's teacher/ folder; the run folder holds the split.
    const run = basename(dir) === 'teacher' && state.role === 'teacher' ? dirname(dir) : dir;
    const own = await loadData(cfg.data, { run, reuse: true });
    // What must match is the test frames themselves (an older run's config may leave defaults unwritten).
    if (!sameFrames(own.test, data.test))
      throw new ConfigError(
        `--baseline: ${dir} was trained on other data (${describeData(own)}) than the model's run (${describeData(data)}); its test accuracy would not compare`,
        '--baseline',
      );
    const score = scoreNetwork(
      cfg,
      params,
      state.role,
      { train: own.train, test: data.test, labels: data.labels },
      {
        recalibrate,
        folded: true,
      },
    );
    const net = cfg.net;
    return {
      name:
        state.role === 'teacher'
          ? `ANN (ReLU, float weights, width ${net.width})`
          : `${net.weights === 'float' ? 'FP-weight SNN' : 'BWSNN'} (width ${net.width}, T = ${net.T}, ${shortcutLayout(net)} shortcuts)`,
      dir,
      epochs: state.epoch,
      batchSize: cfg.batchSize,
      testAccuracy: score.accuracy,
      testFrames: score.n,
      wallSeconds: state.wallSeconds,
      history: state.history,
    };
  } finally {
    disposeParams(params);
  }
}
