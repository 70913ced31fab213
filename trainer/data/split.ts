/**
 * Train / validation / test splits of an image folder, and the record a run keeps of its split.
 *
 * Split folders (train/, val/, test/) are used as they are; a missing val/ or test/, or a folder of class folders
 * alone, is carved per class (stratified) by a seeded shuffle that does not depend on the run seed, as the IDX
 * validation hold-out does not: runs with other seeds are scored on the same frames. Identical files (same
 * SHA-256) of a class are kept together, so a carved split never has a frame in both train and test.
 *
 * A run writes its split to `<run>/split.json` when it starts; `--resume`, `sei export` and `sei eval --run` read
 * the frames it names, so pictures added to the folder later do not enter the run, and a named picture that was
 * removed or changed is refused by name.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../runtime/errors.js';
import type { FolderListing, ImageEntry, SplitName } from './images.js';
import { stream } from './random.js';
import { shuffle } from '../../runtime/data/random.js';
import type { Holdout } from './types.js';

export interface FolderSplit {
  readonly classes: readonly string[];
  readonly train: readonly ImageEntry[];
  readonly val: readonly ImageEntry[];
  readonly test: readonly ImageEntry[];
}

export const SPLIT_FILE = 'split.json';

export interface SplitRecord {
  readonly format: 'sei-split-1';
  /** The data folder as given to the run (for messages; frames are found by path relative to `--data`). */
  readonly dir: string;
  readonly classes: readonly string[];
  readonly holdout: Holdout;
  /** Per split, [path relative to the folder, SHA-256 of the file] of every frame, in frame order. */
  readonly train: ReadonlyArray<readonly [string, string]>;
  readonly val: ReadonlyArray<readonly [string, string]>;
  readonly test: ReadonlyArray<readonly [string, string]>;
}

/** Seed of every carved split (fixed: see the module comment). */
const SPLIT_SEED = 0;

/** Hold-out counts for `n` frames: each fraction rounded, at least one frame left for training. */
function quotas(n: number, h: { val: number; test: number }): { val: number; test: number } {
  let test = Math.round(n * h.test),
    val = Math.round(n * h.val);
  while (n - val - test < 1 && test + val > 0) {
    if (test >= val && test > 0) test--;
    else val--;
  }
  return { val, test };
}

/** Splits one class's pool into test, val and train by whole groups of identical files. */
function carve(
  pool: readonly ImageEntry[],
  className: string,
  h: { val: number; test: number },
): Record<SplitName, ImageEntry[]> {
  const groups = new Map<string, ImageEntry[]>();
  for (const e of pool) groups.set(e.sha256, [...(groups.get(e.sha256) ?? []), e]);
  const order = shuffle([...groups.values()], stream(SPLIT_SEED, `folder-split/${className}`));
  const want = quotas(pool.length, h);
  const out: Record<SplitName, ImageEntry[]> = { train: [], val: [], test: [] };
  for (const g of order) {
    const to: SplitName = out.test.length < want.test ? 'test' : out.val.length < want.val ? 'val' : 'train';
    out[to].push(...g);
  }
  return out;
}

const byPath = (a: ImageEntry, b: ImageEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/** The split of a decoded folder: split folders as they are, the rest carved per class with `holdout`. */
export function splitFolder(listing: FolderListing, images: readonly ImageEntry[], holdout: Holdout): FolderSplit {
  const classes = listing.classes;
  const has = (s: SplitName) => listing.splits.includes(s);
  const out: Record<SplitName, ImageEntry[]> = { train: [], val: [], test: [] };
  for (const className of classes) {
    const mine = images.filter((e) => e.className === className);
    const pool = listing.layout === 'classes' ? mine : mine.filter((e) => e.split === 'train');
    const carved = carve(pool, className, { val: has('val') ? 0 : holdout.val, test: has('test') ? 0 : holdout.test });
    for (const s of ['train', 'val', 'test'] as const) {
      const given =
        listing.layout === 'splits' && s !== 'train' && has(s) ? mine.filter((e) => e.split === s) : carved[s];
      out[s].push(...[...given].sort(byPath));
    }
  }
  return { classes, ...out };
}

export function splitRecord(split: FolderSplit, dir: string, holdout: Holdout): SplitRecord {
  const refs = (list: readonly ImageEntry[]) => list.map((e) => [e.path, e.sha256] as const);
  return {
    format: 'sei-split-1',
    dir,
    classes: split.classes,
    holdout,
    train: refs(split.train),
    val: refs(split.val),
    test: refs(split.test),
  };
}

export function readSplitRecord(run: string): SplitRecord | undefined {
  const file = join(run, SPLIT_FILE);
  if (!existsSync(file)) return undefined;
  let rec: SplitRecord;
  try {
    rec = JSON.parse(readFileSync(file, 'utf8')) as SplitRecord;
  } catch (err) {
    throw new ConfigError(
      `${file}: expected the run's split record (JSON), got unreadable content (${(err as Error).message})`,
      'split',
    );
  }
  if (rec.format !== 'sei-split-1' || !Array.isArray(rec.classes) || !Array.isArray(rec.train)) {
    throw new ConfigError(
      `${file}: expected a split record of format sei-split-1, got format ${JSON.stringify(rec.format)}`,
      'split',
    );
  }
  return rec;
}

export function writeSplitRecord(run: string, rec: SplitRecord): void {
  mkdirSync(run, { recursive: true });
  writeFileSync(join(run, SPLIT_FILE), JSON.stringify(rec) + '\n');
}

/**
 * The split a record names, found in the decoded folder: every named frame must still be there with the same
 * content (else a ConfigError listing them); pictures the record does not name are left out.
 */
export function applySplitRecord(
  rec: SplitRecord,
  images: readonly ImageEntry[],
  where: string,
  flag = '--data',
): FolderSplit {
  const byName = new Map(images.map((e) => [e.path, e]));
  const missing: string[] = [];
  const changed: string[] = [];
  const pick = (refs: SplitRecord['train']) =>
    refs.flatMap(([path, sha]) => {
      const e = byName.get(path);
      if (!e) missing.push(path);
      else if (e.sha256 !== sha) changed.push(path);
      else return [e];
      return [];
    });
  const split = { classes: rec.classes, train: pick(rec.train), val: pick(rec.val), test: pick(rec.test) };
  if (missing.length || changed.length) {
    const list = (what: string, l: string[]) =>
      l.length ? `${l.length} ${what} (${l.slice(0, 5).join(', ')}${l.length > 5 ? ', …' : ''})` : '';
    throw new ConfigError(
      `${flag}: expected the ${rec.train.length + rec.val.length + rec.test.length} pictures recorded in ${where} unchanged, ` +
        `got ${[list('missing or unreadable', missing), list('changed', changed)].filter(Boolean).join(' and ')}; ` +
        'put them back, or start a new run on the folder as it is now',
      flag,
    );
  }
  const unknown = split.train.concat(split.val, split.test).find((e) => !rec.classes.includes(e.className));
  if (unknown)
    throw new ConfigError(
      `${where}: expected classes ${rec.classes.join(', ')}, got ${unknown.path} in class ${JSON.stringify(unknown.className)}`,
      'split',
    );
  return split;
}
