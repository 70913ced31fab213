/**
 * The model registry: the versions this device can run, as records in the StateStore keyed `<name>@<version>`
 * (models.ts makes and parses the key), each tied to its file by the file's sha256. Here: registration, the
 * integrity check every load goes through, the version number of a model made on the box, and the version the
 * config chooses to boot (OTA may then override that choice: OtaManager.bootModel).
 */
import { readFileSync } from 'node:fs';
import { ConfigError, loadModel } from '../runtime/index.js';
import type { Engine, EngineOptions } from '../runtime/index.js';
import type { AgentConfig } from './config.js';
import { bundledModel, modelFilesIn, parseModelKey, readModelFile, sha256 } from './models.js';
import { fromFile } from './schema.js';
import type { ModelRecord, StateStore } from './store/types.js';

export class ModelRegistry {
  constructor(private readonly store: StateStore) {}

  get(version: string): ModelRecord | undefined {
    return this.store.getModel(version);
  }

  /** Every registered version, by key. */
  list(): ModelRecord[] {
    return this.store.listModels();
  }

  /** Adds a version, or updates one (its state is kept when the bytes are the same). */
  register(file: { readonly version: string; readonly sha256: string; readonly path: string }): ModelRecord {
    return this.store.registerModel({ version: file.version, sha256: file.sha256, path: file.path });
  }

  /** Records `version` as the one running (every other active one becomes available). */
  activate(version: string): ModelRecord {
    return this.store.activateModel(version);
  }

  markFailed(version: string): void {
    this.store.markModelFailed(version);
  }

  /** The registered file's bytes if it is still the file that was registered, else what is wrong with it. */
  check(rec: ModelRecord): { readonly bytes: Uint8Array } | { readonly problem: string } {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFileSync(rec.path));
    } catch (err) {
      return { problem: `expected its file at ${rec.path}, got ${(err as Error).message}` };
    }
    const digest = sha256(bytes);
    if (digest !== rec.sha256)
      return {
        problem: `expected sha256 ${rec.sha256.slice(0, 16)}…, got ${digest.slice(0, 16)}… (file changed since it was registered)`,
      };
    return { bytes };
  }

  intact(rec: ModelRecord): boolean {
    return 'bytes' in this.check(rec);
  }

  /** Loads a version's engine; a version whose file is gone or changed is marked failed and refused. */
  async load(rec: ModelRecord, options: EngineOptions): Promise<Engine> {
    const file = this.check(rec);
    if ('problem' in file) {
      this.markFailed(rec.version);
      throw new ConfigError(`version ${rec.version}: ${file.problem}`, 'version');
    }
    return loadModel(file.bytes, options);
  }

  /**
   * Registers `model.path` and every file of `model.dir` (a broken one is reported and skipped) and returns the
   * version the config boots: model.path; else the active version among model.dir's files, else the newest of
   * them; else the bundled model.
   */
  boot(model: AgentConfig['model'], report: (err: Error) => void): ModelRecord {
    const inDir = new Set<string>();
    for (const path of model.dir ? modelFilesIn(model.dir) : []) {
      try {
        const file = readModelFile(path);
        inDir.add(file.sha256);
        this.register(file);
      } catch (err) {
        report(err as Error);
      }
    }
    if (model.path !== null)
      return this.register(
        fromFile('model.path', 'a readable .bwsnn file', model.path, () => readModelFile(model.path!)),
      );
    const known = this.list().filter((m) => inDir.has(m.sha256));
    const chosen =
      known.find((m) => m.state === 'active') ?? known.sort((a, b) => versionNumber(a) - versionNumber(b)).at(-1);
    if (chosen) return chosen;
    const bundled = bundledModel();
    if (bundled) return this.register(readModelFile(bundled));
    throw new ConfigError(
      'model.path: expected a .bwsnn file (or model.dir with one), got none and no model is bundled in models/',
      'model.path',
    );
  }

  /** The next free version number for a model `name` now at `version`: a rolled-back fine-tune keeps its number. */
  nextVersion(name: string, version: number): number {
    let v = version;
    for (const m of this.list()) {
      const key = parseModelKey(m.version);
      if (key && key.name === name) v = Math.max(v, key.version);
    }
    return v + 1;
  }
}

function versionNumber(rec: ModelRecord): number {
  return parseModelKey(rec.version)?.version ?? -1;
}
