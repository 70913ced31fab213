/**
 * Throughput mode: an engine per core. An EnginePool runs the model of an Engine on `threads` worker threads
 * (./worker.ts), each with its own engine — its own WASM module instance — built with the same kernel and step
 * count, so every worker computes the bits the engine itself would. Frames are validated here, handed to the worker
 * with the fewest in hand (at most `depth` each, so that a worker has its next frame when it finishes one) and
 * wait in order when every worker is busy; results resolve in the order the frames were given, whichever worker
 * finished first.
 *
 * A worker that dies (an uncaught error, a trap, out of memory) fails the frames it held with a WorkerError that
 * says so, and is started again; the other workers and the frames waiting go on. A worker that cannot start
 * fails the pool: every frame then rejects with that WorkerError. Idle workers do not keep the process alive, and
 * `close` lets the frames in hand finish, then ends the threads.
 */
import { Worker } from 'node:worker_threads';
import { ConfigError, FormatError, FrameError, type SeiError, WorkerError, show } from '../errors.js';
import { validateFrame } from '../engine/index.js';
import type { Engine, Frame, InferResult, KernelName, StreamItem } from '../engine/types.js';
import type { BwsnnModel } from '../format/model.js';
import type { ErrorBody, WorkerReply, WorkerRequest, WorkerSetup } from './protocol.js';

/** Threads a pool may have: more than a box has cores only costs memory and switching. */
export const MAX_THREADS = 64;

export interface PoolOptions {
  /** Worker threads, each with its own engine (1..MAX_THREADS). */
  readonly threads: number;
  /** Frames in hand per worker at most; default 2 (one computing, the next one waiting in its port). */
  readonly depth?: number;
  /**
   * Called when a worker died and is being started again, with the number of frames it held (each rejected with
   * the same error).
   */
  readonly onRestart?: (err: WorkerError, lostFrames: number) => void;
  /** The worker's entry module; default this folder's worker (a custom one must speak ./protocol.ts). */
  readonly entry?: URL;
}

interface Job {
  readonly seq: number;
  readonly frame: Uint8Array;
  readonly resolve: (r: InferResult) => void;
  readonly reject: (e: Error) => void;
  outcome?: { ok: true; result: InferResult } | { ok: false; error: Error };
}

interface Slot {
  readonly index: number;
  worker: Worker;
  ready: boolean;
  readonly held: Map<number, Job>;
}

const DEFAULT_ENTRY = import.meta.url.endsWith('.ts')
  ? new URL('./worker-source.mjs', import.meta.url)
  : new URL('./worker.js', import.meta.url);

/** The error classes a worker's error is rebuilt as (their class does not survive the thread boundary). */
const CLASSES: Record<string, new (message: string, field?: string) => SeiError> = {
  FrameError,
  ConfigError,
  FormatError,
  WorkerError,
};
const rebuild = (e: ErrorBody): Error => {
  const Class = CLASSES[e.name];
  return Class ? new Class(e.message, e.field ?? undefined) : new WorkerError(`${e.name}: ${e.message}`);
};

export class EnginePool {
  readonly model: BwsnnModel;
  readonly kernel: KernelName;
  /** Time steps per frame (the engine's). */
  readonly steps: number;
  readonly threads: number;
  private readonly depth: number;
  private readonly setup: WorkerSetup;
  private readonly slots: Slot[] = [];
  /** Frames given but not yet handed to a worker, in order. */
  private readonly waiting: Job[] = [];
  /** Frames given and not yet settled to the caller, in order (settled from the front only). */
  private readonly order: Job[] = [];
  private seq = 0;
  private broken: WorkerError | null = null;
  private closing = false;
  private restartCount = 0;
  private idle: (() => void) | null = null;
  private closed: Promise<void> | null = null;

  private constructor(
    engine: Engine,
    options: PoolOptions,
    private readonly entry: URL,
  ) {
    const { threads } = options;
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS)
      throw new ConfigError(`threads: expected an integer in 1..${MAX_THREADS}, got ${show(threads)}`, 'threads');
    const depth = options.depth ?? 2;
    if (!Number.isInteger(depth) || depth < 1 || depth > 64)
      throw new ConfigError(`depth: expected an integer in 1..64, got ${show(depth)}`, 'depth');
    this.model = engine.model;
    this.kernel = engine.kernel;
    this.steps = engine.steps;
    this.threads = threads;
    this.depth = depth;
    this.onRestart = options.onRestart;
    this.setup = { model: engine.model, kernel: engine.kernel, steps: engine.steps };
  }

  private readonly onRestart: PoolOptions['onRestart'];

  /**
   * Starts `options.threads` workers running `engine`'s model with its kernel and step count, and resolves once
   * each has built its engine (a WorkerError naming the cause when one cannot).
   */
  static async start(engine: Engine, options: PoolOptions): Promise<EnginePool> {
    const pool = new EnginePool(engine, options, options.entry ?? DEFAULT_ENTRY);
    const started = Array.from({ length: pool.threads }, (_, i) => pool.spawn(i));
    try {
      await Promise.all(started);
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Workers started again after one died. */
  get restarts(): number {
    return this.restartCount;
  }

  /** Why the pool no longer infers (a worker could not be started again), or null while it does. */
  get failure(): WorkerError | null {
    return this.broken;
  }

  /** Frames given and not yet settled. */
  get pending(): number {
    return this.order.length;
  }

  /**
   * Infers one frame on a worker. Rejects with a FrameError for a frame that does not fit the model (the pool stays
   * usable), a WorkerError when the worker died holding it or the pool is closed or broken. Promises settle in
   * the order `infer` was called.
   */
  infer(frame: Frame): Promise<InferResult> {
    if (this.closing) return Promise.reject(new WorkerError('pool: expected an open pool, got one being closed'));
    if (this.broken) return Promise.reject(this.broken);
    return new Promise<InferResult>((resolve, reject) => {
      let pixels: Uint8Array;
      try {
        // A copy of the frame's own bytes, whose buffer is then moved to the worker: a view into a larger buffer
        // would be cloned whole (or, moved, detach it). Not `.slice()`, which on a Node Buffer is a view.
        pixels = new Uint8Array(validateFrame(frame, this.model.input));
      } catch (err) {
        // Refused at once, but settled in its place.
        this.order.push({
          seq: this.seq++,
          frame: new Uint8Array(0),
          resolve,
          reject,
          outcome: { ok: false, error: err as Error },
        });
        this.flush();
        return;
      }
      const job: Job = { seq: this.seq++, frame: pixels, resolve, reject };
      this.order.push(job);
      this.waiting.push(job);
      this.dispatch();
    });
  }

  /** Frames in order through the workers, up to threads × depth in flight; a bad frame yields `{ ok: false }`. */
  async *stream(frames: Iterable<Frame> | AsyncIterable<Frame>): AsyncGenerator<StreamItem> {
    const window = this.threads * this.depth;
    const inFlight: Array<Promise<StreamItem>> = [];
    let index = 0;
    for await (const frame of frames) {
      const i = index++;
      inFlight.push(
        this.infer(frame).then(
          (result): StreamItem => ({ ok: true, index: i, result }),
          (err: unknown): StreamItem => ({
            ok: false,
            index: i,
            error: err instanceof Error ? err : new Error(String(err)),
          }),
        ),
      );
      if (inFlight.length >= window) yield await inFlight.shift()!;
    }
    while (inFlight.length > 0) yield await inFlight.shift()!;
  }

  /** Refuses new frames, lets the ones given finish, then ends every worker. */
  close(): Promise<void> {
    this.closing = true;
    this.closed ??= (async () => {
      if (this.order.length > 0 && !this.broken) await new Promise<void>((r) => (this.idle = r));
      await Promise.all(this.slots.map((s) => s.worker.terminate()));
    })();
    return this.closed;
  }

  private spawn(index: number): Promise<void> {
    const worker = new Worker(this.entry, { workerData: this.setup });
    const slot: Slot = { index, worker, ready: false, held: new Map() };
    this.slots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      let started = false;
      const startFailed = (err: WorkerError) => {
        if (started) return false;
        reject(err);
        return true;
      };
      worker.on('message', (reply: WorkerReply) => {
        if (reply.kind === 'ready') {
          started = true;
          slot.ready = true;
          worker.unref();
          resolve();
          this.dispatch();
        } else if (reply.kind === 'failed') {
          const err = new WorkerError(
            `engine worker ${index}: expected an engine, got ${reply.error.name}: ${reply.error.message}`,
            reply.error.field ?? undefined,
          );
          if (!startFailed(err)) this.fail(err);
        } else this.settle(slot, reply.id, reply.kind === 'result' ? reply.result : rebuild(reply.error));
      });
      let gone = false;
      // 'error' is followed by 'exit': the first one counts.
      const died = (why: string) => {
        if (gone) return;
        gone = true;
        slot.ready = false;
        if (this.slots[index] !== slot || (this.closing && slot.held.size === 0)) return;
        const lost = [...slot.held.keys()];
        const err = new WorkerError(
          `engine worker ${index}: expected it to keep running, got ${why}${lost.length ? ` with frame${lost.length > 1 ? 's' : ''} #${lost.join(', #')} of the pool in hand` : ''}`,
          'threads',
        );
        if (startFailed(err)) return;
        for (const seq of lost) this.settle(slot, seq, err);
        if (this.closing) return;
        this.restartCount++;
        this.onRestart?.(err, lost.length);
        this.spawn(index).catch((e: WorkerError) => this.fail(e));
      };
      worker.on('error', (err) => died(`${err.name}: ${err.message}`));
      worker.on('exit', (code) => died(`an exit with code ${code}`));
    });
  }

  /** Hands waiting frames to the ready workers with the fewest in hand. */
  private dispatch(): void {
    while (this.waiting.length > 0) {
      let best: Slot | undefined;
      for (const s of this.slots)
        if (s?.ready && s.held.size < this.depth && (!best || s.held.size < best.held.size)) best = s;
      if (!best) return;
      const job = this.waiting.shift()!;
      if (best.held.size === 0) best.worker.ref();
      best.held.set(job.seq, job);
      best.worker.postMessage({ id: job.seq, frame: job.frame } satisfies WorkerRequest, [
        job.frame.buffer as ArrayBuffer,
      ]);
    }
  }

  /** Records a frame's outcome, then settles every frame at the front of the order that has one. */
  private settle(slot: Slot, seq: number, outcome: InferResult | Error): void {
    const job = slot.held.get(seq);
    if (!job) return;
    slot.held.delete(seq);
    if (slot.held.size === 0) slot.worker.unref();
    job.outcome = outcome instanceof Error ? { ok: false, error: outcome } : { ok: true, result: outcome };
    this.flush();
    this.dispatch();
  }

  /** Settles every frame at the front of the order that has its outcome. */
  private flush(): void {
    while (this.order[0]?.outcome) {
      const done = this.order.shift()!;
      const o = done.outcome!;
      if (o.ok) done.resolve(o.result);
      else done.reject(o.error);
    }
    if (this.order.length === 0) this.idle?.();
  }

  /** A worker could not be started again: every frame not settled, and every later one, fails with `err`. */
  private fail(err: WorkerError): void {
    this.broken = err;
    for (const job of this.order) job.reject(err);
    this.order.length = 0;
    this.waiting.length = 0;
    for (const s of this.slots) {
      if (s?.held.size) s.worker.unref();
      s?.held.clear();
    }
    this.idle?.();
  }
}
