/**
 * The narrow number encodings of format version 2 and the one transform that rounds a model to them.
 *
 * - float16: IEEE 754 binary16, round to nearest, ties to even; every float16 value is exactly a float32 value.
 * - q8: a row of int8 values q (|q| <= 127) with one float16 scale s per row, element = q * s. The product has at
 *   most 7 + 11 significant bits, so it is exact in float32: decoding never rounds.
 *
 * The writer never rounds: it stores each float tensor in the narrowest encoding that holds it exactly (container.ts),
 * so whatever a file stores is what the in-memory model, the engine and the ONNX twin compute with. Rounding is
 * `compactModel`, applied by whoever produces a model (the trainer's fold) before anything measures it.
 */
import type { BwsnnModel, Head, Lif } from './model.js';

/** Largest finite float16. */
const F16_MAX = 65504;
/** Smallest positive normal float16; below it float16 keeps fewer than 11 significant bits. */
const F16_MIN_NORMAL = 2 ** -14;
/** Largest |q| of a q8 element (symmetric: -128 is never written and refused on reading). */
export const Q8_MAX = 127;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float16 bit pattern nearest to `x` (rounded to float32 first; ties to even; overflow to ±Infinity). */
export function float16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  // Normal results keep the top 10 fraction bits; subnormal ones the significand (hidden bit included) shifted
  // further right. A carry out of the kept bits moves into the exponent field, which is the right result.
  const m = e > 0 ? mant : mant | 0x800000;
  const shift = e > 0 ? 13 : 14 - e;
  if (shift > 24) return sign;
  const kept = Math.floor(m / 2 ** shift);
  const rest = m - kept * 2 ** shift;
  const half = 2 ** (shift - 1);
  const rounded = kept + (rest > half || (rest === half && kept & 1) ? 1 : 0);
  return sign | ((e > 0 ? e << 10 : 0) + rounded);
}

/** The value of a float16 bit pattern. */
export function float16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

/** `x` rounded to the nearest float16 value. */
export function toFloat16(x: number): number {
  return float16Value(float16Bits(x));
}

/** Whether float16 holds `x` exactly (-0 included). */
export function isFloat16(x: number): boolean {
  return Object.is(toFloat16(x), x);
}

/**
 * The q8 scale of a row whose largest |element| is `max`: the smallest float16 >= max / 127, and never below
 * float16's smallest normal. With a normal scale the largest element quantises to ±127 exactly, and a row whose
 * elements are all within 127 steps of the smallest normal keeps that scale: so the scale of a quantised row,
 * recomputed from its values, is the scale it was quantised with (q8 rows write back as the same bytes).
 */
function scaleFor(max: number): number {
  if (max / Q8_MAX <= F16_MIN_NORMAL) return F16_MIN_NORMAL;
  const s = toFloat16(max / Q8_MAX);
  return s >= max / Q8_MAX ? s : float16Value(float16Bits(s) + 1);
}

const maxAbs = (row: ArrayLike<number>) => {
  let max = 0;
  for (let i = 0; i < row.length; i++) max = Math.max(max, Math.abs(row[i]!));
  return max;
};

/** The row's q8 scale when the row is exactly `q * s` with s = its canonical scale (scaleFor), else undefined. */
export function q8Scale(row: ArrayLike<number>): number | undefined {
  const s = scaleFor(maxAbs(row));
  for (let i = 0; i < row.length; i++) {
    const x = row[i]!;
    // `+ 0`: an int8 0 times a positive scale is +0, so a -0 element is no q8 value.
    if (!Object.is(Math.round(x / s) * s + 0, x)) return undefined;
  }
  return s;
}

/** `row` rounded to q8 with its canonical scale: q = round(x / s). Idempotent; never -0. */
export function quantizeQ8(row: ArrayLike<number>): Float32Array {
  const s = scaleFor(maxAbs(row));
  return Float32Array.from({ length: row.length }, (_, i) => Math.round(row[i]! / s) * s + 0);
}

/**
 * A per-channel vector rounded to float16 when all of it lies in float16's normal range (or is 0); otherwise
 * unchanged, since subnormals would cost more relative precision than float16's 2^-11 (the first layer's scale,
 * which folds in the /255 input scaling, is typically there).
 */
export function roundVector(v: Float32Array): Float32Array {
  for (const x of v) if (x !== 0 && !(Math.abs(x) >= F16_MIN_NORMAL && Math.abs(x) <= F16_MAX)) return v;
  return Float32Array.from(v, toFloat16);
}

/**
 * The model with its floats rounded to what a version-2 file stores compactly: every per-channel vector (scale,
 * bias, theta) and the head's bias to float16 (`roundVector`), the head's weights to q8 per output row. The integer
 * and binary tensors are unchanged. Idempotent; on the bundled Fashion-MNIST model it changed 0.08 pt of test
 * accuracy (bench/RESULTS.md).
 */
export function compactModel(model: BwsnnModel): BwsnnModel {
  const lif = (l: Lif): Lif => ({ beta: l.beta, theta: roundVector(l.theta) });
  const { head } = model;
  const weight = new Float32Array(head.weight.length);
  for (let o = 0; o < head.outFeatures; o++) {
    const row = head.weight.subarray(o * head.inFeatures, (o + 1) * head.inFeatures);
    weight.set(quantizeQ8(row), o * head.inFeatures);
  }
  const compactHead: Head = { ...head, weight, bias: roundVector(head.bias) };
  return {
    ...model,
    first: {
      ...model.first,
      scale: roundVector(model.first.scale),
      bias: roundVector(model.first.bias),
      lif: lif(model.first.lif),
    },
    hidden: model.hidden.map((l) => ({
      ...l,
      scale: roundVector(l.scale),
      bias: roundVector(l.bias),
      lif: lif(l.lif),
    })),
    head: compactHead,
  };
}
