/**
 * What a data set holds, for `sei data inspect` and the summary `sei train` prints before it starts: frames per
 * class and split, picture sizes, channels and formats, class imbalance, identical files (content hash) and in
 * which splits and classes they sit, class folders without a readable picture, and every file not read and why.
 * `trainingProblems` says what makes a data set untrainable; `sei train` refuses on it.
 */
import type { Skipped, SplitName } from './images.js';

/** One frame as the report sees it (an image file, or a frame of an IDX file). */
export interface ReportFrame {
  readonly path: string;
  readonly className: string;
  readonly sha256: string;
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly format: string;
}

export interface DuplicateGroup {
  readonly sha256: string;
  readonly files: ReadonlyArray<{
    readonly path: string;
    readonly className: string;
    readonly split: SplitName | null;
  }>;
}

export interface DataReport {
  readonly dir: string;
  readonly kind: 'image-folder' | 'idx';
  /** How the splits were made, in words. */
  readonly splitRule: string;
  readonly classes: ReadonlyArray<{
    readonly name: string;
    readonly train: number;
    readonly val: number;
    readonly test: number;
    readonly total: number;
  }>;
  readonly frames: { readonly train: number; readonly val: number; readonly test: number; readonly total: number };
  /** Picture sizes (before fitting), most frequent first. */
  readonly sizes: ReadonlyArray<{ readonly width: number; readonly height: number; readonly frames: number }>;
  readonly channels: { readonly gray: number; readonly colour: number };
  readonly formats: Readonly<Record<string, number>>;
  /** Largest and smallest class by frames (all splits); ratio largest / smallest (Infinity with an empty class). */
  readonly imbalance: {
    readonly largest: { readonly name: string; readonly frames: number };
    readonly smallest: { readonly name: string; readonly frames: number };
    readonly ratio: number;
  };
  readonly duplicates: {
    /** Sets of two or more identical files. */
    readonly groups: number;
    /** Files that repeat another one. */
    readonly extraFiles: number;
    /** Groups whose files sit in more than one split: a frame trained on and scored on. */
    readonly acrossSplits: readonly DuplicateGroup[];
    /** Groups whose files sit in more than one class: the same picture with two labels. */
    readonly acrossClasses: readonly DuplicateGroup[];
  };
  /** Class folders (as `split/class` or `class`) without a readable picture. */
  readonly emptyClasses: readonly string[];
  /** Everything not read, with the reason. */
  readonly skipped: readonly Skipped[];
  /** Readable pictures a run's split record leaves out (added after the run started). */
  readonly notInSplit: number;
}

export interface ReportInput {
  readonly dir: string;
  readonly kind: DataReport['kind'];
  readonly splitRule: string;
  readonly classes: readonly string[];
  readonly split: Readonly<Record<SplitName, readonly ReportFrame[]>>;
  readonly classFolders: readonly { readonly className: string; readonly split?: SplitName }[];
  /** Every readable frame, in a split or not. */
  readonly all: readonly ReportFrame[];
  readonly skipped: readonly Skipped[];
}

export function buildReport(inp: ReportInput): DataReport {
  const splitOf = new Map<string, SplitName>();
  for (const s of ['train', 'val', 'test'] as const) for (const f of inp.split[s]) splitOf.set(f.path, s);
  const classes = inp.classes.map((name) => {
    const n = (s: SplitName) => inp.split[s].filter((f) => f.className === name).length;
    const [train, val, test] = [n('train'), n('val'), n('test')];
    return { name, train, val, test, total: train + val + test };
  });
  const count = (s: SplitName) => inp.split[s].length;
  const inSplit = [...inp.split.train, ...inp.split.val, ...inp.split.test];
  const sizes = new Map<string, { width: number; height: number; frames: number }>();
  const formats: Record<string, number> = {};
  let gray = 0;
  for (const f of inSplit) {
    const key = `${f.width}x${f.height}`;
    const s = sizes.get(key) ?? { width: f.width, height: f.height, frames: 0 };
    sizes.set(key, { ...s, frames: s.frames + 1 });
    formats[f.format] = (formats[f.format] ?? 0) + 1;
    if (f.channels === 1) gray++;
  }
  const sorted = [...classes].sort((a, b) => b.total - a.total);
  const largest = sorted[0] ?? { name: '', total: 0 },
    smallest = sorted[sorted.length - 1] ?? { name: '', total: 0 };
  const groups = new Map<string, ReportFrame[]>();
  for (const f of inp.all) groups.set(f.sha256, [...(groups.get(f.sha256) ?? []), f]);
  const dup = [...groups.entries()]
    .filter(([, g]) => g.length > 1)
    .map(
      ([sha256, g]): DuplicateGroup => ({
        sha256,
        files: g.map((f) => ({ path: f.path, className: f.className, split: splitOf.get(f.path) ?? null })),
      }),
    );
  const distinct = (g: DuplicateGroup, key: (f: DuplicateGroup['files'][number]) => unknown) =>
    new Set(g.files.map(key).filter((k) => k !== null)).size > 1;
  const readable = new Set(inp.all.map((f) => `${f.path.split('/').slice(0, -1).join('/')}`));
  const emptyClasses = inp.classFolders
    .map((c) => (c.split ? `${c.split}/${c.className}` : c.className))
    .filter((folder) => ![...readable].some((d) => d === folder || d.startsWith(`${folder}/`)));
  return {
    dir: inp.dir,
    kind: inp.kind,
    splitRule: inp.splitRule,
    classes,
    frames: { train: count('train'), val: count('val'), test: count('test'), total: inSplit.length },
    sizes: [...sizes.values()].sort((a, b) => b.frames - a.frames || a.width - b.width || a.height - b.height),
    channels: { gray, colour: inSplit.length - gray },
    formats,
    imbalance: {
      largest: { name: largest.name, frames: largest.total },
      smallest: { name: smallest.name, frames: smallest.total },
      ratio: smallest.total ? largest.total / smallest.total : Infinity,
    },
    duplicates: {
      groups: dup.length,
      extraFiles: dup.reduce((a, g) => a + g.files.length - 1, 0),
      acrossSplits: dup.filter((g) => distinct(g, (f) => f.split)),
      acrossClasses: dup.filter((g) => distinct(g, (f) => f.className)),
    },
    emptyClasses,
    skipped: inp.skipped,
    notInSplit: inp.all.length - inSplit.length,
  };
}

/** What makes the data set untrainable, one sentence each (empty: trainable). */
export function trainingProblems(r: DataReport): string[] {
  const out: string[] = [];
  if (r.classes.length < 2)
    out.push(
      `expected at least 2 classes, got ${r.classes.length}${r.classes.length ? ` (${r.classes[0]!.name})` : ''}: a classifier needs one folder per class`,
    );
  if (r.emptyClasses.length)
    out.push(
      `expected a readable picture in every class folder, got none in ${r.emptyClasses.map((c) => `${c}/`).join(', ')}: add pictures or remove the folder`,
    );
  const noTrain = r.classes.filter(
    (c) => c.train === 0 && !r.emptyClasses.some((e) => e === c.name || e.endsWith(`/${c.name}`)),
  );
  if (noTrain.length)
    out.push(`expected training frames in every class, got none for ${noTrain.map((c) => c.name).join(', ')}`);
  return out;
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : what.endsWith('s') ? 'es' : 's'}`;

/** The report as lines for a terminal; `maxListed` bounds the files listed per section. */
export function formatReport(r: DataReport, maxListed = 20): string[] {
  const lines: string[] = [];
  const f = r.frames;
  lines.push(`data: ${r.dir} (${r.kind === 'idx' ? 'IDX files' : 'image folder'}; ${r.splitRule})`);
  lines.push(
    `${plural(r.classes.length, 'class')}, ${plural(f.total, 'frame')}: train ${f.train}, val ${f.val}, test ${f.test}${r.notInSplit ? ` (${r.notInSplit} more not in the run's split)` : ''}`,
  );
  const w = Math.max(5, ...r.classes.map((c) => c.name.length));
  lines.push(`  ${'class'.padEnd(w)}  ${'train'.padStart(6)} ${'val'.padStart(6)} ${'test'.padStart(6)}`);
  for (const c of r.classes)
    lines.push(
      `  ${c.name.padEnd(w)}  ${String(c.train).padStart(6)} ${String(c.val).padStart(6)} ${String(c.test).padStart(6)}`,
    );
  const sizes = r.sizes
    .slice(0, 5)
    .map((s) => `${s.width}×${s.height} (${s.frames})`)
    .join(', ');
  lines.push(
    `sizes: ${sizes || 'none'}${r.sizes.length > 5 ? `, and ${r.sizes.length - 5} more` : ''}; channels: gray ${r.channels.gray}, colour ${r.channels.colour}; formats: ${
      Object.entries(r.formats)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'
    }`,
  );
  if (r.classes.length)
    lines.push(
      `imbalance: largest ${r.imbalance.largest.name} (${r.imbalance.largest.frames}), smallest ${r.imbalance.smallest.name} (${r.imbalance.smallest.frames}), ratio ${Number.isFinite(r.imbalance.ratio) ? r.imbalance.ratio.toFixed(2) : '∞'}`,
    );
  const d = r.duplicates;
  lines.push(
    d.groups
      ? `duplicates: ${plural(d.groups, 'set')} of identical files (${d.extraFiles} extra); ${d.acrossSplits.length} across splits, ${d.acrossClasses.length} across classes`
      : 'duplicates: none',
  );
  const group = (g: DuplicateGroup) =>
    `  ${g.files.map((x) => `${x.path}${x.split ? ` [${x.split}]` : ''}`).join(' = ')}`;
  for (const g of d.acrossSplits.slice(0, maxListed)) lines.push(group(g));
  for (const g of d.acrossClasses.filter((g) => !d.acrossSplits.includes(g)).slice(0, maxListed)) lines.push(group(g));
  if (r.emptyClasses.length) lines.push(`empty class folders: ${r.emptyClasses.map((c) => `${c}/`).join(', ')}`);
  if (r.skipped.length) {
    lines.push(`skipped ${plural(r.skipped.length, 'file')}:`);
    for (const s of r.skipped.slice(0, maxListed)) lines.push(`  ${s.path}: ${s.reason}`);
    if (r.skipped.length > maxListed)
      lines.push(`  … and ${r.skipped.length - maxListed} more (sei data inspect --json lists all)`);
  }
  return lines;
}
