/** Model files on the device: identifying them (registry key, sha256), reading them, finding the bundled ones. */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBwsnn } from '../runtime/index.js';
import type { BwsnnModel } from '../runtime/index.js';

export interface ModelFile {
  /** Registry key `<name>@<version>`. */
  readonly version: string;
  readonly sha256: string;
  readonly path: string;
  readonly bytes: Uint8Array;
  readonly model: BwsnnModel;
}

/** The registry key of a model (or of a header, a manifest): `<name>@<version>`. */
export function modelKey(model: { readonly name: string; readonly version: number }): string {
  return `${model.name}@${model.version}`;
}

/** A registry key split back into its name and version number; null when it is not `<name>@<integer>`. */
export function parseModelKey(key: string): { readonly name: string; readonly version: number } | null {
  const m = /^(.+)@(\d+)$/.exec(key);
  return m && Number.isSafeInteger(Number(m[2])) ? { name: m[1]!, version: Number(m[2]) } : null;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Reads and validates a .bwsnn file (FormatError names what is wrong). */
export function readModelFile(path: string): ModelFile {
  const abs = resolve(path);
  const bytes = new Uint8Array(readFileSync(abs));
  const model = readBwsnn(bytes);
  return { version: modelKey(model), sha256: sha256(bytes), path: abs, bytes, model };
}

/** The *.bwsnn files of a folder, sorted by name. */
export function modelFilesIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.bwsnn'))
    .sort()
    .map((n) => join(dir, n));
}

/** The repo's models/ folder (bundled trained models). */
export const BUNDLED_DIR = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'models');

/** The bundled model to run by default: the newest version among models/*.bwsnn, or null if none is bundled. */
export function bundledModel(): string | null {
  let best: { path: string; version: number } | null = null;
  for (const path of modelFilesIn(BUNDLED_DIR)) {
    try {
      const { model } = readModelFile(path);
      if (!best || model.version > best.version) best = { path, version: model.version };
    } catch {
      // A broken bundled file is skipped here; loading it explicitly reports the FormatError.
    }
  }
  return best?.path ?? null;
}
