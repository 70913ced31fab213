/**
 * The project's one seeded generator (mulberry32: small, fast, good enough for shuffles, splits, initialisation
 * and test data): the same seed gives the same numbers on every machine. Returns floats in [0, 1).
 */
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

/** Standard normal samples (Box-Muller) from a uniform source. */
export function gaussian(uniform: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** Fisher-Yates shuffle in place (an array or a typed array); returns `items`. */
export function shuffle<A extends { length: number; [i: number]: unknown }>(items: A, uniform: () => number): A {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    const kept = items[i];
    items[i] = items[j]!;
    items[j] = kept;
  }
  return items;
}
