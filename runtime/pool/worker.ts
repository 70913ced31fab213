/**
 * One engine worker of an EnginePool (./index.ts): builds its own engine — its own WASM module instance and memory —
 * from `workerData`, then infers each frame it is sent and posts the result back, its arrays transferred.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createEngine } from '../engine/index.js';
import type { Engine } from '../engine/types.js';
import type { ErrorBody, WorkerReply, WorkerRequest, WorkerSetup } from './protocol.js';

const port = parentPort!;
const body = (err: unknown): ErrorBody =>
  err instanceof Error
    ? { name: err.name, message: err.message, field: (err as { field?: string }).field ?? null }
    : { name: 'Error', message: String(err), field: null };

let engine: Engine | undefined;
try {
  const setup = workerData as WorkerSetup;
  engine = createEngine(setup.model, { kernel: setup.kernel, steps: setup.steps });
  port.postMessage({ kind: 'ready' } satisfies WorkerReply);
} catch (err) {
  port.postMessage({ kind: 'failed', error: body(err) } satisfies WorkerReply);
}

if (engine) {
  const e = engine;
  port.on('message', ({ id, frame }: WorkerRequest) => {
    let reply: WorkerReply;
    try {
      reply = { kind: 'result', id, result: e.infer(frame) };
    } catch (err) {
      port.postMessage({ kind: 'error', id, error: body(err) } satisfies WorkerReply);
      return;
    }
    const r = reply.result;
    port.postMessage(reply, [r.logits.buffer, r.spikeRates.buffer, r.features.buffer] as ArrayBuffer[]);
  });
}
