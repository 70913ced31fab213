/**
 * PROBATION: after a swap, the new model serves real frames while its error rate, median latency and mean
 * confidence are compared with what the previous model did on the frames just before the swap. The gate judges;
 * the manager acts on its verdict (keep, or swap the previous version back in).
 */
import { round } from '../metrics/collector.js';
import type { OtaConfig } from './config.js';
import type { JobRow } from './store.js';

export interface Outcome {
  readonly latencyMs: number;
  readonly confidence: number;
}

/** Rolling window of the running model's recent results (the baseline a successor is judged against). */
export class RecentResults {
  private readonly items: Array<Outcome & { model: string }> = [];
  constructor(private readonly size = 256) {}
  push(model: string, o: Outcome): void {
    this.items.push({ model, latencyMs: o.latencyMs, confidence: o.confidence });
    if (this.items.length > this.size) this.items.shift();
  }
  /** Figures of `model`'s results in the window, null when it has none. */
  baseline(model: string | null): { confidence: number; latencyMs: number; frames: number } | null {
    const mine = this.items.filter((i) => i.model === model);
    if (mine.length === 0) return null;
    return {
      confidence: mean(mine.map((i) => i.confidence)),
      latencyMs: median(mine.map((i) => i.latencyMs)),
      frames: mine.length,
    };
  }
}

export class Probation {
  private frames = 0;
  private results: Outcome[] = [];
  readonly startedAt: number;
  constructor(
    private readonly cfg: OtaConfig['probation'],
    private readonly base: { confidence: number; latencyMs: number; frames: number } | null,
    now = Date.now(),
  ) {
    this.startedAt = now;
  }

  /** A frame was handed to the new model (whether or not it produced a result). */
  frame(): void {
    this.frames++;
  }

  result(o: Outcome): void {
    this.results.push(o);
  }

  done(now = Date.now()): boolean {
    return (
      (this.cfg.frames !== null && this.results.length >= this.cfg.frames) ||
      (this.cfg.seconds !== null && now - this.startedAt >= this.cfg.seconds * 1000)
    );
  }

  figures(): Record<string, number> {
    const f: Record<string, number> = {
      frames: this.frames,
      errors: Math.max(0, this.frames - this.results.length),
      confidence: round(mean(this.results.map((r) => r.confidence)), 4),
      latencyMs: round(median(this.results.map((r) => r.latencyMs)), 4),
    };
    if (this.base) {
      f.baselineConfidence = round(this.base.confidence, 4);
      f.baselineLatencyMs = round(this.base.latencyMs, 4);
      f.baselineFrames = this.base.frames;
    }
    return f;
  }

  /** null when the new model passes, else the reason it fails. */
  verdict(): string | null {
    const f = this.figures();
    const errorRate = this.frames === 0 ? 0 : f.errors! / this.frames;
    if (errorRate > this.cfg.maxErrorRate)
      return `probation: error rate ${round(errorRate, 4)} > ${this.cfg.maxErrorRate} (${f.errors} of ${this.frames} frames failed)`;
    if (!this.base || this.results.length === 0) return null;
    const maxLatency = this.cfg.maxLatencyRatio * this.base.latencyMs + 1;
    if (f.latencyMs! > maxLatency)
      return `probation: median latency ${f.latencyMs} ms > ${this.cfg.maxLatencyRatio} × ${round(this.base.latencyMs, 4)} ms of the previous model (+1 ms)`;
    const minConfidence = this.cfg.minConfidenceRatio * this.base.confidence;
    if (f.confidence! < minConfidence)
      return `probation: mean confidence ${f.confidence} < ${this.cfg.minConfidenceRatio} × ${round(this.base.confidence, 4)} of the previous model`;
    return null;
  }
}

/** A version on probation: its job, its gate, and a timer that notices when the gate's time is up. */
export class OnProbation {
  readonly gate: Probation;
  private readonly timer: NodeJS.Timeout;

  /** `due` is called (again, every 100 ms) once the gate is done. */
  constructor(
    readonly row: JobRow,
    cfg: OtaConfig['probation'],
    baseline: { confidence: number; latencyMs: number; frames: number } | null,
    due: () => void,
  ) {
    this.gate = new Probation(cfg, baseline);
    this.timer = setInterval(() => this.gate.done() && due(), 100);
    this.timer.unref?.();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}
