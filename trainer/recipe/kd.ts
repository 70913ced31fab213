/**
 * Teachers for knowledge distillation.
 * - The ANN twin trained by `fit('teacher', …)` runs per batch on the same augmented frames as the student.
 * - An ONNX classifier (`--teacher-onnx FILE`) runs once over the training split on onnxruntime-node; its logits
 *   are cached next to the checkpoints (keyed by the file's SHA-256 and the split), and looked up per frame.
 *   The ONNX model takes what the project's twins take: float32 NCHW raw pixel values 0..255, batch 1 (or any).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { openOrt } from '../export/ort.js';
import { frameToNchw } from '../export/onnx.js';
import type { Split } from '../data/index.js';
import type { NetConfig, NetParams } from '../model.js';
import { forward } from '../model.js';

export type TeacherFn = (idx: Uint32Array, x: tf.Tensor4D) => tf.Tensor2D;

export function annTeacher(net: NetConfig, params: NetParams): TeacherFn {
  return (_idx, x) => tf.squeeze(forward(net, params, x, false).stepLogits, [0]) as tf.Tensor2D;
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

export function cachedTeacher(logits: Float32Array, classes: number): TeacherFn {
  return (idx) => {
    const batch = new Float32Array(idx.length * classes);
    idx.forEach((j, b) => batch.set(logits.subarray(j * classes, (j + 1) * classes), b * classes));
    return tf.tensor2d(batch, [idx.length, classes]);
  };
}
