/**
 * Leaky integrate-and-fire over T steps, trained by backpropagation through time with a surrogate gradient.
 *
 * Forward, exactly the runtime's arithmetic (ARCHITECTURE.md): `v = beta*v + I` (one mul, one add, float32),
 * spike `s = v >= theta`, soft reset `v = v - theta*s`, `v = 0` at the start of every frame.
 * Backward: the Heaviside step has zero gradient almost everywhere, so its derivative is replaced by the
 * triangle surrogate `max(0, 1 - |v - theta|)` (width 1 on each side of the threshold, peak 1). The reset path
 * is kept in the graph: the gradient flows through `v - theta*s` into the previous step (full BPTT).
 */
import * as tf from '@tensorflow/tfjs';

/** Heaviside spike with the triangle surrogate gradient; theta is a constant of the layer. */
export function spikeFn(theta: number): (v: tf.Tensor) => tf.Tensor {
  return tf.customGrad((vIn, save) => {
    const v = vIn as tf.Tensor;
    (save as (tensors: tf.Tensor[]) => void)([v]);
    return {
      value: tf.cast(tf.greaterEqual(v, theta), 'float32'),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, tf.relu(tf.sub(1, tf.abs(tf.sub(saved[0]!, theta))))),
    };
  }) as (v: tf.Tensor) => tf.Tensor;
}

/**
 * Runs the LIF over T steps. `current` stacks the steps along axis 0, time-major: rows [t*N, (t+1)*N) are step t.
 * Returns the spikes in the same layout.
 */
export function lif(current: tf.Tensor, T: number, beta: number, theta: number): tf.Tensor {
  const steps = T === 1 ? [current] : tf.split(current, T, 0);
  const spike = spikeFn(theta);
  const out: tf.Tensor[] = [];
  let v: tf.Tensor | undefined;
  for (const I of steps) {
    v = v === undefined ? I : tf.add(tf.mul(v, beta), I);
    const s = spike(v);
    out.push(s);
    v = tf.sub(v, tf.mul(s, theta));
  }
  return T === 1 ? out[0]! : tf.concat(out, 0);
}
