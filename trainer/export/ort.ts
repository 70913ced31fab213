/**
 * Running ONNX models on onnxruntime-node the way `sei verify` and `sei bench` need: one thread, sequential,
 * and graph optimisations either off (the SNN twin: onnxruntime's Conv+Mul/Add fusions change the rounding)
 * or fully on (the ANN baseline, what a user deploying it would get).
 */
import * as ort from 'onnxruntime-node';

export interface OrtModel {
  readonly session: ort.InferenceSession;
  /** The optimisation level the session was created with. */
  readonly optimization: 'disabled' | 'all';
  /** Runs with one float32 input; returns every requested output as float32 data. */
  run(input: Float32Array, dims: readonly number[], outputs?: readonly string[]): Promise<Record<string, Float32Array>>;
}

/** `threads`: onnxruntime's intra-op threads (default 1; `sei bench`'s two-core figure gives it 2). */
export async function openOrt(
  bytes: Uint8Array,
  opts: { readonly optimize: boolean; readonly threads?: number },
): Promise<OrtModel> {
  const optimization = opts.optimize ? 'all' : 'disabled';
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: opts.threads ?? 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: optimization,
    // Warnings only (e.g. about initializers an optimised graph drops) would clutter CLI output.
    logSeverityLevel: 3,
  });
  const inputName = session.inputNames[0]!;
  return {
    session,
    optimization,
    async run(input, dims, outputs) {
      const feeds = { [inputName]: new ort.Tensor('float32', input, [...dims]) };
      const result = outputs ? await session.run(feeds, [...outputs]) : await session.run(feeds);
      const out: Record<string, Float32Array> = {};
      for (const [name, tensor] of Object.entries(result)) out[name] = tensor.data as Float32Array;
      return out;
    },
  };
}
