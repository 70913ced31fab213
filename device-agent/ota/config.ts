/**
 * The `ota` section of the agent config: trusted keys, limits, transfer pacing and the probation gate. Its fields
 * are declared with every other config field in ../config-schema.ts (the table in ./README.md comes from there).
 */
export { parseOtaConfig } from '../config-schema.js';
export type { OtaConfig } from '../config-schema.js';
