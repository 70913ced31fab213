/**
 * A short real training run on a Fashion-MNIST subset (must beat chance by a wide margin), its export through the
 * fold into the runtime engine (predictions must agree with the trainer's folded evaluation), and resume after an
 * interruption reproducing the uninterrupted run bit for bit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine } from '../runtime/index.js';
import { initBackend } from '../trainer/backend/index.js';
import { loadDataset } from '../trainer/data/index.js';
import { foldModel } from '../trainer/export/bwsnn.js';
import { evaluateFolded } from '../trainer/export/evaluate.js';
import { DEFAULT_NET, namedVariables } from '../trainer/model.js';
import { DEFAULT_LOSS } from '../trainer/recipe/loss.js';
import type { TrainConfig } from '../trainer/train.js';
import { accuracy, fit, loadParams, predict } from '../trainer/train.js';

const backend = await initBackend();
const data = loadDataset({ trainLimit: 2048, valSize: 256, testLimit: 1000 });
const tmp = mkdtempSync(join(tmpdir(), 'sei-trainer-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const base: TrainConfig = {
  net: { ...DEFAULT_NET, width: 8, T: 2 },
  epochs: 1, batchSize: 32, lr: 5e-3, lrFinal: 0.1, warmupEpochs: 0.05, seed: 5,
  data: {}, augment: null, loss: { ...DEFAULT_LOSS, perStep: 0.5 }, teacher: null,
};

test('a 2k-frame SEI run beats chance (10%) by a wide margin; export agrees with the runtime engine', async () => {
  const dir = join(tmp, 'short');
  const r = await fit('student', base, data, dir, { resume: false, engine: backend.engine });
  const acc = accuracy(predict(base.net, r.params, data.test).predictions, data.test.labels);
  assert.ok(acc > 0.4, `test accuracy ${acc}`);
  const { params } = loadParams(dir, 'last', 'reload/');
  const model = foldModel(base.net, params, { name: 'short', labels: data.labels });
  const folded = evaluateFolded(model, data.test);
  const foldedAcc = accuracy(folded.predictions, data.test.labels);
  assert.ok(Math.abs(foldedAcc - acc) < 0.02, `folded ${foldedAcc} vs unfolded ${acc}`);
  const engine = createEngine(model, { kernel: 'reference' });
  const n = 300;
  let agree = 0;
  for (let i = 0; i < n; i++) {
    const frame = data.test.images.subarray(i * 784, (i + 1) * 784);
    const res = engine.infer(frame);
    if (res.prediction === folded.predictions[i]) agree++;
    for (let k = 0; k < 10; k++) assert.ok(Math.abs(res.logits[k]! - folded.logits[i * 10 + k]!) < 1e-5, `frame ${i} logit ${k}`);
  }
  assert.equal(agree, n);
});

test('an interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one', async () => {
  const small = loadDataset({ trainLimit: 256, valSize: 64, testLimit: 10 });
  const cfg: TrainConfig = { ...base, net: { ...base.net, width: 4 }, epochs: 2, augment: { flip: 0.5, shift: 2 } };
  const a = await fit('student', cfg, small, join(tmp, 'a'), { resume: false, engine: backend.engine });
  let batches = 0;
  const stopped = await fit('student', cfg, small, join(tmp, 'b'), { resume: false, engine: backend.engine, hooks: { shouldStop: () => ++batches === 11 } });
  assert.equal(stopped.interrupted, true);
  const b = await fit('student', cfg, small, join(tmp, 'b'), { resume: true, engine: backend.engine });
  assert.equal(b.state.epoch, 2);
  const va = namedVariables(a.params), vb = namedVariables(b.params);
  va.forEach((x, i) => assert.deepEqual(Array.from(vb[i]!.v.dataSync()), Array.from(x.v.dataSync()), x.name));
  // A new budget may shrink the schedule, not below the epochs already trained.
  await assert.rejects(fit('student', { ...cfg, epochs: 1 }, small, join(tmp, 'b'), { resume: true, engine: backend.engine }), /--epochs: expected at least 2/);
});
