import type { BwsnnModel } from '../format/model.js';

/** Which kernel implementation computes the binary layers. `auto` picks wasm when WebAssembly SIMD works. */
export type KernelChoice = 'auto' | 'wasm' | 'reference';

/** A raw sensor frame, HWC, values 0..255. Anything else is refused with a FrameError. */
export type Frame = Uint8Array | Uint8ClampedArray | Float32Array | Float64Array | readonly number[];

export interface InferOptions {
  /** Record every layer's spike train and current (for `sei verify`); costs memory and time. Default false. */
  readonly record?: boolean;
}

/** Per-layer recording of one frame (index 0 = first layer, then the hidden layers in order). */
export interface LayerTrace {
  readonly name: string;
  /** T × units, 0/1 per neuron per step, neurons in HWC order. */
  readonly spikes: Uint8Array;
  /** T × units, the LIF input current per step (after affine and shortcut). */
  readonly currents: Float32Array;
  /**
   * T × units, the part of `currents` the shortcut added (the previous layer's current, pooled and tiled as the
   * layer's shortcut says); absent when the layer has none. `currents - shortcut` is the layer's own
   * `scale_c * acc + bias_c`, the quantity its batch norm normalised in training. For an identity shortcut this is
   * the previous layer's `currents` array itself.
   */
  readonly shortcut?: Float32Array;
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
  readonly kernel: 'wasm' | 'reference';
  /** Runs one frame through all T steps. Throws FrameError on a bad frame; the engine stays usable. */
  infer(frame: Frame, options?: InferOptions): InferResult;
  /** Runs frames in order; a bad frame yields `{ ok: false }` and the stream goes on. */
  stream(frames: Iterable<Frame> | AsyncIterable<Frame>): AsyncIterable<StreamItem>;
}
