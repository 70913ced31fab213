/**
 * Image folders on disk: listing (one subfolder per class, optionally under train/ val/ test/), decoding PNG and
 * JPEG with sharp, fitting every picture to a frame shape (runtime/data/fit.ts) and a cache of the result.
 *
 * sharp is a server-side dependency: it is imported only when a folder is decoded, so the device package (which
 * leaves it out) loads every command and refuses only an image folder, with a message saying so.
 *
 * Nothing in a folder stops a read: a file that is empty, not an image, of another format, larger than
 * MAX_PICTURE_PIXELS, or unreadable is skipped and listed with its reason.
 */
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError } from '../../runtime/errors.js';
import type { Fit, FrameShape } from '../../runtime/data/fit.js';
import { fitFrame } from '../../runtime/data/fit.js';

export const SPLIT_NAMES = ['train', 'val', 'test'] as const;
export type SplitName = (typeof SPLIT_NAMES)[number];

/** A file or folder that is not read, and why. Paths are relative to the data folder, with `/`. */
export interface Skipped {
  readonly path: string;
  readonly reason: string;
}

export interface ListedFile {
  readonly path: string;
  readonly className: string;
  /** The top-level split folder it is in (folders with train/), else undefined. */
  readonly split?: SplitName;
  readonly size: number;
  readonly mtimeMs: number;
}

export interface FolderListing {
  /** Absolute path of the data folder. */
  readonly dir: string;
  /** `splits`: top-level train/ (val/, test/) holding the class folders; `classes`: the class folders themselves. */
  readonly layout: 'classes' | 'splits';
  /** Every class folder name found (in any split), sorted by code point. */
  readonly classes: readonly string[];
  /** The split folders present (layout `splits`). */
  readonly splits: readonly SplitName[];
  /** Class folders, per split (`undefined` key for layout `classes`), as `split/class` or `class`. */
  readonly classFolders: readonly { readonly className: string; readonly split?: SplitName }[];
  /** Candidate files (anything inside a class folder), sorted by split, class, then path. */
  readonly files: readonly ListedFile[];
  /** Entries outside class folders and folders not read. */
  readonly skipped: readonly Skipped[];
}

/** A readable picture. */
export interface ImageEntry extends ListedFile {
  readonly sha256: string;
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly format: 'png' | 'jpeg';
}

export interface DecodedFolder {
  readonly listing: FolderListing;
  readonly images: readonly ImageEntry[];
  /** Files of the class folders that are not readable pictures, and entries the listing skipped. */
  readonly skipped: readonly Skipped[];
  /** With a `shape`: the images fitted to it, in `images` order, `shape` bytes each. */
  readonly frames?: Uint8Array;
  /** Whether the result came from the cache. */
  readonly cached: boolean;
}

const sortKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Lists `dir`; a path that is not a folder, or a folder without a single class folder, is a ConfigError. */
export function listFolder(dir: string, flag = '--data'): FolderListing {
  const root = resolve(dir);
  if (!existsSync(root))
    throw new ConfigError(
      `${flag}: expected an image folder (one subfolder per class) or IDX files, got ${JSON.stringify(dir)} (no such folder)`,
      flag,
    );
  if (!statSync(root).isDirectory())
    throw new ConfigError(
      `${flag}: expected a folder (one subfolder per class, or IDX files), got the file ${JSON.stringify(dir)}`,
      flag,
    );
  const skipped: Skipped[] = [];
  const files: ListedFile[] = [];
  const classFolders: Array<{ className: string; split?: SplitName }> = [];
  const top = readdirSync(root, { withFileTypes: true }).sort((a, b) => sortKey(a.name, b.name));
  const splits = SPLIT_NAMES.filter((s) => top.some((e) => e.isDirectory() && e.name === s));
  const layout = splits.includes('train') ? 'splits' : 'classes';
  const walkClass = (rel: string, className: string, split: SplitName | undefined) => {
    for (const e of readdirSync(join(root, rel), { withFileTypes: true }).sort((a, b) => sortKey(a.name, b.name))) {
      const path = `${rel}/${e.name}`;
      if (e.isDirectory()) walkClass(path, className, split);
      else if (e.isFile()) {
        const st = statSync(join(root, path));
        files.push({ path, className, ...(split ? { split } : {}), size: st.size, mtimeMs: st.mtimeMs });
      } else skipped.push({ path, reason: 'not a regular file (link, socket or device)' });
    }
  };
  const readClasses = (rel: string, split: SplitName | undefined) => {
    const entries = rel
      ? readdirSync(join(root, rel), { withFileTypes: true }).sort((a, b) => sortKey(a.name, b.name))
      : top;
    for (const e of entries) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (!rel && layout === 'splits' && e.isDirectory() && (SPLIT_NAMES as readonly string[]).includes(e.name))
        continue;
      if (!e.isDirectory()) {
        skipped.push({
          path,
          reason: rel
            ? `a file directly in ${rel}/: pictures go in its class folders`
            : 'a file at the top level: pictures go in class folders',
        });
        continue;
      }
      if (!rel && layout === 'splits') {
        skipped.push({ path: `${path}/`, reason: 'a folder beside train/ that is not val/ or test/' });
        continue;
      }
      if (e.name.startsWith('.')) {
        skipped.push({ path: `${path}/`, reason: 'a hidden folder' });
        continue;
      }
      // `sei capture pull` files the frames nobody labelled yet under `_unlabelled/`: no class.
      if (e.name.startsWith('_')) {
        skipped.push({ path: `${path}/`, reason: 'a folder starting with "_" (such as _unlabelled/): not a class' });
        continue;
      }
      classFolders.push({ className: e.name, ...(split ? { split } : {}) });
      walkClass(path, e.name, split);
    }
  };
  if (layout === 'splits') for (const s of splits) readClasses(s, s);
  else readClasses('', undefined);
  if (layout === 'splits') readClasses('', undefined);
  const classes = [...new Set(classFolders.map((c) => c.className))].sort(sortKey);
  if (!classes.length) {
    throw new ConfigError(
      `${flag}: expected one subfolder per class in ${dir} (optionally under train/, val/, test/), or Fashion-MNIST IDX files; found no class folder`,
      flag,
    );
  }
  const order = (f: ListedFile) => `${SPLIT_NAMES.indexOf(f.split ?? 'train')}\u0000${f.className}\u0000${f.path}`;
  files.sort((a, b) => sortKey(order(a), order(b)));
  return { dir: root, layout, classes, splits: layout === 'splits' ? splits : [], classFolders, files, skipped };
}

type SharpModule = typeof import('sharp').default;
let sharpModule: Promise<SharpModule> | undefined;

async function loadSharp(flag: string): Promise<SharpModule> {
  sharpModule ??= import('sharp').then((m) => m.default);
  try {
    return await sharpModule;
  } catch (err) {
    sharpModule = undefined;
    throw new ConfigError(
      `${flag}: reading an image folder needs the server-side package sharp (npm install sharp), which did not load: ${(err as Error).message.split('\n')[0]}. The device package reads IDX files only.`,
      flag,
    );
  }
}

/** One line of a decoder's complaint. */
const firstLine = (err: unknown) =>
  String((err as Error).message ?? err)
    .split('\n')[0]!
    .trim()
    .replace(/:$/, '');

export interface Decoded {
  readonly pixels: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly format: 'png' | 'jpeg';
}

/**
 * Pixels (width × height) of the largest picture read: 40 MP, a 7300 × 5470 photo, 120 MB decoded as RGB. A
 * larger one (a few bytes of header can claim billions; sharp's own default allows 268 MP, some 800 MB) is skipped
 * and listed, before it is decoded.
 */
export const MAX_PICTURE_PIXELS = 40_000_000;

/**
 * Decodes a PNG or JPEG to 8-bit sRGB or gray pixels, upright (EXIF orientation applied), transparency flattened
 * onto black. Throws an Error whose message is the reason to list.
 */
async function decode(sharp: SharpModule, bytes: Buffer): Promise<Decoded> {
  if (bytes.length === 0) throw new Error('empty file (0 bytes)');
  let meta: Awaited<ReturnType<ReturnType<SharpModule>['metadata']>>;
  try {
    // The header only (sharp's metadata decodes no pixels), so that a picture too large gets its own reason below.
    meta = await sharp(bytes).metadata();
  } catch (err) {
    throw new Error(`not a picture sharp can read (${firstLine(err)})`);
  }
  if (meta.format !== 'png' && meta.format !== 'jpeg')
    throw new Error(`a ${meta.format} picture: PNG and JPEG are read`);
  const pixels = (meta.width ?? 0) * (meta.height ?? 0);
  if (pixels > MAX_PICTURE_PIXELS)
    throw new Error(
      `too many pixels: a ${meta.width}x${meta.height} ${meta.format === 'png' ? 'PNG' : 'JPEG'} (${pixels} pixels), more than the ${MAX_PICTURE_PIXELS} (40 MP) read`,
    );
  // Gray stays one channel (a gray model then reads it as it is); everything else is sRGB.
  const gray = (meta.channels ?? 3) <= 2 && (meta.space === 'b-w' || meta.space === 'grey16');
  try {
    // The limit again where pixels are decoded (sharp counts every page of a multi-page picture).
    let p = sharp(bytes, { limitInputPixels: MAX_PICTURE_PIXELS, failOn: 'error' }).rotate();
    if (meta.hasAlpha) p = p.flatten({ background: '#000000' });
    const { data, info } = await p
      .toColourspace(gray ? 'b-w' : 'srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 1 && info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return {
      pixels: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
      channels: info.channels,
      format: meta.format,
    };
  } catch (err) {
    throw new Error(`unreadable ${meta.format === 'png' ? 'PNG' : 'JPEG'} (${firstLine(err)})`);
  }
}

/** One file's bytes decoded as the folder loader decodes them (the fuzz targets feed it). */
export async function decodeImage(bytes: Buffer, flag = '--data'): Promise<Decoded> {
  return decode(await loadSharp(flag), bytes);
}

/** Bump when what the cache holds, or how it is computed, changes. */
const CACHE_VERSION = 2;
const CACHE_MAGIC = 'SEIFRAMES';
/** Entries kept in the cache folder (the least recently used go first). */
const CACHE_ENTRIES = 16;

/** Where decoded frames are cached: $SEI_CACHE_DIR, else $XDG_CACHE_HOME/sei-edge, else ~/.cache/sei-edge. */
export function cacheDir(): string {
  return process.env['SEI_CACHE_DIR'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'sei-edge');
}

/** The cache key: the folder's listing (paths, sizes, modification times), the frame shape and the fit. */
function cacheKey(listing: FolderListing, shape: FrameShape | undefined, fit: Fit): string {
  const files = listing.files.map((f) => [f.path, f.size, f.mtimeMs]);
  return createHash('sha256')
    .update(
      JSON.stringify({ v: CACHE_VERSION, dir: listing.dir, files, shape: shape ?? null, fit: shape ? fit : null }),
    )
    .digest('hex')
    .slice(0, 32);
}

interface CacheBody {
  readonly images: ImageEntry[];
  readonly unreadable: Skipped[];
}

function readCache(file: string): { body: CacheBody; frames: Uint8Array } | undefined {
  try {
    const buf = readFileSync(file);
    const magic = buf.subarray(0, CACHE_MAGIC.length).toString('latin1');
    if (magic !== CACHE_MAGIC) return undefined;
    const len = buf.readUInt32LE(CACHE_MAGIC.length);
    const start = CACHE_MAGIC.length + 4;
    const body = JSON.parse(buf.subarray(start, start + len).toString('utf8')) as CacheBody;
    const now = new Date();
    utimesSync(file, now, now);
    return { body, frames: new Uint8Array(buf.buffer, buf.byteOffset + start + len, buf.length - start - len) };
  } catch {
    // A missing, partial or foreign file is a miss: the folder is decoded again.
    return undefined;
  }
}

function writeCache(file: string, body: CacheBody, frames: Uint8Array): void {
  try {
    mkdirSync(join(file, '..'), { recursive: true });
    const json = Buffer.from(JSON.stringify(body), 'utf8');
    const head = Buffer.alloc(CACHE_MAGIC.length + 4);
    head.write(CACHE_MAGIC, 'latin1');
    head.writeUInt32LE(json.length, CACHE_MAGIC.length);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, Buffer.concat([head, json, frames]));
    renameSync(tmp, file);
    const dir = join(file, '..');
    const entries = readdirSync(dir)
      .filter((n) => n.endsWith('.frames'))
      .map((n) => ({ n, t: statSync(join(dir, n)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const e of entries.slice(CACHE_ENTRIES)) rmSync(join(dir, e.n), { force: true });
  } catch {
    // A cache that cannot be written (read-only home, full disk) only costs the next run a decode.
  }
}

export interface ReadOptions {
  /** Fit every picture to this shape (absent: decode and describe only). */
  readonly shape?: FrameShape;
  readonly fit: Fit;
  /** The flag to name in errors. Default `--data`. */
  readonly flag?: string;
  /** Decodes running at once. Default 4. */
  readonly concurrency?: number;
}

/** Lists, decodes and (with `shape`) fits every picture of `dir`; cached by listing, shape and fit. */
export async function readImageFolder(dir: string, opts: ReadOptions): Promise<DecodedFolder> {
  const flag = opts.flag ?? '--data';
  const listing = listFolder(dir, flag);
  const file = join(cacheDir(), 'frames', `${cacheKey(listing, opts.shape, opts.fit)}.frames`);
  const hit = readCache(file);
  if (hit)
    return {
      listing,
      images: hit.body.images,
      skipped: [...listing.skipped, ...hit.body.unreadable],
      ...(opts.shape ? { frames: hit.frames } : {}),
      cached: true,
    };
  const sharp = await loadSharp(flag);
  sharp.cache(false);
  const size = opts.shape ? opts.shape[0] * opts.shape[1] * opts.shape[2] : 0;
  const results: Array<{ entry: ImageEntry; frame: Uint8Array } | Skipped> = new Array(listing.files.length);
  const one = async (i: number) => {
    const f = listing.files[i]!;
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(listing.dir, f.path));
    } catch (err) {
      results[i] = {
        path: f.path,
        reason: `cannot be read (${(err as NodeJS.ErrnoException).code ?? firstLine(err)})`,
      };
      return;
    }
    try {
      const d = await decode(sharp, bytes);
      const entry: ImageEntry = {
        ...f,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        width: d.width,
        height: d.height,
        channels: d.channels,
        format: d.format,
      };
      results[i] = {
        entry,
        frame: opts.shape
          ? fitFrame(d.pixels, [d.height, d.width, d.channels], opts.shape, opts.fit)
          : new Uint8Array(0),
      };
    } catch (err) {
      results[i] = { path: f.path, reason: firstLine(err) };
    }
  };
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < listing.files.length; i = next++) await one(i);
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
  // libvips keeps one error message per process: decodes running at once can report "Unknown error" for each
  // other's failures. A failed file is decoded again alone, for its own message.
  for (let i = 0; i < results.length; i++) if (!('entry' in results[i]!)) await one(i);
  const images: ImageEntry[] = [];
  const unreadable: Skipped[] = [];
  for (const r of results)
    if ('entry' in r) images.push(r.entry);
    else unreadable.push(r);
  const frames = new Uint8Array(images.length * size);
  let k = 0;
  for (const r of results) if ('entry' in r) frames.set(r.frame, size * k++);
  writeCache(file, { images, unreadable }, frames);
  return {
    listing,
    images,
    skipped: [...listing.skipped, ...unreadable],
    ...(opts.shape ? { frames } : {}),
    cached: false,
  };
}

/** HWC pixels (1 or 3 channels) as a PNG file's bytes. */
export async function encodePng(
  pixels: Uint8Array,
  [height, width, channels]: FrameShape,
  flag = '--errors',
): Promise<Uint8Array> {
  const sharp = await loadSharp(flag);
  const img = sharp(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.length), {
    raw: { width, height, channels: channels as 1 | 3 },
  });
  return new Uint8Array(await (channels === 1 ? img.toColourspace('b-w') : img).png().toBuffer());
}
