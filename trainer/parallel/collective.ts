/**
 * All-reduce between the threads of one data-parallel step, over a SharedArrayBuffer: what lets batch norm take its
 * statistics over the whole batch while each thread holds only its shard (synchronised BN). Every participant calls
 * `allReduce` the same number of times in the same order (each BN layer once forward, once backward); each call
 * returns the sum of every participant's vector, added in rank order, so all threads get bit-identical results and a
 * run does not depend on which thread arrives first.
 *
 * Slots are double-buffered by call parity and a barrier closes each call: a thread can only write call k + 2's data
 * over call k's after everyone has passed call k + 1's barrier, i.e. after everyone has read call k. A participant
 * that fails calls `abort()`, which wakes the others with an error instead of leaving them waiting.
 */

const GEN = 0,
  ARRIVED = 1,
  ABORT = 2,
  SIZE = 3,
  CONTROL = 4;

export class CollectiveError extends Error {}

/** One participant's view of the shared block. */
export interface Collective {
  /** Participants of the current step. */
  readonly size: number;
  readonly rank: number;
  /** Element-wise sum over all participants, in rank order. */
  allReduce(local: Float64Array): Float64Array;
  abort(): void;
}

/** The collective of a single thread: the sum over one participant is its own vector. */
export const SOLO: Collective = { size: 1, rank: 0, allReduce: (local) => local, abort: () => undefined };

/** Shared state of a group of threads: make it once, `post` the buffer to each worker, `join` per step. */
export class CollectiveGroup {
  readonly buffer: SharedArrayBuffer;
  private readonly control: Int32Array;
  private readonly slots: Float64Array;

  /** `capacity`: most participants; `maxLength`: longest vector reduced (e.g. 2 × the widest BN layer + 1). */
  constructor(capacity: number, maxLength: number, buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(CONTROL * 4 + 2 * capacity * maxLength * 8);
    this.control = new Int32Array(this.buffer, 0, CONTROL);
    this.slots = new Float64Array(this.buffer, CONTROL * 4, 2 * capacity * maxLength);
    this.capacity = capacity;
    this.maxLength = maxLength;
  }

  readonly capacity: number;
  readonly maxLength: number;

  /** Starts a step with `size` participants. Only call while no participant is inside `allReduce`. */
  reset(size: number): void {
    if (size < 1 || size > this.capacity)
      throw new RangeError(`collective: expected 1..${this.capacity} participants, got ${size}`);
    Atomics.store(this.control, ARRIVED, 0);
    Atomics.store(this.control, ABORT, 0);
    Atomics.store(this.control, SIZE, size);
  }

  /** The participant `rank` of the current step; `timeoutMs` bounds each wait for the others. */
  join(rank: number, timeoutMs = 600_000): Collective {
    const { control, slots, maxLength, capacity } = this;
    const size = Atomics.load(control, SIZE);
    if (rank < 0 || rank >= size) throw new RangeError(`collective: rank ${rank} outside a step of ${size}`);
    let calls = 0;
    const abort = () => {
      Atomics.store(control, ABORT, 1);
      Atomics.notify(control, GEN);
    };
    return {
      size,
      rank,
      abort,
      allReduce(local: Float64Array): Float64Array {
        if (local.length > maxLength)
          throw new RangeError(`collective: vector of ${local.length} exceeds ${maxLength}`);
        if (size === 1) return local;
        const base = (calls++ % 2) * capacity * maxLength;
        slots.set(local, base + rank * maxLength);
        const gen = Atomics.load(control, GEN);
        if (Atomics.add(control, ARRIVED, 1) + 1 === size) {
          Atomics.store(control, ARRIVED, 0);
          Atomics.add(control, GEN, 1);
          Atomics.notify(control, GEN);
        } else {
          while (Atomics.load(control, GEN) === gen) {
            if (Atomics.load(control, ABORT)) throw new CollectiveError('collective: another training thread failed');
            if (Atomics.wait(control, GEN, gen, timeoutMs) === 'timed-out') {
              abort();
              throw new CollectiveError(`collective: the other training threads did not arrive within ${timeoutMs} ms`);
            }
          }
        }
        if (Atomics.load(control, ABORT)) throw new CollectiveError('collective: another training thread failed');
        const out = new Float64Array(local.length);
        for (let r = 0; r < size; r++) {
          const at = base + r * maxLength;
          for (let j = 0; j < out.length; j++) out[j]! += slots[at + j]!;
        }
        return out;
      },
    };
  }
}
