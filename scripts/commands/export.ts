/**
 * `sei export`: folds a training checkpoint (BN, alpha, input scaling, int8 quantisation) into a .bwsnn model,
 * measures it on the test set with the folded arithmetic (the trainer's own test accuracy of what ships), and
 * optionally writes the ONNX float twin.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import { writeBwsnn } from '../../runtime/format/index.js';
import { describeBackend, initBackend } from '../../trainer/backend/index.js';
import { loadDataset } from '../../trainer/data/index.js';
import { foldModel } from '../../trainer/export/bwsnn.js';
import { evaluateFolded } from '../../trainer/export/evaluate.js';
import { snnTwinOnnx } from '../../trainer/export/onnx.js';
import { accuracy, loadParams, predict } from '../../trainer/train.js';
import { printJson } from '../output.js';

interface ExportFlags {
  checkpoint: string;
  which: 'last' | 'best';
  out: string;
  onnx?: string;
  name?: string;
  version: number;
  data?: string;
  evaluate: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('export')
    .description('fold a training checkpoint into a .bwsnn model (and its ONNX twin)')
    .requiredOption('--checkpoint <dir>', 'run folder written by `sei train --out`')
    .addOption(new Option('--which <name>', 'checkpoint: last or best (validation)').choices(['last', 'best']).default('last'))
    .requiredOption('--out <file>', 'the .bwsnn to write, e.g. models/fmnist-sei-t2.bwsnn')
    .option('--onnx <file>', 'also write the unrolled float SNN twin (ONNX)')
    .option('--name <name>', 'model name (default: the file name without .bwsnn)')
    .option('--version <n>', 'model version (OTA refuses downgrades)', (v) => Number(v), 1)
    .option('--data <dir>', 'Fashion-MNIST folder for the test accuracy')
    .option('--no-evaluate', 'skip the test-set evaluation')
    .option('--json', 'print a JSON summary on the last line')
    .action(async (f: ExportFlags) => {
      const backend = await initBackend();
      process.stderr.write(describeBackend(backend) + '\n');
      const { params, state } = loadParams(f.checkpoint, f.which);
      const net = state.config.net;
      const name = f.name ?? basename(f.out).replace(/\.bwsnn$/, '');
      const summary: Record<string, unknown> = { out: f.out, name, T: net.T, epochs: state.epoch, batchInEpoch: state.batchInEpoch, trainWallSeconds: state.wallSeconds };
      const meta: Record<string, unknown> = {
        producer: 'sei-edge trainer',
        recipe: JSON.parse(JSON.stringify(state.config)) as unknown,
        epochs: state.epoch + state.batchInEpoch / Math.max(1, Math.floor((60000 - (state.config.data.valSize ?? 5000)) / state.config.batchSize)),
        trainWallSeconds: Math.round(state.wallSeconds),
        engine: state.engine,
      };
      let model = foldModel(net, params, { name, version: f.version, labels: ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'], meta });
      if (f.evaluate) {
        const data = loadDataset({ ...(f.data ? { dir: f.data } : {}), valSize: 0 });
        const folded = evaluateFolded(model, data.test);
        const unfolded = predict(net, params, data.test).predictions;
        let agree = 0;
        for (let i = 0; i < data.test.count; i++) if (folded.predictions[i] === unfolded[i]) agree++;
        const acc = accuracy(folded.predictions, data.test.labels);
        Object.assign(summary, {
          testAccuracy: acc,
          n: data.test.count,
          unfoldedTestAccuracy: accuracy(unfolded, data.test.labels),
          foldedVsUnfoldedAgreement: agree / data.test.count,
        });
        model = { ...model, meta: { ...model.meta, testAccuracy: acc, testFrames: data.test.count } };
        process.stderr.write(`test accuracy (folded, runtime arithmetic) ${(100 * acc).toFixed(2)}%; unfolded network ${(100 * (summary['unfoldedTestAccuracy'] as number)).toFixed(2)}%; ` +
          `prediction agreement ${(100 * agree / data.test.count).toFixed(2)}%\n`);
      }
      const bytes = writeBwsnn(model);
      mkdirSync(dirname(f.out), { recursive: true });
      writeFileSync(f.out, bytes);
      summary['bytes'] = statSync(f.out).size;
      process.stderr.write(`wrote ${f.out} (${bytes.length} bytes)\n`);
      if (f.onnx) {
        const onnx = snnTwinOnnx(model);
        writeFileSync(f.onnx, onnx);
        summary['onnx'] = f.onnx;
        process.stderr.write(`wrote ${f.onnx} (${onnx.length} bytes)\n`);
      }
      if (f.json) printJson(summary);
    });
}
