/**
 * The engine: validates frames, runs the selected backend's Runner over the T steps, applies the float head and
 * packages an InferResult. Everything kernel-specific lives behind the Runner contract (../kernels/runner.ts).
 * It runs a model at the T its file states unless `steps` asks for another: the first layer's current is the same
 * at every step, each LIF starts at 0 per frame, and the head divides the spike counts by H·W·T, so any T in
 * 1..LIMITS.maxT is well defined (whether it is accurate depends on how the model was trained).
 */
import { ConfigError, FrameError, show } from '../errors.js';
import { LIMITS, readBwsnn, readBwsnnFile, validateModel } from '../format/index.js';
import type { ReadOptions } from '../format/index.js';
import type { BwsnnModel } from '../format/model.js';
import { fanOut, layerUnits, mapShape } from '../format/ops.js';
import { shortcutCurrent } from '../kernels/reference/layers.js';
import type { KernelChoice } from '../kernels/select.js';
import { selectBackend } from '../kernels/select.js';
import type { Engine, Frame, InferResult, LayerTrace, StreamItem } from './types.js';

export interface EngineOptions {
  /** Kernel implementation; default 'auto' (wasm when WebAssembly SIMD works, else reference). */
  readonly kernel?: KernelChoice;
  /** Time steps per frame; default the model's own T (what it was trained for). */
  readonly steps?: number;
}

export interface LoadOptions extends EngineOptions, ReadOptions {}

/** Reads a model (a .bwsnn path, its bytes, or an in-memory model) and builds an engine for it. */
export async function loadModel(source: string | Uint8Array | BwsnnModel, options: LoadOptions = {}): Promise<Engine> {
  const model =
    typeof source === 'string'
      ? readBwsnnFile(source, options)
      : source instanceof Uint8Array
        ? readBwsnn(source, options)
        : source;
  return createEngine(model, options);
}

/** Builds an engine for a model; the model is validated first (FormatError names the offending field). */
export function createEngine(model: BwsnnModel, options: EngineOptions = {}): Engine {
  validateModel(model);
  const T = stepsOption(options.steps, model.T);
  const backend = selectBackend(options.kernel ?? 'auto', model);
  // The backends step through `model.T`: a different T is the same model with another step count.
  const runner = backend.plan(T === model.T ? model : { ...model, T });
  const layers = [model.first, ...model.hidden];
  const last = layers[layers.length - 1]!;
  const [lh, lw] = mapShape(last);
  const rateDivisor = lh * lw * T;
  const neuronSteps = layers.map((l) => layerUnits(l) * T);
  const fanOuts = model.hidden.map(fanOut);

  const infer = (frame: Frame, options: { readonly record?: boolean } = {}): InferResult => {
    const started = performance.now();
    const pixels = validateFrame(frame, model.input);
    const out = runner.run(pixels, options.record === true);
    const { head } = model;
    const features = new Float64Array(out.lastCounts.length);
    for (let c = 0; c < features.length; c++) features[c] = out.lastCounts[c]! / rateDivisor;
    const logits = new Float32Array(head.outFeatures);
    for (let o = 0; o < head.outFeatures; o++) {
      let sum = head.bias[o]!;
      for (let c = 0; c < head.inFeatures; c++) sum += head.weight[o * head.inFeatures + c]! * features[c]!;
      logits[o] = sum;
    }
    let prediction = 0;
    for (let o = 1; o < logits.length; o++) if (logits[o]! > logits[prediction]!) prediction = o;
    let z = 0;
    for (const l of logits) z += Math.exp(l - logits[prediction]!);
    let synOps = 0;
    for (let h = 0; h < fanOuts.length; h++) synOps += fanOuts[h]! * out.layerSpikes[h]!;
    const spikeRates = new Float32Array(out.layerSpikes.length);
    for (let i = 0; i < spikeRates.length; i++) spikeRates[i] = out.layerSpikes[i]! / neuronSteps[i]!;
    const result: InferResult = {
      logits,
      prediction,
      confidence: 1 / z,
      spikeRates,
      features,
      synOps,
      latencyMs: performance.now() - started,
    };
    return out.trace ? { ...result, trace: withShortcuts(out.trace) } : result;
  };

  // Recorded traces only (the runners' hot path is untouched): each layer's shortcut current, recomputed from the
  // previous layer's recorded current with the reference semantics, whichever backend ran.
  const withShortcuts = (trace: LayerTrace[]): LayerTrace[] =>
    trace.map((entry, i) => {
      const layer = i > 0 ? model.hidden[i - 1]! : undefined;
      if (!layer || layer.shortcut === 'none') return entry;
      const prev = trace[i - 1]!.currents;
      if (layer.shortcut === 'identity') return { ...entry, shortcut: prev };
      const [units, prevUnits] = [entry.currents.length / T, prev.length / T];
      const shortcut = new Float32Array(entry.currents.length);
      for (let t = 0; t < T; t++) {
        shortcut.set(
          shortcutCurrent(layer, prev.subarray(t * prevUnits, (t + 1) * prevUnits), mapShape(layers[i - 1]!))!,
          t * units,
        );
      }
      return { ...entry, shortcut };
    });

  async function* stream(frames: Iterable<Frame> | AsyncIterable<Frame>): AsyncGenerator<StreamItem> {
    let index = 0;
    for await (const frame of frames) {
      try {
        yield { ok: true, index, result: infer(frame) };
      } catch (err) {
        yield { ok: false, index, error: err instanceof Error ? err : new Error(String(err)) };
      }
      index++;
    }
  }

  return { model, kernel: backend.kernel, steps: T, infer, stream };
}

/** The step count an engine runs at: `steps` when given (an integer in 1..LIMITS.maxT), else the model's T. */
function stepsOption(steps: number | undefined, trained: number): number {
  if (steps === undefined) return trained;
  if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 1 || steps > LIMITS.maxT) {
    throw new ConfigError(`steps: expected an integer in 1..${LIMITS.maxT}, got ${show(steps)}`, 'steps');
  }
  return steps;
}

/** Checks a frame against the model's input shape and returns it as bytes (a view when it already is bytes). */
export function validateFrame(frame: Frame, shape: readonly [number, number, number]): Uint8Array {
  const expected = shape[0] * shape[1] * shape[2];
  if (frame === null || typeof frame !== 'object' || typeof (frame as { length?: unknown }).length !== 'number') {
    throw new FrameError(`frame: expected an array of ${expected} values 0..255, got ${show(frame)}`, 'frame');
  }
  if (frame.length !== expected) {
    throw new FrameError(
      `frame.length: expected ${expected} (${shape.join('×')} HWC), got ${frame.length}`,
      'frame.length',
    );
  }
  if (frame instanceof Uint8Array) return frame;
  if (frame instanceof Uint8ClampedArray) return new Uint8Array(frame.buffer, frame.byteOffset, frame.length);
  const bytes = new Uint8Array(expected);
  for (let i = 0; i < expected; i++) {
    const x = frame[i];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 255) {
      throw new FrameError(`frame[${i}]: expected an integer in 0..255, got ${show(x)}`, `frame[${i}]`);
    }
    bytes[i] = x;
  }
  return bytes;
}
