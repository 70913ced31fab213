/**
 * Data for training and evaluation: Fashion-MNIST IDX files (the runtime's reader, runtime/data/idx.ts) or an
 * image folder (images.ts, split.ts), told apart by what the folder holds; a validation split, augmentation
 * (horizontal flip, small random translation = random crop of the zero-padded frame) and batching into float32
 * raw pixel values (0..255, the network divides by 255 itself, as the exported first layer does). Every frame
 * that is not already of the model's shape is fitted to it by runtime/data/fit.ts, the function the box uses.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FASHION_MNIST_DIR, FASHION_MNIST_LABELS, readMnistSplit } from '../../runtime/data/idx.js';
import type { Fit, FrameShape } from '../../runtime/data/fit.js';
import { DEFAULT_FIT, fitFrame } from '../../runtime/data/fit.js';
import { ConfigError } from '../../runtime/errors.js';
import type { DecodedFolder } from './images.js';
import { readImageFolder } from './images.js';
import { permutation, stream } from './random.js';
import type { DataReport, ReportFrame } from './report.js';
import { buildReport, trainingProblems } from './report.js';
import type { FolderSplit } from './split.js';
import { applySplitRecord, readSplitRecord, SPLIT_FILE, splitFolder, splitRecord, writeSplitRecord } from './split.js';
import type { DataOptions, Dataset, Holdout, Split } from './types.js';
import { DEFAULT_HOLDOUT } from './types.js';

export type { DataOptions, Dataset, Holdout, Split } from './types.js';
export { DEFAULT_HOLDOUT } from './types.js';
export type { DataReport } from './report.js';
export { formatReport, trainingProblems } from './report.js';

/** Frame shape of an image folder's model when `--input` is not given. */
export const DEFAULT_FOLDER_INPUT: FrameShape = [32, 32, 3];

function subset(s: Split, idx: ArrayLike<number>): Split {
  const size = s.shape[0] * s.shape[1] * s.shape[2];
  const images = new Uint8Array(idx.length * size);
  const labels = new Uint8Array(idx.length);
  const files: string[] = [];
  for (let i = 0; i < idx.length; i++) {
    const j = idx[i]!;
    images.set(s.images.subarray(j * size, (j + 1) * size), i * size);
    labels[i] = s.labels[j]!;
    if (s.files) files.push(s.files[j]!);
  }
  return { count: idx.length, shape: s.shape, images, labels, ...(s.files ? { files } : {}) };
}

function toSplit(dir: string, which: 'train' | 't10k'): Split {
  const f = readMnistSplit(dir, which);
  return { count: f.count, shape: f.frameShape, images: f.images, labels: f.labels };
}

const IDX_FILES = ['train-images-idx3-ubyte.gz', 't10k-images-idx3-ubyte.gz'];

/** `idx` for a folder of MNIST-layout files (and for a path that does not exist: its error names the package). */
export function dataKind(dir: string): 'idx' | 'image-folder' {
  if (!existsSync(dir) || IDX_FILES.some((f) => existsSync(join(dir, f)))) return 'idx';
  return 'image-folder';
}

/** Fashion-MNIST from IDX files: the training file less a fixed validation hold-out, and the test file. */
export function loadDataset(opts: DataOptions = {}): Dataset {
  const dir = opts.dir ?? FASHION_MNIST_DIR;
  if (dataKind(dir) === 'image-folder')
    throw new ConfigError(`--data: ${dir} is an image folder; it is read by loadData, not loadDataset`, '--data');
  const all = toSplit(dir, 'train');
  const valSize = opts.valSize ?? 5000;
  const order = permutation(all.count, stream(0, 'validation-split'));
  const trainIdx = order.subarray(
    valSize,
    opts.trainLimit ? Math.min(all.count, valSize + opts.trainLimit) : all.count,
  );
  const test = toSplit(dir, 't10k');
  const ds: Dataset = {
    train: subset(all, trainIdx),
    val: subset(all, order.subarray(0, valSize)),
    test: opts.testLimit
      ? subset(
          test,
          Array.from({ length: Math.min(test.count, opts.testLimit) }, (_, i) => i),
        )
      : test,
    labels: FASHION_MNIST_LABELS,
  };
  return opts.input ? fitDataset(ds, opts.input, opts.fit ?? DEFAULT_FIT) : ds;
}

/** Every frame of `s` fitted to `shape` (the same split when it already has that shape). */
export function fitSplit(s: Split, shape: FrameShape, fit: Fit = DEFAULT_FIT): Split {
  const [h, w, c] = s.shape;
  if (h === shape[0] && w === shape[1] && c === shape[2]) return s;
  const from = h * w * c,
    to = shape[0] * shape[1] * shape[2];
  const images = new Uint8Array(s.count * to);
  for (let i = 0; i < s.count; i++)
    images.set(fitFrame(s.images.subarray(i * from, (i + 1) * from), s.shape, shape, fit), i * to);
  return { ...s, shape: [shape[0], shape[1], shape[2]], images };
}

export interface LoadContext {
  /** The run folder whose split record (split.json) is read or written (image folders). */
  readonly run?: string;
  /** Read the run's split record when it has one (resume, export, eval --run). */
  readonly reuse?: boolean;
  /** Write the split to the run folder when it was computed here (a run that starts). */
  readonly write?: boolean;
  /** Refuse (ConfigError) a data set `sei train` cannot learn from, before anything is written. */
  readonly trainable?: boolean;
  /** Called with the report as soon as it is made (before a refusal). */
  readonly onReport?: (report: DataReport) => void;
  /** The option that named the folder, for messages. Default `--data`. */
  readonly flag?: string;
  /** Progress lines (decoding, cache). */
  readonly onInfo?: (line: string) => void;
}

/** A data set with what it was read as and its report. */
export interface LoadedData extends Dataset {
  readonly kind: 'idx' | 'image-folder';
  readonly dir: string;
  readonly input: FrameShape;
  readonly fit: Fit;
  readonly report: DataReport;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function idxReport(dir: string, ds: Dataset, valSize: number): DataReport {
  const frames = (s: Split, name: string): ReportFrame[] => {
    const size = s.shape[0] * s.shape[1] * s.shape[2];
    return Array.from({ length: s.count }, (_, i) => ({
      path: `${name}#${i}`,
      className: ds.labels[s.labels[i]!] ?? `#${s.labels[i]}`,
      sha256: sha(s.images.subarray(i * size, (i + 1) * size)),
      width: s.shape[1],
      height: s.shape[0],
      channels: s.shape[2],
      format: 'idx',
    }));
  };
  const split = { train: frames(ds.train, 'train'), val: frames(ds.val, 'val'), test: frames(ds.test, 'test') };
  return buildReport({
    dir,
    kind: 'idx',
    splitRule: `validation: ${valSize} training frames held out (fixed); test: the t10k files`,
    classes: ds.labels,
    split,
    classFolders: [],
    all: [...split.train, ...split.val, ...split.test],
    skipped: [],
  });
}

const holdoutText = (h: Holdout) => `${Math.round(100 * h.val)}% val, ${Math.round(100 * h.test)}% test`;

/** An image folder's split (the run's record, or made here) and its report. */
function splitAndReport(
  dir: string,
  decoded: DecodedFolder,
  holdout: Holdout,
  ctx: LoadContext,
): { split: FolderSplit; report: DataReport } {
  const record = ctx.run && ctx.reuse ? readSplitRecord(ctx.run) : undefined;
  let split: FolderSplit;
  let splitRule: string;
  if (record) {
    split = applySplitRecord(record, decoded.images, join(ctx.run!, SPLIT_FILE), ctx.flag ?? '--data');
    splitRule = `split: the run's record ${join(ctx.run!, SPLIT_FILE)}`;
  } else {
    split = splitFolder(decoded.listing, decoded.images, holdout);
    const given = decoded.listing.splits;
    const carved = (['val', 'test'] as const).filter((s) => !given.includes(s));
    splitRule =
      decoded.listing.layout === 'splits'
        ? `split: ${given.map((s) => `${s}/`).join(' ')}${carved.length ? `; ${carved.map((s) => `${s} (${Math.round(100 * holdout[s])}%)`).join(' and ')} carved from train/ per class` : ''}`
        : `split: seeded per class, ${holdoutText(holdout)}`;
  }
  const report = buildReport({
    dir,
    kind: 'image-folder',
    splitRule,
    classes: split.classes,
    split: { train: split.train, val: split.val, test: split.test },
    classFolders: decoded.listing.classFolders,
    all: decoded.images,
    skipped: decoded.skipped,
  });
  checkReport(report, ctx);
  if (!record && ctx.run && ctx.write) writeSplitRecord(ctx.run, splitRecord(split, dir, holdout));
  return { split, report };
}

/** The report of the data set `opts` names, without fitting any frame (`sei data inspect`); `flag` names the folder in errors. */
export async function inspectData(opts: DataOptions = {}, flag = '--data'): Promise<DataReport> {
  const dir = opts.dir ?? FASHION_MNIST_DIR;
  if (dataKind(dir) === 'idx')
    return idxReport(dir, loadDataset({ ...opts, valSize: opts.valSize ?? 5000 }), opts.valSize ?? 5000);
  const decoded = await readImageFolder(dir, { fit: DEFAULT_FIT, flag });
  return splitAndReport(dir, decoded, opts.holdout ?? DEFAULT_HOLDOUT, {}).report;
}

/**
 * The data set `opts` names, IDX or image folder, with its report. An image folder is decoded (or read from the
 * frame cache), fitted to `opts.input` (default DEFAULT_FOLDER_INPUT) and split (split.ts), honouring the run's
 * split record as `ctx` says.
 */
export async function loadData(opts: DataOptions = {}, ctx: LoadContext = {}): Promise<LoadedData> {
  const dir = opts.dir ?? FASHION_MNIST_DIR;
  const fit = opts.fit ?? DEFAULT_FIT;
  if (dataKind(dir) === 'idx') {
    const { input: _fittedBelow, ...idx } = opts;
    const raw = loadDataset(idx);
    const ds = opts.input ? fitDataset(raw, opts.input, fit) : raw;
    const report = idxReport(dir, raw, opts.valSize ?? 5000);
    checkReport(report, ctx);
    return { ...ds, kind: 'idx', dir, input: ds.train.shape, fit, report };
  }
  const input = opts.input ?? DEFAULT_FOLDER_INPUT;
  const t0 = performance.now();
  const flag = ctx.flag ?? '--data';
  const decoded = await readImageFolder(dir, { shape: input, fit, flag });
  ctx.onInfo?.(
    decoded.cached
      ? `data: ${decoded.images.length} pictures of ${dir} from the frame cache`
      : `data: decoded ${decoded.images.length} pictures of ${dir} to ${input.join('×')} (fit ${fit}) in ${((performance.now() - t0) / 1000).toFixed(1)} s; cached`,
  );
  const { split, report } = splitAndReport(dir, decoded, opts.holdout ?? DEFAULT_HOLDOUT, ctx);
  if (split.classes.length > 256)
    throw new ConfigError(`${flag}: expected at most 256 classes, got ${split.classes.length}`, flag);
  const size = input[0] * input[1] * input[2];
  const index = new Map(decoded.images.map((e, i) => [e.path, i]));
  const toFrames = (list: FolderSplit['train']): Split => {
    const images = new Uint8Array(list.length * size);
    const labels = new Uint8Array(list.length);
    list.forEach((e, i) => {
      const j = index.get(e.path)!;
      images.set(decoded.frames!.subarray(j * size, (j + 1) * size), i * size);
      labels[i] = split.classes.indexOf(e.className);
    });
    return {
      count: list.length,
      shape: [input[0], input[1], input[2]],
      images,
      labels,
      files: list.map((e) => join(decoded.listing.dir, e.path)),
    };
  };
  let train = toFrames(split.train);
  let test = toFrames(split.test);
  if (opts.trainLimit && opts.trainLimit < train.count) {
    // A seeded sample in frame order: the first N would be the first classes only.
    const keep = Array.from(permutation(train.count, stream(0, 'train-limit')).subarray(0, opts.trainLimit)).sort(
      (a, b) => a - b,
    );
    train = subset(train, keep);
  }
  if (opts.testLimit && opts.testLimit < test.count)
    test = subset(
      test,
      Array.from({ length: opts.testLimit }, (_, i) => i),
    );
  return {
    train,
    val: toFrames(split.val),
    test,
    labels: split.classes,
    kind: 'image-folder',
    dir,
    input,
    fit,
    report,
  };
}

function fitDataset(ds: Dataset, input: FrameShape, fit: Fit): Dataset {
  return {
    ...ds,
    train: fitSplit(ds.train, input, fit),
    val: fitSplit(ds.val, input, fit),
    test: fitSplit(ds.test, input, fit),
  };
}

export type Subset = 'train' | 'val' | 'test' | 'all';
export const SUBSETS: readonly Subset[] = ['test', 'val', 'train', 'all'];

/** Splits one after the other (frames, labels and files). */
export function concatSplits(parts: readonly Split[]): Split {
  const shape = parts[0]!.shape;
  const size = shape[0] * shape[1] * shape[2];
  const count = parts.reduce((a, p) => a + p.count, 0);
  const images = new Uint8Array(count * size),
    labels = new Uint8Array(count);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * size);
    labels.set(p.labels, at);
    at += p.count;
  }
  const files = parts.every((p) => p.files) ? parts.flatMap((p) => p.files!) : undefined;
  return { count, shape, images, labels, ...(files ? { files } : {}) };
}

/**
 * An image folder's frames for an existing model (`sei eval`, `sei run`, `sei finetune`): fitted to the model's
 * input with its fit policy, labelled with the index of the model's label that names each class folder (a folder
 * the model has no label for is a ConfigError naming it).
 */
export async function folderFramesForModel(
  dir: string,
  model: { readonly input: FrameShape; readonly labels: readonly string[]; readonly fit: Fit },
  opts: { readonly subset: Subset; readonly holdout?: Holdout; readonly run?: string; readonly flag?: string },
): Promise<{ readonly split: Split; readonly data: LoadedData }> {
  const flag = opts.flag ?? '--data';
  const data = await loadData(
    { dir, input: model.input, fit: model.fit, ...(opts.holdout ? { holdout: opts.holdout } : {}) },
    { flag, ...(opts.run ? { run: opts.run, reuse: true } : {}) },
  );
  const toModel = data.labels.map((name) => model.labels.indexOf(name));
  const unknown = data.labels.filter((_, i) => toModel[i]! < 0);
  if (unknown.length) {
    throw new ConfigError(
      `${flag}: expected class folders named after the model's labels (${model.labels.join(', ')}), got ${unknown.map((u) => JSON.stringify(u)).join(', ')}`,
      flag,
    );
  }
  const picked = opts.subset === 'all' ? concatSplits([data.train, data.val, data.test]) : data[opts.subset];
  return { split: { ...picked, labels: picked.labels.map((l) => toModel[l]!) }, data };
}

/** Hands the report out, then refuses an untrainable data set when `ctx.trainable`. */
function checkReport(report: DataReport, ctx: LoadContext): void {
  ctx.onReport?.(report);
  const problems = ctx.trainable ? trainingProblems(report) : [];
  const flag = ctx.flag ?? '--data';
  if (problems.length) throw new ConfigError(`${flag}: ${report.dir}: ${problems.join('; ')}`, flag);
}

export interface Augment {
  /** Probability of a horizontal flip. */
  readonly flip: number;
  /** Maximum translation in pixels each way (zero fill), i.e. a random crop of the frame padded by `shift`. */
  readonly shift: number;
}

export const DEFAULT_AUGMENT: Augment = { flip: 0.5, shift: 2 };

/** Copies frames `idx` into a float32 batch [n, h, w, c] of raw values, augmenting with `r` when given. */
export function makeBatch(
  s: Split,
  idx: ArrayLike<number>,
  augment?: Augment,
  r?: () => number,
): { x: Float32Array; y: Int32Array } {
  const [h, w, c] = s.shape;
  const size = h * w * c;
  const x = new Float32Array(idx.length * size);
  const y = new Int32Array(idx.length);
  for (let b = 0; b < idx.length; b++) {
    const j = idx[b]!;
    y[b] = s.labels[j]!;
    const src = s.images.subarray(j * size, (j + 1) * size);
    const dst = b * size;
    if (!augment || !r) {
      for (let i = 0; i < size; i++) x[dst + i] = src[i]!;
      continue;
    }
    const flip = r() < augment.flip;
    const dy = Math.floor(r() * (2 * augment.shift + 1)) - augment.shift;
    const dx = Math.floor(r() * (2 * augment.shift + 1)) - augment.shift;
    for (let yy = 0; yy < h; yy++) {
      const sy = yy + dy;
      if (sy < 0 || sy >= h) continue;
      for (let xx = 0; xx < w; xx++) {
        let sx = xx + dx;
        if (sx < 0 || sx >= w) continue;
        if (flip) sx = w - 1 - sx;
        for (let ch = 0; ch < c; ch++) x[dst + (yy * w + xx) * c + ch] = src[(sy * w + sx) * c + ch]!;
      }
    }
  }
  return { x, y };
}

/** The batches of one epoch: a seeded shuffle per (seed, epoch); the last partial batch is dropped. */
export function epochOrder(count: number, batchSize: number, seed: number, epoch: number): Uint32Array[] {
  const order = permutation(count, stream(seed, 'shuffle', epoch));
  const out: Uint32Array[] = [];
  for (let i = 0; i + batchSize <= count; i += batchSize) out.push(order.subarray(i, i + batchSize));
  return out;
}
