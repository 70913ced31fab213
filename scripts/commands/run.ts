/**
 * `sei run`: streams frames through the runtime engine and prints one line per frame, then a summary.
 * Default frames: the first 1000 Fashion-MNIST test frames shipped in models/samples/, with their labels.
 * Pictures (an image folder, and the samples for a model of another input) are fitted to the model's input with
 * its fit policy (runtime/data/fit.ts), as the box does; IDX files given with --frames hold frames, taken as they
 * are.
 */
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { ConfigError } from '../../runtime/errors.js';
import type { IdxArray } from '../../runtime/data/idx.js';
import { readIdx, SAMPLE_IMAGES, SAMPLE_LABELS } from '../../runtime/data/idx.js';
import { layerUnits } from '../../runtime/format/ops.js';
import { fitFrame, modelFit } from '../../runtime/data/fit.js';
import { EnginePool } from '../../runtime/index.js';
import type { Engine, KernelChoice } from '../../runtime/index.js';
import { printJson } from '../output.js';
import { loadModelArg } from '../model-arg.js';
import { fromFile, kernelOption, positiveInt, stepsOption, threadsOption } from '../options.js';

export interface RunOptions {
  /** .bwsnn path or random:SEED. */
  readonly model: string;
  /** IDX images (gzip or not) or an image folder (labels: its class folders); default the shipped samples. */
  readonly frames?: string;
  /** IDX labels matching `frames`; with the default frames, the shipped labels. */
  readonly labels?: string;
  /** Stop after this many frames; default all. */
  readonly limit?: number;
  /** Default 'auto'. */
  readonly kernel?: KernelChoice;
  /** Time steps per frame; default the model's T. */
  readonly steps?: number;
  /** Worker threads with an engine each (runtime/pool); default 1: the engine in this thread. */
  readonly threads?: number;
}

export interface RunSummary {
  readonly model: string;
  readonly kernel: 'wasm' | 'reference';
  /** The time steps each frame ran for (`--steps`, else the model's). */
  readonly T: number;
  /** The T the model's file states (what it was trained for). */
  readonly trainedT: number;
  /** Engines the frames ran on: 1 (this thread) or that many worker threads. */
  readonly threads: number;
  readonly frames: number;
  /** Frames the engine refused (FrameError); they count in `frames`. */
  readonly errors: number;
  readonly labelled: boolean;
  readonly correct: number | null;
  readonly accuracy: number | null;
  readonly framesPerSecond: number;
  readonly meanLatencyMs: number;
  /** Spikes per neuron-step over all layers and frames. */
  readonly meanSpikeRate: number;
  readonly meanSynOps: number;
}

export interface FrameLine {
  readonly index: number;
  readonly prediction?: string;
  readonly confidence?: number;
  readonly truth?: string;
  readonly latencyMs?: number;
  readonly spikeRate?: number;
  readonly error?: string;
}

/** An IDX image array as a frame source: [n, h, w] (one channel) or [n, h, w, c]; `fit`: fitted to the model's input. */
function frameSource(images: IdxArray, engine: Engine, path: string, fit: boolean) {
  const [n = 0, h = 0, w = 0, c = 1] = images.shape;
  const want = engine.model.input;
  const rank = images.shape.length === 3 || images.shape.length === 4;
  if (!rank || (!fit && (h !== want[0] || w !== want[1] || c !== want[2])) || (fit && c !== 1 && c !== 3)) {
    throw new ConfigError(
      `--frames: expected IDX images of shape [n, ${want.join(', ')}] for model ${engine.model.name}, got [${images.shape.join(', ')}] in ${path} (an image folder is fitted to the model; IDX frames are taken as they are)`,
      'frames',
    );
  }
  const size = h * w * c;
  const policy = modelFit(engine.model);
  return {
    count: n,
    frame: (i: number) => fitFrame(images.data.subarray(i * size, (i + 1) * size), [h, w, c], want, policy),
  };
}

const isFolder = (path: string) => {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
};

function readIdxArg(path: string, flag: string): IdxArray {
  return fromFile(flag, 'a readable IDX file', path, () => readIdx(path));
}

/** What is about to run, reported before the first frame. */
export interface RunStart {
  readonly model: string;
  readonly T: number;
  readonly trainedT: number;
  readonly layers: number;
  readonly kernel: 'wasm' | 'reference';
  readonly frames: number;
  readonly source: string;
  readonly labelled: boolean;
}

/** Runs the stream, calling `onFrame` for each frame in order; returns the summary. */
export async function runFrames(
  opts: RunOptions,
  onFrame: (line: FrameLine) => void = () => {},
  onStart: (start: RunStart) => void = () => {},
): Promise<RunSummary> {
  if (opts.labels !== undefined && opts.frames === undefined) {
    throw new ConfigError(
      '--labels: expected together with --frames (the default frames bring their own labels), got --labels alone',
      'labels',
    );
  }
  const engine = await loadModelArg(opts.model, {
    kernel: opts.kernel ?? 'auto',
    ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
  });
  const imagesPath = opts.frames ?? SAMPLE_IMAGES;
  let source: { count: number; frame: (i: number) => Uint8Array };
  let labels: Uint8Array | null = null;
  const folder = isFolder(imagesPath);
  const labelsPath = opts.frames === undefined ? SAMPLE_LABELS : opts.labels;
  if (folder) {
    if (opts.labels !== undefined)
      throw new ConfigError(
        '--labels: an image folder is labelled by its class folders; expected --labels only with IDX --frames',
        'labels',
      );
    // The image-folder reader (and its decoder, a server-side package) loads only for a folder.
    const { folderFramesForModel } = await import('../../trainer/data/index.js');
    const m = engine.model;
    const { split } = await folderFramesForModel(
      imagesPath,
      { input: m.input, labels: m.labels, fit: modelFit(m) },
      { subset: 'all', flag: '--frames' },
    );
    const size = m.input[0] * m.input[1] * m.input[2];
    source = { count: split.count, frame: (i) => split.images.subarray(i * size, (i + 1) * size) };
    labels = split.labels;
  } else source = frameSource(readIdxArg(imagesPath, '--frames'), engine, imagesPath, opts.frames === undefined);
  if (labelsPath !== undefined && !folder) {
    const l = readIdxArg(labelsPath, '--labels');
    if (l.shape.length !== 1 || l.shape[0] !== source.count) {
      throw new ConfigError(
        `--labels: expected shape [${source.count}] (one label per frame), got [${l.shape.join(', ')}] in ${labelsPath}`,
        'labels',
      );
    }
    labels = l.data;
  }
  const count = Math.min(source.count, opts.limit ?? Infinity);
  const names = engine.model.labels;
  const labelName = (i: number) => names[i] ?? `#${i}`;
  const layers = [engine.model.first, ...engine.model.hidden];
  const units = layers.map(layerUnits);
  const totalUnits = units.reduce((a, b) => a + b, 0);

  onStart({
    model: engine.model.name,
    T: engine.steps,
    trainedT: engine.model.T,
    layers: layers.length,
    kernel: engine.kernel,
    frames: count,
    source: imagesPath,
    labelled: labels !== null,
  });
  function* frames() {
    for (let i = 0; i < count; i++) yield source.frame(i);
  }
  let errors = 0;
  let correct = 0;
  let latency = 0;
  let spikeRateSum = 0;
  let synOps = 0;
  const threads = opts.threads ?? 1;
  // More than one thread: an engine per worker, results still in frame order.
  const pool = threads !== 1 ? await EnginePool.start(engine, { threads }) : null;
  const started = performance.now();
  try {
    for await (const item of (pool ?? engine).stream(frames())) {
      if (!item.ok) {
        errors++;
        onFrame({ index: item.index, error: item.error.message });
        continue;
      }
      const r = item.result;
      // Neuron-weighted over layers: the fraction of all neuron-steps of the frame that spiked.
      let rate = 0;
      r.spikeRates.forEach((s, i) => (rate += (s * units[i]!) / totalUnits));
      latency += r.latencyMs;
      spikeRateSum += rate;
      synOps += r.synOps;
      const truth = labels ? labels[item.index]! : undefined;
      if (truth !== undefined && truth === r.prediction) correct++;
      onFrame({
        index: item.index,
        prediction: labelName(r.prediction),
        confidence: r.confidence,
        ...(truth !== undefined ? { truth: labelName(truth) } : {}),
        latencyMs: r.latencyMs,
        spikeRate: rate,
      });
    }
  } finally {
    await pool?.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const ok = count - errors;
  return {
    model: engine.model.name,
    kernel: engine.kernel,
    T: engine.steps,
    trainedT: engine.model.T,
    threads,
    frames: count,
    errors,
    labelled: labels !== null,
    correct: labels ? correct : null,
    accuracy: labels && count ? correct / count : null,
    framesPerSecond: seconds > 0 ? count / seconds : 0,
    meanLatencyMs: ok ? latency / ok : 0,
    meanSpikeRate: ok ? spikeRateSum / ok : 0,
    meanSynOps: ok ? synOps / ok : 0,
  };
}

/** `T=2`, or `T=1 (trained for 2)` when the run chose another step count. */
const stepsText = (s: { readonly T: number; readonly trainedT: number }) =>
  s.T === s.trainedT ? `T=${s.T}` : `T=${s.T}, trained for ${s.trainedT}`;

export function formatFrameLine(l: FrameLine): string {
  const index = `#${l.index}`.padEnd(6);
  if (l.error !== undefined) return `${index} error: ${l.error}`;
  const truth = l.truth === undefined ? '' : `  true ${l.truth.padEnd(12)} ${l.truth === l.prediction ? 'ok' : 'MISS'}`;
  return `${index} ${l.prediction!.padEnd(12)} p=${l.confidence!.toFixed(3)}${truth}  ${l.latencyMs!.toFixed(2)} ms  spikes ${(100 * l.spikeRate!).toFixed(1)}%`;
}

export function register(program: Command): void {
  program
    .command('run')
    .description(
      'stream frames through a model, one line per frame (index, prediction, confidence, true label, latency, spike rate), then a summary',
    )
    .requiredOption(
      '--model <file|random:SEED>',
      'a .bwsnn file, or random:SEED for a random model of the Fashion-MNIST layout',
    )
    .option(
      '--frames <idx|dir>',
      "IDX images (gzip or not) of the model's input shape, [n, h, w] or [n, h, w, c], or an image folder (class folders named after the model's labels; pictures fitted to the model's input) (default: the first 1000 Fashion-MNIST test frames in models/samples/, fitted likewise)",
    )
    .option(
      '--labels <idx>',
      "IDX labels for --frames, one per frame (default: the samples' labels when --frames is not given)",
    )
    .option('--limit <n>', 'stop after n frames (default: all)', positiveInt('--limit'))
    .addOption(kernelOption('binary kernel: wasm SIMD, the TypeScript reference, or auto (wasm when available)'))
    .addOption(stepsOption())
    .addOption(threadsOption())
    .option('--json', 'print the summary as one JSON object on the last line')
    .action(
      async (opts: {
        model: string;
        frames?: string;
        labels?: string;
        limit?: number;
        kernel: KernelChoice;
        steps?: number;
        threads: number;
        json?: boolean;
      }) => {
        const summary = await runFrames(
          {
            model: opts.model,
            kernel: opts.kernel,
            ...(opts.frames !== undefined ? { frames: opts.frames } : {}),
            ...(opts.labels !== undefined ? { labels: opts.labels } : {}),
            ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
            ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
            threads: opts.threads,
          },
          (line) => process.stdout.write(formatFrameLine(line) + '\n'),
          (st) =>
            console.log(
              `model ${st.model} (${stepsText(st)}, ${st.layers} layers), kernel ${st.kernel}, ${st.frames} frames from ${st.source}${st.labelled ? ' with labels' : ''}`,
            ),
        );
        if (opts.json) {
          printJson({ ...summary });
          return;
        }
        const s = summary;
        console.log(
          `\nmodel ${s.model} (${stepsText(s)}), kernel ${s.kernel}${s.threads > 1 ? ` on ${s.threads} worker threads` : ''}: ${s.frames} frames${s.errors ? ` (${s.errors} refused)` : ''}`,
        );
        if (s.accuracy !== null) console.log(`accuracy ${(100 * s.accuracy).toFixed(2)}% (${s.correct}/${s.frames})`);
        console.log(
          `${s.framesPerSecond.toFixed(1)} frames/s, mean latency ${s.meanLatencyMs.toFixed(3)} ms, mean spike rate ${(100 * s.meanSpikeRate).toFixed(1)}%, ${Math.round(s.meanSynOps)} synaptic ops per frame`,
        );
      },
    );
}
