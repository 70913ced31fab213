/**
 * T = 1 against T = 2 for `sei bench`: the model's accuracy on the Fashion-MNIST test set through the engine at
 * each step count (EngineOptions.steps), beside its frames/s. A model trained for T = 2 holds its accuracy at T = 1
 * only if its training gave every step its own loss term; these rows show whether it does.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FASHION_MNIST_DIR } from '../../runtime/data/idx.js';
import { createEngine } from '../../runtime/index.js';
import type { BwsnnModel } from '../../runtime/index.js';
import { idxTestFrames } from '../commands/eval.js';

/** The step counts `sei bench` reports: 1, 2 and the model's own. */
export function benchedSteps(model: BwsnnModel): number[] {
  return [...new Set([1, 2, model.T])].sort((a, b) => a - b);
}

/** Where the test set is, or why there is none to measure accuracy on. */
export function testSetUnavailable(dir = FASHION_MNIST_DIR): string | undefined {
  return existsSync(join(dir, 't10k-images-idx3-ubyte.gz')) || existsSync(join(dir, 't10k-images-idx3-ubyte'))
    ? undefined
    : `no Fashion-MNIST test set in ${dir}`;
}

export interface StepsAccuracy {
  readonly T: number;
  readonly accuracy: number;
  /** Test frames evaluated (the first `limit`). */
  readonly frames: number;
  /** Mean spike rate per spiking layer (the first layer, then each hidden one) over those frames. */
  readonly spikeRates: readonly number[];
}

/**
 * Accuracy and per-layer spike rates of `model` at each of `steps` on the first `limit` test frames (fitted to
 * its input), wasm kernel.
 */
export function accuracyBySteps(
  model: BwsnnModel,
  steps: readonly number[],
  limit: number,
  dir = FASHION_MNIST_DIR,
): StepsAccuracy[] {
  const test = idxTestFrames(dir, model);
  const n = Math.min(limit, test.count);
  const size = test.shape[0] * test.shape[1] * test.shape[2];
  return steps.map((T) => {
    const engine = createEngine(model, { kernel: 'wasm', steps: T });
    let correct = 0;
    const rates = new Array<number>(model.hidden.length + 1).fill(0);
    for (let i = 0; i < n; i++) {
      const r = engine.infer(test.images.subarray(i * size, (i + 1) * size));
      if (r.prediction === test.labels[i]) correct++;
      r.spikeRates.forEach((x, l) => (rates[l]! += x));
    }
    return { T, accuracy: correct / n, frames: n, spikeRates: rates.map((x) => x / Math.max(1, n)) };
  });
}
