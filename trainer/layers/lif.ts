/**
 * Leaky integrate-and-fire over T steps, trained by backpropagation through time with a surrogate gradient.
 *
 * Forward, exactly the runtime's arithmetic (ARCHITECTURE.md): `v = beta*v + I` (one mul, one add, float32),
 * spike `s = v >= theta_c`, soft reset `v = v - theta_c*s`, `v = 0` at the start of every frame.
 * Backward: the Heaviside step has zero gradient almost everywhere, so its derivative is replaced by a triangle
 * surrogate of half-width `w` and area 1, `max(0, 1 − |v − θ| / w) / w`: `w = 1` (`fixed`, peak 1) or `w = θ_c`
 * (`theta`: the window follows a learned threshold, so a channel whose θ grows does not see a sharper, taller
 * surrogate). The reset path is kept in the graph: the gradient flows through `v − θ·s` into the previous step
 * (full BPTT).
 *
 * θ (per channel) and β (per layer) are tensors and get gradients, so they can be learned (PLIF-style); the
 * runtime stores both per layer / per channel already, so a learned value folds into the file unchanged.
 *
 * The whole T-step recurrence and its gradient are one host op each (trainer/backend/host.ts): as tfjs ops the
 * forward alone is ~8 kernels per step and the backward twice that. The op's loop is the trainer's WebAssembly
 * kernel (trainer/backend/assembly/lif.ts: the same arithmetic, four channels per SIMD vector) when the trainer's
 * kernels are on, the JavaScript loops below otherwise.
 */
import * as tf from '@tensorflow/tfjs';
import { hostOp } from '../backend/host.js';
import { trainerKernels } from '../backend/wasm-kernels.js';

export type Surrogate = 'fixed' | 'theta';

export interface LifParams {
  /** Threshold per channel, [C]. */
  readonly theta: tf.Tensor;
  /** Leak, [1]. */
  readonly beta: tf.Tensor;
}

/**
 * Membrane values (before reset) and spikes of every step; rows time-major, channels last. This loop and
 * lifBackward are the reference of the trainer's kernel (test/trainer-kernels.test.ts) and the path without it.
 */
export function lifForward(
  I: Float32Array,
  theta: Float32Array,
  beta: number,
  T: number,
  u: Float32Array,
  s: Float32Array,
): void {
  const M = I.length / T;
  const C = theta.length;
  const fr = Math.fround;
  // Rows of C channels, channels innermost (no index modulo in the loop); steps M apart.
  for (let row = 0; row < M; row += C) {
    for (let c = 0; c < C; c++) {
      const th = theta[c]!;
      let v = 0;
      for (let t = 0, k = row + c; t < T; t++, k += M) {
        v = t === 0 ? I[k]! : fr(fr(beta * v) + I[k]!);
        u[k] = v;
        if (v >= th) {
          s[k] = 1;
          v = fr(v - th);
        } else s[k] = 0;
      }
    }
  }
}

/**
 * Gradient of the T-step LIF. `g` is dL/ds, `u` the membrane before reset. Writes dL/dI to `dI` and returns
 * dL/dθ per channel and dL/dβ. With v'_t = v_t − θ s_t the post-reset membrane and δ_t = dL/dv'_t (0 at the last
 * step): dL/dv_t = g_t·σ_t + δ_t·(1 − θ σ_t), δ_{t−1} = β·dL/dv_t, dθ += −g_t σ_t + δ_t (θ σ_t − s_t),
 * dβ += dL/dv_t · v'_{t−1}.
 */
export function lifBackward(
  g: Float32Array,
  u: Float32Array,
  theta: Float32Array,
  beta: number,
  T: number,
  surrogate: Surrogate,
  dI: Float32Array,
): { dTheta: Float64Array; dBeta: number } {
  const M = u.length / T;
  const C = theta.length;
  const dTheta = new Float64Array(C);
  const invW = Float64Array.from(theta, (th) => (surrogate === 'theta' ? 1 / th : 1));
  let dBeta = 0;
  for (let row = 0; row < M; row += C) {
    for (let c = 0; c < C; c++) {
      const th = theta[c]!;
      const iw = invW[c]!;
      let delta = 0,
        dth = 0;
      for (let t = T - 1, k = row + c + (T - 1) * M; t >= 0; t--, k -= M) {
        const v = u[k]!;
        const x = 1 - Math.abs(v - th) * iw;
        const sg = x > 0 ? x * iw : 0;
        const gs = g[k]!;
        const dv = gs * sg + delta * (1 - th * sg);
        dth += -gs * sg + delta * (th * sg - (v >= th ? 1 : 0));
        dI[k] = dv;
        if (t > 0) {
          const prev = u[k - M]!;
          dBeta += dv * (prev >= th ? prev - th : prev);
          delta = beta * dv;
        }
      }
      dTheta[c] = dTheta[c]! + dth;
    }
  }
  return { dTheta, dBeta };
}

/**
 * Runs the LIF over T steps. `current` stacks the steps along axis 0, time-major: rows [t*N, (t+1)*N) are step t;
 * channels are the last axis. Returns the spikes (0/1 float32) in the same layout.
 */
export function lif(current: tf.Tensor, T: number, p: LifParams, surrogate: Surrogate = 'fixed'): tf.Tensor {
  const f = tf.customGrad((iIn, thetaIn, betaIn, save) => {
    const I = iIn as tf.Tensor,
      theta = thetaIn as tf.Tensor,
      beta = betaIn as tf.Tensor;
    const b = beta.dataSync()[0]!;
    const [u, s] = hostOp([I, theta], [I.shape, I.shape], ([iv, tv], [uv, sv]) => {
      const kernels = trainerKernels();
      if (!kernels) return lifForward(iv!, tv!, b, T, uv!, sv!);
      const M = iv!.length / T;
      kernels.run([iv!, tv!], [uv!, sv!], ([pi, pt], [pu, ps]) =>
        kernels.exports.lifForward(pi!, pt!, pu!, ps!, b, T, M, tv!.length),
      );
    });
    (save as (tensors: tf.Tensor[]) => void)([u!, theta]);
    return {
      value: s!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [us, ts] = saved as [tf.Tensor, tf.Tensor];
        let grads: { dTheta: Float64Array; dBeta: number } | undefined;
        const [dI] = hostOp([dy, us, ts], [us.shape], ([gv, uv, tv], [dv]) => {
          const kernels = trainerKernels();
          if (!kernels) {
            grads = lifBackward(gv!, uv!, tv!, b, T, surrogate, dv!);
            return;
          }
          const C = tv!.length,
            M = uv!.length / T;
          const dTheta = new Float64Array(C);
          let dBeta = 0;
          kernels.run([gv!, uv!, tv!], [dv!, dTheta], ([pg, pu, pt], [pd, pdt]) => {
            dBeta = kernels.exports.lifBackward(pg!, pu!, pt!, pd!, pdt!, b, T, M, C, surrogate === 'theta' ? 1 : 0);
          });
          grads = { dTheta, dBeta };
        });
        return [dI!, tf.tensor1d(Float32Array.from(grads!.dTheta)), tf.tensor1d([grads!.dBeta])];
      },
    };
  });
  return f(current, p.theta, p.beta) as tf.Tensor;
}

/** Constant LIF parameters (a layer whose θ and β are not learned, or a test). */
export function lifConstants(channels: number, theta: number, beta: number): LifParams {
  return { theta: tf.fill([channels], theta), beta: tf.tensor1d([beta]) };
}
