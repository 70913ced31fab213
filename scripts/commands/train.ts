/**
 * `sei train`: trains an SEI binary-weight SNN on Fashion-MNIST (optionally its ANN teacher first), with a progress
 * bar, checkpoints every epoch in --out, --resume, and Ctrl+C saving a checkpoint. Prints the engine at start.
 */
import type { Command } from 'commander';
import { ConfigError } from '../../runtime/errors.js';
import { describeBackend, initBackend } from '../../trainer/backend/index.js';
import type { Holdout, LoadedData } from '../../trainer/data/index.js';
import { DEFAULT_AUGMENT, formatReport, loadData } from '../../trainer/data/index.js';
import type { Fit } from '../../runtime/data/fit.js';
import { DEFAULT_FIT, FITS } from '../../runtime/data/fit.js';
import { DEFAULT_NET, SHORTCUT_LAYOUTS, macsPerFrame } from '../../trainer/model.js';
import type { ShortcutLayout } from '../../trainer/model.js';
import { runTraining } from '../../trainer/run.js';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { hasCheckpoint, loadCheckpointMeta } from '../../trainer/checkpoint.js';
import type { RunState, TrainConfig } from '../../trainer/train.js';
import { extendSchedule, schedule, teacherNet } from '../../trainer/train.js';
import { RECALIBRATE_BATCHES } from '../../trainer/recalibrate.js';
import { scoreNetwork } from '../../trainer/score.js';
import { choiceOption, frameShape, holdout, num } from '../options.js';
import { printJson } from '../output.js';
import { trainingProgress } from '../progress.js';

export interface TrainFlags {
  out: string;
  data?: string;
  input?: [number, number, number];
  fit: Fit;
  holdout?: Holdout;
  epochs: number;
  batch: number;
  microBatch?: number;
  lr: number;
  latentLr?: number;
  lif: 'fixed' | 'learn';
  surrogate: 'fixed' | 'theta';
  thetaInit: 'uniform' | 'depth';
  initFrom?: string;
  extend?: number;
  lrFinal: number;
  warmup: number;
  width: number;
  T: number;
  beta: number;
  shortcuts: ShortcutLayout;
  weights: 'binary' | 'float';
  perStep: number;
  labelSmoothing: number;
  teacher?: boolean;
  teacherEpochs: number;
  teacherOnnx?: string;
  teacherFrom?: string;
  teacherOnly?: boolean;
  kdWeight: number;
  kdTemperature: number;
  kdPerStep: number;
  spikePenalty: number;
  spikeTarget: number;
  augment: boolean;
  seed: number;
  resume?: boolean;
  trainLimit?: number;
  valSize: number;
  saveEvery?: number;
  recalibrate: number;
  threads: number;
  json?: boolean;
}

/** Adds the options that define a run (shared with `sei ablate`). */
export function runOptions(cmd: Command): Command {
  return cmd
    .option(
      '--data <dir>',
      'an image folder (one subfolder per class, PNG/JPEG, optionally under train/ val/ test/) or a Fashion-MNIST IDX folder; default /usr/share/datasets/fashion-mnist',
    )
    .option(
      '--input <HxWxC>',
      "the model's input frame, e.g. 32x32x3 or 64x64x1 (default: an IDX folder's own 28x28x1; 32x32x3 for an image folder)",
      frameShape('--input'),
    )
    .addOption(
      choiceOption(
        '--fit <policy>',
        'how a picture of another shape becomes a frame: crop (scale to cover, keep the centre) or letterbox (scale to fit, pad with black)',
        FITS,
        DEFAULT_FIT,
      ),
    )
    .option(
      '--holdout <val,test>',
      'image folders without val/ or test/: fractions of each class held out for validation and test (default 0.1,0.1)',
      holdout('--holdout'),
    )
    .option(
      '--threads <n>',
      'cores to train on: data-parallel worker threads, one wasm backend each (the batch is split; batch norm takes whole-batch statistics across them)',
      num('--threads', 1, 64, true),
      availableParallelism(),
    )
    .option(
      '--save-every <batches>',
      'also checkpoint every N batches inside an epoch',
      num('--save-every', 1, 1e9, true),
    )
    .option('--epochs <n>', 'student epochs', num('--epochs', 1, 1000, true), 30)
    .option('--batch <n>', 'frames per optimizer step', num('--batch', 1, 4096, true), 64)
    .option(
      '--micro-batch <n>',
      'frames per forward/backward pass (batch norm statistics over it, across threads); gradients of --batch / N passes are accumulated (default: --batch)',
      num('--micro-batch', 1, 4096, true),
    )
    .option('--lr <x>', 'peak learning rate (Adam)', num('--lr', 0), 2e-3)
    .option(
      '--latent-lr <x>',
      "peak learning rate of the binary layers' latent weights (own Adam, clipped to [-1, 1]; default: --lr)",
      num('--latent-lr', 0),
    )
    .option('--lr-final <x>', 'final learning rate as a fraction of --lr (cosine decay)', num('--lr-final', 0, 1), 0.01)
    .option('--warmup <epochs>', 'linear warmup, epochs', num('--warmup', 0), 0.3)
    .option(
      '--width <n>',
      'channels of the first stage (stages: w, 2w, 4w)',
      num('--width', 1, 512, true),
      DEFAULT_NET.width,
    )
    .option('--T <n>', 'time steps', num('--T', 1, 16, true), DEFAULT_NET.T)
    .option('--beta <x>', 'LIF leak (initial value with --lif learn)', num('--beta', 0, 1), DEFAULT_NET.beta)
    .addOption(
      choiceOption(
        '--lif <kind>',
        'fixed: θ = 1 and --beta in every layer; learn: θ per channel and β per layer are trained',
        ['fixed', 'learn'],
        'fixed',
      ),
    )
    .addOption(
      choiceOption(
        '--theta-init <kind>',
        "initial thresholds: uniform (θ) or depth (θ·√k where a layer's current sums k BN outputs through its shortcuts)",
        ['uniform', 'depth'],
        'uniform',
      ),
    )
    .addOption(
      choiceOption(
        '--surrogate <kind>',
        'surrogate gradient window: fixed (half-width 1) or theta (half-width θ)',
        ['fixed', 'theta'],
        'fixed',
      ),
    )
    .option(
      '--init-from <run>',
      "start the student from this run folder's checkpoint (best, else last), e.g. an FP-weight SNN (two-stage training)",
    )
    .addOption(
      choiceOption(
        '--shortcuts <kind>',
        'multi: around every binary conv (SEI); blocks: around every block of two (ResNet; not exportable); downsample: on the stride-2 convs only',
        [...SHORTCUT_LAYOUTS],
        'multi',
      ),
    )
    .addOption(
      choiceOption(
        '--weights <kind>',
        'hidden weights: binary (BWSNN) or float (FP-weight SNN, not exportable)',
        ['binary', 'float'],
        'binary',
      ),
    )
    .option('--per-step <w>', 'weight of the per-step CE terms of the self-ensemble loss', num('--per-step', 0), 0)
    .option('--label-smoothing <x>', 'label smoothing', num('--label-smoothing', 0, 0.5), 0)
    .option('--teacher', 'train the ANN twin first (ReLU, float weights, same layout) and distil from it')
    .option('--teacher-epochs <n>', 'epochs of the ANN teacher', num('--teacher-epochs', 1, 1000, true), 10)
    .option('--teacher-onnx <file>', 'distil from an ONNX classifier (NCHW float32 raw pixels); logits cached')
    .option(
      '--teacher-from <run>',
      'distil from the ANN teacher another run trained (its folder, e.g. one made with --teacher-only)',
    )
    .option('--kd-weight <w>', 'weight of the distillation term in [0, 1]', num('--kd-weight', 0, 1), 0.7)
    .option('--kd-temperature <tau>', 'distillation temperature', num('--kd-temperature', 0.1), 1)
    .option(
      '--spike-penalty <w>',
      'weight of the firing-rate term: mean over layers of max(0, rate − --spike-target)²',
      num('--spike-penalty', 0),
      0,
    )
    .option(
      '--spike-target <r>',
      'spike rate each layer may reach before the firing-rate term applies',
      num('--spike-target', 0, 1),
      0,
    )
    .option(
      '--kd-per-step <w>',
      "weight of distillation on each step's logits, beside the mean logits' (0: the mean only)",
      num('--kd-per-step', 0),
      0,
    )
    .option('--no-augment', 'no flips or shifts')
    .option('--seed <n>', 'seed of initialisation, shuffling and augmentation', num('--seed', 0, 2 ** 31, true), 1)
    .option(
      '--train-limit <n>',
      'train on the first N frames of the training split only',
      num('--train-limit', 1, 60000, true),
    )
    .option(
      '--val-size <n>',
      'IDX: training frames held out for validation (image folders: --holdout)',
      num('--val-size', 0, 30000, true),
      5000,
    )
    .option(
      '--recalibrate <batches>',
      "BN recalibration batches before each epoch's validation (0: running averages)",
      num('--recalibrate', 0, 1e6, true),
      RECALIBRATE_BATCHES,
    );
}

export function configFromFlags(f: TrainFlags): TrainConfig {
  if ([f.teacher, f.teacherOnnx, f.teacherFrom].filter(Boolean).length > 1)
    throw new ConfigError('--teacher, --teacher-onnx, --teacher-from: expected at most one, got several', '--teacher');
  if (f.microBatch && (f.microBatch > f.batch || f.batch % f.microBatch !== 0))
    throw new ConfigError(
      `--micro-batch: expected a divisor of --batch ${f.batch}, got ${f.microBatch}`,
      '--micro-batch',
    );
  if (f.weights === 'float' && !f.json)
    process.stderr.write('note: --weights float trains an FP-weight SNN; it evaluates but does not export to .bwsnn\n');
  return {
    net: {
      ...DEFAULT_NET,
      width: f.width,
      T: f.T,
      beta: f.beta,
      shortcuts: f.shortcuts,
      weights: f.weights,
      lif: f.lif,
      surrogate: f.surrogate,
      thetaInit: f.thetaInit,
    },
    epochs: f.epochs,
    batchSize: f.batch,
    ...(f.microBatch && f.microBatch < f.batch ? { microBatch: f.microBatch } : {}),
    ...(f.latentLr !== undefined ? { latentLr: f.latentLr } : {}),
    ...(f.initFrom ? { initFrom: f.initFrom } : {}),
    lr: f.lr,
    lrFinal: f.lrFinal,
    warmupEpochs: f.warmup,
    seed: f.seed,
    data: {
      ...(f.data ? { dir: f.data } : {}),
      valSize: f.valSize,
      ...(f.trainLimit ? { trainLimit: f.trainLimit } : {}),
      ...(f.input ? { input: f.input } : {}),
      fit: f.fit,
      ...(f.holdout ? { holdout: f.holdout } : {}),
    },
    augment: f.augment ? DEFAULT_AUGMENT : null,
    loss: {
      perStep: f.perStep,
      kdWeight: f.teacher || f.teacherOnnx || f.teacherFrom ? f.kdWeight : 0,
      kdTemperature: f.kdTemperature,
      labelSmoothing: f.labelSmoothing,
      ...(f.kdPerStep ? { kdPerStep: f.kdPerStep } : {}),
      ...(f.spikePenalty ? { spikePenalty: f.spikePenalty, spikeTarget: f.spikeTarget } : {}),
    },
    teacher: f.teacher
      ? { kind: 'ann', epochs: f.teacherEpochs }
      : f.teacherOnnx
        ? { kind: 'onnx', file: f.teacherOnnx }
        : f.teacherFrom
          ? { kind: 'run', dir: f.teacherFrom }
          : null,
    valRecalibrate: f.recalibrate,
  };
}

/**
 * The config of a resumed run: the stored one, with only the flags given on this command line applied on top
 * (a default must not silently replace what the run was started with). Network, data, seed and the learning-rate
 * schedule never change; `--extend N` appends a phase of N epochs (peak `--lr`, `--lr-final`, `--warmup` if given,
 * else the last phase's).
 */
export function resumeConfig(
  stored: TrainConfig,
  f: TrainFlags,
  given: (flag: keyof TrainFlags) => boolean,
): TrainConfig {
  const fresh = configFromFlags(f);
  const pick = <K extends keyof TrainFlags, V>(flag: K, now: V, before: V): V => (given(flag) ? now : before);
  const newTeacher = given('teacher') || given('teacherOnnx') || given('teacherFrom');
  for (const flag of ['epochs', 'lr', 'lrFinal', 'warmup'] as const) {
    if (given(flag) && !f.extend) {
      const name = `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      throw new ConfigError(
        `${name}: a run's schedule is fixed when it starts (${stored.epochs} epochs, peak lr ${stored.lr}); add epochs with --extend N (and --lr/--lr-final/--warmup for that phase)`,
        name,
      );
    }
  }
  if (given('epochs')) throw new ConfigError('--epochs: with --extend, the epochs come from --extend', '--epochs');
  const phases = schedule(stored);
  const last = phases[phases.length - 1]!;
  const base: TrainConfig = f.extend
    ? extendSchedule({ ...stored, schedule: phases }, f.extend, {
        lr: pick('lr', fresh.lr, last.lr),
        lrFinal: pick('lrFinal', fresh.lrFinal, last.lrFinal),
        warmupEpochs: pick('warmup', fresh.warmupEpochs, last.warmupEpochs),
      })
    : stored;
  return {
    ...base,
    loss: {
      perStep: pick('perStep', fresh.loss.perStep, stored.loss.perStep),
      labelSmoothing: pick('labelSmoothing', fresh.loss.labelSmoothing, stored.loss.labelSmoothing),
      kdWeight: newTeacher || given('kdWeight') ? fresh.loss.kdWeight : stored.loss.kdWeight,
      kdTemperature: pick('kdTemperature', fresh.loss.kdTemperature, stored.loss.kdTemperature),
      ...(given('kdPerStep')
        ? fresh.loss.kdPerStep
          ? { kdPerStep: fresh.loss.kdPerStep }
          : {}
        : stored.loss.kdPerStep
          ? { kdPerStep: stored.loss.kdPerStep }
          : {}),
      ...(given('spikePenalty') || given('spikeTarget')
        ? fresh.loss.spikePenalty
          ? { spikePenalty: fresh.loss.spikePenalty, spikeTarget: fresh.loss.spikeTarget ?? 0 }
          : {}
        : stored.loss.spikePenalty
          ? { spikePenalty: stored.loss.spikePenalty, spikeTarget: stored.loss.spikeTarget ?? 0 }
          : {}),
    },
    teacher: newTeacher ? fresh.teacher : stored.teacher,
    valRecalibrate: pick('recalibrate', f.recalibrate, stored.valRecalibrate ?? RECALIBRATE_BATCHES),
  };
}

/** The stored run config in `out` (student checkpoint first, else the teacher's), if any. */
export function storedConfig(out: string): TrainConfig | undefined {
  for (const dir of [out, join(out, 'teacher')]) {
    if (hasCheckpoint(dir, 'last')) {
      const meta = loadCheckpointMeta<RunState>(dir, 'last');
      return meta.runConfig ?? meta.config;
    }
  }
  return undefined;
}

/**
 * The config with what the data decided: the network's input is the frames' shape and its head has one output
 * per class; the data options record the shape and fit, so a resumed run and `sei export` fit the same way.
 */
export function withData(cfg: TrainConfig, data: LoadedData): TrainConfig {
  return {
    ...cfg,
    net: { ...cfg.net, input: data.input, classes: data.labels.length },
    data: { ...cfg.data, input: data.input, fit: data.fit },
  };
}

/** Trains one configuration into `out`; the progress bar goes to stderr. Returns the JSON summary. */
export async function trainCommand(
  cfg: TrainConfig,
  out: string,
  opts: { resume: boolean; json: boolean; threads: number; saveEvery?: number; quiet?: boolean; teacherOnly?: boolean },
): Promise<Record<string, unknown>> {
  const log = (line: string) => process.stderr.write(line + '\n');
  // The data first: a folder it cannot use is refused before anything else is started or printed.
  const data = await loadData(cfg.data, {
    run: out,
    reuse: opts.resume,
    write: true,
    trainable: true,
    onInfo: log,
    onReport: (r) => formatReport(r, 10).forEach(log),
  });
  const backend = await initBackend();
  log(describeBackend(backend));
  cfg = withData(cfg, data);
  const macs = macsPerFrame(opts.teacherOnly ? teacherNet(cfg.net) : cfg.net);
  log(
    `data: ${data.train.count} train / ${data.val.count} validation / ${data.test.count} test frames; ` +
      `${(macs / 1e6).toFixed(1)} M MAC per frame forward, ~${((6 * macs * data.train.count) / 1e12).toFixed(2)} TFLOP per epoch (forward + backward)`,
  );
  const progress = trainingProgress({ batchSize: cfg.batchSize, ...(opts.quiet ? { quiet: true } : {}) });
  const t0 = performance.now();
  try {
    const result = await runTraining(cfg, data, out, {
      resume: opts.resume,
      engine: backend.engine,
      threads: opts.threads,
      command: `sei ${process.argv.slice(process.argv.indexOf('train')).join(' ')}`,
      ...(opts.saveEvery ? { saveEvery: opts.saveEvery } : {}),
      ...(opts.teacherOnly ? { teacherOnly: true } : {}),
      hooks: progress.hooks,
    });
    progress.close();
    const student = result.student;
    const summary: Record<string, unknown> = {
      out,
      engine: backend.engine,
      interrupted: result.interrupted,
      wallSeconds: (performance.now() - t0) / 1000,
    };
    if (result.teacher) {
      const acc = scoreNetwork(cfg, result.teacher.params, 'teacher', data).accuracy;
      summary['teacherTestAccuracy'] = acc;
      log(`teacher test accuracy ${(100 * acc).toFixed(2)}% (${data.test.count} frames)`);
    }
    if (student && !result.interrupted) {
      // With the statistics `sei export` ships by default.
      const acc = scoreNetwork(cfg, student.params, 'student', data).accuracy;
      const last = student.state.history[student.state.history.length - 1];
      Object.assign(summary, {
        testAccuracy: acc,
        n: data.test.count,
        T: cfg.net.T,
        epochs: student.state.epoch,
        valAccuracy: last?.valAccuracy ?? null,
        trainWallSeconds: student.state.wallSeconds,
      });
      log(
        `student test accuracy ${(100 * acc).toFixed(2)}% (${data.test.count} frames, unfolded network, BN recalibrated on ${RECALIBRATE_BATCHES} batches; \`sei export\` + \`sei eval\` give the deployed number)`,
      );
    }
    return summary;
  } finally {
    progress.close();
  }
}

export function register(program: Command): void {
  runOptions(program.command('train').description('train an SEI binary-weight SNN (checkpoints in --out)'))
    .requiredOption('--out <dir>', 'run folder: checkpoints (last, best), teacher/, cached soft labels')
    .option('--resume', 'continue the run in --out from its last checkpoint')
    .option('--teacher-only', "train only the ANN teacher (with --teacher), for other runs' --teacher-from")
    .option(
      '--extend <epochs>',
      'with --resume: add a schedule phase of N epochs (its own warm-up; --lr, --lr-final, --warmup set it)',
      num('--extend', 1, 1000, true),
    )
    .option('--json', 'print a JSON summary on the last line')
    .action(async (f: TrainFlags, cmd: Command) => {
      const stored = f.resume ? storedConfig(f.out) : undefined;
      const given = (flag: keyof TrainFlags) => cmd.getOptionValueSource(flag) === 'cli';
      const cfg = stored ? resumeConfig(stored, f, given) : configFromFlags(f);
      if (f.teacherOnly && cfg.teacher?.kind !== 'ann')
        throw new ConfigError('--teacher-only: expected --teacher (the ANN twin to train)', '--teacher-only');
      const summary = await trainCommand(cfg, f.out, {
        resume: !!f.resume,
        json: !!f.json,
        threads: f.threads,
        ...(f.saveEvery ? { saveEvery: f.saveEvery } : {}),
        ...(f.teacherOnly ? { teacherOnly: true } : {}),
      });
      if (f.json) printJson(summary);
    });
}
