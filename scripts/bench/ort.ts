/**
 * The onnxruntime-node side of `sei bench`: one FP32 Conv node of the kernel benchmark's shape, and whole-model
 * frames/s of an ONNX twin. One thread each (intraOpNumThreads = interOpNumThreads = 1).
 */
import { Graph, convAttrs, TWIN_OUTPUT } from '../../trainer/export/onnx.js';
import { openOrt } from '../../trainer/export/ort.js';
import type { Shape3 } from '../../runtime/format/model.js';
import { rng } from '../../runtime/data/random.js';
import { measure } from './timing.js';

export interface ConvShape {
  readonly cin: number;
  readonly cout: number;
  readonly h: number;
  readonly w: number;
  readonly k: number;
}

/** Multiply-accumulates of a stride-1, same-padded k×k conv (padding taps included, as every conv count does). */
export function convMacs(s: ConvShape): number {
  return s.h * s.w * s.cout * s.cin * s.k * s.k;
}

/** One FP32 Conv node (with bias) of shape `s`, random weights. */
export function convOnnx(s: ConvShape, seed = 7): Uint8Array {
  const r = rng(seed);
  const g = new Graph();
  const w = g.floats(
    'w',
    [s.cout, s.cin, s.k, s.k],
    Float32Array.from({ length: s.cout * s.cin * s.k * s.k }, () => r() - 0.5),
  );
  const b = g.floats(
    'b',
    [s.cout],
    Float32Array.from({ length: s.cout }, () => r() - 0.5),
  );
  g.op('Conv', ['frame', w, b], convAttrs(s.k, 1, s.k >> 1), TWIN_OUTPUT);
  g.output(TWIN_OUTPUT, [1, s.cout, s.h, s.w]);
  return g.encode('conv-bench', [1, s.cin, s.h, s.w], `FP32 conv ${s.cin}->${s.cout}, ${s.h}x${s.w}, ${s.k}x${s.k}`);
}

/** A best-round timer: each call measures for `seconds` and returns the best calls/s seen so far. */
export type Rounds = (seconds: number) => Promise<number>;

function bestSoFar(fn: () => unknown): Rounds {
  let best = 0;
  return async (seconds) => (best = Math.max(best, (await measure(fn, seconds)).perSecond));
}

/** The FP32 conv on onnxruntime (full graph optimisation, one thread) on a 0/1 input at `rate`; rounds give MAC/s. */
export async function ortConv(s: ConvShape, rate: number): Promise<Rounds> {
  const ort = await openOrt(convOnnx(s), { optimize: true });
  const r = rng(3);
  const input = Float32Array.from({ length: s.cin * s.h * s.w }, () => (r() < rate ? 1 : 0));
  const dims = [1, s.cin, s.h, s.w];
  const rounds = bestSoFar(() => ort.run(input, dims));
  return async (seconds) => (await rounds(seconds)) * convMacs(s);
}

/**
 * An ONNX twin on onnxruntime, cycling through `frames` (NCHW float32 data of shape `input`); rounds give frames/s.
 * `threads`: intra-op threads (default 1), one frame at a time.
 */
export async function ortFrames(
  bytes: Uint8Array,
  optimize: boolean,
  input: Shape3,
  frames: readonly Float32Array[],
  threads = 1,
): Promise<Rounds> {
  const ort = await openOrt(bytes, { optimize, threads });
  const dims = [1, input[2], input[0], input[1]];
  let i = 0;
  return bestSoFar(() => ort.run(frames[i++ % frames.length]!, dims, [TWIN_OUTPUT]));
}
