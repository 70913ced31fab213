/**
 * Admission: reading a job from `ota/job`, and the refusals that need no download (size, free disk, architecture,
 * version). The signature is checked by verifyManifest before any of these.
 */
import { OtaError, show } from '../../runtime/index.js';
import type { Engine } from '../../runtime/index.js';
import type { OtaConfig } from './config.js';
import { freeBytes } from './disk.js';
import { architectureProblem } from './manifest.js';
import type { Manifest } from './manifest.js';
import { blockCount } from './protocol.js';
import type { Job } from './protocol.js';

/** A job message; throws OtaError when it is no JSON job or its id is unusable (the rest is checked on admission). */
export function parseJob(payload: Buffer): Job {
  let job: Job;
  try {
    job = JSON.parse(payload.toString('utf8')) as Job;
  } catch (err) {
    throw new OtaError(`ota/job: expected a JSON job, got ${(err as Error).message}`, 'ota/job');
  }
  if (
    typeof job !== 'object' ||
    job === null ||
    typeof job.jobId !== 'string' ||
    !/^[A-Za-z0-9_.-]{1,64}$/.test(job.jobId)
  ) {
    throw new OtaError(
      `ota/job: jobId: expected 1-64 of [A-Za-z0-9_.-], got ${show((job as { jobId?: unknown } | null)?.jobId)}`,
      'jobId',
    );
  }
  return job;
}

/** The model key the job's manifest names, read before its signature is checked (only to label the job's row). */
export function claimedVersion(job: Job): string {
  try {
    return String((JSON.parse((job.manifest as { manifest: string }).manifest) as Manifest).model ?? 'unknown');
  } catch {
    // verifyManifest reports why on admission
    return 'unknown';
  }
}

/** This device as admission sees it. */
export interface Device {
  readonly ota: OtaConfig;
  /** Folder the artifact would be written to (exists). */
  readonly dir: string;
  readonly engine: Engine | null;
  /** Registry key of the running model. */
  readonly running: string | null;
}

/** Why a job with a verified manifest is refused before its download, or null. */
export function admissionProblem(job: Job, m: Manifest, device: Device): string | null {
  const { ota, dir, engine, running } = device;
  if (!Number.isInteger(job.blockSize) || job.blockSize < 1)
    return `job.blockSize: expected an integer >= 1, got ${show(job.blockSize)}`;
  const blocks = blockCount(m.size, job.blockSize);
  if (
    !Array.isArray(job.blockSha256) ||
    job.blockSha256.length !== blocks ||
    !job.blockSha256.every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h))
  ) {
    return `job.blockSha256: expected ${blocks} hex SHA-256 digests (size ${m.size} / block ${job.blockSize}), got ${show(job.blockSha256)}`;
  }
  if (m.size > ota.maxBytes) return `too large: size ${m.size} bytes > ota.maxBytes ${ota.maxBytes}`;
  const free = freeBytes(dir);
  if (free !== null && free < m.size + ota.reserveBytes)
    return `too large for the free disk: ${m.size} bytes + ota.reserveBytes ${ota.reserveBytes} > ${free} bytes free in ${dir}`;
  const arch = architectureProblem(m, engine ? engine.model.input : m.architecture.input);
  if (arch) return arch;
  const current = engine?.model.version ?? -1;
  if (m.version <= current && job.allowDowngrade !== true)
    return `version not newer: expected > ${current} (the running ${running}), got ${m.version} (set allowDowngrade to install it)`;
  // The registry is keyed by name@version: other bytes under the running key would leave no version to roll back to.
  if (m.model === running)
    return `version ${m.model}: expected a version other than the running one, got the running one${job.allowDowngrade === true ? ' again (allowDowngrade does not reinstall it)' : ''}`;
  return null;
}
