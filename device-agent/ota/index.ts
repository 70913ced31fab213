/** Remote model update (OTA): device side, operator side, the signed manifest and the wire protocol. Re-exports only. */
export { parseOtaConfig } from './config.js';
export type { OtaConfig } from './config.js';
export {
  architectureProblem,
  buildManifest,
  canaryFrames,
  canaryProblem,
  prepareArtifact,
  readPrivateKey,
  readPublicKey,
  signManifest,
  verifyManifest,
  SUPPORTED_OPS,
} from './manifest.js';
export type { Canary, Manifest, ManifestOptions, SignedManifest } from './manifest.js';
export { OtaManager } from './manager.js';
export type { OtaEvents, OtaHost } from './host.js';
export { Probation, RecentResults } from './probation.js';
export type { Outcome } from './probation.js';
export { blockCount, DEVICE_TOPICS, isTerminal, TERMINAL, TOPIC } from './protocol.js';
export type { Job, JobState, JobStatus, JobStep, TerminalState } from './protocol.js';
export { OtaStore, missingBlocks } from './store.js';
export type { JobRow } from './store.js';
export { connectOperator, deploy, deviceLine, discoverFleet, makeJob } from './operator.js';
export type { DeployOptions, DeployResult, DeviceOutcome, DeviceState, WaveSummary } from './operator.js';
