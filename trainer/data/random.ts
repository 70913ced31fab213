/**
 * Seeded randomness for the trainer. Every stream is derived from (seed, purpose, index), e.g. the shuffle of
 * epoch 7, so a run resumed from a checkpoint draws exactly what the uninterrupted run would have drawn.
 */
import { rng, shuffle } from '../../runtime/data/random.js';

export { rng };

/** A generator for one purpose and index under a run seed. */
export function stream(seed: number, purpose: string, index = 0): () => number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const ch of `${purpose}#${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return rng(h);
}

/** Fisher–Yates permutation of 0..n-1. */
export function permutation(n: number, r: () => number): Uint32Array {
  return shuffle(
    Uint32Array.from({ length: n }, (_, i) => i),
    r,
  );
}
