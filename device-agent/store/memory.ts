/** StateStore in memory: same behaviour as the SQLite store (one shared test suite), nothing survives the process. */
import { ConfigError } from '../../runtime/index.js';
import type {
  FeatureCache,
  LabelledFrame,
  MetricsRecord,
  ModelRecord,
  OutboxMessage,
  PredictionRecord,
  RetentionLimits,
  StateStore,
} from './types.js';
import { DEFAULT_LIMITS } from './types.js';

/** A FeatureCache in a Map (the in-memory store's, and the one fine-tuning uses without a store). */
export class MemoryFeatureCache implements FeatureCache {
  private readonly map = new Map<string, Float64Array>();
  get(backbone: string, frameId: string): Float64Array | undefined {
    return this.map.get(`${backbone}\n${frameId}`);
  }
  set(backbone: string, frameId: string, features: Float64Array): void {
    this.map.set(`${backbone}\n${frameId}`, features);
  }
  get size(): number {
    return this.map.size;
  }
}

export class MemoryStore implements StateStore {
  private readonly limits: RetentionLimits;
  private readonly models = new Map<string, ModelRecord>();
  private metrics: MetricsRecord[] = [];
  private predictions: PredictionRecord[] = [];
  private readonly frames = new Map<number, LabelledFrame>();
  private outbox: OutboxMessage[] = [];
  private nextOutboxId = 1;
  private dropped = 0;
  readonly features = new MemoryFeatureCache();

  constructor(limits: Partial<RetentionLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  registerModel(model: { version: string; sha256: string; path: string }): ModelRecord {
    const prev = this.models.get(model.version);
    const keep = prev !== undefined && prev.sha256 === model.sha256;
    const rec: ModelRecord = {
      ...model,
      state: keep ? prev.state : 'available',
      activatedAt: prev?.activatedAt ?? null,
    };
    this.models.set(model.version, rec);
    return rec;
  }
  listModels(): ModelRecord[] {
    return [...this.models.values()].sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
  }
  getModel(version: string): ModelRecord | undefined {
    return this.models.get(version);
  }
  activateModel(version: string, now = Date.now()): ModelRecord {
    const target = this.models.get(version);
    if (!target)
      throw new ConfigError(`model version: expected a registered version, got ${JSON.stringify(version)}`, 'version');
    for (const [k, m] of this.models) if (m.state === 'active') this.models.set(k, { ...m, state: 'available' });
    const rec: ModelRecord = { ...target, state: 'active', activatedAt: now };
    this.models.set(version, rec);
    return rec;
  }
  markModelFailed(version: string): void {
    const m = this.models.get(version);
    if (m) this.models.set(version, { ...m, state: 'failed' });
  }

  addMetrics(ts: number, snapshot: unknown): void {
    this.metrics.push({ ts, json: JSON.stringify(snapshot) });
    if (this.metrics.length > this.limits.metricsHistory)
      this.metrics = this.metrics.slice(-this.limits.metricsHistory);
  }
  recentMetrics(limit: number): MetricsRecord[] {
    return this.metrics.slice(-limit);
  }

  logPredictions(rows: readonly PredictionRecord[], now = Date.now()): void {
    if (rows.length === 0) return;
    const cutoff = now - this.limits.predictionMaxAge * 1000;
    this.predictions = this.predictions
      .concat(rows)
      .slice(-this.limits.predictionRows)
      .filter((p) => p.ts >= cutoff);
  }
  recentPredictions(limit: number): PredictionRecord[] {
    return this.predictions.slice(-limit);
  }
  predictionCount(): number {
    return this.predictions.length;
  }

  saveLabelledFrames(frames: readonly LabelledFrame[]): void {
    for (const f of frames) this.frames.set(f.frame, { ...f, data: Uint8Array.from(f.data) });
  }
  labelledFrames(limit = Number.MAX_SAFE_INTEGER): LabelledFrame[] {
    return [...this.frames.values()].sort((a, b) => a.frame - b.frame).slice(0, limit);
  }
  labelledFrameCount(): number {
    return this.frames.size;
  }

  outboxAdd(msg: Omit<OutboxMessage, 'id'>): number {
    const over = this.outbox.length + 1 - this.limits.outboxMax;
    if (over > 0) {
      this.outbox = this.outbox.slice(over);
      this.dropped += over;
    }
    const id = this.nextOutboxId++;
    this.outbox.push({ ...msg, id });
    return id;
  }
  outboxPeek(afterId: number, limit: number): OutboxMessage[] {
    return this.outbox.filter((m) => m.id > afterId).slice(0, limit);
  }
  outboxRemove(id: number): void {
    this.outbox = this.outbox.filter((m) => m.id !== id);
  }
  outboxCount(): number {
    return this.outbox.length;
  }
  get outboxDropped(): number {
    return this.dropped;
  }

  close(): void {}
}
