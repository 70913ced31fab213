/**
 * Packing of binary weight rows, the layout model.ts describes: bit j of a row LSB-first in little-endian
 * 32-bit words, each row padded with zero bits to a multiple of 128 bits (`rowWords`).
 */
import { rowWords } from './model.js';

/**
 * Packs `rows` rows of `bits` real weights each (row-major) into sign bits: 1 for w >= 0 (sign(0) = +1),
 * 0 for w < 0. NaN packs as 0; callers validate their floats first.
 */
export function packRows(weights: ArrayLike<number>, rows: number, bits: number): Uint32Array {
  if (weights.length !== rows * bits)
    throw new RangeError(`packRows: expected ${rows * bits} weights, got ${weights.length}`);
  const words = rowWords(bits);
  const out = new Uint32Array(rows * words);
  for (let r = 0; r < rows; r++) {
    const base = r * words;
    for (let j = 0; j < bits; j++) if (weights[r * bits + j]! >= 0) out[base + (j >>> 5)]! |= 1 << (j & 31);
  }
  return out;
}

/** The inverse of packRows: ±1 per weight, row-major, padding dropped. */
export function unpackRows(packed: Uint32Array, rows: number, bits: number): Int8Array {
  const words = rowWords(bits);
  if (packed.length !== rows * words)
    throw new RangeError(`unpackRows: expected ${rows * words} words, got ${packed.length}`);
  const out = new Int8Array(rows * bits);
  for (let r = 0; r < rows; r++) {
    const base = r * words;
    for (let j = 0; j < bits; j++) out[r * bits + j] = (packed[base + (j >>> 5)]! >>> (j & 31)) & 1 ? 1 : -1;
  }
  return out;
}

/**
 * First row whose padding bits (positions >= `bits`) are not all zero, with the offending word; null when
 * every row is clean. Kernels popcount whole words, so a stray padding bit would silently change every dot.
 */
export function dirtyPadding(
  packed: Uint32Array,
  rows: number,
  bits: number,
): { row: number; word: number; value: number } | null {
  const words = rowWords(bits);
  const full = bits >>> 5;
  const tailMask = bits & 31 ? ~((1 << (bits & 31)) - 1) >>> 0 : 0xffffffff;
  for (let r = 0; r < rows; r++) {
    const base = r * words;
    for (let w = full; w < words; w++) {
      const mask = w === full ? tailMask : 0xffffffff;
      const value = packed[base + w]!;
      if ((value & mask) !== 0) return { row: r, word: w, value };
    }
  }
  return null;
}

/**
 * Format version 2 stores binary rows without padding: one LSB-first bit stream, bit `j` of row `r` at stream
 * bit `r * bits + j` (byte >> 3, bit & 7), zero bits after the last one up to the byte. `packStream` takes the
 * padded rows (packRows' layout) and returns `ceil(rows * bits / 8)` bytes.
 */
export function packStream(packed: Uint32Array, rows: number, bits: number): Uint8Array {
  const words = rowWords(bits);
  const out = new Uint8Array(Math.ceil((rows * bits) / 8));
  let at = 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < bits; j++, at++)
      if ((packed[r * words + (j >>> 5)]! >>> (j & 31)) & 1) out[at >>> 3]! |= 1 << (at & 7);
  }
  return out;
}

/** The inverse of packStream: the padded rows of `rows * bits` stream bits. `stream` holds at least that many. */
export function unpackStream(stream: Uint8Array, rows: number, bits: number): Uint32Array {
  const words = rowWords(bits);
  const out = new Uint32Array(rows * words);
  let at = 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < bits; j++, at++)
      if ((stream[at >>> 3]! >>> (at & 7)) & 1) out[r * words + (j >>> 5)]! |= 1 << (j & 31);
  }
  return out;
}
