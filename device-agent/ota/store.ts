/**
 * OTA state in the agent's SQLite file, in tables of its own: one row per job with its state, step and the
 * bitmap of blocks still missing. Every state change is one transaction, so that a kill -9 at any instant
 * leaves a row that says exactly what to do next.
 */
import type Database from 'better-sqlite3';
import { ConfigError } from '../../runtime/index.js';
import type { Job, JobState, JobStep } from './protocol.js';
import { migrate } from '../store/migrate.js';
import { openDatabase } from '../store/sqlite.js';

/** Schema steps (store/migrate.ts); the number applied is kept in ota_schema. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE ota_jobs (
     job_id TEXT PRIMARY KEY,
     state TEXT NOT NULL CHECK (state IN ('QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED', 'TIMED_OUT')),
     step TEXT CHECK (step IS NULL OR step IN ('DOWNLOADING', 'VERIFYING', 'ACTIVATING', 'PROBATION')),
     job TEXT NOT NULL,
     blocks INTEGER NOT NULL,
     missing BLOB NOT NULL,
     received INTEGER NOT NULL,
     part_path TEXT,
     version TEXT NOT NULL,
     previous TEXT,
     reason TEXT,
     probation TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL);
   CREATE INDEX ota_jobs_state ON ota_jobs (state);`,
];

export interface JobRow {
  readonly jobId: string;
  readonly state: JobState;
  readonly step: JobStep | null;
  readonly job: Job;
  readonly blocks: number;
  /** Bit i set = block i still missing. */
  readonly missing: Uint8Array;
  readonly received: number;
  readonly partPath: string | null;
  readonly version: string;
  readonly previous: string | null;
  readonly reason: string | null;
  readonly probation: Record<string, number> | null;
  readonly createdAt: number;
  readonly updatedAt: number;
}

interface RawRow {
  job_id: string;
  state: JobState;
  step: JobStep | null;
  job: string;
  blocks: number;
  missing: Buffer;
  received: number;
  part_path: string | null;
  version: string;
  previous: string | null;
  reason: string | null;
  probation: string | null;
  created_at: number;
  updated_at: number;
}

export function fullBitmap(blocks: number): Uint8Array {
  const b = new Uint8Array(Math.ceil(blocks / 8));
  for (let i = 0; i < blocks; i++) b[i >> 3]! |= 1 << (i & 7);
  return b;
}

export function isMissing(bitmap: Uint8Array, i: number): boolean {
  return (bitmap[i >> 3]! & (1 << (i & 7))) !== 0;
}

/** Indexes of the missing blocks, ascending. */
export function missingBlocks(bitmap: Uint8Array, blocks: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < blocks; i++) if (isMissing(bitmap, i)) out.push(i);
  return out;
}

export type JobUpdate = Partial<Pick<JobRow, 'state' | 'step' | 'partPath' | 'previous' | 'reason' | 'probation'>>;

export class OtaStore {
  private readonly db: Database.Database;
  private readonly s;
  private readonly tx;

  /** `path`: the agent's SQLite file (a second connection; WAL lets both write), or ":memory:". */
  constructor(path: string) {
    this.db = openDatabase(path);
    migrate(this.db, 'ota', MIGRATIONS);
    const db = this.db;
    this.s = {
      insert: db.prepare(
        `INSERT INTO ota_jobs (job_id, state, step, job, blocks, missing, received, version, created_at, updated_at)
         VALUES (?, 'QUEUED', NULL, ?, ?, ?, 0, ?, ?, ?)`,
      ),
      get: db.prepare<[string], RawRow>('SELECT * FROM ota_jobs WHERE job_id = ?'),
      open: db.prepare<[], RawRow>(
        `SELECT * FROM ota_jobs WHERE state IN ('QUEUED', 'IN_PROGRESS') ORDER BY created_at`,
      ),
      list: db.prepare<[number], RawRow>('SELECT * FROM ota_jobs ORDER BY created_at DESC, rowid DESC LIMIT ?'),
      lastSucceeded: db.prepare<[], RawRow>(
        `SELECT * FROM ota_jobs WHERE state = 'SUCCEEDED' ORDER BY updated_at DESC, rowid DESC LIMIT 1`,
      ),
      block: db.prepare('UPDATE ota_jobs SET missing = ?, received = ?, updated_at = ? WHERE job_id = ?'),
      set: db.prepare(
        'UPDATE ota_jobs SET state = ?, step = ?, part_path = ?, previous = ?, reason = ?, probation = ?, updated_at = ? WHERE job_id = ?',
      ),
    };
    const s = this.s;
    this.tx = {
      update: db.transaction((jobId: string, u: JobUpdate, now: number) => {
        const cur = s.get.get(jobId);
        if (!cur) throw new ConfigError(`jobId: expected a known OTA job, got ${JSON.stringify(jobId)}`, 'jobId');
        const next = { ...jobRow(cur), ...u };
        s.set.run(
          next.state,
          next.step,
          next.partPath,
          next.previous,
          next.reason,
          next.probation === null ? null : JSON.stringify(next.probation),
          now,
          jobId,
        );
      }),
    };
  }

  /** Records a job as QUEUED; false when the job id is already known. */
  add(job: Job, blocks: number, version: string, now = Date.now()): boolean {
    if (this.s.get.get(job.jobId)) return false;
    this.s.insert.run(job.jobId, JSON.stringify(job), blocks, Buffer.from(fullBitmap(blocks)), version, now, now);
    return true;
  }

  get(jobId: string): JobRow | undefined {
    const r = this.s.get.get(jobId);
    return r && jobRow(r);
  }

  /** Jobs not finished (QUEUED or IN_PROGRESS), oldest first. */
  open(): JobRow[] {
    return this.s.open.all().map(jobRow);
  }

  list(limit = 50): JobRow[] {
    return this.s.list.all(limit).map(jobRow);
  }

  lastSucceeded(): JobRow | undefined {
    const r = this.s.lastSucceeded.get();
    return r && jobRow(r);
  }

  /** One state change, atomically. */
  update(jobId: string, u: JobUpdate, now = Date.now()): JobRow {
    this.tx.update(jobId, u, now);
    return this.get(jobId)!;
  }

  /** Records a received block: the new bitmap and count in one statement. */
  markBlock(jobId: string, missing: Uint8Array, received: number, now = Date.now()): void {
    this.s.block.run(Buffer.from(missing), received, now, jobId);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function jobRow(r: RawRow): JobRow {
  return {
    jobId: r.job_id,
    state: r.state,
    step: r.step,
    job: JSON.parse(r.job) as Job,
    blocks: r.blocks,
    missing: new Uint8Array(r.missing),
    received: r.received,
    partPath: r.part_path,
    version: r.version,
    previous: r.previous,
    reason: r.reason,
    probation: r.probation === null ? null : (JSON.parse(r.probation) as Record<string, number>),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
