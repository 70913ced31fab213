/**
 * The frame path up to the engine: a source's frames into the bounded queue (a pulled source waits for room, a
 * live one drops the oldest), and the loop that hands each queued frame to the agent. The source can be
 * replaced while frames flow (`config`); the frames still queued from the old one are dropped uncounted.
 * A handler that returns a promise (throughput mode: the frame went to a worker) lets the loop take the next frame
 * at once, up to `concurrency` frames in flight; beyond, frames wait in the queue, so it drops the oldest as before.
 */
import { FrameError } from '../runtime/index.js';
import type { FrameSource, SourceFrame } from './sources/index.js';
import { DropOldestQueue } from './sources/queue.js';

/** Longest stretch of back-to-back inferences before I/O gets a turn. */
const YIELD_MS = 5;

export class Pipeline {
  private queue: DropOldestQueue<SourceFrame>;
  private source: FrameSource | null = null;
  /** Bumped per source: a replaced source's reader stops at its next frame. */
  private generation = 0;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  /** Frames handed on whose handling has not finished (handlers that return a promise). */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    queueSize: number,
    private readonly handle: (frame: SourceFrame) => Promise<void> | undefined,
    private readonly report: (err: Error) => void,
    private readonly concurrency = 1,
  ) {
    this.queue = new DropOldestQueue(queueSize);
  }

  get depth(): number {
    return this.queue.depth;
  }

  /** Frames dropped because the queue was full. */
  get dropped(): number {
    return this.queue.dropped;
  }

  /** Reads `source` into the queue and starts handing frames on. */
  start(source: FrameSource): void {
    this.running = true;
    this.loopDone = this.loop(this.queue);
    this.read(source);
  }

  /** Closes the current source, then reads the one `open` makes instead, through a queue of `queueSize`. */
  replace(open: () => FrameSource, queueSize: number): FrameSource {
    this.source?.close();
    if (queueSize !== this.queue.capacity) {
      const old = this.queue;
      this.queue = new DropOldestQueue(queueSize);
      this.queue.dropped = old.dropped;
      old.clear();
      old.close();
      this.loopDone = Promise.all([this.loopDone, this.loop(this.queue)]).then(() => undefined);
    } else this.queue.clear();
    const source = open();
    this.read(source);
    return source;
  }

  /** Drops the queued frames (a model switch: they were meant for the previous one). */
  clear(): void {
    this.queue.clear();
  }

  /** Stops the source and resolves once the frames in hand are handled. */
  async stop(): Promise<void> {
    this.running = false;
    this.source?.close();
    this.queue.close();
    await this.loopDone;
    await Promise.all(this.inFlight);
  }

  private read(source: FrameSource): void {
    const generation = ++this.generation;
    this.source = source;
    void (async () => {
      try {
        for await (const frame of source) {
          if (generation !== this.generation || !this.running) break;
          if (!source.live) await this.queue.waitForRoom();
          this.queue.push(frame);
        }
        // A camera pipeline that dies closes stdin: say so, since the agent itself stays up (commands still work).
        if (generation === this.generation && this.running && source.live) {
          this.report(
            new FrameError(
              `source: expected frames to keep coming, got the end of ${source.description}`,
              'source.spec',
            ),
          );
        }
      } catch (err) {
        this.report(err as Error);
      }
    })();
  }

  private async loop(queue: DropOldestQueue<SourceFrame>): Promise<void> {
    let lastYield = performance.now();
    for (;;) {
      const frame = await queue.take();
      if (frame === undefined) return;
      const handled = this.handle(frame);
      if (handled) {
        this.inFlight.add(handled);
        void handled.finally(() => this.inFlight.delete(handled));
        if (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
      }
      // Inference is synchronous: let MQTT, timers and the source run at least every YIELD_MS (a turn of the
      // event loop per frame would cost a measurable share of the throughput on a fast model).
      if (performance.now() - lastYield >= YIELD_MS) {
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
    }
  }
}

/** The last frames by the id the agent gave them, for `label` (which names frames by id). */
export class RecentFrames {
  private readonly ring: Array<{ id: number; ts: number; data: Uint8Array } | undefined>;

  constructor(size: number) {
    this.ring = new Array(size);
  }

  hold(id: number, data: Uint8Array): void {
    if (this.ring.length > 0) this.ring[id % this.ring.length] = { id, ts: Date.now(), data };
  }

  get(id: number): { readonly ts: number; readonly data: Uint8Array } | undefined {
    const held = this.ring[id % Math.max(1, this.ring.length)];
    return held && held.id === id ? held : undefined;
  }
}
