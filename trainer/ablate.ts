/**
 * The ablation: the same network, budget (epochs, frames) and seed for each variant, test accuracy on the test split.
 * Variants: the ANN teacher; an FP-weight SNN; a plain BWSNN (shortcut on every second conv, no KD); BWSNN + multiple
 * shortcuts; BWSNN + KD; BWSNN + both (SEI) — each SNN at every T asked for. The ANN is trained once and is
 * also the KD teacher. SNNs are scored with recalibrated BN statistics, binary ones after folding (what ships);
 * the FP-weight SNN and the ANN unfolded.
 */
import { join } from 'node:path';
import type { Dataset } from './data/index.js';
import { foldModel } from './export/bwsnn.js';
import { evaluateFolded } from './export/evaluate.js';
import { disposeParams, macsPerFrame } from './model.js';
import { annTeacher } from './recipe/kd.js';
import { disposeBnStatistics, recalibrateBn, recalibration } from './recalibrate.js';
import type { FitHooks, TrainConfig } from './train.js';
import { accuracy, fit, predict, teacherNet } from './train.js';

export interface AblationRow {
  readonly variant: string;
  readonly T: number;
  readonly testAccuracy: number;
  readonly epochs: number;
  readonly wallSeconds: number;
  readonly megaMacPerFrame: number;
}

export const VARIANTS = ['ann', 'fp-snn', 'plain', 'multi', 'kd', 'sei'] as const;
export type Variant = (typeof VARIANTS)[number];

export async function runAblation(
  base: TrainConfig,
  data: Dataset,
  dir: string,
  opts: {
    Ts: readonly number[];
    variants: readonly Variant[];
    engine: string;
    threads?: number;
    hooks?: FitHooks;
    onRow?: (r: AblationRow) => void;
  },
): Promise<AblationRow[]> {
  const rows: AblationRow[] = [];
  const emit = (r: AblationRow) => {
    rows.push(r);
    opts.onRow?.(r);
  };
  const needTeacher = opts.variants.some((v) => v === 'ann' || v === 'kd' || v === 'sei');
  const hooks = opts.hooks ?? {};
  let teacher: Awaited<ReturnType<typeof fit>> | undefined;
  if (needTeacher) {
    const t0 = performance.now();
    teacher = await fit('teacher', { ...base, teacher: { kind: 'ann', epochs: base.epochs } }, data, join(dir, 'ann'), {
      resume: true,
      engine: opts.engine,
      threads: opts.threads ?? 1,
      hooks,
    });
    const net = teacherNet(base.net);
    if (opts.variants.includes('ann')) {
      emit({
        variant: 'ann',
        T: 1,
        testAccuracy: accuracy(predict(net, teacher.params, data.test).predictions, data.test.labels),
        epochs: base.epochs,
        wallSeconds: (performance.now() - t0) / 1000,
        megaMacPerFrame: macsPerFrame(net) / 1e6,
      });
    }
  }
  for (const T of opts.Ts) {
    for (const variant of opts.variants) {
      if (variant === 'ann') continue;
      const kd = variant === 'kd' || variant === 'sei';
      const cfg: TrainConfig = {
        ...base,
        net: {
          ...base.net,
          T,
          weights: variant === 'fp-snn' ? 'float' : 'binary',
          shortcuts: variant === 'plain' || variant === 'kd' ? 'plain' : 'multi',
        },
        loss: { ...base.loss, kdWeight: kd ? base.loss.kdWeight : 0 },
        teacher: kd ? { kind: 'ann', epochs: base.epochs } : null,
      };
      const t0 = performance.now();
      const r = await fit('student', cfg, data, join(dir, `${variant}-t${T}`), {
        resume: true,
        engine: opts.engine,
        threads: opts.threads ?? 1,
        hooks,
        ...(kd && teacher ? { teacher: annTeacher(teacherNet(base.net), teacher.params) } : {}),
      });
      // BN recalibrated as `sei export` does by default, so a binary row scores what would ship.
      const rec = recalibrateBn(cfg.net, r.params, data.train, recalibration(cfg));
      const predictions =
        cfg.net.weights === 'binary'
          ? evaluateFolded(foldModel(cfg.net, rec, { name: variant, labels: data.labels }), data.test).predictions
          : predict(cfg.net, rec, data.test).predictions;
      disposeBnStatistics(rec, r.params);
      emit({
        variant,
        T,
        testAccuracy: accuracy(predictions, data.test.labels),
        epochs: cfg.epochs,
        wallSeconds: (performance.now() - t0) / 1000,
        megaMacPerFrame: macsPerFrame(cfg.net) / 1e6,
      });
      disposeParams(r.params);
    }
  }
  if (teacher) disposeParams(teacher.params);
  return rows;
}

export function ablationMarkdown(
  rows: readonly AblationRow[],
  info: {
    command: string;
    engine: string;
    machine: string;
    date: string;
    frames: number;
    testFrames: number;
    note?: string;
  },
): string {
  const names: Record<string, string> = {
    ann: 'ANN teacher (ReLU, float weights)',
    'fp-snn': 'FP-weight SNN (multiple shortcuts)',
    plain: 'plain BWSNN (shortcut every 2nd conv, no KD)',
    multi: 'BWSNN + multiple shortcuts',
    kd: 'BWSNN + KD (plain shortcuts)',
    sei: 'BWSNN + multiple shortcuts + KD (SEI)',
  };
  const lines = [
    '# Ablation (Fashion-MNIST)',
    '',
    `Measured ${info.date} on ${info.machine}, engine ${info.engine}. Same network (32-64-128 layout at the given width), same budget and seed`,
    `for every row; ${info.frames} training frames, test accuracy on ${info.testFrames} test frames (binary networks after folding, as shipped).`,
    '',
    `Command: \`${info.command}\``,
    '',
    '| variant | T | test accuracy | epochs | wall time (s) | M MAC / frame |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${names[r.variant] ?? r.variant} | ${r.T} | ${(100 * r.testAccuracy).toFixed(2)}% | ${r.epochs} | ${r.wallSeconds.toFixed(0)} | ${r.megaMacPerFrame.toFixed(1)} |`,
    ),
    '',
  ];
  if (info.note) lines.push(info.note, '');
  return lines.join('\n');
}
