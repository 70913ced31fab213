/**
 * The bounded queue between a source and the engine. A live source (camera, MQTT) must never wait for the
 * engine, so when the queue is full the oldest frame is dropped and counted; a file source instead waits for
 * room (`waitForRoom`), since its frames are not going anywhere.
 */

export class DropOldestQueue<T> {
  private readonly items: T[] = [];
  private head = 0;
  private takers: Array<(item: T | undefined) => void> = [];
  private roomWaiters: Array<() => void> = [];
  private closed = false;
  /** Frames dropped because the queue was full. */
  dropped = 0;

  constructor(readonly capacity: number) {}

  get depth(): number {
    return this.items.length - this.head;
  }

  /** Adds an item; if full, drops the oldest. Returns false after close. */
  push(item: T): boolean {
    if (this.closed) return false;
    const taker = this.takers.shift();
    if (taker) {
      taker(item);
      return true;
    }
    if (this.depth >= this.capacity) {
      this.head++;
      this.dropped++;
    }
    this.items.push(item);
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return true;
  }

  /** The next item, waiting if empty; undefined once closed and drained. */
  take(): Promise<T | undefined> {
    if (this.depth > 0) {
      const item = this.items[this.head]!;
      this.items[this.head++] = undefined as T;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      }
      this.roomWaiters.shift()?.();
      return Promise.resolve(item);
    }
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => this.takers.push(resolve));
  }

  /** Resolves when a push would not drop anything. */
  waitForRoom(): Promise<void> {
    if (this.depth < this.capacity || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Drops everything queued (e.g. on a source change) without counting it as dropped. */
  clear(): void {
    this.items.length = 0;
    this.head = 0;
    for (const w of this.roomWaiters.splice(0)) w();
  }

  close(): void {
    this.closed = true;
    for (const t of this.takers.splice(0)) t(undefined);
    for (const w of this.roomWaiters.splice(0)) w();
  }
}
