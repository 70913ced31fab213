/**
 * The WebAssembly backend: a model planned once into the SIMD kernel's memory (./planner.ts), then each frame run
 * with one call into WASM; a recorded frame is stepped from JS instead, reading every layer back after each step.
 */
import type { BwsnnModel } from '../../format/model.js';
import { layerUnits } from '../../format/ops.js';
import type { LayerTrace, RunnerFactory, Runner, RunOutput } from '../runner.js';
import { FIELDS as F, moduleUnavailable } from './module.js';
import { cwOf, planNetwork, wasmUnsupported } from './planner.js';

/** Unpacks a spike map (cw words per position) to one 0/1 byte per neuron, HWC. */
function unpackSpikes(words: Uint32Array, units: number, channels: number, into: Uint8Array, at: number): void {
  const cw = cwOf(channels);
  for (let u = 0; u < units; u++) {
    const pos = Math.floor(u / channels),
      c = u % channels;
    into[at + u] = (words[pos * cw + (c >> 5)]! >>> (c & 31)) & 1;
  }
}

function wasmRunner(model: BwsnnModel): Runner {
  const { kernel, descAt, layers: plans } = planNetwork(model);
  const layers = [model.first, ...model.hidden];
  const mem = () => kernel.memory.buffer;
  const last = plans[plans.length - 1]!;
  const frameAt = plans[0]!.desc[F.IN]!;
  const inputBytes = model.input[0] * model.input[1] * model.input[2];
  const spikesAt = Int32Array.from(plans, (p) => p.desc[F.SPIKES]! >> 2);
  const countsAt = last.desc[F.COUNTS]! >> 2;
  // Views on the kernel's memory, made again only if it grows (which would detach them).
  const makeViews = () => ({
    buf: mem(),
    input: new Uint8Array(mem(), frameAt, inputBytes),
    ints: new Int32Array(mem()),
  });
  let views = makeViews();
  const view = () => {
    if (views.buf !== mem()) views = makeViews();
    return views;
  };

  return {
    run(frame, record): RunOutput {
      view().input.set(frame);
      let trace: LayerTrace[] | undefined;
      if (!record) {
        kernel.frame(descAt, plans.length, model.T);
      } else {
        trace = layers.map((l) => ({
          name: l.name,
          spikes: new Uint8Array(model.T * layerUnits(l)),
          currents: new Float32Array(model.T * layerUnits(l)),
        }));
        kernel.start(descAt, plans.length);
        for (let t = 0; t < model.T; t++) {
          kernel.step(descAt, plans.length);
          plans.forEach((p, i) => {
            trace![i]!.currents.set(new Float32Array(mem(), p.cur, p.units), t * p.units);
            unpackSpikes(
              new Uint32Array(mem(), p.out, (p.units / p.channels) * cwOf(p.channels)),
              p.units,
              p.channels,
              trace![i]!.spikes,
              t * p.units,
            );
          });
        }
      }
      const { ints } = view();
      const layerSpikes = new Float64Array(plans.length);
      for (let i = 0; i < plans.length; i++) layerSpikes[i] = ints[spikesAt[i]!]!;
      const lastCounts = new Float64Array(last.channels);
      for (let c = 0; c < last.channels; c++) lastCounts[c] = ints[countsAt + c]!;
      return trace ? { layerSpikes, lastCounts, trace } : { layerSpikes, lastCounts };
    },
  };
}

export const wasmBackend: RunnerFactory = {
  kernel: 'wasm',
  unavailable: (model) => moduleUnavailable() ?? (model && wasmUnsupported(model)),
  plan: wasmRunner,
};
