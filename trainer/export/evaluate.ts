/**
 * Batched evaluation of a folded model (BwsnnModel) with tfjs ops that round like the runtime engine
 * (runtime/kernels/reference/runner.ts): integer accumulations (exact in float32), then one float32 op at a time in the
 * engine's order — `fround(fround(scale*acc) + bias)`, `+ shortcut`, `fround(fround(beta*v) + I)`, `v >= theta`,
 * `v - theta` on a spike, the pool as `((x00 + x01) + x10) + x11` then `* 0.25`. Spikes therefore match the
 * engine bit for bit; only the head (the engine sums in float64) can differ in the last bits, which can flip
 * a prediction only on an exact tie. This is the trainer's own test accuracy of an exported model, computed
 * in seconds instead of the engine's per-frame loop.
 */
import * as tf from '@tensorflow/tfjs';
import type { BwsnnModel, HiddenLayer } from '../../runtime/format/model.js';
import { unpackRows } from '../../runtime/format/bits.js';
import type { Split } from '../data/index.js';
import { makeBatch } from '../data/index.js';
import { shortcutCurrent } from '../layers/shortcut.js';

interface Prepared {
  w0: tf.Tensor4D;
  hidden: Array<{ w: tf.Tensor4D; layer: HiddenLayer }>;
}

function prepare(model: BwsnnModel): Prepared {
  const f = model.first;
  const [k, , cin] = [f.kernel, f.kernel, f.inShape[2]];
  const cout = f.outShape[2];
  // [cout][ky][kx][cin] → HWIO
  const w0 = tf.tidy(
    () => tf.transpose(tf.tensor4d(Float32Array.from(f.weights), [cout, k, k, cin]), [1, 2, 3, 0]) as tf.Tensor4D,
  );
  const hidden = model.hidden.map((layer) => {
    if (layer.kind !== 'bconv') throw new Error(`evaluate: only bconv hidden layers are supported, got ${layer.kind}`);
    const lk = layer.kernel,
      ci = layer.inShape[2],
      co = layer.outShape[2];
    const pm = unpackRows(layer.weightBits, co, lk * lk * ci);
    const w = tf.tidy(
      () => tf.transpose(tf.tensor4d(Float32Array.from(pm), [co, lk, lk, ci]), [1, 2, 3, 0]) as tf.Tensor4D,
    );
    return { w, layer };
  });
  return { w0, hidden };
}

function affine(acc: tf.Tensor, scale: Float32Array, bias: Float32Array): tf.Tensor {
  return tf.add(tf.mul(acc, tf.tensor1d(scale)), tf.tensor1d(bias));
}

function lifSteps(current: tf.Tensor[], beta: number, theta: Float32Array): tf.Tensor[] {
  const th = tf.tensor1d(theta);
  let v: tf.Tensor = tf.zerosLike(current[0]!);
  return current.map((I) => {
    v = tf.add(tf.mul(v, tf.scalar(beta)), I);
    const s = tf.greaterEqual(v, th);
    v = tf.where(s, tf.sub(v, th), v);
    return tf.cast(s, 'float32');
  });
}

function conv(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, pad: number): tf.Tensor4D {
  return tf.conv2d(
    pad > 0
      ? tf.pad(x, [
          [0, 0],
          [pad, pad],
          [pad, pad],
          [0, 0],
        ])
      : x,
    w,
    stride as 1 | 2,
    'valid',
  );
}

/** Logits (engine formula: mean rates through the head) and predictions of `model` on `split`. */
export function evaluateFolded(
  model: BwsnnModel,
  split: Split,
  batchSize = 250,
): { predictions: Uint8Array; logits: Float32Array } {
  const prep = prepare(model);
  const T = model.T;
  const K = model.head.outFeatures;
  const predictions = new Uint8Array(split.count);
  const logits = new Float32Array(split.count * K);
  const last = model.hidden[model.hidden.length - 1]!;
  const [lh, lw, lc] = last.kind === 'bconv' ? last.outShape : [1, 1, last.outFeatures];
  for (let i = 0; i < split.count; i += batchSize) {
    const n = Math.min(batchSize, split.count - i);
    const { x } = makeBatch(
      split,
      Array.from({ length: n }, (_, j) => i + j),
    );
    const counts = tf.tidy(() => {
      const f = model.first;
      const I0 = affine(
        conv(tf.tensor4d(x, [n, ...split.shape]), prep.w0, f.stride, f.pad),
        f.scale,
        f.bias,
      ) as tf.Tensor4D;
      let currents: tf.Tensor4D[] = Array.from({ length: T }, () => I0);
      let spikes = lifSteps(currents, Math.fround(f.lif.beta), f.lif.theta);
      for (const { w, layer } of prep.hidden) {
        if (layer.kind !== 'bconv') continue;
        const next: tf.Tensor4D[] = [];
        const all = conv(tf.concat(spikes, 0) as tf.Tensor4D, w, layer.stride, layer.pad);
        const dots = tf.split(all, T, 0) as tf.Tensor4D[];
        for (let t = 0; t < T; t++) {
          let I = affine(dots[t]!, layer.scale, layer.bias) as tf.Tensor4D;
          const sc = shortcutCurrent(layer.shortcut, currents[t]!, layer.outShape[2]);
          if (sc) I = tf.add(I, sc);
          next.push(I);
        }
        currents = next;
        spikes = lifSteps(currents, Math.fround(layer.lif.beta), layer.lif.theta);
      }
      return tf.sum(tf.stack(spikes), [0, 2, 3]).dataSync() as Float32Array; // [n, channels]
    });
    const div = lh * lw * T;
    const { weight, bias } = model.head;
    for (let b = 0; b < n; b++) {
      let best = 0;
      for (let o = 0; o < K; o++) {
        let sum = bias[o]!;
        for (let c = 0; c < lc; c++) sum += weight[o * lc + c]! * (counts[b * lc + c]! / div);
        logits[(i + b) * K + o] = sum;
        if (sum > logits[(i + b) * K + best]!) best = o;
      }
      predictions[i + b] = best;
    }
  }
  prep.w0.dispose();
  prep.hidden.forEach((h) => h.w.dispose());
  return { predictions, logits };
}
