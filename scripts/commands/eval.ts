/**
 * `sei eval`: accuracy of a .bwsnn model on the Fashion-MNIST test set (10k frames) through the runtime engine —
 * what a device computes. `--compare` also runs the trainer's folded evaluation and reports the per-sample
 * prediction agreement between the two.
 */
import type { Command } from 'commander';
import { FASHION_MNIST_DIR, readMnistSplit } from '../../runtime/data/idx.js';
import { loadModel } from '../../runtime/index.js';
import type { KernelChoice } from '../../runtime/index.js';
import { fromFile, kernelOption, positiveInt } from '../options.js';
import { printJson } from '../output.js';

interface EvalFlags {
  model: string;
  data?: string;
  limit?: number;
  kernel: KernelChoice;
  compare?: boolean;
  json?: boolean;
}

export interface EvalResult {
  readonly accuracy: number;
  readonly n: number;
  readonly T: number;
  readonly predictions: Uint8Array;
  readonly seconds: number;
  readonly kernel: string;
}

export async function evalModel(file: string, opts: { data?: string; limit?: number; kernel?: KernelChoice } = {}): Promise<EvalResult> {
  const engine = await fromFile('--model', 'a .bwsnn model', file, () => loadModel(file, { kernel: opts.kernel ?? 'auto' }));
  const test = readMnistSplit(opts.data ?? FASHION_MNIST_DIR, 't10k');
  const n = Math.min(test.count, opts.limit ?? test.count);
  const predictions = new Uint8Array(n);
  let correct = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const p = engine.infer(test.frame(i)).prediction;
    predictions[i] = p;
    if (p === test.labels[i]) correct++;
  }
  return { accuracy: correct / n, n, T: engine.model.T, predictions, seconds: (performance.now() - t0) / 1000, kernel: engine.kernel };
}

export function register(program: Command): void {
  program
    .command('eval')
    .description('test-set accuracy of a .bwsnn model on the runtime engine')
    .requiredOption('--model <file>', 'the .bwsnn model')
    .option('--data <dir>', 'Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)')
    .option('--limit <n>', 'first N test frames only', positiveInt('--limit'))
    .addOption(kernelOption('runtime kernel'))
    .option('--compare', "also run the trainer's folded evaluation and report per-sample agreement")
    .option('--json', 'print {"accuracy", "n", "T"} on the last line')
    .action(async (f: EvalFlags) => {
      const r = await evalModel(f.model, { ...(f.data ? { data: f.data } : {}), ...(f.limit ? { limit: f.limit } : {}), kernel: f.kernel });
      const out: Record<string, unknown> = { accuracy: r.accuracy, n: r.n, T: r.T };
      process.stderr.write(`${f.model}: ${(100 * r.accuracy).toFixed(2)}% on ${r.n} test frames (runtime engine, ${r.kernel} kernel, ${r.seconds.toFixed(1)} s)\n`);
      if (f.compare) {
        // The trainer (tfjs) is loaded only when asked: eval itself needs nothing but the runtime.
        const { compareWithTrainer } = await import('../../trainer/export/compare.js');
        const c = await compareWithTrainer(f.model, r.predictions, f.data);
        process.stderr.write(`trainer folded evaluation ${(100 * c.trainerAccuracy).toFixed(2)}%; per-sample agreement ${(100 * c.agreement).toFixed(3)}%\n`);
        Object.assign(out, c);
      }
      if (f.json) printJson(out);
    });
}
