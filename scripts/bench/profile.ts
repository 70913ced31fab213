/**
 * Where a frame's time goes in the WASM engine, by stage, for `sei bench` (`profile_split`) and bench/RESULTS.md.
 *
 * The kernel runs a whole frame in one call, so the stages are timed by running parts of it on the state real
 * frames leave: the first layer's conv (`start`), and each binary layer's step re-run on the input map, shortcut
 * source and membranes it had at step t of a frame (its cost depends on that input, which a re-run leaves alone).
 * A binary layer's step is split into its kernel (the same step with the output pass replaced by storing the
 * integer dots: compaction, window walk, popcounts) and the rest (affine, shortcut, LIF, spike packing, and the
 * sharing of equal neighbours, which the dots mode cannot use, so that part can come out below zero), and, for a
 * pooled shortcut, the pooling (the step with no shortcut taken away from the step). What the engine adds around
 * the kernel (frame validation, the head on the spike counts, the InferResult) is `engine.infer` minus the
 * kernel's `frame`; the first layer's LIF is its step alone (`step` over one layer); what the frame takes beyond
 * the stages timed apart is reported as unattributed.
 */
import type { BwsnnModel } from '../../runtime/format/model.js';
import { createEngine } from '../../runtime/index.js';
import { DESC_WORDS, FIELDS as F } from '../../runtime/kernels/wasm/module.js';
import { planNetwork } from '../../runtime/kernels/wasm/planner.js';
import { measure } from './timing.js';

export interface LayerProfile {
  readonly name: string;
  /** Microseconds per frame (all T steps) of the layer's step. */
  readonly stepUs: number;
  /** Of which its binary kernel (dots mode, no sharing of equal neighbours). */
  readonly kernelUs: number;
  /** The rest: affine + shortcut + LIF + packing (+ sharing), `stepUs - kernelUs`. */
  readonly outputUs: number;
  /** The avgpool_repeat shortcut's pooling (0 without one). */
  readonly poolingUs: number;
}

export interface FrameProfile {
  /** Microseconds per frame of each stage, on the active clock. */
  readonly frameUs: number;
  readonly firstConvUs: number;
  readonly firstLifUs: number;
  readonly layers: readonly LayerProfile[];
  /** engine.infer minus the kernel's frame: validation, head, result, the JS around the call. */
  readonly headAndGlueUs: number;
  /**
   * The frame minus its stages timed apart: what a stage costs inside a whole frame (caches shared with the other
   * layers, the first steps' fresh membranes) and not when re-run alone, plus the measurements' noise.
   */
  readonly unattributedUs: number;
}

/** Microseconds per call of `fn` on the active clock (`measure`: warm-up, then `seconds`). */
async function us(fn: () => void, seconds: number): Promise<number> {
  return 1e6 / (await measure(fn, seconds)).perSecond;
}

/**
 * `rounds` alternating rounds of every measurement, each keeping its fastest (so that load from other processes
 * hits every stage alike and a stage is never charged for a round in which the machine was busy).
 */
export async function profileFrame(
  model: BwsnnModel,
  frames: readonly Uint8Array[],
  opts: { seconds?: number; rounds?: number } = {},
): Promise<FrameProfile> {
  const seconds = opts.seconds ?? 0.2;
  const rounds = opts.rounds ?? 3;
  const { kernel, descAt, layers } = planNetwork(model);
  const L = layers.length;
  const T = model.T;
  const frameAt = layers[0]!.desc[F.IN]!;
  // The dots mode needs somewhere to write: one more region above everything the planner laid out.
  const dotsAt = kernel.memory.buffer.byteLength;
  kernel.memory.grow(Math.ceil((Math.max(...layers.map((p) => p.units)) * 4 + 16) / 65536));
  const desc = () => new Int32Array(kernel.memory.buffer, descAt, L * DESC_WORDS);
  const at = (i: number) => descAt + i * DESC_WORDS * 4;
  let k = 0;
  const load = () => new Uint8Array(kernel.memory.buffer, frameAt, frames[0]!.length).set(frames[k++ % frames.length]!);
  const engine = createEngine(model, { kernel: 'wasm' });
  let e = 0;

  /** A binary layer's step, summed over the T steps and averaged over (up to 4) frames, with `tweak` on its descriptor. */
  const layerUs = async (i: number, tweak: (d: Int32Array, base: number) => void) => {
    let total = 0;
    const n = Math.min(frames.length, 4);
    for (let f = 0; f < n; f++) {
      for (let t = 0; t < T; t++) {
        // Every layer before i runs step t of frame f; then layer i, again and again on that input.
        k = f;
        load();
        kernel.start(descAt, L);
        for (let s = 0; s < t; s++) kernel.step(descAt, L);
        kernel.step(descAt, i);
        const d = desc();
        const saved = d.slice(i * DESC_WORDS, (i + 1) * DESC_WORDS);
        tweak(d, i * DESC_WORDS);
        total += await us(() => kernel.layer(at(i)), seconds / (n * T));
        d.set(saved, i * DESC_WORDS);
      }
    }
    return total / n;
  };

  const best = new Map<string, number>();
  const keep = (key: string, v: number) => best.set(key, Math.min(best.get(key) ?? Infinity, v));
  for (let r = 0; r < rounds; r++) {
    keep(
      'frame',
      await us(() => {
        load();
        kernel.frame(descAt, L, T);
      }, seconds),
    );
    keep(
      'first',
      await us(() => {
        load();
        kernel.start(descAt, L);
      }, seconds),
    );
    // The first layer's LIF alone: `step` over the first layer only, on the current of the last frame started.
    keep('firstLif', await us(() => kernel.step(descAt, 1), seconds));
    keep('infer', await us(() => engine.infer(frames[e++ % frames.length]!), seconds));
    for (let i = 1; i < L; i++) {
      keep(`step${i}`, await layerUs(i, () => {}));
      keep(`kernel${i}`, await layerUs(i, (d, b) => (d[b + F.DOTS] = dotsAt)));
      if (model.hidden[i - 1]!.shortcut === 'avgpool_repeat')
        keep(`nopool${i}`, await layerUs(i, (d, b) => (d[b + F.SC_KIND] = 0)));
    }
  }
  const get = (key: string) => best.get(key)!;
  const profiles: LayerProfile[] = model.hidden.map((layer, h) => {
    const stepUs = get(`step${h + 1}`);
    const kernelUs = get(`kernel${h + 1}`);
    return {
      name: layer.name,
      stepUs,
      kernelUs,
      outputUs: stepUs - kernelUs,
      poolingUs: best.has(`nopool${h + 1}`) ? stepUs - get(`nopool${h + 1}`) : 0,
    };
  });
  const binaryUs = profiles.reduce((s, p) => s + p.stepUs, 0);
  const frameUs = get('frame');
  const firstLifUs = T * get('firstLif');
  return {
    frameUs,
    firstConvUs: get('first'),
    firstLifUs,
    layers: profiles,
    headAndGlueUs: get('infer') - frameUs,
    unattributedUs: frameUs - get('first') - firstLifUs - binaryUs,
  };
}

/** The split as shares of engine.infer's time per frame (the `sei bench` JSON's `profile_split`). */
export function profileSplit(p: FrameProfile): Record<string, number> {
  const total = p.frameUs + p.headAndGlueUs;
  const sum = (f: (l: LayerProfile) => number) => p.layers.reduce((s, l) => s + f(l), 0);
  const share = (x: number) => Number((x / total).toFixed(3));
  return {
    infer_us: Number(total.toFixed(1)),
    first_layer_conv: share(p.firstConvUs),
    first_layer_lif: share(p.firstLifUs),
    binary_kernel: share(sum((l) => l.kernelUs)),
    affine_shortcut_lif_packing: share(sum((l) => l.outputUs - l.poolingUs)),
    pooling: share(sum((l) => l.poolingUs)),
    head_and_js_glue: share(p.headAndGlueUs),
    unattributed: share(p.unattributedUs),
  };
}
