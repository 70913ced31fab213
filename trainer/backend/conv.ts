/**
 * 2-D convolution with explicit symmetric zero padding, differentiable on every backend.
 *
 * The padding is the runtime's (`pad` zeros on each side, then a VALID conv), not TensorFlow's SAME, whose extra
 * row/column goes to the bottom/right at stride 2: training with SAME would learn a different function from
 * the one exported. The gradient is a `tf.customGrad` made of forward ops only, because tfjs-backend-wasm has
 * no Conv2DBackpropFilter kernel (and its Conv2DBackpropInput is a plain loop, ~5× slower than its XNNPACK
 * forward conv):
 * - dx, split by output phase: an input row y = s·a + r − pad (r = (y + pad) mod s) is reached only by the kernel
 *   taps ky ≡ r (mod s), at output rows a, a − 1, …. So each of the s² phases is a stride-1 VALID conv of dy with
 *   the sub-kernel w[r::s, r'::s], rotated by 180° with its in/out axes swapped, over dy padded just enough to
 *   give that phase's rows; the phases are interleaved back. This costs the forward's MACs, where convolving a
 *   zero-interleaved dy (the textbook form) costs s² times more plus the padding ring. At s = 1 it is the one
 *   conv of dy padded by k − 1 − pad, which yields the unpadded dx directly. `inputGrad: false` (the first
 *   layer, whose input is data) skips it.
 * - dW: the trainer's own WASM kernel (./assembly/conv-grad.ts) sums it directly through `hostOp`, skipping the
 *   zeros of spike inputs. Without that kernel, a forward conv over transposed operands: dW[ky,kx,ci,co] = Σ_{n,oy,ox} xp[n, oy·s+ky, ox·s+kx, ci] ·
 *   dy[n,oy,ox,co] is a stride-1 conv of xp seen as [Cin, Hp, Wp, N] (batch = Cin, channels = N) with dy seen as
 *   the filter [oh, ow, N, Cout], dilated by s. Rows and columns of xp the forward conv never read (when
 *   (Hp − k) % s ≠ 0) are cut first, so the output is exactly k × k.
 * - the forward value: XNNPACK's conv, or, for a binary layer on spike maps (`spikes`), the engine's AND-popcount
 *   kernel through ./spike-conv.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { convOut } from '../../runtime/format/model.js';
import { hostOp } from './host.js';
import type { SpikeConvKernel } from './spike-conv.js';
import { spikeConvKernel } from './spike-conv.js';
import { trainerKernels } from './wasm-kernels.js';

export interface ConvOptions {
  /** Compute the input's gradient (default true; false for the first layer, whose input is data). */
  readonly inputGrad?: boolean;
  /**
   * The input is a spike map (every value 0 or 1) and every weight of output channel c is ±alpha_c (a binary layer):
   * the forward value may then come from the engine's kernel (./spike-conv.ts). Default false.
   */
  readonly spikes?: boolean;
}

export function conv2d(
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  stride: number,
  pad: number,
  opts: ConvOptions = {},
): tf.Tensor4D {
  const inputGrad = opts.inputGrad ?? true;
  const spikeKernel = opts.spikes ? spikeConvKernel() : undefined;
  const f = tf.customGrad((xIn, wIn, save) => {
    const xv = xIn as tf.Tensor4D;
    const wv = wIn as tf.Tensor4D;
    const xp =
      pad > 0
        ? tf.pad(xv, [
            [0, 0],
            [pad, pad],
            [pad, pad],
            [0, 0],
          ])
        : xv;
    (save as (tensors: tf.Tensor[]) => void)([xp, wv]);
    const value = spikeKernel ? spikeForward(spikeKernel, xv, wv, stride, pad) : tf.conv2d(xp, wv, stride, 'valid');
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
      const dy4 = dy as tf.Tensor4D;
      const [n, hp, wp, cin] = xs.shape;
      const dx = inputGrad
        ? phaseInputGrad(dy4, ws, hp - 2 * pad, wp - 2 * pad, stride, pad)
        : tf.zeros([n, hp - 2 * pad, wp - 2 * pad, cin]);
      return [dx, filterGrad(xs, dy4, ws.shape, stride)];
    };
    return { value, gradFunc };
  });
  return f(x, w) as tf.Tensor4D;
}

/** The forward value of a binary layer's conv on spike maps by the engine's kernel. */
function spikeForward(
  kernel: SpikeConvKernel,
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  stride: number,
  pad: number,
): tf.Tensor4D {
  const [n, h, wd, cin] = x.shape;
  const [k, , , cout] = w.shape;
  const oh = convOut(h, k, stride, pad),
    ow = convOut(wd, k, stride, pad);
  const shape = { n, h, w: wd, cin, oh, ow, cout, k, stride, pad };
  return hostOp([x, w], [[n, oh, ow, cout]], ([xs, ws], [out]) => kernel(xs!, ws!, shape, out!))[0] as tf.Tensor4D;
}

/** dW of a VALID conv of the padded input `xp` (see the file comment). */
function filterGrad(xp: tf.Tensor4D, dy: tf.Tensor4D, wShape: number[], stride: number): tf.Tensor4D {
  const [kh, kw, cin] = wShape as [number, number, number, number];
  const [n, hp, wp] = xp.shape;
  const [, oh, ow] = dy.shape;
  const hUsed = (oh - 1) * stride + kh,
    wUsed = (ow - 1) * stride + kw;
  const kernels = trainerKernels();
  if (kernels) {
    const cout = dy.shape[3];
    if (hUsed > hp || wUsed > wp) throw new RangeError('conv filter gradient: the output reads past the input');
    return hostOp([xp, dy], [wShape], ([x, d], [out]) =>
      kernels.run(
        [x!, d!],
        [out!],
        ([xa, da], [wa], scratch) =>
          kernels.exports.filterGrad(xa!, da!, wa!, n, hp, wp, cin, oh, ow, cout, kh, kw, stride, scratch),
        kernels.exports.filterGradScratch(hp, wp, cin),
      ),
    )[0] as tf.Tensor4D;
  }
  const used = hUsed === hp && wUsed === wp ? xp : tf.slice(xp, [0, 0, 0, 0], [n, hUsed, wUsed, cin]);
  const xt = tf.transpose(used, [3, 1, 2, 0]);
  const dyt = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
  const dwT = tf.conv2d(xt, dyt, 1, 'valid', 'NHWC', stride);
  return tf.transpose(dwT, [1, 2, 0, 3]) as tf.Tensor4D;
}

/** One axis of one phase: the kernel taps it uses (in conv order) and the dy padding that yields its rows. */
interface Phase {
  readonly taps: number[];
  readonly padBefore: number;
  readonly padAfter: number;
  /** Input rows this phase produces. */
  readonly rows: number;
}

/**
 * Phase r of an axis of unpadded input size `size`, output size `out`, kernel `k`: the input rows y = s·a + r − pad
 * for a in [a0, a1], where dx[y] = Σ_j dy[a − j] · w[r + s·j] (j < J): a VALID conv of dy with the taps reversed,
 * dy padded by J − 1 − a0 before and a1 − (out − 1) after (a negative amount cuts).
 */
function phase(size: number, out: number, k: number, s: number, pad: number, r: number): Phase {
  const J = Math.max(0, Math.ceil((k - r) / s));
  const a0 = Math.ceil((pad - r) / s);
  const a1 = Math.floor((size - 1 + pad - r) / s);
  const taps = Array.from({ length: J }, (_, m) => r + s * (J - 1 - m));
  return { taps, padBefore: J - 1 - a0, padAfter: a1 - (out - 1), rows: Math.max(0, a1 - a0 + 1) };
}

/** Pads (or, for a negative amount, cuts) axes 1 and 2. */
function padOrCut(t: tf.Tensor4D, top: number, bottom: number, left: number, right: number): tf.Tensor4D {
  const [n, h, w, c] = t.shape;
  const [ct, cb, cl, cr] = [top, bottom, left, right].map((v) => Math.max(0, -v)) as [number, number, number, number];
  let out = ct || cb || cl || cr ? tf.slice(t, [0, ct, cl, 0], [n, h - ct - cb, w - cl - cr, c]) : t;
  const [pt, pb, pl, pr] = [top, bottom, left, right].map((v) => Math.max(0, v)) as [number, number, number, number];
  if (pt || pb || pl || pr)
    out = tf.pad(out, [
      [0, 0],
      [pt, pb],
      [pl, pr],
      [0, 0],
    ]);
  return out;
}

/** Gradient of the padded VALID conv with respect to its unpadded input of size h × wd, phase by phase. */
function phaseInputGrad(dy: tf.Tensor4D, w: tf.Tensor4D, h: number, wd: number, s: number, pad: number): tf.Tensor4D {
  const [kh, kw, cin] = w.shape;
  const [n, oh, ow] = dy.shape;
  const part = (py: Phase, px: Phase): tf.Tensor4D => {
    if (!py.rows || !px.rows) return tf.zeros([n, py.rows, px.rows, cin]);
    if (!py.taps.length || !px.taps.length) return tf.zeros([n, py.rows, px.rows, cin]);
    const sub = s === 1 ? tf.reverse(w, [0, 1]) : tf.gather(tf.gather(w, py.taps, 0), px.taps, 1);
    return tf.conv2d(
      padOrCut(dy, py.padBefore, py.padAfter, px.padBefore, px.padAfter),
      tf.transpose(sub, [0, 1, 3, 2]) as tf.Tensor4D,
      1,
      'valid',
    );
  };
  if (s === 1) return part(phase(h, oh, kh, 1, pad, 0), phase(wd, ow, kw, 1, pad, 0));
  // Input row residue q = y mod s comes from phase r = (q + pad) mod s; every phase is padded to ⌈h/s⌉ rows so the
  // s² parts interleave by a stack and a reshape.
  const hq = Math.ceil(h / s),
    wq = Math.ceil(wd / s);
  const bands: tf.Tensor[] = [];
  for (let qy = 0; qy < s; qy++) {
    const py = phase(h, oh, kh, s, pad, (qy + pad) % s);
    const cols: tf.Tensor[] = [];
    for (let qx = 0; qx < s; qx++) {
      const px = phase(wd, ow, kw, s, pad, (qx + pad) % s);
      cols.push(padOrCut(part(py, px), 0, hq - py.rows, 0, wq - px.rows));
    }
    bands.push(tf.reshape(tf.stack(cols, 3), [n, hq, wq * s, cin]));
  }
  const all = tf.reshape(tf.stack(bands, 2), [n, hq * s, wq * s, cin]) as tf.Tensor4D;
  return hq * s === h && wq * s === wd ? all : tf.slice(all, [0, 0, 0, 0], [n, h, wd, cin]);
}
