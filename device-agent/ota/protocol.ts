/**
 * The OTA wire protocol: topics, the job a device receives, the status it reports, and the job lifecycle
 * (AWS IoT Jobs' states, with Mender-like steps inside IN_PROGRESS). Device and operator both import this file,
 * so the two sides cannot drift apart.
 *
 * Topics, under a device's prefix (`sei/<fleet>/<device>/`):
 * - `ota/job`               operator → device, retained, QoS 1: the Job (JSON); an empty payload clears it
 * - `ota/cancel`            operator → device, QoS 1: {jobId, reason}
 * - `ota/request`           device → operator, QoS 1: {jobId, blocks: [index, ...]}
 * - `ota/block/<job>/<i>`   operator → device, QoS 1: the raw bytes of block i
 * - `ota/status`            device → operator, retained, QoS 1 (through the outbox): JobStatus
 */
import type { SignedManifest } from './manifest.js';

export const TOPIC = {
  job: 'ota/job',
  cancel: 'ota/cancel',
  request: 'ota/request',
  block: 'ota/block/',
  status: 'ota/status',
} as const;

/** Topic suffixes a device subscribes to. */
export const DEVICE_TOPICS = [TOPIC.job, TOPIC.cancel, `${TOPIC.block}#`] as const;

// The job states and the status a device reports are payloads the console reads too: declared in messages.ts.
export { isTerminal, TERMINAL } from '../messages.js';
export type { JobState, JobStatus, JobStep, TerminalState } from '../messages.js';

export interface Job {
  /** Unique per deployment; a device runs a job id once. */
  readonly jobId: string;
  readonly manifest: SignedManifest;
  /** Bytes per block (the last one may be shorter). */
  readonly blockSize: number;
  /** SHA-256 (hex) of every block, so that a corrupt or truncated block is caught when it arrives. */
  readonly blockSha256: readonly string[];
  /** Install even when the version is not newer than the active one. */
  readonly allowDowngrade: boolean;
}

/** Block count of an artifact. */
export function blockCount(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

/** The job id and block index of a topic suffix `ota/block/<job>/<i>`, or null when it names no block. */
export function blockTopic(suffix: string): { readonly jobId: string; readonly index: number } | null {
  if (!suffix.startsWith(TOPIC.block)) return null;
  const parts = suffix.slice(TOPIC.block.length).split('/');
  if (parts.length !== 2 || !/^\d{1,9}$/.test(parts[1]!)) return null;
  return { jobId: parts[0]!, index: Number(parts[1]) };
}
