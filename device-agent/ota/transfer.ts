/**
 * DOWNLOADING: one artifact fetched block by block into its `.part` file. The device asks for `ota.window` blocks
 * at a time, checks each block's length and sha256 as it arrives, and records the bitmap of missing blocks after
 * every one, so that a restart or a broker drop resumes where it stopped. A block is on the disk (fdatasync) before
 * the bitmap says so: a power cut then costs at most the blocks not yet recorded, never a checksum failure of the
 * whole artifact and a download from zero. Blocks are asked for again after
 * `ota.requestTimeoutMs` without one and on every reconnect.
 */
import { closeSync, openSync } from 'node:fs';
import { sha256 } from '../models.js';
import { writeAtDurable } from '../store/durable.js';
import type { OtaConfig } from './config.js';
import type { Manifest } from './manifest.js';
import { isMissing, missingBlocks } from './store.js';
import type { JobRow } from './store.js';

/** What a transfer needs from the manager. */
export interface TransferHost {
  config(): OtaConfig;
  /** Asks the operator for blocks on `ota/request`; resolves false when offline. */
  request(blocks: readonly number[]): Promise<boolean>;
  /** Persists a received block (its bytes are on the disk already): the new bitmap and count. */
  saved(missing: Uint8Array, received: number): void;
  /** About every tenth of the blocks: a progress report. */
  progress(received: number): void;
  /** Every block is in the file (each flushed as it came; the file is closed). */
  complete(): void;
  /** A block kept coming back wrong: the job is refused with `reason` (the transfer is closed). */
  refuse(reason: string): void;
}

export class Transfer {
  private readonly fd: number;
  private readonly missing: Uint8Array;
  private received: number;
  private readonly outstanding = new Set<number>();
  private readonly retries = new Map<number, number>();
  private lastBlockAt = Date.now();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    readonly row: JobRow,
    private readonly manifest: Manifest,
    private readonly host: TransferHost,
  ) {
    this.fd = openSync(row.partPath!, 'r+');
    this.missing = Uint8Array.from(row.missing);
    this.received = row.received;
    const timeout = host.config().requestTimeoutMs;
    this.timer = setInterval(() => this.onStall(), Math.max(25, timeout / 2));
    this.timer.unref?.();
  }

  get jobId(): string {
    return this.row.jobId;
  }

  /** Asks for the first blocks, or completes at once when the bitmap says every block is here (a resumed job). */
  start(): void {
    if (this.received === this.row.blocks) this.finish();
    else this.requestMore();
  }

  /** A new connection: requests in flight on the old one are gone with it. */
  online(): void {
    this.outstanding.clear();
    this.requestMore();
  }

  /** A message on `ota/block/<job>/<i>`. */
  block(jobId: string, i: number, payload: Buffer): void {
    const { row } = this;
    if (this.closed || row.jobId !== jobId || !Number.isInteger(i) || i < 0 || i >= row.blocks) return;
    this.outstanding.delete(i);
    if (!isMissing(this.missing, i)) return;
    const { blockSize } = row.job;
    const expected = i === row.blocks - 1 ? this.manifest.size - i * blockSize : blockSize;
    let problem: string | null = null;
    if (payload.length !== expected)
      problem = `truncated block ${i}: expected ${expected} bytes, got ${payload.length}`;
    else {
      const digest = sha256(payload);
      if (digest !== row.job.blockSha256[i])
        problem = `corrupt block ${i}: expected sha256 ${row.job.blockSha256[i]!.slice(0, 16)}…, got ${digest.slice(0, 16)}…`;
    }
    if (problem) {
      const n = (this.retries.get(i) ?? 0) + 1;
      this.retries.set(i, n);
      if (n >= this.host.config().maxBlockRetries) {
        this.close();
        this.host.refuse(`${problem} (${n} times)`);
      } else this.requestMore();
      return;
    }
    writeAtDurable(this.fd, payload, i * blockSize);
    this.missing[i >> 3]! &= ~(1 << (i & 7));
    this.received++;
    this.lastBlockAt = Date.now();
    this.host.saved(this.missing, this.received);
    const step = Math.max(1, Math.floor(row.blocks / 10));
    if (this.received % step === 0 && this.received < row.blocks) this.host.progress(this.received);
    if (this.received === row.blocks) this.finish();
    else this.requestMore();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }

  private finish(): void {
    this.close();
    this.host.complete();
  }

  private onStall(): void {
    if (Date.now() - this.lastBlockAt < this.host.config().requestTimeoutMs) return;
    this.outstanding.clear();
    this.lastBlockAt = Date.now();
    this.requestMore();
  }

  private requestMore(): void {
    if (this.closed) return;
    const room = this.host.config().window - this.outstanding.size;
    if (room <= 0) return;
    const wanted: number[] = [];
    for (const i of missingBlocks(this.missing, this.row.blocks)) {
      if (wanted.length >= room) break;
      if (!this.outstanding.has(i)) wanted.push(i);
    }
    if (wanted.length === 0) return;
    for (const i of wanted) this.outstanding.add(i);
    void this.host.request(wanted).then(
      (sent) => {
        // Offline: the next `online` asks again.
        if (!sent) for (const i of wanted) this.outstanding.delete(i);
      },
      () => wanted.forEach((i) => this.outstanding.delete(i)),
    );
  }
}
