/**
 * 2-D convolution with explicit symmetric zero padding, differentiable on every backend.
 *
 * The padding is the runtime's (`pad` zeros on each side, then a VALID conv), not TensorFlow's SAME, whose extra
 * row/column goes to the bottom/right at stride 2: training with SAME would learn a different function from
 * the one exported. The gradient is a `tf.customGrad` made of forward ops only, because tfjs-backend-wasm has
 * no Conv2DBackpropFilter kernel:
 * - dx: a forward conv of dy, zero-interleaved by the stride and padded by k − 1, with the filter rotated by 180°
 *   and its in/out axes swapped (wasm's own Conv2DBackpropInput is a plain loop, ~5× slower than its XNNPACK
 *   forward conv); rows the forward conv never read get zero, then the padding is sliced off;
 * - dW: a forward conv over transposed operands. dW[ky,kx,ci,co] = Σ_{n,oy,ox} xp[n, oy·s+ky, ox·s+kx, ci] ·
 *   dy[n,oy,ox,co] is a stride-1 conv of xp seen as [Cin, Hp, Wp, N] (batch = Cin, channels = N) with dy seen as
 *   the filter [oh, ow, N, Cout], dilated by s. Its output may be larger than k×k when (Hp − k) % s ≠ 0; the
 *   extra taps belong to input rows the forward conv never reached, so they are sliced off.
 */
import * as tf from '@tensorflow/tfjs';

export function conv2d(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, pad: number): tf.Tensor4D {
  const f = tf.customGrad((xIn, wIn, save) => {
    const xv = xIn as tf.Tensor4D;
    const wv = wIn as tf.Tensor4D;
    const xp = pad > 0 ? tf.pad(xv, [[0, 0], [pad, pad], [pad, pad], [0, 0]]) : xv;
    (save as (tensors: tf.Tensor[]) => void)([xp, wv]);
    const value = tf.conv2d(xp, wv, stride, 'valid');
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
      const dy4 = dy as tf.Tensor4D;
      const [n, hp, wp, cin] = xs.shape;
      const [kh, kw, , cout] = ws.shape;
      const dxp = inputGrad(dy4, ws, hp, wp, stride);
      const dx = pad > 0 ? tf.slice(dxp, [0, pad, pad, 0], [n, hp - 2 * pad, wp - 2 * pad, cin]) : dxp;
      const xt = tf.transpose(xs, [3, 1, 2, 0]);
      const dyt = tf.transpose(dy4, [1, 2, 0, 3]);
      const full = tf.conv2d(xt, dyt as tf.Tensor4D, 1, 'valid', 'NHWC', stride);
      const dwT = full.shape[1] === kh && full.shape[2] === kw ? full : tf.slice(full, [0, 0, 0, 0], [cin, kh, kw, cout]);
      const dw = tf.transpose(dwT, [1, 2, 0, 3]);
      return [dx, dw];
    };
    return { value, gradFunc };
  });
  return f(x, w) as tf.Tensor4D;
}

/** Inserts stride − 1 zeros between neighbouring rows and columns. */
function dilate(dy: tf.Tensor4D, stride: number): tf.Tensor4D {
  if (stride === 1) return dy;
  const [n, oh, ow, c] = dy.shape;
  const zc = tf.zeros([n, oh, ow, stride - 1, c]);
  const cols: tf.Tensor = tf.reshape(tf.concat([tf.reshape(dy, [n, oh, ow, 1, c]), zc], 3), [n, oh, ow * stride, c]);
  const zr = tf.zeros([n, oh, stride - 1, ow * stride, c]);
  const rows = tf.reshape(tf.concat([tf.reshape(cols, [n, oh, 1, ow * stride, c]), zr], 2), [n, oh * stride, ow * stride, c]);
  return tf.slice(rows as tf.Tensor4D, [0, 0, 0, 0], [n, (oh - 1) * stride + 1, (ow - 1) * stride + 1, c]);
}

/** Gradient of a VALID conv with respect to its (already padded) input of size hp × wp. */
function inputGrad(dy: tf.Tensor4D, w: tf.Tensor4D, hp: number, wp: number, stride: number): tf.Tensor4D {
  const [kh, kw] = w.shape;
  const flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
  const d = dilate(dy, stride);
  const covH = d.shape[1] + kh - 1;
  const covW = d.shape[2] + kw - 1;
  const padded = tf.pad(d, [[0, 0], [kh - 1, kh - 1 + hp - covH], [kw - 1, kw - 1 + wp - covW], [0, 0]]);
  return tf.conv2d(padded, flipped, 1, 'valid');
}
