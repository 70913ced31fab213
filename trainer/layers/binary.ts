/**
 * Weight quantisers with straight-through estimators.
 * - Binary (hidden layers): `w_b = sign(w) * alpha_c`, sign(0) = +1, `alpha_c = mean |w|` over the fan-in of
 *   output channel c. Backward: d/dw sign(w) is replaced by 1 where |w| <= 1, 0 elsewhere (clipped STE), so
 *   latent weights that drifted far out stop moving; alpha gets its true gradient.
 * - Int8 (first layer): per output channel `s_c = max |w_c| / 127`, `w_q = round(w / s_c) * s_c`; round's
 *   gradient is taken as 1 (STE).
 * Weights are HWIO ([k, k, cin, cout], tfjs's conv layout); the fan-in of channel c is axes 0..2.
 */
import * as tf from '@tensorflow/tfjs';

/** sign with sign(0) = +1, and the clipped straight-through gradient. */
export const signSte = tf.customGrad((wIn, save) => {
  const w = wIn as tf.Tensor;
  (save as (tensors: tf.Tensor[]) => void)([w]);
  return {
    value: tf.sub(tf.mul(tf.cast(tf.greaterEqual(w, 0), 'float32'), 2), 1),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, tf.cast(tf.lessEqual(tf.abs(saved[0]!), 1), 'float32')),
  };
}) as (w: tf.Tensor) => tf.Tensor;

const roundSte = tf.customGrad((xIn) => ({
  value: tf.round(xIn as tf.Tensor),
  gradFunc: (dy: tf.Tensor) => dy,
})) as (x: tf.Tensor) => tf.Tensor;

/** Fan-in axes of a weight tensor: all but the last (output) axis. */
function fanInAxes(w: tf.Tensor): number[] {
  return Array.from({ length: w.rank - 1 }, (_, i) => i);
}

/** Per-output-channel scale alpha = mean |w| (shape [cout]). */
export function binaryScale(w: tf.Tensor): tf.Tensor {
  return tf.mean(tf.abs(w), fanInAxes(w));
}

export function binarize(w: tf.Tensor): tf.Tensor {
  return tf.mul(signSte(w), binaryScale(w));
}

/** Per-output-channel int8 step s_c = max|w_c| / 127 (never 0) and the integer weights round(w / s_c). */
export function int8Parts(w: tf.Tensor): { step: tf.Tensor; ints: tf.Tensor } {
  const step = tf.maximum(tf.div(tf.max(tf.abs(w), fanInAxes(w)), 127), 1e-12);
  return { step, ints: tf.clipByValue(roundSte(tf.div(w, step)), -127, 127) };
}

export function quantizeInt8(w: tf.Tensor): tf.Tensor {
  const { step, ints } = int8Parts(w);
  return tf.mul(ints, step);
}
