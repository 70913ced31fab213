/**
 * Capturing frames to train on: `cmd/capture {count, label?}` takes the next `count` inferred frames, and with
 * `capture.auto` set a frame whose confidence is below `capture.auto.belowConfidence` is taken by itself, at most
 * one per `capture.auto.minIntervalS`. Both go into the CaptureStore (store.ts). Idle (no request open, no auto
 * capture due) the frame path pays one comparison.
 */
import { rmSync } from 'node:fs';
import { ConfigError, show } from '../../runtime/index.js';
import type { InferResult } from '../../runtime/index.js';
import type { AgentConfig } from '../config-schema.js';
import { CaptureStore } from './store.js';
import type { CaptureRecord, CaptureStats } from './store.js';

export { BLOCK_RANGE, CAPTURE_BLOCK, CaptureStore, encodePng } from './store.js';
export type { CaptureRecord, CaptureStats, NewCapture } from './store.js';

/** Frames one `cmd/capture` may ask for. */
export const MAX_COUNT = 1000;

/** A class name a captured frame may carry: one folder name of an image folder. */
const CLASS_NAME = /^[^/\\\0]{1,64}$/;

/**
 * A captured frame's label: a class index of the running model (its name), one of its class names, or a new class
 * name (a folder name: 1-64 characters, no slash, not "." or "..", not starting with "_", which marks the pulled
 * folder's `_unlabelled/`).
 */
export function captureLabel(v: unknown, field: string, labels: readonly string[]): string {
  if (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))) {
    const i = Number(v);
    if (Number.isInteger(i) && i >= 0 && i < labels.length) return labels[i]!;
    throw new ConfigError(
      `${field}: expected a class index 0..${labels.length - 1} of the running model or a class name, got ${show(v)}`,
      field,
    );
  }
  if (typeof v === 'string' && CLASS_NAME.test(v) && v.trim() === v && v !== '.' && v !== '..' && !v.startsWith('_'))
    return v;
  throw new ConfigError(
    `${field}: expected a class index or a class name (1-64 characters, no slash, not starting with "_"), got ${show(v)}`,
    field,
  );
}

interface Request {
  left: number;
  readonly label: string | null;
  readonly ids: number[];
  readonly done: (problem: Error | null) => void;
}

/** What the capturer needs from the agent. */
export interface CaptureHost {
  config(): AgentConfig;
  /** A capture that failed (disk, quota) while no request waits for it. */
  report(err: Error): void;
}

export class Capturer {
  readonly store: CaptureStore;
  private readonly requests: Request[] = [];
  private lastAuto = 0;

  constructor(
    dbPath: string,
    dir: string,
    private readonly host: CaptureHost,
  ) {
    this.store = new CaptureStore(dbPath, dir, () => host.config().capture);
  }

  /**
   * Captures the next `count` frames with `label`; resolves with their ids once taken, or with what was taken
   * when `timeoutMs` passes first (then `timedOut`). A failed capture ends the request with its error.
   */
  request(
    count: number,
    label: string | null,
    timeoutMs: number,
  ): Promise<{ ids: number[]; timedOut: boolean; stats: CaptureStats }> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const req: Request = {
        left: count,
        label,
        ids: [],
        done: (problem) => {
          clearTimeout(timer);
          const at = this.requests.indexOf(req);
          if (at >= 0) this.requests.splice(at, 1);
          if (problem) reject(problem);
          else resolve({ ids: req.ids, timedOut: req.left > 0, stats: this.store.stats() });
        },
      };
      timer = setTimeout(() => req.done(null), timeoutMs);
      timer.unref?.();
      this.requests.push(req);
    });
  }

  /** After every inferred frame. */
  frame(data: Uint8Array, shape: readonly [number, number, number], result: InferResult, model: string): void {
    const auto = this.host.config().capture.auto;
    const req = this.requests[0];
    if (!req && (auto === null || result.confidence >= auto.belowConfidence)) return;
    const now = Date.now();
    if (!req && now - this.lastAuto < auto!.minIntervalS * 1000) return;
    let rec: CaptureRecord;
    try {
      rec = this.store.add({
        data,
        shape,
        ts: now,
        model,
        reason: req ? 'command' : 'auto',
        prediction: result.prediction,
        confidence: result.confidence,
        label: req ? req.label : null,
      });
    } catch (err) {
      if (req) req.done(err as Error);
      else {
        this.lastAuto = now;
        this.host.report(err as Error);
      }
      return;
    }
    if (!req) {
      this.lastAuto = now;
      return;
    }
    req.ids.push(rec.id);
    if (--req.left === 0) req.done(null);
  }

  /** Ends open requests with what they took; `removeFrames`: the folder goes too (a store in memory). */
  close(removeFrames = false): void {
    for (const r of [...this.requests]) r.done(null);
    this.store.close();
    if (removeFrames) rmSync(this.store.dir, { recursive: true, force: true });
  }
}
