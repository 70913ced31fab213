/**
 * The sparsity table of `sei bench --sparsity A.bwsnn,B.bwsnn,…` (issue 16, item 1): models of one architecture
 * trained with different strengths of the firing-rate term (`sei train --spike-penalty/--spike-target`), each
 * beside the bench's own model. Per model: test-set accuracy and per-layer spike rates through the engine, and its
 * frames/s against onnxruntime on its own ANN twin, in the same alternating short rounds as the bench's other
 * contenders (best round kept), on the bench's frames. What the table shows: how much engine speed fewer spikes buy
 * and what they cost in accuracy.
 */
import { basename } from 'node:path';
import type { BwsnnModel } from '../../runtime/index.js';
import { annTwinOnnx, frameToNchw } from '../../trainer/export/onnx.js';
import { benchEngine } from './kernel.js';
import { ortFrames } from './ort.js';
import { accuracyBySteps } from './steps.js';

export interface SparsityPoint {
  readonly model: BwsnnModel;
  /** Where it came from (a file path, or the bench's own model's source). */
  readonly source: string;
}

export interface SparsityRow {
  readonly model: string;
  readonly source: string;
  readonly T: number;
  /** null when there is no test set to measure on. */
  readonly accuracy: number | null;
  readonly accuracy_frames: number;
  /** Per spiking layer (the first, then each hidden one), on the test frames; on the bench's frames without them. */
  readonly spike_rates: readonly number[];
  readonly mean_spike_rate: number;
  readonly model_fps: number;
  readonly ort_ann_fps: number;
  readonly model_vs_ort_ann: number;
}

const round = (x: number, d: number) => Number(x.toFixed(d));

/** One row per point, in order; every point must take the same input as the first. */
export async function sparsityTable(
  points: readonly SparsityPoint[],
  frames: readonly Uint8Array[],
  opts: { rounds: number; roundSeconds: number; accuracyFrames: number; testSet: boolean },
): Promise<SparsityRow[]> {
  const input = points[0]!.model.input;
  for (const p of points)
    if (p.model.input.join('x') !== input.join('x'))
      throw new Error(`--sparsity: ${p.source} takes ${p.model.input.join('×')} frames, expected ${input.join('×')}`);
  const nchw = frames.map((f) => frameToNchw(f, input));
  const contenders = await Promise.all(
    points.map(async (p) => ({ ...p, ann: await ortFrames(annTwinOnnx(p.model), true, input, nchw) })),
  );
  const fps = points.map(() => 0);
  const annFps = points.map(() => 0);
  const rates = points.map(() => [] as readonly number[]);
  for (let r = 0; r < opts.rounds; r++)
    for (const [i, c] of contenders.entries()) {
      const e = await benchEngine(c.model, frames, opts.roundSeconds, 'wasm');
      if (e.fps > fps[i]!) [fps[i], rates[i]] = [e.fps, e.spikeRates];
      annFps[i] = await c.ann(opts.roundSeconds);
    }
  return contenders.map((c, i) => {
    const acc = opts.testSet ? accuracyBySteps(c.model, [c.model.T], opts.accuracyFrames)[0]! : null;
    const spikeRates = acc?.spikeRates ?? rates[i]!;
    return {
      model: basename(c.source).replace(/\.bwsnn$/, ''),
      source: c.source,
      T: c.model.T,
      accuracy: acc ? round(acc.accuracy, 4) : null,
      accuracy_frames: acc?.frames ?? 0,
      spike_rates: spikeRates.map((x) => round(x, 4)),
      mean_spike_rate: round(spikeRates.reduce((a, b) => a + b, 0) / spikeRates.length, 4),
      model_fps: round(fps[i]!, 1),
      ort_ann_fps: round(annFps[i]!, 1),
      model_vs_ort_ann: round(fps[i]! / annFps[i]!, 3),
    };
  });
}

/** The table as `sei bench` prints it. */
export function sparsityLines(rows: readonly SparsityRow[]): string[] {
  return rows.map(
    (r) =>
      `  ${r.model}: ${r.accuracy === null ? 'accuracy not measured' : `${(100 * r.accuracy).toFixed(2)}% on ${r.accuracy_frames} test frames`}, ` +
      `spike rates ${r.spike_rates.map((x) => x.toFixed(3)).join(' / ')} (mean ${r.mean_spike_rate.toFixed(3)}), ` +
      `${r.model_fps.toFixed(0)} frames/s vs onnxruntime ANN twin ${r.ort_ann_fps.toFixed(0)} → ${r.model_vs_ort_ann}×`,
  );
}
