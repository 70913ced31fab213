/** sei-edge runtime: the public API. Re-exports only; deep imports are not part of the contract. */
export { createEngine, loadModel, validateFrame } from './engine/index.js';
export type { EngineOptions, LoadOptions } from './engine/index.js';
export type {
  Engine,
  Frame,
  InferOptions,
  InferResult,
  KernelChoice,
  KernelName,
  LayerTrace,
  StreamItem,
} from './engine/types.js';
export { selectKernel, wasmUnavailable } from './kernels/select.js';
export { SeiError, FormatError, ConfigError, FrameError, OtaError, WorkerError, show } from './errors.js';
export { EnginePool, MAX_THREADS } from './pool/index.js';
export type { PoolOptions } from './pool/index.js';
export * from './format/index.js';
export * from './data/idx.js';
export { gaussian, rng, shuffle } from './data/random.js';
export * from './data/fit.js';
