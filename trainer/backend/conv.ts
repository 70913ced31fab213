/**
 * 2-D convolution with explicit symmetric zero padding, differentiable on every backend.
 *
 * The padding is the runtime's (`pad` zeros on each side, then a VALID conv), not TensorFlow's SAME, whose extra
 * row/column goes to the bottom/right at stride 2: training with SAME would learn a different function from
 * the one exported. The gradient is a `tf.customGrad` made of forward ops only, because tfjs-backend-wasm has
 * no Conv2DBackpropFilter kernel:
 * - dx: `conv2dTranspose` of dy (Conv2DBackpropInput exists on wasm), then the padding sliced off;
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
      const dxp = tf.conv2dTranspose(dy4, ws, [n, hp, wp, cin], stride, 'valid');
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
