/**
 * Data-parallel training on one machine: worker threads, each with its own tfjs wasm backend (wasm in Node computes
 * on one thread, so a second core needs a second backend). The thread that owns the weights computes one shard
 * itself (rank 0) while the workers compute the others; each step sends the current weights along with the shard,
 * so the workers hold no state between steps. All of them share one `CollectiveGroup` for batch norm's
 * whole-batch statistics. Between epochs the same workers compute their share of validation (./evaluate.ts): an
 * `evaluate` request carries every variable's values (the recalibrated BN statistics included) and whole batches.
 */
import { Worker } from 'node:worker_threads';
import { CollectiveGroup } from './collective.js';
import { plan } from '../model.js';
import type { NetConfig } from '../model.js';
import type { LossOptions } from '../recipe/loss.js';
import type { EvalMode, EvalResults, Network } from './evaluate.js';
import type { Shard, ShardResult } from './shard.js';

/** What a worker needs to build its copy of the network. */
export interface WorkerSetup {
  readonly net: NetConfig;
  readonly seed: number;
  readonly frame: readonly [number, number, number];
  readonly loss: LossOptions;
  /** The KD teacher's network, when the workers compute its share of each batch's soft targets too. */
  readonly teacher?: NetConfig;
}

export type WorkerRequest =
  | {
      kind: 'setup';
      setup: WorkerSetup;
      collective: { buffer: SharedArrayBuffer; capacity: number; maxLength: number };
    }
  /** `values`: every variable in `namedVariables` order (the ones a step does not carry: fixed θ and β, BN's). */
  | { kind: 'assign'; values: Float32Array[] }
  | { kind: 'step'; values: Float32Array[]; shard: Shard; rank: number }
  /**
   * `values`: every variable of `network` in `namedVariables` order; `batches`: raw frames of each batch, in order.
   */
  | { kind: 'evaluate'; network: Network; mode: EvalMode; values: Float32Array[]; batches: Float32Array[] };
export type WorkerReply =
  | { kind: 'ready' }
  | { kind: 'result'; result: ShardResult }
  | { kind: 'evaluated'; results: EvalResults<EvalMode> }
  | { kind: 'error'; message: string };

/** A group for `threads` participants, sized for the widest BN layer of `net` (its forward sums: 2·C + 1). */
export function collectiveFor(net: WorkerSetup['net'], threads: number): CollectiveGroup {
  const widest = Math.max(...plan(net).map((l) => l.cout));
  return new CollectiveGroup(threads, 2 * widest + 1);
}

export class GradientPool {
  private constructor(
    private readonly workers: Worker[],
    readonly group: CollectiveGroup,
  ) {}

  /** Starts `count` workers and waits until each has its backend and network. */
  static async start(count: number, setup: WorkerSetup): Promise<GradientPool> {
    const workers = Array.from({ length: count }, () => new Worker(new URL('./worker.mjs', import.meta.url)));
    const group = collectiveFor(setup.net, count + 1);
    const pool = new GradientPool(workers, group);
    const collective = { buffer: group.buffer, capacity: group.capacity, maxLength: group.maxLength };
    try {
      await Promise.all(workers.map((w) => pool.call(w, { kind: 'setup', setup, collective })));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Sets every variable of every worker's network (namedVariables order) to `values`: once after start, so that
   * what a step does not send (a fixed θ or β loaded with --init-from, say) is this thread's too.
   */
  async assign(values: Float32Array[]): Promise<void> {
    await Promise.all(
      this.workers.map((w) =>
        this.call(w, { kind: 'assign', values }).then((r) => {
          if (r.kind !== 'ready') throw new Error(`training worker: a ${r.kind} reply to assign`);
        }),
      ),
    );
  }

  /**
   * Gradients of `shards[k]` on worker k (rank k + 1 of the step's collective) with the weights `values`
   * (trainables order). The caller has reset the group for the step and computes rank 0 itself.
   */
  run(shards: Shard[], values: Float32Array[]): Promise<ShardResult[]> {
    return Promise.all(
      shards.map((shard, k) =>
        this.call(this.workers[k]!, { kind: 'step', values, shard, rank: k + 1 }).then((r) => {
          if (r.kind !== 'result') throw new Error(`training worker: a ${r.kind} reply to a step`);
          return r.result;
        }),
      ),
    );
  }

  /**
   * `mode` on `batches[k]` on worker k with `network`'s variables set to `values` (namedVariables order); each
   * worker's results in batch order. No collective: batch norm takes each batch's own statistics.
   */
  evaluate<M extends EvalMode>(
    mode: M,
    values: Float32Array[],
    batches: Float32Array[][],
    network: Network = 'student',
  ): Promise<EvalResults<M>[]> {
    return Promise.all(
      batches.map((b, k) =>
        this.call(this.workers[k]!, { kind: 'evaluate', network, mode, values, batches: b }).then((r) => {
          if (r.kind !== 'evaluated') throw new Error(`training worker: a ${r.kind} reply to evaluate`);
          return r.results as EvalResults<M>;
        }),
      ),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private call(worker: Worker, request: WorkerRequest): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onMessage = (reply: WorkerReply) => {
        cleanup();
        if (reply.kind === 'error') reject(new Error(`training worker: ${reply.message}`));
        else resolve(reply);
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new Error(`training worker exited with code ${code}`));
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage(request);
    });
  }
}
