/**
 * VERIFYING and ACTIVATING up to the swap: the artifact is checked against its signed manifest and by the .bwsnn
 * reader, put in place durably (fsync, rename, fsync of the folder: store/durable.ts), loaded and run on the
 * manifest's canaries.
 * The manager records each step in between (manager.ts), so that a kill at any instant leaves a row that says
 * what to do next.
 */
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspectBwsnn, loadModel, readBwsnn } from '../../runtime/index.js';
import type { Engine, KernelChoice } from '../../runtime/index.js';
import { modelKey, sha256 } from '../models.js';
import { removeDurable, renameDurable } from '../store/durable.js';
import { canaryProblem } from './manifest.js';
import type { Manifest } from './manifest.js';

/** The temp file a job's artifact is written to, in the folder it will be installed in. */
export function partPath(dir: string, jobId: string, device: string): string {
  return join(dir, `.ota-${jobId}-${device}.part`);
}

/** Where an artifact is kept once installed: named by key and sha256, so that no version overwrites another. */
export function installedPath(dir: string, m: Manifest): string {
  return join(dir, `${m.model.replace(/[^A-Za-z0-9_.@-]/g, '_')}-${m.sha256.slice(0, 12)}.bwsnn`);
}

/** VERIFYING: the artifact's bytes if they are exactly what the (verified) manifest signs and a valid container. */
export function verifyArtifact(
  path: string,
  m: Manifest,
  trusted: readonly KeyObject[],
): { readonly bytes: Uint8Array } | { readonly problem: string } {
  const bytes = new Uint8Array(readFileSync(path));
  const digest = sha256(bytes);
  if (bytes.length !== m.size) return { problem: `size mismatch: expected ${m.size} bytes, got ${bytes.length}` };
  if (digest !== m.sha256)
    return {
      problem: `sha256 mismatch: expected ${m.sha256.slice(0, 16)}…, got ${digest.slice(0, 16)}… (the artifact is not the one the manifest signs)`,
    };
  try {
    // The container's own checks, and its Ed25519 signature when it carries one.
    readBwsnn(bytes, { trustedKeys: trusted });
    const key = modelKey(inspectBwsnn(bytes));
    if (key !== m.model) return { problem: `manifest.model: expected the artifact's ${key}, got ${m.model}` };
  } catch (err) {
    return { problem: `corrupt artifact: ${(err as Error).message}` };
  }
  return { bytes };
}

/** Moves a verified temp file to its installed path, durably; returns that path. */
export function placeArtifact(part: string, dir: string, m: Manifest): string {
  const final = installedPath(dir, m);
  renameDurable(part, final);
  return final;
}

/**
 * Loads the artifact and runs the manifest's canaries: null when it passes, else why not. A failed file is removed
 * durably: with model.dir as the OTA folder, one that came back after a cut would be registered at the next boot.
 */
export async function trialRun(
  path: string,
  bytes: Uint8Array,
  m: Manifest,
  kernel: KernelChoice,
): Promise<string | null> {
  let engine: Engine;
  try {
    engine = await loadModel(bytes, { kernel });
  } catch (err) {
    removeDurable(path);
    return `load: ${(err as Error).message}`;
  }
  const problem = canaryProblem(engine, m);
  if (problem) removeDurable(path);
  return problem;
}
