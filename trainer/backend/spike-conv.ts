/**
 * The binary layers' forward conv in training, computed by the engine's own AND-popcount kernel
 * (runtime/kernels/wasm) instead of a float conv: the input is a spike map (every value 0 or 1) and the weights are
 * `sign(w)·alpha_c` (trainer/layers/binary.ts), so the conv is `alpha_c` times the integer dot the engine computes,
 * `Σ spike·(±1)`, exactly. XNNPACK reaches ~10 G multiply-adds/s on these shapes; the kernel, which works on 16
 * output channels per v128 and follows the spikes, several times that. Only the forward value changes: the
 * gradients of trainer/backend/conv.ts stay as they are.
 *
 * One kernel instance per layer geometry and thread, planned once (`singleLayer`); each call rewrites its weights
 * and runs it map by map. The trainer's kernel switch (./wasm-kernels.ts, `SEI_TRAIN_KERNELS=0`) covers it.
 */
import type { BinaryConvLayer } from '../../runtime/format/model.js';
import { packRows } from '../../runtime/format/bits.js';
import { rowWords } from '../../runtime/format/model.js';
import { moduleUnavailable } from '../../runtime/kernels/wasm/module.js';
import type { SingleLayer } from '../../runtime/kernels/wasm/planner.js';
import { cwOf, packSpikes, singleLayer } from '../../runtime/kernels/wasm/planner.js';
import { trainerKernelsOn } from './wasm-kernels.js';

/** A conv on `n` spike maps of h × w × cin (unpadded NHWC) to n × oh × ow × cout, k × k, `pad` zeros each side. */
export interface SpikeConvShape {
  readonly n: number;
  readonly h: number;
  readonly w: number;
  readonly cin: number;
  readonly oh: number;
  readonly ow: number;
  readonly cout: number;
  readonly k: number;
  readonly stride: number;
  readonly pad: number;
}

/**
 * `out` (NHWC) = conv of the spike maps `x` with `weights` (HWIO), where every weight of output channel c is ±alpha_c
 * (alpha_c is read as the largest |w| of the channel; sign(0) = +1 as in the format).
 */
export type SpikeConvKernel = (
  x: Float32Array,
  weights: Float32Array,
  shape: SpikeConvShape,
  out: Float32Array,
) => void;

/** The kernel, or undefined when the engine's module cannot run here or the trainer's kernels are switched off. */
export function spikeConvKernel(): SpikeConvKernel | undefined {
  return trainerKernelsOn() && moduleUnavailable() === undefined ? spikeConv : undefined;
}

const planned = new Map<string, SingleLayer>();

/** The planned layer of this geometry (its weights and input are set per call). */
function layerFor(sh: SpikeConvShape): SingleLayer {
  const key = [sh.h, sh.w, sh.cin, sh.oh, sh.ow, sh.cout, sh.k, sh.stride, sh.pad].join(',');
  let l = planned.get(key);
  if (!l) {
    const layer: BinaryConvLayer = {
      kind: 'bconv',
      name: key,
      inShape: [sh.h, sh.w, sh.cin],
      outShape: [sh.oh, sh.ow, sh.cout],
      kernel: sh.k,
      stride: sh.stride,
      pad: sh.pad,
      weightBits: new Uint32Array(sh.cout * rowWords(sh.k * sh.k * sh.cin)),
      scale: new Float32Array(sh.cout).fill(1),
      bias: new Float32Array(sh.cout),
      shortcut: 'none',
      lif: { beta: 1, theta: new Float32Array(sh.cout).fill(1) },
    };
    l = singleLayer(layer, new Uint8Array(sh.h * sh.w * sh.cin), layer.inShape, true);
    planned.set(key, l);
  }
  return l;
}

function spikeConv(x: Float32Array, weights: Float32Array, sh: SpikeConvShape, out: Float32Array): void {
  const fanIn = sh.k * sh.k * sh.cin;
  const inUnits = sh.h * sh.w * sh.cin;
  const outUnits = sh.oh * sh.ow * sh.cout;
  if (x.length !== sh.n * inUnits || out.length !== sh.n * outUnits || weights.length !== fanIn * sh.cout)
    throw new RangeError('spike-conv: operand sizes do not match the shape');
  // HWIO → one row per output channel in the format's fan-in order ((ky·k + kx)·cin + ci), and alpha_c.
  const rows = new Float32Array(sh.cout * fanIn);
  const alpha = new Float32Array(sh.cout);
  for (let f = 0; f < fanIn; f++) {
    for (let c = 0; c < sh.cout; c++) {
      const v = weights[f * sh.cout + c]!;
      rows[c * fanIn + f] = v;
      if (Math.abs(v) > alpha[c]!) alpha[c] = Math.abs(v);
    }
  }
  const l = layerFor(sh);
  l.setWeights(packRows(rows, sh.cout, fanIn));
  const packed = new Uint32Array(sh.h * sh.w * cwOf(sh.cin));
  const positions = sh.oh * sh.ow;
  for (let m = 0; m < sh.n; m++) {
    packSpikes(x, m * inUnits, sh.h * sh.w, sh.cin, packed);
    l.setInput(packed);
    l.run();
    const dots = l.dotsView();
    let o = m * outUnits;
    for (let p = 0, d = 0; p < positions; p++)
      for (let c = 0; c < sh.cout; c++, d++, o++) out[o] = alpha[c]! * dots[d]!;
  }
}
