/**
 * Classification results a person can read: accuracy, per-class precision and recall, the confusion matrix
 * (`sei eval --json`, `--markdown`), and the misclassified frames sorted into `true__predicted` folders
 * (`--errors`).
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { FrameShape } from '../../runtime/data/fit.js';
import { encodePng } from './images.js';

export interface ClassMetrics {
  readonly label: string;
  /** Frames of this class. */
  readonly support: number;
  /** Frames predicted as this class. */
  readonly predicted: number;
  /** Correct / predicted as this class; null when nothing was predicted as it. */
  readonly precision: number | null;
  /** Correct / support; null without frames of this class. */
  readonly recall: number | null;
}

export interface Classification {
  readonly accuracy: number;
  readonly n: number;
  readonly labels: readonly string[];
  readonly perClass: readonly ClassMetrics[];
  /** confusion[true][predicted] = frames. */
  readonly confusion: readonly (readonly number[])[];
}

/** Metrics of `predictions` against `truth` (label indices into `labels`). */
export function classify(
  truth: ArrayLike<number>,
  predictions: ArrayLike<number>,
  labels: readonly string[],
): Classification {
  const k = labels.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let correct = 0;
  for (let i = 0; i < truth.length; i++) {
    confusion[truth[i]!]![predictions[i]!]!++;
    if (truth[i] === predictions[i]) correct++;
  }
  const perClass = labels.map((label, c) => {
    const support = confusion[c]!.reduce((a, b) => a + b, 0);
    const predicted = confusion.reduce((a, row) => a + row[c]!, 0);
    const tp = confusion[c]![c]!;
    return {
      label,
      support,
      predicted,
      precision: predicted ? tp / predicted : null,
      recall: support ? tp / support : null,
    };
  });
  return { accuracy: truth.length ? correct / truth.length : 0, n: truth.length, labels, perClass, confusion };
}

const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
const cell = (s: string) => s.replace(/\|/g, '\\|');

/** The per-class table and the confusion matrix as Markdown, under a heading naming what was evaluated. */
export function classificationMarkdown(c: Classification, title: string, notes: readonly string[] = []): string {
  const lines = [
    `# ${title}`,
    '',
    ...notes.flatMap((n) => [n, '']),
    `Accuracy **${pct(c.accuracy)}** on ${c.n} frames.`,
    '',
    '| class | frames | predicted as it | precision | recall |',
    '|---|---:|---:|---:|---:|',
    ...c.perClass.map(
      (m) => `| ${cell(m.label)} | ${m.support} | ${m.predicted} | ${pct(m.precision)} | ${pct(m.recall)} |`,
    ),
    '',
    'Confusion matrix: rows are the true class, columns the predicted one.',
    '',
    `| true \\ predicted | ${c.labels.map(cell).join(' | ')} |`,
    `|---|${c.labels.map(() => '---:').join('|')}|`,
    ...c.confusion.map(
      (row, t) => `| ${cell(c.labels[t]!)} | ${row.map((v, p) => (p === t ? `**${v}**` : String(v))).join(' | ')} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

/** A label as a folder name: path separators and other unsafe characters become `-`. */
export function folderName(label: string): string {
  // Control characters are what must go: they are not allowed in file names on every file system.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
  const safe = label.replace(/[/\\:*?"<>|\u0000-\u001f]/g, '-').trim();
  return safe === '' || safe === '.' || safe === '..' ? '_' : safe;
}

export interface ErrorFrame {
  readonly truth: number;
  readonly prediction: number;
  /** The file the frame came from, copied as it is. */
  readonly file?: string;
  /** Without a file (IDX frames): the frame, written as `<name>.png`. */
  readonly name?: string;
  readonly pixels?: Uint8Array;
}

/**
 * Copies (or writes) every misclassified frame into `dir/<true>__<predicted>/`; returns the count per folder.
 * Names that would collide get a numeric prefix, so nothing is overwritten.
 */
export async function writeErrors(
  dir: string,
  frames: readonly ErrorFrame[],
  labels: readonly string[],
  shape: FrameShape,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const f of frames) {
    if (f.truth === f.prediction) continue;
    const folder = `${folderName(labels[f.truth]!)}__${folderName(labels[f.prediction]!)}`;
    mkdirSync(join(dir, folder), { recursive: true });
    counts[folder] = (counts[folder] ?? 0) + 1;
    const base = f.file ? basename(f.file) : `${f.name!}.png`;
    let target = join(dir, folder, base);
    for (let n = 1; existsSync(target); n++) target = join(dir, folder, `${n}-${base}`);
    if (f.file) copyFileSync(f.file, target);
    else writeFileSync(target, await encodePng(f.pixels!, shape));
  }
  return counts;
}
