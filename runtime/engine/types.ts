import type { BwsnnModel } from '../format/model.js';
import type { KernelName, LayerTrace } from '../kernels/runner.js';
import type { KernelChoice } from '../kernels/select.js';

export type { KernelChoice, KernelName, LayerTrace };

/** A raw sensor frame, HWC, values 0..255. Anything else is refused with a FrameError. */
export type Frame = Uint8Array | Uint8ClampedArray | Float32Array | Float64Array | readonly number[];

export interface InferOptions {
  /** Record every layer's spike train and current (for `sei verify`); costs memory and time. Default false. */
  readonly record?: boolean;
}

export interface InferResult {
  /** Mean of the per-step logits (equal to the head on the mean spike rate). */
  readonly logits: Float32Array;
  /** argmax of logits (first index on ties). */
  readonly prediction: number;
  /** softmax probability of the prediction. */
  readonly confidence: number;
  /** Per layer (first, then hidden), the fraction of neuron-steps that spiked. */
  readonly spikeRates: Float32Array;
  /**
   * The head's input: per channel of the last layer, its spike rate over space and the T steps (count / (H*W*T),
   * T = Engine.steps),
   * exactly the float64 values the head multiplies. What fine-tuning trains a new head on.
   */
  readonly features: Float64Array;
  /**
   * Synaptic operations performed for this frame: for every binary layer and step, the number of input
   * spikes times the fan-out each one drives (k*k*cout/stride^2 for a conv, outFeatures for a linear).
   */
  readonly synOps: number;
  /** Wall time of this inference, milliseconds. */
  readonly latencyMs: number;
  readonly trace?: readonly LayerTrace[];
}

export type StreamItem =
  | { readonly ok: true; readonly index: number; readonly result: InferResult }
  | { readonly ok: false; readonly index: number; readonly error: Error };

export interface Engine {
  readonly model: BwsnnModel;
  /** The kernel actually in use. */
  readonly kernel: KernelName;
  /** Time steps per frame: `model.T` (what the model was trained for) unless EngineOptions.steps chose another. */
  readonly steps: number;
  /** Runs one frame through all `steps` steps. Throws FrameError on a bad frame; the engine stays usable. */
  infer(frame: Frame, options?: InferOptions): InferResult;
  /** Runs frames in order; a bad frame yields `{ ok: false }` and the stream goes on. */
  stream(frames: Iterable<Frame> | AsyncIterable<Frame>): AsyncIterable<StreamItem>;
}
