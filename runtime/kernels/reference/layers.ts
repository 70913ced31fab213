/**
 * The reference backend's layer kernels: plain TypeScript, written to be read. With ./runner.ts (the step loop)
 * they are the executable form of ARCHITECTURE.md's numeric semantics; every other backend must match them bit
 * for bit. Spike maps here are unpacked (one 0/1 byte per neuron, HWC); weight rows are the format's packed rows.
 */
import type { BinaryConvLayer, BinaryLinearLayer, ConvInt8Layer, HiddenLayer, Shape3 } from '../../format/model.js';
import { rowWords } from '../../format/model.js';
import { mapShape, perOp } from '../../format/ops.js';
import type { PerOp } from '../../format/ops.js';

/** Set bits of a 32-bit word. */
export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** ±1 weights (bit 1 = +1) against 0/1 spikes: `2*popcount(s & w) - popcount(s)` over `words` packed words. */
export function binaryDot(s: Uint32Array, sOff: number, w: Uint32Array, wOff: number, words: number): number {
  let both = 0;
  let spikes = 0;
  for (let i = 0; i < words; i++) {
    const x = s[sOff + i]!;
    both += popcount32(x & w[wOff + i]!);
    spikes += popcount32(x);
  }
  return 2 * both - spikes;
}

/** Packs 0/1 bytes LSB-first into the words of `out` starting at `outOff` (the words must be zero). */
export function packBits(bits: ArrayLike<number>, out: Uint32Array, outOff = 0): void {
  for (let j = 0; j < bits.length; j++) if (bits[j]) out[outOff + (j >> 5)]! |= 1 << (j & 31);
}

type ConvGeometry = Pick<BinaryConvLayer | ConvInt8Layer, 'inShape' | 'outShape' | 'kernel' | 'stride' | 'pad'>;

/**
 * Calls `visit(oy, ox, j, index)` for every output position and every fan-in element j = (ky*k + kx)*cin + ci,
 * with `index` the HWC input index, or -1 where the window reads the zero padding.
 */
function forEachTap(g: ConvGeometry, visit: (pos: number, j: number, index: number) => void): void {
  const [h, w, cin] = g.inShape;
  const [oh, ow] = g.outShape;
  const k = g.kernel;
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      const pos = oy * ow + ox;
      for (let ky = 0; ky < k; ky++) {
        const iy = oy * g.stride - g.pad + ky;
        for (let kx = 0; kx < k; kx++) {
          const ix = ox * g.stride - g.pad + kx;
          const inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
          for (let ci = 0; ci < cin; ci++) visit(pos, (ky * k + kx) * cin + ci, inside ? (iy * w + ix) * cin + ci : -1);
        }
      }
    }
  }
}

/** Integer dots of a binary conv on one step's spikes: HWC, one per output neuron. */
export function bconvDots(layer: BinaryConvLayer, spikes: Uint8Array): Int32Array {
  const [oh, ow, cout] = layer.outShape;
  const fanIn = layer.kernel * layer.kernel * layer.inShape[2];
  const words = rowWords(fanIn);
  const patches = new Uint32Array(oh * ow * words);
  forEachTap(layer, (pos, j, index) => {
    if (index >= 0 && spikes[index]) patches[pos * words + (j >> 5)]! |= 1 << (j & 31);
  });
  const dots = new Int32Array(oh * ow * cout);
  for (let pos = 0; pos < oh * ow; pos++) {
    for (let c = 0; c < cout; c++)
      dots[pos * cout + c] = binaryDot(patches, pos * words, layer.weightBits, c * words, words);
  }
  return dots;
}

/** Integer dots of a binary linear layer on the flattened (HWC) spikes of the layer before it. */
export function blinearDots(layer: BinaryLinearLayer, spikes: Uint8Array): Int32Array {
  const words = rowWords(layer.inFeatures);
  const row = new Uint32Array(words);
  packBits(spikes.subarray(0, layer.inFeatures), row);
  const dots = new Int32Array(layer.outFeatures);
  for (let o = 0; o < layer.outFeatures; o++) dots[o] = binaryDot(row, 0, layer.weightBits, o * words, words);
  return dots;
}

const DOTS: PerOp<HiddenLayer, [spikes: Uint8Array], Int32Array> = { bconv: bconvDots, blinear: blinearDots };

/** Integer dots of any binary layer on one step's spikes of the layer before it. */
export function hiddenDots(layer: HiddenLayer, spikes: Uint8Array): Int32Array {
  return perOp(DOTS, layer, spikes)!;
}

/** First layer: int8 weights on the raw frame, zero padded, integer sums (exact), then `fround(fround(a*acc) + b)`. */
export function firstLayerCurrents(layer: ConvInt8Layer, frame: Uint8Array): Float32Array {
  const [oh, ow, cout] = layer.outShape;
  const fanIn = layer.kernel * layer.kernel * layer.inShape[2];
  const acc = new Int32Array(oh * ow * cout);
  forEachTap(layer, (pos, j, index) => {
    if (index < 0) return;
    const x = frame[index]!;
    for (let c = 0; c < cout; c++) acc[pos * cout + c]! += layer.weights[c * fanIn + j]! * x;
  });
  const out = new Float32Array(acc.length);
  for (let i = 0; i < acc.length; i++) out[i] = affine(layer.scale[i % cout]!, acc[i]!, layer.bias[i % cout]!);
  return out;
}

/** The per-channel affine, one float32 rounding per op. */
export function affine(a: number, x: number, b: number): number {
  return Math.fround(Math.fround(a * x) + b);
}

/**
 * The current a layer's shortcut adds, from the previous layer's LIF input current (HWC, shape `from`).
 * avgpool_repeat: 2×2 stride-2 pool summed `((x00 + x01) + x10) + x11` (row-major) then `* 0.25`, each op one
 * float32 rounding; output channel c reads input channel c % cin.
 */
export function shortcutCurrent(layer: HiddenLayer, prev: Float32Array, from: Shape3): Float32Array | undefined {
  if (layer.shortcut === 'none') return undefined;
  if (layer.shortcut === 'identity') return prev;
  const [oh, ow, cout] = mapShape(layer);
  const [, w, cin] = from;
  const out = new Float32Array(oh * ow * cout);
  const f = Math.fround;
  // One closure for the whole map, not one per output (closures made in the loop dominated recorded inferences).
  const at = (y: number, x: number, c: number) => prev[(y * w + x) * cin + (c % cin)]!;
  for (let oy = 0, y = 0; oy < oh; oy++, y += 2) {
    for (let ox = 0, x = 0; ox < ow; ox++, x += 2) {
      for (let c = 0; c < cout; c++) {
        out[(oy * ow + ox) * cout + c] = f(
          f(f(f(at(y, x, c) + at(y, x + 1, c)) + at(y + 1, x, c)) + at(y + 1, x + 1, c)) * 0.25,
        );
      }
    }
  }
  return out;
}

/** One LIF update of a whole layer: `v = fround(fround(beta*v) + I)`, spike when `v >= theta_c`, soft reset. */
export function lifStep(
  current: Float32Array,
  v: Float32Array,
  beta: number,
  theta: Float32Array,
  spikes: Uint8Array,
): void {
  const channels = theta.length;
  for (let i = 0; i < v.length; i++) {
    const th = theta[i % channels]!;
    const vi = Math.fround(Math.fround(beta * v[i]!) + current[i]!);
    const s = vi >= th;
    spikes[i] = s ? 1 : 0;
    v[i] = s ? Math.fround(vi - th) : vi;
  }
}
