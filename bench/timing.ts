/** Wall-clock throughput of a (possibly async) function: a short warm-up, then as many calls as fit in `seconds`. */
export interface Throughput {
  readonly calls: number;
  readonly seconds: number;
  readonly perSecond: number;
}

export async function measure(fn: () => unknown, seconds: number): Promise<Throughput> {
  const warmUntil = performance.now() + Math.min(250, seconds * 200);
  do await fn();
  while (performance.now() < warmUntil);
  const start = performance.now();
  const end = start + seconds * 1000;
  let calls = 0;
  let now = start;
  while (now < end) {
    await fn();
    calls++;
    now = performance.now();
  }
  const elapsed = (now - start) / 1000;
  return { calls, seconds: elapsed, perSecond: calls / elapsed };
}

