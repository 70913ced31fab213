/**
 * The agent's durable state. Two implementations share this interface and one test suite
 * (test/store.test.ts): SQLite for the device, in-memory for unit tests and throwaway runs.
 * Every method that changes state is one atomic step: it either happens entirely or not at all.
 */

export type ModelState = 'available' | 'active' | 'failed';

export interface ModelRecord {
  /** Registry key, `<name>@<version>` from the model header. */
  readonly version: string;
  readonly sha256: string;
  readonly path: string;
  readonly state: ModelState;
  /** Epoch milliseconds of the last activation, or null. */
  readonly activatedAt: number | null;
}

export interface PredictionRecord {
  /** Frame id assigned by the agent (monotonic within a run). */
  readonly frame: number;
  /** Epoch milliseconds. */
  readonly ts: number;
  readonly model: string;
  readonly prediction: number;
  readonly confidence: number;
  readonly label: number | null;
  readonly latencyMs: number;
}

export interface LabelledFrame {
  readonly frame: number;
  readonly ts: number;
  readonly label: number;
  readonly shape: readonly [number, number, number];
  readonly data: Uint8Array;
}

export interface OutboxMessage {
  /** Monotonic: the drain order. */
  readonly id: number;
  readonly topic: string;
  readonly payload: string;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
}

export interface MetricsRecord {
  readonly ts: number;
  readonly json: string;
}

/** The `store` section's retention fields (declared, with their defaults, in ../config-schema.ts). */
export type { RetentionLimits } from '../config-schema.js';

/**
 * Where fine-tuning's computed features live between runs, per (backbone fingerprint, frame id); a frame id names
 * fixed pixels. The device backs it with SQLite; tests and the CLI use memory (MemoryFeatureCache). Declared with
 * the store so that storage depends on nothing above it: finetune/ imports it from here.
 */
export interface FeatureCache {
  get(backbone: string, frameId: string): Float64Array | undefined;
  set(backbone: string, frameId: string, features: Float64Array): void;
}

export interface StateStore {
  /** Adds or updates a model version (state `available` unless already known). */
  registerModel(model: { version: string; sha256: string; path: string }): ModelRecord;
  listModels(): ModelRecord[];
  getModel(version: string): ModelRecord | undefined;
  /** Marks `version` active (now) and every other active version available, in one step. */
  activateModel(version: string, now?: number): ModelRecord;
  markModelFailed(version: string): void;

  /** Appends a metrics snapshot and trims the history to its bound. */
  addMetrics(ts: number, snapshot: unknown): void;
  recentMetrics(limit: number): MetricsRecord[];

  /** Appends predictions in one step and applies the count and age retention. */
  logPredictions(rows: readonly PredictionRecord[], now?: number): void;
  recentPredictions(limit: number): PredictionRecord[];
  predictionCount(): number;

  /** Stores (or relabels) frames with their ground truth. */
  saveLabelledFrames(frames: readonly LabelledFrame[]): void;
  labelledFrames(limit?: number): LabelledFrame[];
  labelledFrameCount(): number;

  /**
   * Head features of frames for fine-tuning, per (backbone fingerprint, frame id); a frame id names fixed pixels.
   * Computed once per backbone: a fine-tuned version (same backbone) reuses its parent's.
   */
  readonly features: FeatureCache;

  /** Writes a message that must not be lost; returns its id. */
  outboxAdd(msg: Omit<OutboxMessage, 'id'>): number;
  /** Oldest first, ids greater than `afterId`. */
  outboxPeek(afterId: number, limit: number): OutboxMessage[];
  outboxRemove(id: number): void;
  outboxCount(): number;
  /** Messages dropped from the outbox because it was full (since the store was opened). */
  readonly outboxDropped: number;

  close(): void;
}

export { DEFAULT_LIMITS } from '../config-schema.js';
