/**
 * `sei verify`: the packed runtime against its float ONNX twin on onnxruntime-node, frame by frame. Every
 * layer's spike train must be identical bit for bit and the logits equal within a relative 1e-5 (the head is a
 * float dot product whose summation order differs). The twin is an independent implementation of the numeric
 * semantics (trainer/export/onnx.ts), so agreement means the kernels, the LIF loop, the shortcuts and the
 * format reader all do what ARCHITECTURE.md says.
 */
import type { Command } from 'commander';
import { FASHION_MNIST_DIR, readMnistSplit, sampleFrames } from '../../runtime/data/idx.js';
import type { Shape3 } from '../../runtime/format/model.js';
import { layerUnits, mapShape, OPS } from '../../runtime/format/ops.js';
import type { Engine, KernelChoice } from '../../runtime/index.js';
import { frameToNchw, hwcToNchwIndex, snnTwinOnnx, spikeOutputName, TWIN_OUTPUT } from '../../trainer/export/onnx.js';
import { openOrt } from '../../trainer/export/ort.js';
import { rng } from '../../runtime/data/random.js';
import type { Fit } from '../../runtime/data/fit.js';
import { DEFAULT_FIT, fitFrame, modelFit } from '../../runtime/data/fit.js';
import { loadModelArg } from '../model-arg.js';
import { kernelOption, positiveInt } from '../options.js';
import { printJson } from '../output.js';

/** Largest relative logit error accepted (relative to the frame's largest |logit|). */
export const LOGIT_TOLERANCE = 1e-5;

export interface VerifyFrame {
  /** e.g. `random#3` or `fashion-mnist#17`. */
  readonly id: string;
  /** HWC bytes. */
  readonly data: Uint8Array;
}

/**
 * `n` seeded random frames, then `n` real Fashion-MNIST test frames (from models/samples/ for the first 1000,
 * else the installed data set), fitted to the model's input with its fit policy when it is not 28×28×1 — the
 * frames a box would make of those pictures — for models of 1 or 3 channels.
 */
export function verifyFrames(input: Shape3, n: number, seed = 1, fit: Fit = DEFAULT_FIT): VerifyFrame[] {
  const size = input[0] * input[1] * input[2];
  const r = rng(seed);
  const frames: VerifyFrame[] = Array.from({ length: n }, (_, i) => ({
    id: `random#${i}`,
    data: Uint8Array.from({ length: size }, () => Math.floor(r() * 256)),
  }));
  // Pictures have 1 or 3 channels; a model of another count (a random one) is verified on random frames alone.
  if (input[2] !== 1 && input[2] !== 3) return frames;
  const real = n <= 1000 ? sampleFrames() : readMnistSplit(FASHION_MNIST_DIR, 't10k');
  for (let i = 0; i < Math.min(n, real.count); i++)
    frames.push({ id: `fashion-mnist#${i}`, data: fitFrame(real.frame(i), real.frameShape, input, fit) });
  return frames;
}

export interface Mismatch {
  readonly frame: string;
  readonly layer: string;
  /** -1 for a logit mismatch. */
  readonly step: number;
  /** Neuron index in HWC order (or the logit index). */
  readonly neuron: number;
  /** Human-readable position, e.g. `y=3 x=5 c=2`. */
  readonly where: string;
  readonly engine: number;
  readonly twin: number;
}

export interface VerifyReport {
  readonly frames: number;
  readonly layers: number;
  readonly spikesCompared: number;
  /** Max over frames of max_o |engine_o - twin_o| / max_o |twin_o|. */
  readonly maxLogitRelError: number;
  readonly ok: boolean;
  readonly mismatch?: Mismatch;
}

export interface VerifyOptions {
  /** Twin to compare against; default `snnTwinOnnx(engine.model, {exposeSpikes: true})`. */
  readonly twin?: Uint8Array;
  /** Called after each frame (progress). */
  readonly onFrame?: (done: number) => void;
}

/** Compares `engine` with the ONNX twin on every frame; stops at the first mismatch. */
export async function verifyEngine(
  engine: Engine,
  frames: readonly VerifyFrame[],
  opts: VerifyOptions = {},
): Promise<VerifyReport> {
  const model = engine.model;
  const ort = await openOrt(opts.twin ?? snnTwinOnnx(model, { exposeSpikes: true }), { optimize: false });
  const layers = [model.first, ...model.hidden];
  const dims = [1, model.input[2], model.input[0], model.input[1]];
  let spikesCompared = 0;
  let maxLogitRelError = 0;
  let done = 0;
  const report = (mismatch?: Mismatch): VerifyReport => ({
    frames: done,
    layers: layers.length,
    spikesCompared,
    maxLogitRelError,
    ok: mismatch === undefined,
    ...(mismatch ? { mismatch } : {}),
  });
  for (const frame of frames) {
    const result = engine.infer(frame.data, { record: true });
    const twin = await ort.run(frameToNchw(frame.data, model.input), dims);
    if (!result.trace || result.trace.length !== layers.length)
      throw new Error(`engine returned ${result.trace?.length ?? 'no'} layer traces for ${layers.length} layers`);
    for (let li = 0; li < layers.length; li++) {
      const layer = layers[li]!;
      const units = layerUnits(layer);
      const [flat, shape] = [OPS[layer.kind].shape === 'features', mapShape(layer)];
      const spikes = result.trace[li]!.spikes;
      for (let t = 0; t < model.T; t++) {
        const got = twin[spikeOutputName(layer.name, t)];
        if (!got) throw new Error(`twin has no output ${spikeOutputName(layer.name, t)}`);
        for (let i = 0; i < units; i++) {
          const e = spikes[t * units + i]!;
          const o = got[flat ? i : hwcToNchwIndex(i, shape)]!;
          if (e !== o) {
            const where = flat ? `unit ${i}` : position(i, shape);
            return report({ frame: frame.id, layer: layer.name, step: t, neuron: i, where, engine: e, twin: o });
          }
        }
        spikesCompared += units;
      }
    }
    const logits = twin[TWIN_OUTPUT]!;
    const scale = Math.max(...Array.from(logits, Math.abs), Number.MIN_VALUE);
    for (let o = 0; o < logits.length; o++) {
      const rel = Math.abs(result.logits[o]! - logits[o]!) / scale;
      maxLogitRelError = Math.max(maxLogitRelError, rel);
      if (!(rel <= LOGIT_TOLERANCE)) {
        return report({
          frame: frame.id,
          layer: TWIN_OUTPUT,
          step: -1,
          neuron: o,
          where: `logit ${o} (relative error ${rel.toExponential(2)})`,
          engine: result.logits[o]!,
          twin: logits[o]!,
        });
      }
    }
    done++;
    opts.onFrame?.(done);
  }
  return report();
}

function position(i: number, shape: Shape3): string {
  const [, w, c] = shape;
  return `y=${Math.floor(i / c / w)} x=${Math.floor(i / c) % w} c=${i % c}`;
}

export function describeMismatch(m: Mismatch): string {
  if (m.step < 0) return `logits differ on frame ${m.frame}: ${m.where}: engine ${m.engine}, twin ${m.twin}`;
  return `spike mismatch on frame ${m.frame}, layer ${m.layer}, step ${m.step}, neuron ${m.neuron} (${m.where}): engine ${m.engine}, twin ${m.twin}`;
}

export function register(program: Command): void {
  program
    .command('verify')
    .description(
      'compare the runtime with its float ONNX twin on onnxruntime-node: every spike bit for bit, logits within 1e-5',
    )
    .requiredOption(
      '--model <file|random:SEED>',
      'a .bwsnn file, or random:SEED for a random model of the Fashion-MNIST layout',
    )
    .option(
      '--frames <n>',
      "random frames, and as many real Fashion-MNIST test frames (fitted to the model's input)",
      positiveInt('--frames'),
      20,
    )
    .addOption(kernelOption('runtime kernel to verify'))
    .option('--json', 'print a JSON summary on the last line')
    .action(async (opts: { model: string; frames: number; kernel: KernelChoice; json?: boolean }) => {
      const engine = await loadModelArg(opts.model, { kernel: opts.kernel });
      const frames = verifyFrames(engine.model.input, opts.frames, 1, modelFit(engine.model));
      const real = frames.filter((f) => f.id.startsWith('fashion')).length;
      const started = performance.now();
      const report = await verifyEngine(engine, frames);
      const seconds = (performance.now() - started) / 1000;
      const m = engine.model;
      console.log(
        `model ${m.name} (T=${m.T}, ${report.layers} layers), kernel ${engine.kernel}, twin on onnxruntime-node (graph optimisations disabled, 1 thread)`,
      );
      const fitted = m.input.join('x') === '28x28x1' ? '' : ` (fitted to ${m.input.join('×')}, ${modelFit(m)})`;
      console.log(
        `frames: ${frames.length - real} random + ${real} Fashion-MNIST${fitted}; compared ${report.frames} frames, ${report.spikesCompared} spikes in ${seconds.toFixed(1)} s`,
      );
      console.log(
        `max logit relative error ${report.maxLogitRelError.toExponential(2)} (tolerance ${LOGIT_TOLERANCE})`,
      );
      if (report.mismatch) {
        console.log(`FAIL: ${describeMismatch(report.mismatch)}`);
        process.exitCode = 1;
      } else {
        console.log('OK: every spike identical');
      }
      if (opts.json) {
        printJson({
          model: m.name,
          kernel: engine.kernel,
          frames: report.frames,
          random_frames: frames.length - real,
          real_frames: real,
          layers: report.layers,
          spikes_compared: report.spikesCompared,
          max_logit_rel_error: report.maxLogitRelError,
          ok: report.ok,
          ...(report.mismatch ? { mismatch: report.mismatch } : {}),
        });
      }
    });
}
