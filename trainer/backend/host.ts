/**
 * Host ops: element-wise work written as one JavaScript loop over a tensor's values, for the places where tfjs
 * would run a chain of small kernels (LIF over T steps, batch norm and their gradients are 10–30 kernels each, every
 * one a full pass over memory plus an allocation and a tape entry). On the wasm backend the loop reads and writes
 * the tensors in the wasm heap directly (no copies); on any other backend it goes through `dataSync` and a new
 * tensor, which is correct everywhere and is what the `cpu` backend tests compare against.
 */
import * as tf from '@tensorflow/tfjs';

interface WasmBackend {
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

function wasmBackend(): WasmBackend | undefined {
  return tf.getBackend() === 'wasm' ? (tf.backend() as unknown as WasmBackend) : undefined;
}

/**
 * Runs `fn(inputs, outputs)` on float32 views of `inputs` and of fresh outputs of `shapes`, and returns the outputs
 * as tensors. `fn` must write every element of every output (outputs start uninitialised on wasm).
 */
export function hostOp(
  inputs: readonly tf.Tensor[],
  shapes: readonly (readonly number[])[],
  fn: (ins: Float32Array[], outs: Float32Array[]) => void,
): tf.Tensor[] {
  for (const t of inputs)
    if (t.dtype !== 'float32') throw new TypeError(`hostOp: expected float32 inputs, got ${t.dtype}`);
  const wasm = wasmBackend();
  if (!wasm) {
    const outs = shapes.map((s) => new Float32Array(s.reduce((a, b) => a * b, 1)));
    fn(
      inputs.map((t) => t.dataSync() as Float32Array),
      outs,
    );
    return outs.map((o, i) => tf.tensor(o, shapes[i] as number[], 'float32'));
  }
  // Allocate first: an allocation may grow the heap, which detaches every view taken before it.
  const infos = shapes.map((s) => wasm.makeOutput([...s], 'float32'));
  const tensors = infos.map((info) => tf.engine().makeTensorFromTensorInfo(info));
  fn(
    inputs.map((t) => wasm.typedArrayFromHeap(t)),
    infos.map((info) => wasm.typedArrayFromHeap(info)),
  );
  return tensors;
}
