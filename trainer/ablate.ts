/**
 * The ablation: the same network, budget (epochs, frames) and seed for each variant, test accuracy on the test split.
 * Variants: the ANN teacher; an FP-weight SNN; a plain BWSNN (the ResNet baseline: a shortcut around every block of
 * two convs, no KD); BWSNN + multiple shortcuts; BWSNN + KD (ResNet shortcuts); BWSNN + both (SEI) — each SNN at
 * every T asked for — and, asked for by name, `downsample` (shortcuts on the stride-2 convs only, no KD). The ANN is
 * trained once and is also the KD teacher, with its BN statistics settled on training frames as `sei train`
 * distils. Every row is scored by trainer/score.ts (recalibrated BN statistics; binary networks after folding, what
 * ships, where the format holds them; every SNN row also by its unfolded network, the one statistic all rows share).
 */
import { join } from 'node:path';
import type { Dataset } from './data/index.js';
import { disposeParams, macsPerFrame } from './model.js';
import type { NetParams, ShortcutLayout } from './model.js';
import { annTeacher } from './recipe/kd.js';
import { disposeBnStatistics, recalibrateBn, recalibration } from './recalibrate.js';
import { keptScore } from './score.js';
import type { FitHooks, FitResult, TrainConfig } from './train.js';
import { fit, teacherNet } from './train.js';

export interface AblationRow {
  readonly variant: string;
  readonly T: number;
  readonly testAccuracy: number;
  readonly epochs: number;
  /** The run's training time, seconds, summed over the sittings it took (scoring not counted). */
  readonly wallSeconds: number;
  readonly megaMacPerFrame: number;
  /** Spike rate per layer (conv0 … last binary conv) over the test frames; absent for the ANN. */
  readonly spikeRates?: readonly number[];
  /** Whether `testAccuracy` is the folded model's (false: the format does not hold the layout); absent for the ANN. */
  readonly folded?: boolean;
  /** The unfolded network's test accuracy; absent for the ANN. */
  readonly unfoldedAccuracy?: number;
}

export const VARIANTS = ['ann', 'fp-snn', 'plain', 'multi', 'kd', 'sei', 'downsample'] as const;
export type Variant = (typeof VARIANTS)[number];
/** The variants of the default plan (`downsample` only when asked for). */
export const DEFAULT_VARIANTS: readonly Variant[] = VARIANTS.filter((v) => v !== 'downsample');

/** Each variant's shortcut layout (trainer/model.ts). */
const LAYOUT: Record<Exclude<Variant, 'ann'>, ShortcutLayout> = {
  'fp-snn': 'multi',
  plain: 'blocks',
  multi: 'multi',
  kd: 'blocks',
  sei: 'multi',
  downsample: 'downsample',
};

/** One row to train: a variant at T time steps (the ANN's T is 1 whatever is asked). */
export interface AblationCase {
  readonly variant: Variant;
  readonly T: number;
}

/** Every variant at every T, T-major (the ANN once): the default plan. */
export function ablationCases(Ts: readonly number[], variants: readonly Variant[]): AblationCase[] {
  const out: AblationCase[] = variants.includes('ann') ? [{ variant: 'ann', T: 1 }] : [];
  for (const T of Ts) for (const variant of variants) if (variant !== 'ann') out.push({ variant, T });
  return out;
}

/** Parses `variant@T` items (`ann` needs no T), e.g. `plain@2,sei@2,sei@4,ann`; throws a RangeError naming a bad one. */
export function parseCases(items: readonly string[]): AblationCase[] {
  return items.map((item) => {
    const [name, t, extra] = item.split('@');
    const variant = VARIANTS.find((v) => v === name);
    const T = t === undefined ? (variant === 'ann' ? 1 : NaN) : Number(t);
    if (!variant || extra !== undefined || !Number.isInteger(T) || T < 1 || T > 16 || (variant === 'ann' && T !== 1))
      throw new RangeError(
        `'${item}': expected VARIANT@T with VARIANT one of ${VARIANTS.join(', ')} and T in 1..16 (ann alone)`,
      );
    return { variant, T };
  });
}

export interface AblationResult {
  /** The rows trained and scored, in the order they ran (the ANN first: it is the KD rows' teacher). */
  readonly rows: AblationRow[];
  /** The rows not reached: a stop was asked for (the run in training saved a checkpoint; the same call resumes). */
  readonly pending: AblationCase[];
}

/** A case as `--rows` spells it: `VARIANT@T`, or `ann`. */
export function caseLabel(c: { readonly variant: string; readonly T: number }): string {
  return c.variant === 'ann' ? 'ann' : `${c.variant}@${c.T}`;
}

/** The cases without a row yet, in their order. */
export function pendingCases(
  cases: readonly AblationCase[],
  rows: readonly { readonly variant: string; readonly T: number }[],
): AblationCase[] {
  const done = new Set(rows.map(caseLabel));
  return cases.filter((c) => !done.has(caseLabel(c)));
}

/**
 * Trains and scores each case in `dir/VARIANT-tT` (the ANN in `dir/ann`), resuming runs already there: a finished
 * run is only scored (its kept score reused when nothing it depends on changed: `keptScore`), an interrupted one
 * continues from its last checkpoint. A stop asked for through `hooks.shouldStop` saves the run in training and
 * returns the rows done so far.
 */
export async function runAblation(
  base: TrainConfig,
  data: Dataset,
  dir: string,
  opts: {
    cases: readonly AblationCase[];
    engine: string;
    threads?: number;
    saveEvery?: number;
    hooks?: FitHooks;
    /** Called after each row with the row and every row so far (it included). */
    onRow?: (r: AblationRow, done: readonly AblationRow[]) => void;
  },
): Promise<AblationResult> {
  const rows: AblationRow[] = [];
  const emit = (r: AblationRow) => {
    rows.push(r);
    opts.onRow?.(r, rows);
  };
  const run = {
    resume: true,
    engine: opts.engine,
    threads: opts.threads ?? 1,
    hooks: opts.hooks ?? {},
    ...(opts.saveEvery ? { saveEvery: opts.saveEvery } : {}),
  };
  const stopped = (): AblationResult => ({ rows, pending: pendingCases(opts.cases, rows) });
  const needTeacher = opts.cases.some((c) => c.variant === 'ann' || c.variant === 'kd' || c.variant === 'sei');
  // The KD rows distil from the ANN row's network with BN settled on training frames, as `sei train` distils.
  let trained: FitResult | undefined;
  let teacher: NetParams | undefined;
  const disposeTeacher = () => {
    if (!trained) return;
    if (teacher) disposeBnStatistics(teacher, trained.params);
    disposeParams(trained.params);
  };
  if (needTeacher) {
    trained = await fit(
      'teacher',
      { ...base, teacher: { kind: 'ann', epochs: base.epochs } },
      data,
      join(dir, 'ann'),
      run,
    );
    if (trained.interrupted) {
      disposeTeacher();
      return stopped();
    }
    teacher = recalibrateBn(teacherNet(base.net), trained.params, data.train, recalibration(base));
    if (opts.cases.some((c) => c.variant === 'ann')) {
      emit({
        variant: 'ann',
        T: 1,
        testAccuracy: keptScore(join(dir, 'ann'), base, teacher, 'teacher', data).accuracy,
        epochs: base.epochs,
        wallSeconds: trained.state.wallSeconds,
        megaMacPerFrame: macsPerFrame(teacherNet(base.net)) / 1e6,
      });
    }
  }
  for (const { variant, T } of opts.cases) {
    if (variant === 'ann') continue;
    const kd = variant === 'kd' || variant === 'sei';
    const cfg: TrainConfig = {
      ...base,
      net: {
        ...base.net,
        T,
        weights: variant === 'fp-snn' ? 'float' : 'binary',
        shortcuts: LAYOUT[variant],
      },
      loss: { ...base.loss, kdWeight: kd ? base.loss.kdWeight : 0 },
      teacher: kd ? { kind: 'ann', epochs: base.epochs } : null,
    };
    const runDir = join(dir, `${variant}-t${T}`);
    const r = await fit('student', cfg, data, runDir, {
      ...run,
      ...(kd && teacher ? { teacher: annTeacher(teacherNet(base.net), teacher) } : {}),
    });
    if (r.interrupted) {
      disposeParams(r.params);
      disposeTeacher();
      return stopped();
    }
    // Scored as shipped: BN recalibrated as `sei export` does by default, a binary row by its folded model; the
    // spike rates are the trainer's pass over the test frames (the per-epoch log's statistic).
    const score = keptScore(runDir, cfg, r.params, 'student', data, { folded: true });
    emit({
      variant,
      T,
      testAccuracy: score.accuracy,
      epochs: cfg.epochs,
      wallSeconds: r.state.wallSeconds,
      megaMacPerFrame: macsPerFrame(cfg.net) / 1e6,
      ...(score.spikeRates ? { spikeRates: score.spikeRates } : {}),
      folded: score.folded,
      unfoldedAccuracy: score.unfoldedAccuracy,
    });
    disposeParams(r.params);
  }
  disposeTeacher();
  return { rows, pending: [] };
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
    /** The network's width (channels width, width, 2w, 2w, 4w, 4w). */
    width: number;
    /** Rows still to train: listed under the table, so a table written part-way says what it lacks. */
    pending?: readonly AblationCase[];
    note?: string;
  },
): string {
  const names: Record<string, string> = {
    ann: 'ANN teacher (ReLU, float weights)',
    'fp-snn': 'FP-weight SNN (multiple shortcuts)',
    plain: 'plain BWSNN (ResNet: a shortcut around every block of two convs, no KD)',
    multi: 'BWSNN + multiple shortcuts',
    kd: 'BWSNN + KD (ResNet shortcuts)',
    sei: 'BWSNN + multiple shortcuts + KD (SEI)',
    downsample: 'BWSNN, shortcuts on the two stride-2 convs only (no KD)',
  };
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const lines = [
    '# Ablation (Fashion-MNIST)',
    '',
    `Measured ${info.date} on ${info.machine}, engine ${info.engine}. Same network (${info.width}-${2 * info.width}-${4 * info.width} channels), same budget and seed`,
    `for every row; ${info.frames} training frames, test accuracy on ${info.testFrames} test frames (binary networks after folding, as shipped).`,
    '',
    `Command: \`${info.command}\``,
    '',
    '| variant | T | test accuracy | unfolded | epochs | training time (s) | M MAC / frame | spike rate per layer (test) |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${names[r.variant] ?? r.variant} | ${r.T} | ${pct(r.testAccuracy)}${r.folded === false ? ' ᵘ' : ''} | ${r.unfoldedAccuracy === undefined ? '–' : pct(r.unfoldedAccuracy)} | ${r.epochs} | ${r.wallSeconds.toFixed(0)} | ${r.megaMacPerFrame.toFixed(1)} | ${r.spikeRates?.map((x) => x.toFixed(3)).join(' / ') ?? '–'} |`,
    ),
    '',
  ];
  if (rows.some((r) => r.folded === false))
    lines.push(
      "ᵘ the unfolded network's accuracy: the .bwsnn format's shortcuts span one conv, so a layout with shortcuts around blocks of two does not fold (the unfolded column compares every SNN row this way).",
      '',
    );
  if (info.pending?.length)
    lines.push(`Still to train: ${info.pending.map(caseLabel).join(', ')} (the same command resumes).`, '');
  if (info.note) lines.push(info.note, '');
  lines.push(KEPT_MARKER, '');
  return lines.join('\n');
}

/**
 * The line between the part of the ablation file `sei ablate` rewrites (above it) and the part it keeps (below it:
 * notes on what a table shows, earlier runs), so a rewritten table never loses what was written by hand.
 */
export const KEPT_MARKER = '<!-- sei ablate rewrites everything above this line and keeps everything below it -->';

/**
 * What an existing ablation file keeps below the marker: '' for a missing or empty file, undefined for a file with
 * text but no marker (rewriting it would lose that text, so `sei ablate` refuses it before it trains anything).
 */
export function keptMarkdown(existing: string | undefined): string | undefined {
  if (existing === undefined || existing.trim() === '') return '';
  const at = existing.indexOf(KEPT_MARKER);
  return at < 0 ? undefined : existing.slice(at + KEPT_MARKER.length).replace(/^\n+/, '');
}

/**
 * The file `sei ablate` writes: a freshly generated table (`ablationMarkdown`) followed by what the old file keeps;
 * an old file whose marker was removed while the run trained is kept whole.
 */
export function mergeAblationMarkdown(generated: string, existing: string | undefined): string {
  const kept = keptMarkdown(existing) ?? existing!;
  return kept ? `${generated}\n${kept}` : generated;
}
