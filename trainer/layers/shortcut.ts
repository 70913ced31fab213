/**
 * The shortcut currents of the format (runtime/format/model.ts `Shortcut`): what a layer adds to its own current
 * before its LIF is the previous layer's LIF input current, unchanged (identity) or downsampled
 * (avgpool_repeat: 2×2 stride-2 average pool summed `((x00 + x01) + x10) + x11` then `* 0.25`, in the runtime's
 * order so that the folded evaluation rounds like it, then channel c reads pooled channel c % cin).
 *
 * avgpool_repeat is one host op (trainer/backend/host.ts) with its own gradient: as tfjs ops it was four slices,
 * three adds, a multiply and a concat forward and as many passes back (the wasm backend's Slice is slow), ~14 % of
 * a training step at width 32. Its gradient: every input of a 2×2 window gets 0.25 × the sum of the output
 * gradients of the channels that read it (c, c + cin, …).
 */
import * as tf from '@tensorflow/tfjs';
import type { Shortcut } from '../../runtime/format/model.js';
import { hostOp } from '../backend/host.js';

export function shortcutCurrent(kind: Shortcut, prev: tf.Tensor4D, cout: number): tf.Tensor4D | undefined {
  if (kind === 'none') return undefined;
  if (kind === 'identity') return prev;
  return avgpoolRepeat(prev, cout);
}

function avgpoolRepeat(x: tf.Tensor4D, cout: number): tf.Tensor4D {
  const [b, h, w, cin] = x.shape;
  if (h % 2 || w % 2) throw new RangeError(`avgpool_repeat: ${h}×${w} is not even`);
  if (cout % cin) throw new RangeError(`avgpool_repeat: ${cout} channels do not repeat ${cin}`);
  const outShape = [b, h / 2, w / 2, cout];
  const f = tf.customGrad((xIn) => {
    const [y] = hostOp([xIn as tf.Tensor], [outShape], ([xv], [yv]) => poolForward(xv!, b, h, w, cin, cout, yv!));
    return {
      value: y!,
      gradFunc: (dy: tf.Tensor) =>
        hostOp([dy], [x.shape], ([gv], [dv]) => poolBackward(gv!, b, h, w, cin, cout, dv!))[0]!,
    };
  });
  return f(x) as tf.Tensor4D;
}

function poolForward(x: Float32Array, b: number, h: number, w: number, cin: number, cout: number, y: Float32Array) {
  const f = Math.fround;
  const oh = h / 2,
    ow = w / 2,
    row = w * cin;
  let o = 0;
  for (let n = 0; n < b; n++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++) {
        const at = ((n * h + 2 * oy) * w + 2 * ox) * cin;
        for (let c = 0; c < cout; c++) {
          const i = at + (c % cin);
          y[o++] = f(f(f(f(x[i]! + x[i + cin]!) + x[i + row]!) + x[i + row + cin]!) * 0.25);
        }
      }
}

function poolBackward(dy: Float32Array, b: number, h: number, w: number, cin: number, cout: number, dx: Float32Array) {
  const oh = h / 2,
    ow = w / 2,
    row = w * cin;
  for (let n = 0; n < b; n++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++) {
        const g = ((n * oh + oy) * ow + ox) * cout;
        const at = ((n * h + 2 * oy) * w + 2 * ox) * cin;
        for (let c = 0; c < cin; c++) {
          let s = 0;
          for (let r = c; r < cout; r += cin) s += dy[g + r]!;
          s *= 0.25;
          dx[at + c] = s;
          dx[at + c + cin] = s;
          dx[at + c + row] = s;
          dx[at + c + row + cin] = s;
        }
      }
}
