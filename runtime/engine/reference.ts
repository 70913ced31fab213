/**
 * The reference step loop: the numeric semantics of ARCHITECTURE.md, one neuron at a time, every float op one
 * float32 rounding. The WebAssembly runner (runtime/kernels/wasm.ts) must reproduce it bit for bit.
 */
import type { BwsnnModel, ConvInt8Layer, HiddenLayer, Shape3 } from '../format/model.js';
import { layerChannels, layerUnits } from '../format/model.js';
import { affine, bconvDots, blinearDots, firstLayerCurrents } from '../kernels/reference.js';
import type { LayerTrace } from './types.js';

/** What a runner hands back for one frame; the engine turns it into an InferResult. */
export interface RunOutput {
  /** Per layer (first, then hidden): spikes summed over neurons and steps. */
  readonly layerSpikes: Float64Array;
  /** Per channel of the last layer: spikes summed over space and steps. */
  readonly lastCounts: Float64Array;
  readonly trace?: LayerTrace[];
}

/** Runs all T steps of one frame (already validated: HWC bytes of the model's input shape). */
export interface Runner {
  run(frame: Uint8Array, record: boolean): RunOutput;
}

/** Output shape of a layer as a feature map (a linear layer is a 1×1 map). */
export function mapShape(layer: ConvInt8Layer | HiddenLayer): Shape3 {
  return layer.kind === 'blinear' ? [1, 1, layer.outFeatures] : layer.outShape;
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
        out[(oy * ow + ox) * cout + c] = f(f(f(f(at(y, x, c) + at(y, x + 1, c)) + at(y + 1, x, c)) + at(y + 1, x + 1, c)) * 0.25);
      }
    }
  }
  return out;
}

/** One LIF update of a whole layer: `v = fround(fround(beta*v) + I)`, spike when `v >= theta_c`, soft reset. */
export function lifStep(current: Float32Array, v: Float32Array, beta: number, theta: Float32Array, spikes: Uint8Array): void {
  const channels = theta.length;
  for (let i = 0; i < v.length; i++) {
    const th = theta[i % channels]!;
    const vi = Math.fround(Math.fround(beta * v[i]!) + current[i]!);
    const s = vi >= th;
    spikes[i] = s ? 1 : 0;
    v[i] = s ? Math.fround(vi - th) : vi;
  }
}

export function referenceRunner(model: BwsnnModel): Runner {
  const layers = [model.first, ...model.hidden];
  return {
    run(frame, record) {
      const T = model.T;
      const units = layers.map(layerUnits);
      const v = units.map((n) => new Float32Array(n));
      const layerSpikes = new Float64Array(layers.length);
      const last = layers.length - 1;
      const lastChannels = layerChannels(layers[last]!);
      const lastCounts = new Float64Array(lastChannels);
      const trace = record
        ? layers.map((l, i) => ({ name: l.name, spikes: new Uint8Array(T * units[i]!), currents: new Float32Array(T * units[i]!) }))
        : undefined;
      const first = firstLayerCurrents(model.first, frame);
      for (let t = 0; t < T; t++) {
        let current = first;
        let spikes = new Uint8Array(units[0]!);
        lifStep(current, v[0]!, Math.fround(model.first.lif.beta), model.first.lif.theta, spikes);
        const settle = (i: number) => {
          for (let u = 0; u < spikes.length; u++) layerSpikes[i]! += spikes[u]!;
          trace?.[i]!.spikes.set(spikes, t * units[i]!);
          trace?.[i]!.currents.set(current, t * units[i]!);
        };
        settle(0);
        model.hidden.forEach((layer, h) => {
          const i = h + 1;
          const dots = layer.kind === 'bconv' ? bconvDots(layer, spikes) : blinearDots(layer, spikes);
          const sc = shortcutCurrent(layer, current, mapShape(layers[i - 1]!));
          const cout = layerChannels(layer);
          const next = new Float32Array(units[i]!);
          for (let u = 0; u < next.length; u++) {
            const c = u % cout;
            const x = affine(layer.scale[c]!, dots[u]!, layer.bias[c]!);
            next[u] = sc ? Math.fround(x + sc[u]!) : x;
          }
          current = next;
          spikes = new Uint8Array(units[i]!);
          lifStep(current, v[i]!, Math.fround(layer.lif.beta), layer.lif.theta, spikes);
          settle(i);
        });
        for (let u = 0; u < spikes.length; u++) lastCounts[u % lastChannels]! += spikes[u]!;
      }
      return trace ? { layerSpikes, lastCounts, trace } : { layerSpikes, lastCounts };
    },
  };
}
