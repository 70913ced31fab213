/** sei-edge device agent: the public API. Re-exports only. */
export { Agent } from './agent.js';
export type { AgentEvents, AgentFrame, AgentOptions, AgentResult } from './agent.js';
export {
  configToJson,
  loadConfigFile,
  mergeDeep,
  parseConfig,
  parseSourceSpec,
  readConfigFile,
  sourceSpecString,
} from './config.js';
export type { AgentConfig, Crop, Json, SourceSpec } from './config.js';
export { startBroker } from './broker.js';
export type { BrokerOptions, EmbeddedBroker } from './broker.js';
export { MetricsCollector, cpuTemperature, quantile } from './metrics/collector.js';
export type { MetricsSnapshot } from './metrics/collector.js';
export { PrometheusExporter } from './metrics/prometheus.js';
export { BUNDLED_DIR, bundledModel, modelKey, parseModelKey, readModelFile, sha256 } from './models.js';
export { ModelRegistry } from './registry.js';
export type { ModelFile } from './models.js';
export { MqttLink } from './mqtt/link.js';
export type { Command, LinkEvents, LinkOptions } from './mqtt/link.js';
export { decodePgm, decodePicture, isPicture, sourceResizer, toModelFrame, yuv420ToRgb } from './sources/image.js';
export type { Image } from './sources/image.js';
export { createSource, defaultFrames, PushSource } from './sources/index.js';
export type { FrameSource, SourceFrame, SourceOptions } from './sources/index.js';
export { DropOldestQueue } from './sources/queue.js';
export { MemoryFeatureCache, MemoryStore } from './store/memory.js';
export { SqliteStore } from './store/sqlite.js';
export type {
  FeatureCache,
  LabelledFrame,
  MetricsRecord,
  ModelRecord,
  ModelState,
  OutboxMessage,
  PredictionRecord,
  RetentionLimits,
  StateStore,
} from './store/types.js';
export { DEFAULT_LIMITS } from './store/types.js';
