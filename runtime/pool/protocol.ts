/** The messages between an EnginePool (./index.ts) and its worker threads (./worker.ts). Types only. */
import type { BwsnnModel } from '../format/model.js';
import type { InferResult, KernelName } from '../engine/types.js';

/** What a worker builds its engine from (its `workerData`): the same model, kernel and step count as the pool's. */
export type WorkerSetup = { readonly model: BwsnnModel; readonly kernel: KernelName; readonly steps: number };

/** An error as it crosses the thread boundary (an Error's class does not survive structured cloning). */
export type ErrorBody = { readonly name: string; readonly message: string; readonly field: string | null };

/** Pool → worker: one validated frame (HWC bytes of the model's input), tagged with the pool's job number. */
export type WorkerRequest = { readonly id: number; readonly frame: Uint8Array };

export type WorkerReply =
  | { readonly kind: 'ready' }
  /** The engine could not be built; the worker ends after saying so. */
  | { readonly kind: 'failed'; readonly error: ErrorBody }
  | { readonly kind: 'result'; readonly id: number; readonly result: InferResult }
  | { readonly kind: 'error'; readonly id: number; readonly error: ErrorBody };
