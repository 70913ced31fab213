/**
 * Kernel and engine throughput, for `sei bench`. One thread. The binary conv is measured against its ceiling:
 * a bare WASM AND-popcount loop over the same number of bits, the two run in alternating short rounds so both
 * see the same machine load, and the best round of each counts.
 */
import type { BinaryConvLayer, BwsnnModel } from '../../runtime/format/model.js';
import { rowWords } from '../../runtime/format/model.js';
import { createEngine } from '../../runtime/index.js';
import type { KernelChoice } from '../../runtime/index.js';
import { bareLoop, singleLayer } from '../../runtime/kernels/wasm/planner.js';
import { rng } from '../../runtime/data/random.js';
import { measure } from './timing.js';

export interface KernelBenchOptions {
  /** Total measuring time, split over alternating rounds. Default 3. */
  readonly seconds?: number;
  /** Input spike rate. Default 0.17. */
  readonly rate?: number;
  readonly seed?: number;
}

export interface KernelBenchResult {
  readonly layer: string;
  readonly rate: number;
  /** Binary multiply-accumulates per second of the conv (positions × cout × fan-in, dense count). */
  readonly binmacs_per_s: number;
  /** The same bit count through a bare AND/popcount loop. */
  readonly ceiling_binmacs_per_s: number;
  readonly kernel_vs_ceiling: number;
  /** Microseconds per layer evaluation. */
  readonly layer_us: number;
}

const ROUND_SECONDS = 0.25;

/** Binary conv 64→64 on 14×14, 3×3, stride 1, pad 1, fused LIF output, vs the bare AND-popcount loop. */
export async function benchKernel(opts: KernelBenchOptions = {}): Promise<KernelBenchResult> {
  const seconds = opts.seconds ?? 3;
  const rate = opts.rate ?? 0.17;
  const r = rng(opts.seed ?? 1);
  const [h, w, c, k] = [14, 14, 64, 3];
  const fanIn = k * k * c;
  const words = rowWords(fanIn);
  const layer: BinaryConvLayer = {
    kind: 'bconv',
    name: 'bconv 64→64 14×14 3×3',
    inShape: [h, w, c],
    outShape: [h, w, c],
    kernel: k,
    stride: 1,
    pad: 1,
    weightBits: Uint32Array.from({ length: c * words }, (_, i) => (i % words < fanIn / 32 ? (r() * 2 ** 32) >>> 0 : 0)),
    scale: new Float32Array(c).fill(0.05),
    bias: new Float32Array(c).fill(0.1),
    shortcut: 'none',
    lif: { beta: 0.5, theta: new Float32Array(c).fill(1) },
  };
  const spikes = Uint8Array.from({ length: h * w * c }, () => (r() < rate ? 1 : 0));
  const conv = singleLayer(layer, spikes, [h, w, c], false);
  const binmacs = h * w * c * fanIn;
  // Same bits: 64 rows of 9 v128 (1152 bits), repeated so that rows × vecs × reps × 128 = binmacs.
  const bare = bareLoop(c, 9);
  const reps = binmacs / (c * 9 * 128);
  let best = 0;
  let bestBare = 0;
  for (let t = 0; t < seconds; t += 2 * ROUND_SECONDS) {
    best = Math.max(best, (await measure(conv.run, ROUND_SECONDS)).perSecond);
    bestBare = Math.max(bestBare, (await measure(() => bare(reps), ROUND_SECONDS)).perSecond);
  }
  return {
    layer: layer.name,
    rate,
    binmacs_per_s: best * binmacs,
    ceiling_binmacs_per_s: bestBare * binmacs,
    kernel_vs_ceiling: best / bestBare,
    layer_us: 1e6 / best,
  };
}

export interface EngineBenchResult {
  readonly fps: number;
  readonly kernel: 'wasm' | 'reference';
  readonly frames: number;
  readonly seconds: number;
  /** Mean spike rate per layer over the measured frames' first pass. */
  readonly spikeRates: readonly number[];
}

/** Whole-model frames per second on one thread, cycling through `frames`; `steps`: at that T instead of the model's. */
export async function benchEngine(
  model: BwsnnModel,
  frames: readonly Uint8Array[],
  seconds: number,
  kernel: KernelChoice = 'auto',
  steps?: number,
): Promise<EngineBenchResult> {
  const engine = createEngine(model, { kernel, ...(steps !== undefined ? { steps } : {}) });
  const rates = new Array<number>(model.hidden.length + 1).fill(0);
  for (const f of frames) engine.infer(f).spikeRates.forEach((x, i) => (rates[i]! += x / frames.length));
  let i = 0;
  const t = await measure(() => engine.infer(frames[i++ % frames.length]!), seconds);
  return { fps: t.perSecond, kernel: engine.kernel, frames: t.calls, seconds: t.seconds, spikeRates: rates };
}
