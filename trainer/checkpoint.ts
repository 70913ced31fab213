/**
 * Checkpoints: `<name>.json` (run config, progress, history, tensor directory) + `<name>.bin` (float32 tensors),
 * written to temporary files and renamed, so an interrupted write never leaves a half checkpoint behind.
 */
import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../runtime/errors.js';

export interface TensorEntry {
  readonly name: string;
  readonly shape: number[];
  /** Offset in float32 elements into the .bin. */
  readonly offset: number;
}

export interface CheckpointFile<M> {
  readonly meta: M;
  readonly tensors: Map<string, tf.Tensor>;
}

export function saveCheckpoint<M extends object>(
  dir: string,
  name: string,
  meta: M,
  tensors: ReadonlyArray<{ name: string; tensor: tf.Tensor }>,
): void {
  mkdirSync(dir, { recursive: true });
  const entries: TensorEntry[] = [];
  let total = 0;
  for (const t of tensors) {
    entries.push({ name: t.name, shape: t.tensor.shape, offset: total });
    total += t.tensor.size;
  }
  const data = new Float32Array(total);
  tensors.forEach((t, i) => data.set(t.tensor.dataSync() as Float32Array, entries[i]!.offset));
  const json = join(dir, `${name}.json`);
  const bin = join(dir, `${name}.bin`);
  writeFileSync(`${bin}.tmp`, new Uint8Array(data.buffer));
  writeFileSync(`${json}.tmp`, JSON.stringify({ ...meta, tensors: entries }, null, 1));
  renameSync(`${bin}.tmp`, bin);
  renameSync(`${json}.tmp`, json);
}

export function hasCheckpoint(dir: string, name: string): boolean {
  return existsSync(join(dir, `${name}.json`)) && existsSync(join(dir, `${name}.bin`));
}

/** A checkpoint's JSON (config, progress, history) without its tensors. */
export function loadCheckpointMeta<M>(dir: string, name: string): M & { tensors: TensorEntry[] } {
  const json = join(dir, `${name}.json`);
  if (!hasCheckpoint(dir, name))
    throw new ConfigError(`checkpoint: expected ${json} and ${name}.bin in ${dir}, not found`, 'checkpoint');
  return JSON.parse(readFileSync(json, 'utf8')) as M & { tensors: TensorEntry[] };
}

export function loadCheckpoint<M>(dir: string, name: string): CheckpointFile<M> {
  const parsed = loadCheckpointMeta<M>(dir, name);
  const buf = readFileSync(join(dir, `${name}.bin`));
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const tensors = new Map<string, tf.Tensor>();
  for (const e of parsed.tensors) {
    const size = e.shape.reduce((a, b) => a * b, 1);
    tensors.set(e.name, tf.tensor(data.subarray(e.offset, e.offset + size), e.shape));
  }
  return { meta: parsed, tensors };
}
