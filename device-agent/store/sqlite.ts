/**
 * StateStore on SQLite (better-sqlite3): WAL journal with synchronous=FULL, statements prepared once, one
 * transaction per state change.
 */
import Database from 'better-sqlite3';
import { ConfigError } from '../../runtime/index.js';
import { migrate } from './migrate.js';
import type {
  FeatureCache,
  LabelledFrame,
  MetricsRecord,
  ModelRecord,
  ModelState,
  OutboxMessage,
  PredictionRecord,
  RetentionLimits,
  StateStore,
} from './types.js';
import { DEFAULT_LIMITS } from './types.js';

/**
 * Schema steps (store/migrate.ts). The first keeps IF NOT EXISTS: files written before the steps were counted
 * hold its tables already and no `store_schema` row.
 */
const MIGRATIONS: readonly string[] = [
  `
CREATE TABLE IF NOT EXISTS models (
  version TEXT PRIMARY KEY, sha256 TEXT NOT NULL, path TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('available', 'active', 'failed')), activated_at INTEGER);
CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, frame INTEGER NOT NULL, ts INTEGER NOT NULL, model TEXT NOT NULL,
  prediction INTEGER NOT NULL, confidence REAL NOT NULL, label INTEGER, latency_ms REAL NOT NULL);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE TABLE IF NOT EXISTS labelled_frames (
  frame INTEGER PRIMARY KEY, ts INTEGER NOT NULL, label INTEGER NOT NULL,
  height INTEGER NOT NULL, width INTEGER NOT NULL, channels INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS features (
  backbone TEXT NOT NULL, frame_id TEXT NOT NULL, features BLOB NOT NULL, PRIMARY KEY (backbone, frame_id));
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload TEXT NOT NULL,
  qos INTEGER NOT NULL, retain INTEGER NOT NULL);
`,
];

interface ModelRow {
  version: string;
  sha256: string;
  path: string;
  state: ModelState;
  activated_at: number | null;
}
interface PredictionRow {
  frame: number;
  ts: number;
  model: string;
  prediction: number;
  confidence: number;
  label: number | null;
  latency_ms: number;
}
interface FrameRow {
  frame: number;
  ts: number;
  label: number;
  height: number;
  width: number;
  channels: number;
  data: Buffer;
}
interface OutboxRow {
  id: number;
  topic: string;
  payload: string;
  qos: number;
  retain: number;
}

/** Opens the agent's SQLite file as every connection to it must be opened (the store's and OTA's share it). */
export function openDatabase(path: string): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path);
  } catch (err) {
    throw new ConfigError(
      `store.path: expected a writable SQLite file, got ${JSON.stringify(path)} (${(err as Error).message})`,
      'store.path',
    );
  }
  // WAL: a commit is one append, and readers never wait for it (the store's and OTA's connections share this file).
  db.pragma('journal_mode = WAL');
  // FULL, not WAL's usual NORMAL: NORMAL syncs the WAL only at checkpoints, so a power cut (not a crash: the kernel
  // keeps what a killed process wrote) can undo the last commits, and this file decides what boots (the active
  // model, the OTA job's step, the bitmap its blocks are trusted by). FULL syncs the WAL at every commit: a few
  // syncs a second here (metrics, the prediction log, the outbox), one per block during a download.
  db.pragma('synchronous = FULL');
  // The other connection may hold the write lock for a moment.
  db.pragma('busy_timeout = 5000');
  return db;
}

export class SqliteStore implements StateStore {
  private readonly db: Database.Database;
  private readonly limits: RetentionLimits;
  private dropped = 0;
  readonly features: FeatureCache;
  private readonly s;
  private readonly tx;

  /** `path` is a file (created if missing) or ":memory:". */
  constructor(path: string, limits: Partial<RetentionLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.db = openDatabase(path);
    migrate(this.db, 'store', MIGRATIONS);
    const db = this.db;
    this.s = {
      modelUpsert: db.prepare(
        `INSERT INTO models (version, sha256, path, state, activated_at) VALUES (?, ?, ?, 'available', NULL)
         ON CONFLICT (version) DO UPDATE SET sha256 = excluded.sha256, path = excluded.path,
           state = CASE WHEN models.sha256 = excluded.sha256 THEN models.state ELSE 'available' END`,
      ),
      modelGet: db.prepare<[string], ModelRow>('SELECT * FROM models WHERE version = ?'),
      modelList: db.prepare<[], ModelRow>('SELECT * FROM models ORDER BY version'),
      modelDeactivate: db.prepare(`UPDATE models SET state = 'available' WHERE state = 'active'`),
      modelActivate: db.prepare(`UPDATE models SET state = 'active', activated_at = ? WHERE version = ?`),
      modelFail: db.prepare(`UPDATE models SET state = 'failed' WHERE version = ?`),
      metricsAdd: db.prepare('INSERT INTO metrics (ts, json) VALUES (?, ?)'),
      metricsTrim: db.prepare('DELETE FROM metrics WHERE id <= (SELECT MAX(id) FROM metrics) - ?'),
      metricsRecent: db.prepare<[number], MetricsRecord>('SELECT ts, json FROM metrics ORDER BY id DESC LIMIT ?'),
      predAdd: db.prepare(
        'INSERT INTO predictions (frame, ts, model, prediction, confidence, label, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      predTrimCount: db.prepare('DELETE FROM predictions WHERE id <= (SELECT MAX(id) FROM predictions) - ?'),
      predTrimAge: db.prepare('DELETE FROM predictions WHERE ts < ?'),
      predRecent: db.prepare<[number], PredictionRow>('SELECT * FROM predictions ORDER BY id DESC LIMIT ?'),
      predCount: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM predictions'),
      frameSave: db.prepare(
        'INSERT OR REPLACE INTO labelled_frames (frame, ts, label, height, width, channels, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      frameList: db.prepare<[number], FrameRow>('SELECT * FROM labelled_frames ORDER BY frame LIMIT ?'),
      frameCount: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM labelled_frames'),
      featureGet: db.prepare<[string, string], { features: Buffer }>(
        'SELECT features FROM features WHERE backbone = ? AND frame_id = ?',
      ),
      featureSet: db.prepare('INSERT OR REPLACE INTO features (backbone, frame_id, features) VALUES (?, ?, ?)'),
      outAdd: db.prepare('INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)'),
      outPeek: db.prepare<[number, number], OutboxRow>('SELECT * FROM outbox WHERE id > ? ORDER BY id LIMIT ?'),
      outRemove: db.prepare('DELETE FROM outbox WHERE id = ?'),
      outCount: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM outbox'),
      outTrim: db.prepare('DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)'),
    };
    const s = this.s;
    this.features = {
      get: (backbone, frameId) => {
        const row = s.featureGet.get(backbone, frameId);
        // A copy: the Float64Array needs its own 8-byte aligned buffer.
        return row && row.features.length % 8 === 0 ? new Float64Array(new Uint8Array(row.features).buffer) : undefined;
      },
      set: (backbone, frameId, features) =>
        void s.featureSet.run(
          backbone,
          frameId,
          Buffer.from(features.buffer, features.byteOffset, features.byteLength),
        ),
    };
    this.tx = {
      activate: db.transaction((version: string, now: number) => {
        s.modelDeactivate.run();
        s.modelActivate.run(now, version);
      }),
      metrics: db.transaction((ts: number, json: string) => {
        s.metricsAdd.run(ts, json);
        s.metricsTrim.run(this.limits.metricsHistory);
      }),
      predictions: db.transaction((rows: readonly PredictionRecord[], now: number) => {
        for (const r of rows) s.predAdd.run(r.frame, r.ts, r.model, r.prediction, r.confidence, r.label, r.latencyMs);
        s.predTrimCount.run(this.limits.predictionRows);
        s.predTrimAge.run(now - this.limits.predictionMaxAge * 1000);
      }),
      frames: db.transaction((frames: readonly LabelledFrame[]) => {
        for (const f of frames)
          s.frameSave.run(
            f.frame,
            f.ts,
            f.label,
            f.shape[0],
            f.shape[1],
            f.shape[2],
            Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength),
          );
      }),
      outbox: db.transaction((m: Omit<OutboxMessage, 'id'>): number => {
        const over = s.outCount.get()!.n + 1 - this.limits.outboxMax;
        if (over > 0) {
          s.outTrim.run(over);
          this.dropped += over;
        }
        return Number(s.outAdd.run(m.topic, m.payload, m.qos, m.retain ? 1 : 0).lastInsertRowid);
      }),
    };
  }

  registerModel(model: { version: string; sha256: string; path: string }): ModelRecord {
    this.s.modelUpsert.run(model.version, model.sha256, model.path);
    return this.getModel(model.version)!;
  }
  listModels(): ModelRecord[] {
    return this.s.modelList.all().map(modelRecord);
  }
  getModel(version: string): ModelRecord | undefined {
    const row = this.s.modelGet.get(version);
    return row && modelRecord(row);
  }
  activateModel(version: string, now = Date.now()): ModelRecord {
    if (!this.s.modelGet.get(version))
      throw new ConfigError(`model version: expected a registered version, got ${JSON.stringify(version)}`, 'version');
    this.tx.activate(version, now);
    return this.getModel(version)!;
  }
  markModelFailed(version: string): void {
    this.s.modelFail.run(version);
  }

  addMetrics(ts: number, snapshot: unknown): void {
    this.tx.metrics(ts, JSON.stringify(snapshot));
  }
  recentMetrics(limit: number): MetricsRecord[] {
    return this.s.metricsRecent.all(limit).reverse();
  }

  logPredictions(rows: readonly PredictionRecord[], now = Date.now()): void {
    if (rows.length > 0) this.tx.predictions(rows, now);
  }
  recentPredictions(limit: number): PredictionRecord[] {
    return this.s.predRecent
      .all(limit)
      .reverse()
      .map((r) => ({
        frame: r.frame,
        ts: r.ts,
        model: r.model,
        prediction: r.prediction,
        confidence: r.confidence,
        label: r.label,
        latencyMs: r.latency_ms,
      }));
  }
  predictionCount(): number {
    return this.s.predCount.get()!.n;
  }

  saveLabelledFrames(frames: readonly LabelledFrame[]): void {
    if (frames.length > 0) this.tx.frames(frames);
  }
  labelledFrames(limit = Number.MAX_SAFE_INTEGER): LabelledFrame[] {
    return this.s.frameList.all(limit).map((r) => ({
      frame: r.frame,
      ts: r.ts,
      label: r.label,
      shape: [r.height, r.width, r.channels],
      data: new Uint8Array(r.data),
    }));
  }
  labelledFrameCount(): number {
    return this.s.frameCount.get()!.n;
  }

  outboxAdd(msg: Omit<OutboxMessage, 'id'>): number {
    return this.tx.outbox(msg);
  }
  outboxPeek(afterId: number, limit: number): OutboxMessage[] {
    return this.s.outPeek
      .all(afterId, limit)
      .map((r) => ({ id: r.id, topic: r.topic, payload: r.payload, qos: r.qos as 0 | 1 | 2, retain: r.retain === 1 }));
  }
  outboxRemove(id: number): void {
    this.s.outRemove.run(id);
  }
  outboxCount(): number {
    return this.s.outCount.get()!.n;
  }
  get outboxDropped(): number {
    return this.dropped;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function modelRecord(r: ModelRow): ModelRecord {
  return { version: r.version, sha256: r.sha256, path: r.path, state: r.state, activatedAt: r.activated_at };
}
