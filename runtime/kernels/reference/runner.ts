/**
 * The reference backend's step loop: the numeric semantics of ARCHITECTURE.md, one neuron at a time, every float
 * op one float32 rounding, the layers' currents from ./layers.ts. Every other backend must reproduce it bit for bit.
 */
import type { BwsnnModel } from '../../format/model.js';
import { layerChannels, layerUnits, mapShape } from '../../format/ops.js';
import type { RunnerFactory, Runner } from '../runner.js';
import { affine, firstLayerCurrents, hiddenDots, lifStep, shortcutCurrent } from './layers.js';

function referenceRunner(model: BwsnnModel): Runner {
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
        ? layers.map((l, i) => ({
            name: l.name,
            spikes: new Uint8Array(T * units[i]!),
            currents: new Float32Array(T * units[i]!),
          }))
        : undefined;
      const first = firstLayerCurrents(model.first, frame);
      for (let t = 0; t < T; t++) {
        let current = first;
        let spikes = new Uint8Array(units[0]!);
        lifStep(current, v[0]!, Math.fround(model.first.lif.beta), model.first.lif.theta, spikes);
        const settle = (i: number) => {
          for (let u = 0; u < spikes.length; u++) layerSpikes[i]! += spikes[u]!;
          const at = trace?.[i];
          at?.spikes.set(spikes, t * units[i]!);
          at?.currents.set(current, t * units[i]!);
        };
        settle(0);
        model.hidden.forEach((layer, h) => {
          const i = h + 1;
          const dots = hiddenDots(layer, spikes);
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

export const referenceBackend: RunnerFactory = {
  kernel: 'reference',
  unavailable: () => undefined,
  plan: referenceRunner,
};
