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
  if (!(await tf.setBackend('wasm')))
    throw new Error('neither tfjs-node nor the tfjs wasm backend could be initialised');
  await tf.ready();
  shareIdentity();
  active = { engine: 'wasm', threads: 1 };
  return active;
}

/**
 * tfjs saves every tensor a gradient needs through `clone` (the Identity kernel), and wasm's Identity copies the data:
 * a full copy of every conv input, LIF membrane and BN input per step. Tensors are immutable (a variable's `assign`
 * swaps its data, it never writes into it), so the clone can share the data with a reference count, as wasm's own
 * Reshape does.
 */
function shareIdentity(): void {
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({
    kernelName: 'Identity',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const x = inputs['x']!;
      (backend as unknown as { incRef(dataId: object): void }).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  });
}

/** One line for logs: which engine trains. */
export function describeBackend(info: BackendInfo): string {
  return info.engine === 'tfjs-node'
    ? 'engine: tfjs-node (native TensorFlow)'
    : `engine: tfjs wasm (SIMD, ${info.threads} thread per process)`;
}
