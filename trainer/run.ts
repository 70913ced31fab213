/**
 * A whole training run in one folder: the ANN teacher first when asked (`<dir>/teacher/`), then the SNN student
 * (`<dir>/last.*` every epoch, `<dir>/best.*` on the best validation accuracy). Resuming picks up whichever stage
 * was running. The teacher's parameters are returned undisposed (the caller scores them).
 */
import { join } from 'node:path';
import { ConfigError } from '../runtime/errors.js';
import { hasCheckpoint } from './checkpoint.js';
import type { Dataset } from './data/index.js';
import type { FitHooks, FitResult, TrainConfig } from './train.js';
import { fit } from './train.js';
import type { Teacher } from './recipe/kd.js';
import { annTeacher, cachedTeacher, onnxTeacherLogits } from './recipe/kd.js';
import type { NetParams } from './model.js';
import { recalibrateBn, recalibration } from './recalibrate.js';
import { loadParams, teacherNet } from './train.js';

/** The teacher checkpoint of a run folder: `dir/teacher/` (a run trained with --teacher) or `dir` itself. */
export function teacherCheckpoint(dir: string): string {
  for (const d of [join(dir, 'teacher'), dir]) if (hasCheckpoint(d, 'best') || hasCheckpoint(d, 'last')) return d;
  throw new ConfigError(
    `--teacher-from: expected a run folder with a teacher checkpoint (teacher/last.json or last.json), found none in ${dir}`,
    '--teacher-from',
  );
}

/** Which of a teacher folder's checkpoints a student distils from: `best` (validation) when there is one. */
export function distilledCheckpoint(teacherDir: string): 'best' | 'last' {
  return hasCheckpoint(teacherDir, 'best') ? 'best' : 'last';
}

export interface RunResult {
  readonly student: FitResult | undefined;
  readonly teacher: FitResult | undefined;
  readonly interrupted: boolean;
}

/** `teacherOnly`: stop after the ANN teacher (a teacher for other runs' `--teacher-from`). */
export async function runTraining(
  cfg: TrainConfig,
  data: Dataset,
  dir: string,
  opts: {
    resume: boolean;
    engine: string;
    hooks: FitHooks;
    saveEvery?: number;
    command?: string;
    threads?: number;
    teacherOnly?: boolean;
  },
): Promise<RunResult> {
  let distil: Teacher | undefined;
  let teacher: FitResult | undefined;
  // A teacher distils (and is scored) with BN statistics recalibrated on training frames, as its validation and
  // every exported network are: the running averages trail the final weights.
  // The batches are the teacher run's own (`recalibration`: its micro-batch when it had one).
  const settle = (net: TrainConfig['net'], params: NetParams, run: TrainConfig) =>
    recalibrateBn(net, params, data.train, recalibration(run));
  if (cfg.teacher?.kind === 'ann') {
    teacher = await fit('teacher', cfg, data, join(dir, 'teacher'), opts);
    if (teacher.interrupted) return { student: undefined, teacher, interrupted: true };
    teacher = { ...teacher, params: settle(teacherNet(cfg.net), teacher.params, cfg) };
    if (opts.teacherOnly) return { student: undefined, teacher, interrupted: false };
    distil = annTeacher(teacherNet(cfg.net), teacher.params);
  } else if (cfg.teacher?.kind === 'run' && cfg.teacher.dir) {
    const from = teacherCheckpoint(cfg.teacher.dir);
    const loaded = loadParams(from, distilledCheckpoint(from), 'teacher-from/');
    if (loaded.state.role !== 'teacher')
      throw new ConfigError(
        `--teacher-from: ${from} holds a ${loaded.state.role}, expected an ANN teacher`,
        '--teacher-from',
      );
    opts.hooks.onInfo?.(
      `teacher: ${from} (${loaded.state.epoch} epochs, val ${(100 * (loaded.state.history.at(-1)?.valAccuracy ?? NaN)).toFixed(2)}%)`,
    );
    const net = teacherNet(loaded.state.config.net);
    distil = annTeacher(net, settle(net, loaded.params, loaded.state.config));
  } else if (cfg.teacher?.kind === 'onnx' && cfg.teacher.file) {
    const logits = await onnxTeacherLogits(cfg.teacher.file, data.train, cfg.net.classes, dir, opts.hooks.onInfo);
    distil = cachedTeacher(logits, cfg.net.classes);
  }
  const student = await fit('student', cfg, data, dir, distil ? { ...opts, teacher: distil } : opts);
  return { student, teacher, interrupted: student.interrupted };
}
