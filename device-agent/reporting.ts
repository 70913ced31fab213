/**
 * What the agent reports on its own clock: a metrics snapshot every `reporting.metricsInterval` s (SQLite history
 * and the outbox), predictions batched to at most `reporting.predictionMaxRate` messages/s, and the prediction
 * log flushed to SQLite every LOG_FLUSH_MS.
 */
import type { AgentConfig } from './config.js';
import { round } from './metrics/collector.js';
import type { MetricsMessage, MetricsSnapshot, PredictionsMessage } from './messages.js';
import type { MqttLink } from './mqtt/link.js';
import type { PredictionRecord, StateStore } from './store/types.js';

/** Predictions held for the next message at most; older ones are dropped (and counted). */
const MAX_PENDING_PREDICTIONS = 5000;
const LOG_FLUSH_MS = 250;

export interface ReporterHost {
  config(): AgentConfig;
  readonly store: StateStore;
  link(): MqttLink | null;
  snapshot(): MetricsSnapshot;
  /** The running model's key and class names. */
  model(): { version: string | null; labels: readonly string[] };
  /** A snapshot was taken (the agent's `metrics` event). */
  metrics(snapshot: MetricsSnapshot): void;
  report(err: Error): void;
}

export class Reporter {
  private pendingPredictions: PredictionRecord[] = [];
  private pendingLog: PredictionRecord[] = [];
  private predictionsDropped = 0;
  /** Number of the last `metrics` message (MetricsMessage.seq). */
  private metricsSeq = 0;
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly host: ReporterHost) {}

  /** One prediction, for the log and (when reported) the next `predictions` message. */
  record(rec: PredictionRecord): void {
    this.pendingLog.push(rec);
    if (!this.host.link() || !this.host.config().reporting.predictions) return;
    this.pendingPredictions.push(rec);
    if (this.pendingPredictions.length > MAX_PENDING_PREDICTIONS) {
      const over = this.pendingPredictions.length - MAX_PENDING_PREDICTIONS;
      this.pendingPredictions.splice(0, over);
      this.predictionsDropped += over;
    }
  }

  /** Starts the clocks, or restarts them at the current config's intervals. */
  start(): void {
    this.stop();
    const r = this.host.config().reporting;
    this.timers.push(setInterval(() => this.publishMetrics(), r.metricsInterval * 1000));
    this.timers.push(setInterval(() => this.publishPredictions(), 1000 / r.predictionMaxRate));
    this.timers.push(setInterval(() => this.flush(), LOG_FLUSH_MS));
    for (const t of this.timers) t.unref?.();
  }

  /** Stops the clocks (`flush` writes what is left of the log). */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** Writes the predictions not yet in the log. */
  flush(): void {
    if (this.pendingLog.length === 0) return;
    const rows = this.pendingLog;
    this.pendingLog = [];
    try {
      this.host.store.logPredictions(rows);
    } catch (err) {
      this.host.report(err as Error);
    }
  }

  private publishMetrics(): void {
    const snap = this.host.snapshot();
    const link = this.host.link();
    try {
      this.host.store.addMetrics(snap.ts, snap);
      if (link)
        link.enqueue('metrics', {
          device: this.host.config().device,
          ...snap,
          predictionsDropped: this.predictionsDropped + (link.droppedOffline ?? 0),
          seq: ++this.metricsSeq,
        } satisfies MetricsMessage);
    } catch (err) {
      this.host.report(err as Error);
    }
    this.host.metrics(snap);
  }

  private publishPredictions(): void {
    const link = this.host.link();
    if (!link || this.pendingPredictions.length < this.host.config().reporting.predictionBatch) return;
    const batch = this.pendingPredictions;
    this.pendingPredictions = [];
    const { version, labels } = this.host.model();
    const body: PredictionsMessage = {
      model: version,
      predictions: batch.map((p) => ({
        frame: p.frame,
        ts: p.ts,
        class: p.prediction,
        name: labels[p.prediction] ?? null,
        confidence: round(p.confidence, 4),
        label: p.label,
        latencyMs: round(p.latencyMs, 4),
      })),
    };
    void link.publish('predictions', body, { qos: 0 });
  }
}
