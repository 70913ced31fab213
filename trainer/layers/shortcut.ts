/**
 * The shortcut currents of the format (runtime/format/model.ts `Shortcut`): what a layer adds to its own current
 * before its LIF is the previous layer's LIF input current, unchanged (identity) or downsampled
 * (avgpool_repeat: 2×2 stride-2 average pool summed `((x00 + x01) + x10) + x11` then `* 0.25`, in the runtime's
 * order so that the folded evaluation rounds like it, then channel c reads pooled channel c % cin).
 */
import * as tf from '@tensorflow/tfjs';
import type { Shortcut } from '../../runtime/format/model.js';

export function shortcutCurrent(kind: Shortcut, prev: tf.Tensor4D, cout: number): tf.Tensor4D | undefined {
  if (kind === 'none') return undefined;
  if (kind === 'identity') return prev;
  const [b, h, w, cin] = prev.shape;
  // Rows in pairs, and each pair of columns side by side on the channel axis: every tap is a 4-D slice
  // (the wasm backend's Slice is slow beyond rank 4).
  const x = tf.reshape(prev, [b * (h / 2), 2, w / 2, 2 * cin]);
  const at = (dy: number, dx: number) =>
    tf.reshape(tf.slice(x, [0, dy, 0, dx * cin], [b * (h / 2), 1, w / 2, cin]), [b, h / 2, w / 2, cin]);
  const pooled = tf.mul(tf.add(tf.add(tf.add(at(0, 0), at(0, 1)), at(1, 0)), at(1, 1)), 0.25) as tf.Tensor4D;
  return cout === cin
    ? pooled
    : tf.concat(
        Array.from({ length: cout / cin }, () => pooled),
        3,
      );
}
