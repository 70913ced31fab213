/**
 * Throughput of a (possibly async) function: a short warm-up, then as many calls as fit in `seconds`.
 *
 * The clock is wall time by default. On a machine shared with other jobs, `setClock('cpu')` counts this process's
 * CPU time instead (user + system, every thread, so onnxruntime's worker counts too): time spent descheduled
 * then costs no contender anything, and every benchmark built on `measure` switches together.
 */
export interface Throughput {
  readonly calls: number;
  /** Seconds on the active clock. */
  readonly seconds: number;
  readonly perSecond: number;
}

export type Clock = 'wall' | 'cpu';

let clock: Clock = 'wall';

export function setClock(c: Clock): void {
  clock = c;
}

export function activeClock(): Clock {
  return clock;
}

/** Seconds on the active clock since an arbitrary origin. */
function now(): number {
  if (clock === 'wall') return performance.now() / 1000;
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export async function measure(fn: () => unknown, seconds: number): Promise<Throughput> {
  const warmUntil = now() + Math.min(0.25, seconds * 0.2);
  do await fn();
  while (now() < warmUntil);
  const start = now();
  const end = start + seconds;
  let calls = 0;
  let t = start;
  while (t < end) {
    await fn();
    calls++;
    t = now();
  }
  const elapsed = t - start;
  return { calls, seconds: elapsed, perSecond: calls / elapsed };
}
