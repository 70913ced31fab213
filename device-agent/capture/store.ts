/**
 * The capture store: frames kept on the box to train on, each a PNG file (the frame as the model saw it, at its
 * input shape) in `capture.dir`, described by a row of the agent's SQLite file (`captures`, its own migrations
 * beside the state store's and OTA's). Bounded by `capture.maxFrames` and `capture.maxBytes`: a new frame that
 * would not fit drops the oldest first (counted). A file is written to a temporary name and renamed before its row
 * is committed, and a file no row names (a crash between the two) is removed when the store opens: a row always
 * names a whole file. Frames are read back in blocks (`sei capture pull`).
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { ConfigError } from '../../runtime/index.js';
import type { CaptureConfig } from '../config-schema.js';
import type { CaptureItem, CaptureStoreStats } from '../messages.js';
import { migrate } from '../store/migrate.js';
import { openDatabase } from '../store/sqlite.js';

// pngjs is loaded on the first capture: an agent that never captures does not pay for it.
const require = createRequire(import.meta.url);

const MIGRATIONS: readonly string[] = [
  `
CREATE TABLE captures (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, model TEXT NOT NULL,
  reason TEXT NOT NULL CHECK (reason IN ('command', 'auto')), prediction INTEGER NOT NULL, confidence REAL NOT NULL,
  label TEXT, height INTEGER NOT NULL, width INTEGER NOT NULL, channels INTEGER NOT NULL,
  size INTEGER NOT NULL, sha256 TEXT NOT NULL, file TEXT NOT NULL);
CREATE TABLE capture_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO capture_counters (name, value) VALUES ('dropped', 0);
`,
];

/** Bytes per block a captured frame is read back in (`cmd/capture-read`), unless the request names another size. */
export const CAPTURE_BLOCK = 32 * 1024;
/** The block sizes a request may name. */
export const BLOCK_RANGE = { min: 256, max: 64 * 1024 } as const;

/** One captured frame as the store describes it: what `cmd/captures` lists (device-agent/messages.ts). */
export type CaptureRecord = CaptureItem;

interface Row {
  id: number;
  ts: number;
  model: string;
  reason: 'command' | 'auto';
  prediction: number;
  confidence: number;
  label: string | null;
  height: number;
  width: number;
  channels: number;
  size: number;
  sha256: string;
  file: string;
}

export type CaptureStats = CaptureStoreStats;

export interface NewCapture {
  readonly data: Uint8Array;
  readonly shape: readonly [number, number, number];
  readonly ts: number;
  readonly model: string;
  readonly reason: 'command' | 'auto';
  readonly prediction: number;
  readonly confidence: number;
  readonly label: string | null;
}

/** A PNG of an 8-bit HWC frame with 1 (gray) or 3 (RGB) channels. */
export function encodePng(data: Uint8Array, shape: readonly [number, number, number]): Buffer {
  const [height, width, channels] = shape;
  const colorType = channels === 1 ? 0 : 2;
  const { PNG } = require('pngjs') as typeof import('pngjs');
  return PNG.sync.write({ width, height, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) } as never, {
    colorType,
    inputColorType: colorType,
    inputHasAlpha: false,
    bitDepth: 8,
  });
}

export class CaptureStore {
  private readonly db: Database.Database;
  private readonly s;
  private readonly add_;

  constructor(
    dbPath: string,
    readonly dir: string,
    private readonly config: () => CaptureConfig,
  ) {
    this.db = openDatabase(dbPath);
    migrate(this.db, 'capture', MIGRATIONS);
    const db = this.db;
    this.s = {
      insert: db.prepare(
        `INSERT INTO captures (ts, model, reason, prediction, confidence, label, height, width, channels, size, sha256, file)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      oldest: db.prepare<[], Row>('SELECT * FROM captures ORDER BY id LIMIT 1'),
      remove: db.prepare('DELETE FROM captures WHERE id = ?'),
      get: db.prepare<[number], Row>('SELECT * FROM captures WHERE id = ?'),
      list: db.prepare<[number, number], Row>('SELECT * FROM captures WHERE id > ? ORDER BY id LIMIT ?'),
      files: db.prepare<[], { file: string }>('SELECT file FROM captures'),
      totals: db.prepare<[], { n: number; bytes: number | null }>(
        'SELECT COUNT(*) AS n, SUM(size) AS bytes FROM captures',
      ),
      dropped: db.prepare<[], { value: number }>(`SELECT value FROM capture_counters WHERE name = 'dropped'`),
      countDrop: db.prepare(`UPDATE capture_counters SET value = value + ? WHERE name = 'dropped'`),
      label: db.prepare('UPDATE captures SET label = ? WHERE id = ?'),
    };
    // One step: the oldest rows out until the new frame fits, its row in. Files of dropped rows go after the commit.
    this.add_ = db.transaction((row: Omit<Row, 'id'>, gone: string[]): number => {
      const { maxFrames, maxBytes } = this.config();
      let { n, bytes } = this.s.totals.get()!;
      let used = bytes ?? 0;
      let dropped = 0;
      while (n > 0 && (n + 1 > maxFrames || used + row.size > maxBytes)) {
        const old = this.s.oldest.get()!;
        this.s.remove.run(old.id);
        gone.push(old.file);
        n--;
        used -= old.size;
        dropped++;
      }
      if (dropped) this.s.countDrop.run(dropped);
      return Number(
        this.s.insert.run(
          row.ts,
          row.model,
          row.reason,
          row.prediction,
          row.confidence,
          row.label,
          row.height,
          row.width,
          row.channels,
          row.size,
          row.sha256,
          row.file,
        ).lastInsertRowid,
      );
    });
    mkdirSync(dir, { recursive: true });
    this.sweep();
  }

  /** Removes files no row names: a crash between a file's rename and its row's commit, or a temporary file. */
  private sweep(): void {
    const named = new Set(this.s.files.all().map((r) => r.file));
    for (const f of readdirSync(this.dir))
      if ((f.endsWith('.png') || f.endsWith('.tmp')) && !named.has(f)) rmSync(join(this.dir, f), { force: true });
  }

  /** Stores a frame (dropping the oldest to make room); its record. */
  add(c: NewCapture): CaptureRecord {
    const png = encodePng(c.data, c.shape);
    const { maxBytes } = this.config();
    if (png.length > maxBytes)
      throw new ConfigError(
        `capture.maxBytes: expected room for one frame of ${png.length} bytes (PNG), got ${maxBytes}`,
        'capture.maxBytes',
      );
    const sha256 = createHash('sha256').update(png).digest('hex');
    const file = `${c.ts}-${randomBytes(6).toString('hex')}.png`;
    const tmp = join(this.dir, `${file}.tmp`);
    try {
      writeFileSync(tmp, png);
      renameSync(tmp, join(this.dir, file));
    } catch (err) {
      rmSync(tmp, { force: true });
      throw new ConfigError(
        `capture.dir: expected to write a ${png.length}-byte frame into ${this.dir}, got ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        'capture.dir',
      );
    }
    const gone: string[] = [];
    const row: Omit<Row, 'id'> = {
      ts: c.ts,
      model: c.model,
      reason: c.reason,
      prediction: c.prediction,
      confidence: c.confidence,
      label: c.label,
      height: c.shape[0],
      width: c.shape[1],
      channels: c.shape[2],
      size: png.length,
      sha256,
      file,
    };
    let id: number;
    try {
      id = this.add_(row, gone);
    } catch (err) {
      rmSync(join(this.dir, file), { force: true });
      throw err;
    }
    for (const f of gone) rmSync(join(this.dir, f), { force: true });
    return record({ ...row, id });
  }

  get(id: number): CaptureRecord | undefined {
    const r = this.s.get.get(id);
    return r && record(r);
  }

  /** Frames with an id above `after`, oldest first. */
  list(after: number, limit: number): CaptureRecord[] {
    return this.s.list.all(after, limit).map(record);
  }

  /** Sets (or, with null, clears) a frame's class name; false when no such frame is kept. */
  setLabel(id: number, label: string | null): boolean {
    return this.s.label.run(label, id).changes > 0;
  }

  /** Block `index` (`blockSize` bytes; the last may be shorter) of a frame's PNG, or undefined. */
  block(id: number, index: number, blockSize = CAPTURE_BLOCK): Buffer | undefined {
    const r = this.s.get.get(id);
    if (!r || index < 0 || index * blockSize >= r.size) return undefined;
    const length = Math.min(blockSize, r.size - index * blockSize);
    const out = Buffer.alloc(length);
    let fd: number;
    try {
      fd = openSync(join(this.dir, r.file), 'r');
    } catch {
      // Removed beside the store: as good as dropped.
      return undefined;
    }
    try {
      readSync(fd, out, 0, length, index * blockSize);
    } finally {
      closeSync(fd);
    }
    return out;
  }

  stats(): CaptureStats {
    const t = this.s.totals.get()!;
    return { frames: t.n, bytes: t.bytes ?? 0, dropped: this.s.dropped.get()!.value };
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function record(r: Row): CaptureRecord {
  return {
    id: r.id,
    ts: r.ts,
    model: r.model,
    reason: r.reason,
    prediction: r.prediction,
    confidence: r.confidence,
    label: r.label,
    shape: [r.height, r.width, r.channels],
    size: r.size,
    sha256: r.sha256,
  };
}
