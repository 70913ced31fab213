/**
 * The in-memory model: what a .bwsnn file holds once read, and what the trainer hands to the writer.
 * The numeric semantics of every field are in ../../ARCHITECTURE.md ("Numeric semantics") and
 * runtime/format/README.md; the reference backend (runtime/kernels/reference) is their executable form.
 *
 * Conventions used throughout:
 * - Tensors are HWC: a frame or a feature map of shape [height, width, channels] is stored with channels fastest.
 * - A binary weight row holds the fan-in of one output unit, bit j = 1 meaning +1 and 0 meaning -1, packed
 *   LSB-first into little-endian 32-bit words, the row padded with zero bits to a multiple of 128 bits.
 *   For a k×k conv the fan-in order is (ky, kx, cin): j = (ky * k + kx) * cin_count + cin.
 */

import type { Fit } from '../data/fit.js';

/** [height, width, channels]. */
export type Shape3 = readonly [number, number, number];

/** Leaky integrate-and-fire parameters of one layer's neurons. */
export interface Lif {
  /** Leak factor, 0 < beta <= 1. `v = beta * v + I`. */
  readonly beta: number;
  /** Firing threshold per output channel (> 0). Soft reset: `v -= theta` after a spike. */
  readonly theta: Float32Array;
}

/**
 * What is added to a layer's current before its LIF: the real-valued current of the layer before it
 * (the input of that layer's LIF). `none` only where no such current exists or for a plain (non-SEI) block.
 * - identity: same shape in and out.
 * - avgpool_repeat: 2×2 average pool, stride 2 (`((a + b) + c) + d` then `* 0.25`, each op one float32
 *   rounding), then the channels tiled `out / in` times (output channel c reads input channel c % in).
 */
export type Shortcut = 'none' | 'identity' | 'avgpool_repeat';

/** First layer: int8 weights on the raw uint8 frame, integer accumulation, then `I = scale_c * acc + bias_c`. */
export interface ConvInt8Layer {
  readonly kind: 'conv_int8';
  readonly name: string;
  readonly inShape: Shape3;
  readonly outShape: Shape3;
  readonly kernel: number;
  readonly stride: number;
  /** Zero padding (in raw value space) on each side. */
  readonly pad: number;
  /** [cout][ky][kx][cin], int8. */
  readonly weights: Int8Array;
  /** Per output channel: input scaling, int8 scale and batch norm folded. */
  readonly scale: Float32Array;
  readonly bias: Float32Array;
  readonly lif: Lif;
}

/** Binary conv on spike maps: `dot = 2*popcount(s & w) - popcount(s)`, `I = scale_c * dot + bias_c (+ shortcut)`. */
export interface BinaryConvLayer {
  readonly kind: 'bconv';
  readonly name: string;
  readonly inShape: Shape3;
  readonly outShape: Shape3;
  readonly kernel: number;
  readonly stride: number;
  /** Zero padding of the spike map (padding is "no spike"). */
  readonly pad: number;
  /** cout rows of `rowWords(kernel * kernel * cin)` words each. */
  readonly weightBits: Uint32Array;
  /** Per output channel: alpha (mean |w|) and batch norm folded. */
  readonly scale: Float32Array;
  readonly bias: Float32Array;
  readonly shortcut: Shortcut;
  readonly lif: Lif;
}

/** Binary fully connected layer on the flattened (HWC order) spike map of the layer before it. */
export interface BinaryLinearLayer {
  readonly kind: 'blinear';
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** outFeatures rows of `rowWords(inFeatures)` words each. */
  readonly weightBits: Uint32Array;
  readonly scale: Float32Array;
  readonly bias: Float32Array;
  /** 'none' or 'identity' (inFeatures === outFeatures). */
  readonly shortcut: Shortcut;
  readonly lif: Lif;
}

export type HiddenLayer = BinaryConvLayer | BinaryLinearLayer;

/**
 * Float head on the last layer's spike rates: rate_c = (spike count of channel c over space and T) / (H*W*T),
 * logits = weight · rate + bias.
 */
export interface Head {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** [out][in], float32. */
  readonly weight: Float32Array;
  readonly bias: Float32Array;
}

export interface BwsnnModel {
  /** Human-readable model name, e.g. "fmnist-sei-t2". */
  readonly name: string;
  /** Monotonic model version (used by OTA to refuse downgrades); 0 when unversioned. */
  readonly version: number;
  /** Time steps, 1..16. */
  readonly T: number;
  /** Shape of the raw uint8 frame. */
  readonly input: Shape3;
  /** Class names, one per head output. */
  readonly labels: readonly string[];
  readonly first: ConvInt8Layer;
  readonly hidden: readonly HiddenLayer[];
  readonly head: Head;
  /** Free-form provenance (producer, training command, accuracy...). JSON-serialisable. */
  readonly meta: Readonly<Record<string, unknown>>;
  /**
   * How pictures of another shape become this model's frames (runtime/data/fit.ts), as it was trained; absent:
   * `crop`. A version-2 header field; a version-1 file keeps it in `meta.fit`.
   */
  readonly fit?: Fit;
}

/** Words per packed binary row for a fan-in of `bits`: padded to 128 bits. */
export function rowWords(bits: number): number {
  return Math.ceil(bits / 128) * 4;
}

/** Spatial output size of a k×k conv with stride s and padding p on an input of size n. */
export function convOut(n: number, k: number, s: number, p: number): number {
  return Math.floor((n + 2 * p - k) / s) + 1;
}
