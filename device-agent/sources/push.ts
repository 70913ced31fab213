/** The live source every pushed stream is built on (camera video on stdin, MQTT `frames/in`). */
import type { FrameSource, SourceFrame } from './types.js';

/**
 * A live source fed from outside (the MQTT link, a test). `push` never blocks; frames buffer until the agent's
 * reader takes them, and the agent's bounded queue applies the drop-oldest policy.
 */
export class PushSource implements FrameSource {
  readonly live = true;
  readonly length = null;
  private buffered: SourceFrame[] = [];
  private wake: (() => void) | null = null;
  private closed = false;
  /** The producer has no more frames: the reader still gets the buffered ones, then the iteration ends. */
  private ended = false;

  constructor(readonly description: string) {}

  push(frame: SourceFrame): void {
    if (this.closed || this.ended) return;
    this.buffered.push(frame);
    this.wake?.();
  }

  /** The reader is done: frames not taken yet are dropped. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  /** The stream behind it ended (a camera pipe closed): the frames already pushed are still read. */
  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceFrame> {
    while (!this.closed) {
      if (this.buffered.length === 0) {
        if (this.ended) return;
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
        continue;
      }
      const batch = this.buffered;
      this.buffered = [];
      yield* batch;
    }
  }
}
