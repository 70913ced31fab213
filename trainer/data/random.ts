/**
 * Seeded randomness for the trainer. Every stream is derived from (seed, purpose, index), e.g. the shuffle of
 * epoch 7, so a run resumed from a checkpoint draws exactly what the uninterrupted run would have drawn.
 */

/** mulberry32: floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A generator for one purpose and index under a run seed. */
export function stream(seed: number, purpose: string, index = 0): () => number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const ch of `${purpose}#${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return rng(h);
}

/** Fisher–Yates permutation of 0..n-1. */
export function permutation(n: number, r: () => number): Uint32Array {
  const p = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}
