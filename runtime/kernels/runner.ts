/**
 * The contract between the engine and a kernel backend (one folder each: ./reference, ./wasm). A backend is a
 * factory: `plan` lays a validated model out once (weights repacked, buffers sized), and the Runner it returns
 * computes every layer over the T steps of one frame, handing back what the engine needs for an InferResult and,
 * when asked, each layer's trace. All backends compute the same bits: the reference backend defines them and
 * test/kernels.test.ts holds every other one to it. A backend imports only ../../format and this file.
 */
import type { BwsnnModel } from '../format/model.js';

/** The backends there are (Engine.kernel). */
export type KernelName = 'reference' | 'wasm';

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
   * the previous layer's `currents` array itself. Runners leave it out; the engine adds it.
   */
  readonly shortcut?: Float32Array;
}

/** What a runner hands back for one frame; the engine turns it into an InferResult. */
export interface RunOutput {
  /** Per layer (first, then hidden): spikes summed over neurons and steps. */
  readonly layerSpikes: Float64Array;
  /** Per channel of the last layer: spikes summed over space and steps. */
  readonly lastCounts: Float64Array;
  readonly trace?: LayerTrace[];
}

/** One planned model. */
export interface Runner {
  /** Runs all T steps of one frame (already validated: HWC bytes of the model's input shape). */
  run(frame: Uint8Array, record: boolean): RunOutput;
}

/** A backend: what kernels/select.ts chooses among. */
export interface RunnerFactory {
  readonly kernel: KernelName;
  /** Why this backend cannot run in this process (or cannot run `model`), or undefined when it can. */
  unavailable(model?: BwsnnModel): string | undefined;
  /** Plans a validated model: everything per model is done here, once, so that `run` does only per-frame work. */
  plan(model: BwsnnModel): Runner;
}
