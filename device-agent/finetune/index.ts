/** On-device fine-tuning: batch-norm re-estimation, the float head's features and optimiser, gate, new version. Re-exports only. */
export {
  adaptAffines,
  adaptSteps,
  affinesOf,
  homeModel,
  layerStats,
  matchedAffine,
  spread,
  statsSteps,
  withAffine,
} from './adapt.js';
export type { AffineRecord, ChannelStats } from './adapt.js';
export { backboneId, extractFeatures, featureEngine, featureSteps, joinRows, selectRows } from './features.js';
export type { ExtractOptions, FeatureEngine, FeatureSet, TrainingFrame } from './features.js';
export { MemoryFeatureCache } from '../store/memory.js';
export type { FeatureCache } from '../store/types.js';
export {
  accuracy,
  headParams,
  lossAndGradient,
  predict,
  toHead,
  trainHead,
  trainSteps,
  TRAIN_DEFAULTS,
} from './head.js';
export type { HeadParams, TrainOptions } from './head.js';
export { decide, GATE_DEFAULTS, gateOptions, signTestP, stratifiedSplit } from './gate.js';
export type { Comparison, GateDecision, GateOptions, HoldoutComparison } from './gate.js';
export { ADAPT_FRAMES, childModel, fineTune, fineTuneAsync, MIN_REHEARSED } from './finetune.js';
export type { FineTuneProgress, FineTuneRequest, FineTuneResult } from './finetune.js';
export { applyShift, blur, brightnessContrast, noise, rotate, SHIFTS } from './shifts.js';
export type { Shift, ShiftName } from './shifts.js';
