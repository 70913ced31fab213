/**
 * The SEI training loss.
 * - Self-ensemble: the prediction is the mean of the T per-step logits (the head is linear, so this equals the head
 *   on the mean spike rate, which is what the runtime computes); cross-entropy is taken on that mean. Optional
 *   per-step terms add `perStep × mean_t CE(logits_t)`, which pushes every step to be right on its own.
 * - Knowledge distillation: `kdWeight × tau² × KL(softmax(teacher/tau) ‖ softmax(student/tau))` on the mean
 *   logits, plus `kdPerStep ×` the mean of the same term on each step's logits (each step distilled on its own, the
 *   self-ensemble's members), the hard-label part weighted `1 − kdWeight` (tau² keeps the gradient scale independent
 *   of tau).
 */
import * as tf from '@tensorflow/tfjs';

export interface LossOptions {
  /** Weight of the per-step CE terms (0 = only the ensemble term). */
  readonly perStep: number;
  /** Weight of the distillation term in [0, 1]; ignored without teacher logits. */
  readonly kdWeight: number;
  /** Distillation temperature tau > 0. */
  readonly kdTemperature: number;
  /** Label smoothing of the hard targets. */
  readonly labelSmoothing: number;
  /** Weight of the per-step distillation terms relative to the one on the mean logits (absent: 0). */
  readonly kdPerStep?: number;
  /**
   * Firing-rate term: `spikePenalty ×` the mean over the spiking layers of `max(0, rate − spikeTarget)²` (target 0:
   * the squared rate). Fewer spikes are less work for the runtime's event-driven path. Absent: 0.
   */
  readonly spikePenalty?: number;
  readonly spikeTarget?: number;
}

/** The firing-rate term of `opts` on per-layer spike rates (scalars that carry the surrogate gradient); 0 when off. */
export function spikeRateTerm(rates: readonly tf.Scalar[], opts: LossOptions): tf.Scalar | undefined {
  const w = opts.spikePenalty ?? 0;
  if (w <= 0 || !rates.length) return undefined;
  const target = opts.spikeTarget ?? 0;
  const terms = rates.map((r) => tf.square(tf.relu(tf.sub(r, target))));
  return tf.mul(tf.mean(tf.stack(terms)), w) as tf.Scalar;
}

export const DEFAULT_LOSS: LossOptions = { perStep: 0, kdWeight: 0, kdTemperature: 1, labelSmoothing: 0 };

export function seiLoss(
  stepLogits: tf.Tensor3D,
  labels: tf.Tensor1D,
  opts: LossOptions,
  teacherLogits?: tf.Tensor2D,
): { loss: tf.Scalar; logits: tf.Tensor2D } {
  const [T, , K] = stepLogits.shape;
  const logits = tf.mean(stepLogits, 0) as tf.Tensor2D;
  const oneHot = tf.oneHot(labels, K);
  const ce = (l: tf.Tensor) =>
    tf.losses.softmaxCrossEntropy(oneHot, l as tf.Tensor2D, undefined, opts.labelSmoothing) as tf.Scalar;
  let hard: tf.Scalar = ce(logits);
  if (opts.perStep > 0 && T > 1) {
    const steps = tf.unstack(stepLogits, 0).map((l) => ce(l));
    hard = tf.add(hard, tf.mul(tf.mean(tf.stack(steps)), opts.perStep)) as tf.Scalar;
  }
  if (!teacherLogits || opts.kdWeight <= 0) return { loss: hard, logits };
  const tau = opts.kdTemperature;
  const pt = tf.softmax(tf.div(teacherLogits, tau));
  const logPt = tf.log(tf.add(pt, 1e-12));
  const kl = (student: tf.Tensor) => tf.mean(tf.sum(tf.mul(pt, tf.sub(logPt, tf.logSoftmax(tf.div(student, tau)))), 1));
  let soft = kl(logits);
  const perStep = opts.kdPerStep ?? 0;
  if (perStep > 0 && T > 1) soft = tf.add(soft, tf.mul(tf.mean(tf.stack(tf.unstack(stepLogits, 0).map(kl))), perStep));
  const loss = tf.add(tf.mul(hard, 1 - opts.kdWeight), tf.mul(soft, opts.kdWeight * tau * tau)) as tf.Scalar;
  return { loss, logits };
}
