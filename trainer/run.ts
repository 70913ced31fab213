/**
 * A whole training run in one folder: the ANN teacher first when asked (`<dir>/teacher/`), then the SNN student
 * (`<dir>/last.*` every epoch, `<dir>/best.*` on the best validation accuracy). Resuming picks up whichever stage
 * was running. The teacher's parameters are returned undisposed (the caller scores them).
 */
import { join } from 'node:path';
import type { Dataset } from './data/index.js';
import type { FitHooks, FitResult, TrainConfig } from './train.js';
import { fit } from './train.js';
import type { TeacherFn } from './recipe/kd.js';
import { annTeacher, cachedTeacher, onnxTeacherLogits } from './recipe/kd.js';
import { teacherNet } from './train.js';

export interface RunResult {
  readonly student: FitResult | undefined;
  readonly teacher: FitResult | undefined;
  readonly interrupted: boolean;
}

export async function runTraining(cfg: TrainConfig, data: Dataset, dir: string, opts: { resume: boolean; engine: string; hooks: FitHooks; saveEvery?: number; command?: string; threads?: number }): Promise<RunResult> {
  let teacherFn: TeacherFn | undefined;
  let teacher: FitResult | undefined;
  if (cfg.teacher?.kind === 'ann') {
    teacher = await fit('teacher', cfg, data, join(dir, 'teacher'), opts);
    if (teacher.interrupted) return { student: undefined, teacher, interrupted: true };
    teacherFn = annTeacher(teacherNet(cfg.net), teacher.params);
  } else if (cfg.teacher?.kind === 'onnx' && cfg.teacher.file) {
    const logits = await onnxTeacherLogits(cfg.teacher.file, data.train, cfg.net.classes, dir, opts.hooks.onInfo);
    teacherFn = cachedTeacher(logits, cfg.net.classes);
  }
  const student = await fit('student', cfg, data, dir, teacherFn ? { ...opts, teacherLogits: teacherFn } : opts);
  return { student, teacher, interrupted: student.interrupted };
}
