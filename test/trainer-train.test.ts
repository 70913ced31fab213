/**
 * A short real training run on a Fashion-MNIST subset (must beat chance by a wide margin), its export through the
 * fold into the runtime engine (predictions must agree with the trainer's folded evaluation), and resume after an
 * interruption reproducing the uninterrupted run bit for bit (weights and the interrupted epoch's record).
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
import * as tf from '@tensorflow/tfjs';
import { accuracy, extendSchedule, fit, learningRate, loadParams, predict } from '../trainer/train.js';

const backend = await initBackend();
const data = loadDataset({ trainLimit: 2048, valSize: 256, testLimit: 1000 });
const tmp = mkdtempSync(join(tmpdir(), 'sei-trainer-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const base: TrainConfig = {
  net: { ...DEFAULT_NET, width: 8, T: 2 },
  epochs: 1,
  batchSize: 32,
  lr: 5e-3,
  lrFinal: 0.1,
  warmupEpochs: 0.05,
  seed: 5,
  data: {},
  augment: null,
  loss: { ...DEFAULT_LOSS, perStep: 0.5 },
  teacher: null,
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
    for (let k = 0; k < 10; k++)
      assert.ok(Math.abs(res.logits[k]! - folded.logits[i * 10 + k]!) < 1e-5, `frame ${i} logit ${k}`);
  }
  assert.equal(agree, n);
});

test('an interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one', async () => {
  const small = loadDataset({ trainLimit: 256, valSize: 64, testLimit: 10 });
  const cfg: TrainConfig = { ...base, net: { ...base.net, width: 4 }, epochs: 2, augment: { flip: 0.5, shift: 2 } };
  const a = await fit('student', cfg, small, join(tmp, 'a'), { resume: false, engine: backend.engine });
  let batches = 0;
  const stopped = await fit('student', cfg, small, join(tmp, 'b'), {
    resume: false,
    engine: backend.engine,
    hooks: { shouldStop: () => ++batches === 11 },
  });
  assert.equal(stopped.interrupted, true);
  assert.equal(stopped.state.epoch, 1, 'stopped in the second epoch');
  assert.ok(stopped.state.batchInEpoch > 0);
  assert.equal(stopped.state.partialEpoch?.done, stopped.state.batchInEpoch, 'the tallies of its batches so far');
  const b = await fit('student', cfg, small, join(tmp, 'b'), { resume: true, engine: backend.engine });
  assert.equal(b.state.epoch, 2);
  assert.equal(b.state.partialEpoch, undefined);
  const va = namedVariables(a.params),
    vb = namedVariables(b.params);
  va.forEach((x, i) => assert.deepEqual(Array.from(vb[i]!.v.dataSync()), Array.from(x.v.dataSync()), x.name));
  // The resumed epoch's record covers the whole epoch, both sittings: the same figures as the uninterrupted run's.
  const figures = (h: typeof a.state.history) =>
    h.map(({ loss, trainAccuracy, valAccuracy, signFlips }) => ({ loss, trainAccuracy, valAccuracy, signFlips }));
  assert.deepEqual(figures(b.state.history), figures(a.state.history));
  assert.ok(
    a.state.history[1]!.signFlips!.some((f) => f > 0),
    'the second epoch flips some signs',
  );
  // The schedule is fixed when a run starts: a different budget on resume is refused, in either direction.
  await assert.rejects(
    fit('student', { ...cfg, epochs: 1 }, small, join(tmp, 'b'), { resume: true, engine: backend.engine }),
    /--epochs: a run's schedule is fixed/,
  );
  await assert.rejects(
    fit('student', { ...cfg, epochs: 3 }, small, join(tmp, 'b'), { resume: true, engine: backend.engine }),
    /add epochs with --extend/,
  );
});

test('resuming keeps the schedule; --extend adds a phase with its own warm-up; the rate is what the schedule says', async () => {
  const small = loadDataset({ trainLimit: 256, valSize: 64, testLimit: 10 });
  const cfg: TrainConfig = {
    ...base,
    net: { ...base.net, width: 4 },
    epochs: 2,
    lr: 4e-3,
    lrFinal: 0.01,
    warmupEpochs: 0.5,
  };
  const rates: number[] = [];
  const dir = join(tmp, 'sched');
  let batches = 0;
  // 192 training frames: 6 batches an epoch, so the run stops in the middle of its second epoch.
  await fit('student', cfg, small, dir, {
    resume: false,
    engine: backend.engine,
    hooks: { shouldStop: () => ++batches === 9, onEpoch: (_role, e) => rates.push(e.lr!) },
  });
  const r = await fit('student', cfg, small, dir, {
    resume: true,
    engine: backend.engine,
    hooks: { onEpoch: (_role, e) => rates.push(e.lr!) },
  });
  // The rate at each epoch's end is the uninterrupted schedule's, whatever the interruption.
  assert.deepEqual(
    rates.map((x) => x.toPrecision(6)),
    [learningRate(cfg, 1 - 1e-9), learningRate(cfg, 2 - 1e-9)].map((x) => x.toPrecision(6)),
  );
  assert.ok(Math.abs(rates[1]! - 4e-5) < 1e-6, `a finished phase ends at lr * lrFinal, got ${rates[1]}`);
  const longer = extendSchedule(r.state.config, 1, { lr: 1e-3, lrFinal: 0.1, warmupEpochs: 0.25 });
  assert.equal(longer.epochs, 3);
  // The new phase starts again from 5 % of its peak, reaches it after its warm-up, and ends at its own floor.
  assert.ok(Math.abs(learningRate(longer, 2) - 5e-5) < 1e-9);
  assert.ok(Math.abs(learningRate(longer, 2.25) - 1e-3) < 1e-9);
  assert.ok(Math.abs(learningRate(longer, 3) - 1e-4) < 1e-9);
  // Earlier epochs keep their rates.
  assert.equal(learningRate(longer, 1.3), learningRate(cfg, 1.3));
  const e = await fit('student', longer, small, dir, { resume: true, engine: backend.engine });
  assert.equal(e.state.epoch, 3);
  assert.equal(e.state.config.schedule!.length, 2);
  // Parameters of the same shapes would load into another layout: a run resumes only as the network it started as.
  await assert.rejects(
    fit('student', { ...longer, net: { ...longer.net, shortcuts: 'blocks' } }, small, dir, {
      resume: true,
      engine: backend.engine,
    }),
    /the student in .* is another network \(shortcuts multi; asked for blocks\)/,
  );
});

test('learned LIF thresholds and leaks fold into the file: the engine equals the trainer on every frame', async () => {
  const cfg: TrainConfig = {
    ...base,
    net: { ...base.net, lif: 'learn', surrogate: 'theta' },
    latentLr: 1e-3,
    microBatch: 16,
  };
  const small = loadDataset({ trainLimit: 1024, valSize: 128, testLimit: 200 });
  const dir = join(tmp, 'learned');
  const r = await fit('student', cfg, small, dir, { resume: false, engine: backend.engine });
  const layers = r.params.layers;
  const thetas = layers.flatMap((l) => Array.from(l.theta.dataSync()));
  assert.ok(
    thetas.some((t) => Math.abs(t - 1) > 1e-3),
    'thresholds moved from 1',
  );
  assert.ok(
    layers.some((l) => Math.abs(l.beta.dataSync()[0]! - 0.5) > 1e-4),
    'some leak moved from 0.5',
  );
  // Latent binary weights stay where the STE passes gradient.
  layers.slice(1).forEach((l) => assert.ok(tf.tidy(() => tf.max(tf.abs(l.w)).dataSync()[0]!) <= 1));
  const history = r.state.history[0]!;
  assert.equal(history.signFlips!.length, 5);
  assert.equal(history.spikeRates!.length, 6);
  const { params } = loadParams(dir, 'last', 'learned/');
  const model = foldModel(cfg.net, params, { name: 'learned', labels: small.labels });
  assert.ok(model.hidden.some((l) => l.lif.beta !== Math.fround(0.5)));
  const folded = evaluateFolded(model, small.test);
  const engine = createEngine(model, { kernel: 'reference' });
  for (let i = 0; i < small.test.count; i++) {
    const res = engine.infer(small.test.images.subarray(i * 784, (i + 1) * 784));
    assert.equal(res.prediction, folded.predictions[i], `frame ${i}`);
    for (let k = 0; k < 10; k++)
      assert.ok(Math.abs(res.logits[k]! - folded.logits[i * 10 + k]!) < 1e-5, `frame ${i} logit ${k}`);
  }
});
