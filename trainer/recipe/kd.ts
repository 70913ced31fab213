/**
 * Teachers for knowledge distillation.
 * - The ANN twin trained by `fit('teacher', …)` runs per batch on the same augmented frames as the student, its
 *   batch split over the data-parallel pool like validation (each worker holds a copy of the teacher).
 * - An ONNX classifier (`--teacher-onnx FILE`) runs once over the training split on onnxruntime-node; its logits
 *   are cached next to the checkpoints (keyed by the file's SHA-256 and the split), and looked up per frame.
 *   The ONNX model takes what the project's twins take: float32 NCHW raw pixel values 0..255, batch 1 (or any).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { openOrt } from '../export/ort.js';
import { frameToNchw } from '../export/onnx.js';
import type { Split } from '../data/index.js';
import type { NetConfig, NetParams } from '../model.js';
import type { EvaluatingPool } from '../parallel/evaluate.js';
import { evaluateOnPool } from '../parallel/evaluate.js';
import { splitCounts } from '../parallel/shard.js';

/** Where a student's soft targets come from: a network run on each batch, or logits looked up per training frame. */
export type Teacher =
  | { readonly kind: 'network'; readonly net: NetConfig; readonly params: NetParams }
  | { readonly kind: 'logits'; readonly logits: Float32Array; readonly classes: number };

export function annTeacher(net: NetConfig, params: NetParams): Teacher {
  return { kind: 'network', net, params };
}

export function cachedTeacher(logits: Float32Array, classes: number): Teacher {
  return { kind: 'logits', logits, classes };
}

/**
 * The teacher's logits [n, classes] for a batch: raw frames `x` (augmented) of the training frames `idx`. A network
 * teacher's batch is cut into one contiguous part per thread of `pool` (the pool must hold the teacher:
 * `WorkerSetup.teacher`), computed in inference mode and gathered in order.
 */
export async function softTargets(
  teacher: Teacher,
  idx: Uint32Array,
  x: Float32Array,
  frame: readonly [number, number, number],
  pool?: EvaluatingPool,
): Promise<Float32Array> {
  if (teacher.kind === 'logits') {
    const { logits, classes } = teacher;
    const batch = new Float32Array(idx.length * classes);
    idx.forEach((j, b) => batch.set(logits.subarray(j * classes, (j + 1) * classes), b * classes));
    return batch;
  }
  const size = frame[0] * frame[1] * frame[2];
  const counts = splitCounts(idx.length, 1 + (pool?.size ?? 0));
  const starts = counts.map((_, k) => counts.slice(0, k).reduce((a, b) => a + b, 0));
  const input = (part: number) => x.subarray(starts[part]! * size, (starts[part]! + counts[part]!) * size);
  const parts = await evaluateOnPool(
    pool,
    teacher.net,
    teacher.params,
    frame,
    'predict',
    counts.length,
    input,
    'teacher',
  );
  const out = new Float32Array(idx.length * teacher.net.classes);
  let at = 0;
  for (const p of parts) {
    out.set(p.logits, at);
    at += p.logits.length;
  }
  return out;
}

/** Logits of an ONNX classifier for every frame of `split`, computed once and cached in `cacheDir`. */
export async function onnxTeacherLogits(
  file: string,
  split: Split,
  classes: number,
  cacheDir: string,
  onInfo?: (line: string) => void,
): Promise<Float32Array> {
  const bytes = readFileSync(file);
  const key = createHash('sha256').update(bytes).update(split.images).digest('hex').slice(0, 16);
  const cache = join(cacheDir, `teacher-onnx-${key}.f32`);
  if (existsSync(cache)) {
    const b = readFileSync(cache);
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }
  onInfo?.(`teacher: running ${file} on ${split.count} training frames (cached in ${cache})`);
  const model = await openOrt(bytes, { optimize: true });
  const [h, w, c] = split.shape;
  const size = h * w * c;
  const out = new Float32Array(split.count * classes);
  for (let i = 0; i < split.count; i++) {
    const input = frameToNchw(split.images.subarray(i * size, (i + 1) * size), split.shape);
    const result = await model.run(input, [1, c, h, w]);
    const logits = Object.values(result)[0]!;
    out.set(logits.subarray(0, classes), i * classes);
  }
  await model.session.release();
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(cache, new Uint8Array(out.buffer));
  return out;
}
