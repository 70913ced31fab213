/**
 * Running figures of the agent. One snapshot feeds the `metrics` MQTT message, the Prometheus endpoint and the
 * demo's terminal view, so all three always agree.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { MetricsSnapshot } from '../messages.js';

// The snapshot is the `metrics` payload: declared with the other payloads in messages.ts.
export type { MetricsSnapshot } from '../messages.js';

const RATE_WINDOW_MS = 5000;
const SPIKE_WINDOW = 256;

export class MetricsCollector {
  frames = 0;
  frameErrors = 0;
  private labelled = 0;
  private correct = 0;
  private readonly latencies: Float64Array;
  private latencyCount = 0;
  private readonly times: Float64Array;
  private timesCount = 0;
  private layerNames: readonly string[] = [];
  private spikeRing = new Float64Array(0);
  private spikeSums = new Float64Array(0);
  private readonly synRing = new Float64Array(SPIKE_WINDOW);
  private synSum = 0;
  private spikeCount = 0;

  constructor(latencyWindow = 1024) {
    this.latencies = new Float64Array(latencyWindow);
    this.times = new Float64Array(latencyWindow);
  }

  /** Starts a new model's figures (spike rates and accuracy are per model). */
  resetModel(layerNames: readonly string[]): void {
    this.layerNames = layerNames;
    this.spikeRing = new Float64Array(SPIKE_WINDOW * layerNames.length);
    this.spikeSums = new Float64Array(layerNames.length);
    this.synRing.fill(0);
    this.synSum = 0;
    this.spikeCount = 0;
    this.labelled = 0;
    this.correct = 0;
  }

  record(
    r: { latencyMs: number; spikeRates: Float32Array; synOps: number; prediction: number },
    label: number | null,
    now = performance.now(),
  ): void {
    this.frames++;
    this.latencies[this.latencyCount++ % this.latencies.length] = r.latencyMs;
    this.times[this.timesCount++ % this.times.length] = now;
    const slot = this.spikeCount++ % SPIKE_WINDOW;
    const L = this.layerNames.length;
    for (let l = 0; l < L; l++) {
      const v = r.spikeRates[l] ?? 0;
      this.spikeSums[l] += v - this.spikeRing[slot * L + l]!;
      this.spikeRing[slot * L + l] = v;
    }
    this.synSum += r.synOps - this.synRing[slot]!;
    this.synRing[slot] = r.synOps;
    if (label !== null) {
      this.labelled++;
      if (label === r.prediction) this.correct++;
    }
  }

  snapshot(
    extra: { model: string | null; queueDepth: number; dropped: number; outbox: number },
    now = Date.now(),
  ): MetricsSnapshot {
    const n = Math.min(this.spikeCount, SPIKE_WINDOW);
    const spikeRate: Record<string, number> = {};
    this.layerNames.forEach((name, l) => (spikeRate[name] = n ? round(this.spikeSums[l]! / n, 6) : 0));
    const lat = this.latencies.slice(0, Math.min(this.latencyCount, this.latencies.length)).sort();
    return {
      ts: now,
      model: extra.model,
      frames: this.frames,
      framesPerSecond: round(this.rate(), 2),
      latencyMs: {
        p50: round(quantile(lat, 0.5), 4),
        p90: round(quantile(lat, 0.9), 4),
        p99: round(quantile(lat, 0.99), 4),
      },
      queueDepth: extra.queueDepth,
      dropped: extra.dropped,
      frameErrors: this.frameErrors,
      spikeRate,
      synOpsPerFrame: n ? Math.round(this.synSum / n) : 0,
      accuracy: this.labelled
        ? { labelled: this.labelled, correct: this.correct, ratio: round(this.correct / this.labelled, 6) }
        : null,
      rssBytes: residentBytes(),
      cpuTemperatureC: cpuTemperature(),
      outbox: extra.outbox,
    };
  }

  /** Frames per second over the recent frames that fall in the last RATE_WINDOW_MS. */
  private rate(now = performance.now()): number {
    const n = Math.min(this.timesCount, this.times.length);
    if (n < 2) return 0;
    const last = this.times[(this.timesCount - 1) % this.times.length]!;
    if (now - last > RATE_WINDOW_MS) return 0;
    let count = 1;
    let first = last;
    for (let k = 2; k <= n; k++) {
      const t = this.times[(this.timesCount - k) % this.times.length]!;
      if (now - t > RATE_WINDOW_MS) break;
      first = t;
      count++;
    }
    return count > 1 ? ((count - 1) * 1000) / Math.max(now - first, 1e-6) : 0;
  }
}

/** Nearest-rank quantile of sorted values (0 for none). */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** `x` to `digits` decimals: what reports and payloads carry. */
export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

let thermalZone: string | null | undefined;

/** The CPU zone of /sys/class/thermal (the x86 package or the SoC zone), in °C; null where there is none. */
export function cpuTemperature(): number | null {
  if (thermalZone === undefined) {
    thermalZone = null;
    try {
      const zones = readdirSync('/sys/class/thermal')
        .filter((z) => z.startsWith('thermal_zone'))
        .sort();
      const typed = zones.map((z) => ({ z, type: safeRead(`/sys/class/thermal/${z}/type`) ?? '' }));
      const cpu = typed.find((t) => /cpu|soc|x86_pkg|core/i.test(t.type)) ?? typed[0];
      if (cpu) thermalZone = `/sys/class/thermal/${cpu.z}/temp`;
    } catch {
      thermalZone = null;
    }
  }
  if (thermalZone === null) return null;
  const milli = Number(safeRead(thermalZone));
  return Number.isFinite(milli) && milli !== 0 ? milli / 1000 : null;
}

function safeRead(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Resident set size; libuv reads it from /proc on Linux, and throws where /proc is not mounted (a bare chroot). */
function residentBytes(): number | null {
  try {
    return process.memoryUsage.rss();
  } catch {
    return null;
  }
}
