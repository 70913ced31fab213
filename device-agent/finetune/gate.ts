/**
 * The gate: a fine-tuned head ships only when it is better on labelled frames it never trained on, and not
 * meaningfully worse on the reference frames from the original distribution that ship with the model.
 */
import { ConfigError, rng, shuffle } from '../../runtime/index.js';

export interface GateOptions {
  /** Fraction of the labelled frames held out from training to judge the result. Default 0.25. */
  readonly holdoutFraction?: number;
  /** Holdout accuracy must rise by at least this much (absolute, 0.02 = 2 points). Default 0.02. */
  readonly minGain?: number;
  /** Reference accuracy may fall by at most this much (absolute). Default 0.02. */
  readonly maxReferenceDrop?: number;
  /**
   * The holdout gain must also be unlikely to be luck: among holdout frames where parent and candidate disagree
   * on correctness, the one-sided exact sign test of "candidate fixes more than it breaks" must reach this
   * p-value (1 disables it). Guards small holdouts, where one frame is several points. Default 0.05.
   */
  readonly maxPValue?: number;
  /** Fewer labelled frames than this are refused outright (the holdout would be noise). Default 40. */
  readonly minFrames?: number;
  /** Seed of the train/holdout split. Default 1. */
  readonly seed?: number;
}

export const GATE_DEFAULTS = {
  holdoutFraction: 0.25,
  minGain: 0.02,
  maxReferenceDrop: 0.02,
  maxPValue: 0.05,
  minFrames: 40,
  seed: 1,
} as const;

export function gateOptions(options: GateOptions = {}): Required<GateOptions> {
  const o = { ...GATE_DEFAULTS, ...options };
  const check = (name: keyof GateOptions, ok: boolean, expected: string) => {
    if (!ok)
      throw new ConfigError(
        `finetune.gate.${name}: expected ${expected}, got ${JSON.stringify(o[name])}`,
        `finetune.gate.${name}`,
      );
  };
  check('holdoutFraction', o.holdoutFraction > 0 && o.holdoutFraction < 1, 'a number between 0 and 1 (exclusive)');
  check('minGain', Number.isFinite(o.minGain) && o.minGain >= -1 && o.minGain <= 1, 'a number in -1..1');
  check(
    'maxReferenceDrop',
    Number.isFinite(o.maxReferenceDrop) && o.maxReferenceDrop >= 0 && o.maxReferenceDrop <= 1,
    'a number in 0..1',
  );
  check('maxPValue', o.maxPValue > 0 && o.maxPValue <= 1, 'a number in (0, 1]');
  check('minFrames', Number.isInteger(o.minFrames) && o.minFrames >= 2, 'an integer >= 2');
  check('seed', Number.isInteger(o.seed), 'an integer');
  return o;
}

/**
 * Seeded stratified split: frames are shuffled, grouped by label, and every 1/fraction-th one of that ordering is
 * held out, so each class lands in the holdout in proportion (within one frame) and the total is floor(n*f).
 */
export function stratifiedSplit(
  labels: ArrayLike<number>,
  holdoutFraction: number,
  seed: number,
): { readonly train: number[]; readonly holdout: number[] } {
  const order = shuffle(
    Array.from({ length: labels.length }, (_, i) => i),
    rng(seed),
  );
  // Stable sort by label keeps the shuffled order within each class.
  order.sort((a, b) => labels[a]! - labels[b]!);
  const train: number[] = [];
  const holdout: number[] = [];
  order.forEach((row, i) =>
    (Math.floor((i + 1) * holdoutFraction) > Math.floor(i * holdoutFraction) ? holdout : train).push(row),
  );
  return { train: train.sort((a, b) => a - b), holdout: holdout.sort((a, b) => a - b) };
}

/** Accuracy of the parent head and of the candidate on one set of frames. */
export interface Comparison {
  readonly frames: number;
  readonly before: number;
  readonly after: number;
}

/** Holdout frames also counted one by one: fixed = parent wrong and candidate right; broken = the reverse. */
export interface HoldoutComparison extends Comparison {
  readonly fixed: number;
  readonly broken: number;
}

/** One-sided exact sign test: the probability of at least `wins` heads in `wins + losses` fair coin flips. */
export function signTestP(wins: number, losses: number): number {
  const n = wins + losses;
  // log C(n, k) - n log 2, summed from k = wins to n; log space keeps large n finite.
  const logFact = [0];
  for (let i = 1; i <= n; i++) logFact.push(logFact[i - 1]! + Math.log(i));
  let p = 0;
  for (let k = wins; k <= n; k++) p += Math.exp(logFact[n]! - logFact[k]! - logFact[n - k]! - n * Math.LN2);
  return Math.min(1, p);
}

export interface GateDecision {
  readonly accepted: boolean;
  /** One line per check, passed or failed, with its numbers. */
  readonly reasons: string[];
  /** Labelled frames used to train (accuracy on them, before and after). */
  readonly train: Comparison;
  /** Labelled frames held out: `after - before` must reach minGain, and the sign test maxPValue. */
  readonly holdout: HoldoutComparison & { readonly gain: number; readonly pValue: number };
  /** Reference frames (never trained on) from the original distribution: `before - after` must stay within maxReferenceDrop. */
  readonly reference: Comparison & { readonly drop: number };
  readonly options: Required<GateOptions>;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const points = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)} points`;

/** Judges a candidate from its accuracies; the numbers in, a decision with its reasons out. */
export function decide(
  train: Comparison,
  holdout: HoldoutComparison,
  reference: Comparison,
  options: Required<GateOptions>,
  labelled: number,
): GateDecision {
  const reasons: string[] = [];
  let accepted = true;
  const check = (ok: boolean, line: string) => {
    reasons.push(`${ok ? 'pass' : 'FAIL'}: ${line}`);
    if (!ok) accepted = false;
  };
  const gain = holdout.after - holdout.before;
  const drop = reference.before - reference.after;
  const pValue = signTestP(holdout.fixed, holdout.broken);
  check(labelled >= options.minFrames, `${labelled} labelled frames (at least ${options.minFrames} needed)`);
  check(holdout.frames > 0, `${holdout.frames} holdout frames (at least 1 needed)`);
  check(reference.frames > 0, `${reference.frames} reference frames (at least 1 needed)`);
  // Compare in whole frames so that float noise cannot flip a decision at the boundary.
  const eps = 1e-9;
  check(
    gain >= options.minGain - eps,
    `holdout accuracy ${pct(holdout.before)} -> ${pct(holdout.after)} (${points(gain)}; at least ${points(options.minGain)} required)`,
  );
  check(
    pValue <= options.maxPValue,
    `holdout: the candidate fixes ${holdout.fixed} frames and breaks ${holdout.broken} (sign test p = ${pValue.toPrecision(2)}; at most ${options.maxPValue} required)`,
  );
  check(
    drop <= options.maxReferenceDrop + eps,
    `reference accuracy ${pct(reference.before)} -> ${pct(reference.after)} (${points(-drop)}; a fall of at most ${(100 * options.maxReferenceDrop).toFixed(1)} points allowed)`,
  );
  return {
    accepted,
    reasons,
    train,
    holdout: { ...holdout, gain, pValue },
    reference: { ...reference, drop },
    options,
  };
}
