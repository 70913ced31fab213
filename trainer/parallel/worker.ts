/**
 * A data-parallel training worker (see ./pool.ts): computes one shard's gradients per `step` request, and its run
 * of validation batches per `evaluate` request (./evaluate.ts), of the student or of the KD teacher it holds.
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend/index.js';
import type { NetParams } from '../model.js';
import { initParams, namedVariables } from '../model.js';
import { CollectiveGroup } from './collective.js';
import { evaluateBatches } from './evaluate.js';
import type { PredictionBatch } from './evaluate.js';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './pool.js';
import type { BnStatistics } from './shard.js';
import { shardGradients } from './shard.js';

const port = parentPort!;

/** Every variable of `params` (namedVariables order) set to `values`. */
function assignAll(params: NetParams, values: Float32Array[]): void {
  const all = namedVariables(params).map((v) => v.v);
  if (values.length !== all.length) throw new Error(`${values.length} values for ${all.length} variables`);
  tf.tidy(() => all.forEach((v, i) => v.assign(tf.tensor(values[i]!, v.shape))));
}
let state:
  | {
      setup: WorkerSetup;
      params: NetParams;
      teacher: NetParams | undefined;
      trainables: tf.Variable[];
      group: CollectiveGroup;
    }
  | undefined;

port.on('message', async (request: WorkerRequest) => {
  try {
    if (request.kind === 'setup') {
      await initBackend({ preferWasm: true });
      const params = initParams(request.setup.net, request.setup.seed, 'worker/');
      const teacher = request.setup.teacher
        ? initParams(request.setup.teacher, request.setup.seed, 'worker-teacher/')
        : undefined;
      const { buffer, capacity, maxLength } = request.collective;
      state = {
        setup: request.setup,
        params,
        teacher,
        trainables: namedVariables(params)
          .filter((v) => v.trainable)
          .map((v) => v.v),
        group: new CollectiveGroup(capacity, maxLength, buffer),
      };
      port.postMessage({ kind: 'ready' } satisfies WorkerReply);
      return;
    }
    if (!state) throw new Error(`${request.kind} before setup`);
    const { setup, params, trainables, group } = state;
    if (request.kind === 'assign') {
      assignAll(params, request.values);
      port.postMessage({ kind: 'ready' } satisfies WorkerReply);
      return;
    }
    if (request.kind === 'evaluate') {
      const teacher = request.network === 'teacher';
      const net = teacher ? setup.teacher : setup.net;
      const target = teacher ? state.teacher : params;
      if (!net || !target) throw new Error('evaluate: this worker holds no teacher');
      assignAll(target, request.values);
      const { batches } = request;
      const results = evaluateBatches(net, target, setup.frame, request.mode, batches.length, (b) => batches[b]!);
      const buffers =
        request.mode === 'recalibrate'
          ? (results as BnStatistics[][]).flat().flatMap((s) => [s.mean.buffer, s.variance.buffer])
          : (results as PredictionBatch[]).flatMap((r) => [r.logits.buffer, r.predictions.buffer, r.rateSums.buffer]);
      port.postMessage({ kind: 'evaluated', results } satisfies WorkerReply, buffers as ArrayBuffer[]);
      return;
    }
    tf.tidy(() => trainables.forEach((v, i) => v.assign(tf.tensor(request.values[i]!, v.shape))));
    const result = shardGradients(
      setup.net,
      params,
      trainables,
      request.shard,
      setup.frame,
      setup.loss,
      group.join(request.rank),
    );
    port.postMessage({ kind: 'result', result } satisfies WorkerReply, [
      ...result.grads.map((g) => g.buffer),
      ...result.bn.flatMap((b) => [b.mean.buffer, b.variance.buffer]),
    ] as ArrayBuffer[]);
  } catch (err) {
    port.postMessage({
      kind: 'error',
      message: err instanceof Error ? (err.stack ?? err.message) : String(err),
    } satisfies WorkerReply);
  }
});
