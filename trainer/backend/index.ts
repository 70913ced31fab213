/**
 * Engine selection for the trainer. `@tensorflow/tfjs-node` (native TensorFlow, an optionalDependency) is used when
 * it loads; otherwise `@tensorflow/tfjs-backend-wasm` (XNNPACK, SIMD). The pure-JS `cpu` backend is never used for
 * training: it is about 30× slower than wasm. The wasm backend has no Conv2DBackpropFilter kernel, which is why
 * every conv in the trainer goes through `conv2d` in ./conv.ts (a custom gradient built from forward ops).
 */
import * as tf from '@tensorflow/tfjs';
import { setThreadsCount } from '@tensorflow/tfjs-backend-wasm';

export type EngineName = 'tfjs-node' | 'wasm';

export interface BackendInfo {
  readonly engine: EngineName;
  /** Threads the backend computes with (wasm in Node is single-threaded: no SharedArrayBuffer workers). */
  readonly threads: number;
}

let active: BackendInfo | undefined;

/** Picks and initialises the training engine once per process; later calls return the same choice. */
export async function initBackend(opts: { preferWasm?: boolean } = {}): Promise<BackendInfo> {
  if (active) return active;
  if (!opts.preferWasm && !process.env['SEI_TRAIN_WASM']) {
    try {
      // A string variable keeps TypeScript from requiring the optional package's types.
      const name = '@tensorflow/tfjs-node';
      await import(name);
      if (await tf.setBackend('tensorflow')) {
        await tf.ready();
        active = { engine: 'tfjs-node', threads: 0 };
        return active;
      }
    } catch {
      // Not installed or its native binding does not load here: fall through to wasm.
    }
  }
  // Multi-threaded wasm needs web workers; in Node the single-threaded SIMD build is what loads.
  setThreadsCount(1);
  if (!(await tf.setBackend('wasm'))) throw new Error('neither tfjs-node nor the tfjs wasm backend could be initialised');
  await tf.ready();
  active = { engine: 'wasm', threads: 1 };
  return active;
}

/** One line for logs: which engine trains. */
export function describeBackend(info: BackendInfo): string {
  return info.engine === 'tfjs-node' ? 'engine: tfjs-node (native TensorFlow)' : `engine: tfjs wasm (SIMD, ${info.threads} thread per process)`;
}
