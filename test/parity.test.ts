/**
 * The PyTorch reference (bench/train_torch.py, what `npm run bench:parity` trains against) computes what the TS
 * trainer computes, where that is cheap to compare: on the same weights (a TS checkpoint read by --load-weights,
 * with BN statistics, θ and β moved off their initial values and latent weights past the clip) and the same batch,
 * the per-step logits in eval and training mode, the loss, the batch statistics and every gradient (tolerance 1e-4
 * of each tensor's largest value); two optimizer steps with micro-batches (Adam, the two rates, clipping, BN
 * running averages); the schedule; the initialisation from the seed (θ scaled by depth); and the data pipeline
 * (validation split, shuffle, augmentation, recalibration frames and statistics). Skipped when /usr/bin/python3
 * cannot import torch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { PYTHON, TORCH_SCRIPT, torchMissing } from '../scripts/bench/torch.js';
import { rng } from '../runtime/data/random.js';
import { initBackend } from '../trainer/backend/index.js';
import { loadCheckpoint, saveCheckpoint } from '../trainer/checkpoint.js';
import { DEFAULT_AUGMENT, epochOrder, loadDataset, makeBatch } from '../trainer/data/index.js';
import { stream } from '../trainer/data/random.js';
import type { NetConfig, NetParams } from '../trainer/model.js';
import { DEFAULT_NET, forward, initParams, namedVariables } from '../trainer/model.js';
import { ParamOptimizer } from '../trainer/optimizer.js';
import type { BnUpdate } from '../trainer/layers/batchnorm.js';
import { shardGradients } from '../trainer/parallel/shard.js';
import { recalibrateBn, recalibrationBatches } from '../trainer/recalibrate.js';
import type { LossOptions } from '../trainer/recipe/loss.js';
import { DEFAULT_LOSS } from '../trainer/recipe/loss.js';
import type { TrainConfig } from '../trainer/train.js';
import { accuracy, checkpointTensors, learningRate, predict, trainStep } from '../trainer/train.js';

const SCRIPT = TORCH_SCRIPT;
const skip = torchMissing() ?? false;

/** Largest element difference relative to the largest |expected| (elementwise relative error is noise near 0). */
function assertClose(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-4): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 0,
    err = 0,
    at = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (d > err) [err, at] = [d, i];
  }
  assert.ok(
    err <= tol * Math.max(scale, 1e-12),
    `${what}: max difference ${err} at ${at} (torch ${actual[at]}, TS ${expected[at]}), scale ${scale}`,
  );
}

const values = (t: tf.Tensor) => Array.from(t.dataSync());

interface Case {
  readonly name: string;
  readonly net: NetConfig;
  readonly loss: LossOptions;
  readonly args: string[];
  readonly kd?: boolean;
}

const width = 8,
  batch = 8,
  micro = 4,
  lr = 0.01,
  latentLr = 0.004,
  seed = 4;
const common = [
  '--epochs',
  '3',
  '--warmup',
  '0.3',
  '--lr-final',
  '0.01',
  '--width',
  String(width),
  '--batch',
  String(batch),
  '--micro-batch',
  String(micro),
  '--lr',
  String(lr),
  '--seed',
  String(seed),
];
const cases: Case[] = [
  {
    name: 'binary SNN, multi shortcuts, fixed LIF, per-step CE, label smoothing',
    net: { ...DEFAULT_NET, width, T: 2 },
    loss: { ...DEFAULT_LOSS, perStep: 0.5, labelSmoothing: 0.1 },
    args: ['--T', '2', '--per-step', '0.5', '--label-smoothing', '0.1', '--latent-lr', String(latentLr)],
  },
  {
    name: 'learned θ/β, θ-wide surrogate, ResNet-block shortcuts, KD on the mean and each step, firing-rate term',
    net: { ...DEFAULT_NET, width, T: 2, beta: 0.7, lif: 'learn', surrogate: 'theta', shortcuts: 'blocks' },
    loss: {
      ...DEFAULT_LOSS,
      perStep: 0.3,
      kdWeight: 0.6,
      kdTemperature: 2,
      kdPerStep: 0.5,
      spikePenalty: 0.3,
      spikeTarget: 0.1,
    },
    args: [
      '--T',
      '2',
      '--beta',
      '0.7',
      '--lif',
      'learn',
      '--surrogate',
      'theta',
      '--shortcuts',
      'blocks',
      '--per-step',
      '0.3',
      '--kd-weight',
      '0.6',
      '--kd-temperature',
      '2',
      '--kd-per-step',
      '0.5',
      '--spike-penalty',
      '0.3',
      '--spike-target',
      '0.1',
      '--latent-lr',
      String(latentLr),
    ],
    kd: true,
  },
  {
    name: 'FP-weight SNN, T = 3',
    net: { ...DEFAULT_NET, width, T: 3, weights: 'float' },
    loss: DEFAULT_LOSS,
    args: ['--T', '3', '--weights', 'float'],
  },
  {
    name: 'ANN twin',
    net: { ...DEFAULT_NET, width, T: 1, neuron: 'relu', weights: 'float' },
    loss: DEFAULT_LOSS,
    args: ['--neuron', 'relu'],
  },
];

/** Weights with every part of the state away from its initial value: BN statistics and affine, θ/β, latents past ±1. */
function perturb(params: NetParams, learnLif: boolean, r: () => number): void {
  params.layers.forEach((l, i) => {
    const c = l.bn.gamma.shape[0]!;
    const draw = (lo: number, span: number) => tf.tensor1d(Float32Array.from({ length: c }, () => lo + span * r()));
    l.bn.gamma.assign(draw(0.6, 0.8));
    l.bn.beta.assign(draw(-0.2, 0.4));
    l.bn.mean.assign(draw(-0.1, 0.2));
    l.bn.variance.assign(draw(0.5, 1));
    if (learnLif) {
      l.theta.assign(draw(0.6, 0.8));
      l.beta.assign(tf.tensor1d([0.5 + 0.3 * r()]));
    }
    // Layer 1's latents ×6: about half beyond |w| = 1, where the STE passes nothing and the clip acts.
    if (i === 1) l.w.assign(tf.mul(l.w, 6));
  });
}

test('the PyTorch reference computes what the TS trainer computes', { skip }, async () => {
  await initBackend();
  const tmp = mkdtempSync(join(tmpdir(), 'sei-parity-'));
  try {
    const data = loadDataset({ valSize: 1000 });
    const idx = Array.from({ length: batch }, (_, i) => i);
    const { x, y } = makeBatch(data.test, idx);
    const xt = tf.tensor4d(x, [batch, 28, 28, 1]);
    const r = rng(11);
    const soft = Float32Array.from({ length: batch * 10 }, () => 6 * r() - 3);
    const scheduleAt = [0, 0.05, 0.3, 1, 2.2, 2.999];
    const scheduleCfg = { epochs: 3, lr, lrFinal: 0.01, warmupEpochs: 0.3 } as TrainConfig;

    const expected = cases.map((c, k) => {
      const params = initParams(c.net, seed, `parity${k}/`);
      perturb(params, c.net.lif === 'learn', r);
      const file = join(tmp, `case${k}`);
      saveCheckpoint(tmp, `case${k}`, { format: 'parity-test' }, checkpointTensors(params));
      const trainables = namedVariables(params).filter((v) => v.trainable);
      const evalLogits = tf.tidy(() => values(forward(c.net, params, xt, false).stepLogits));
      const updates: BnUpdate[] = [];
      const trainLogits = tf.tidy(() => values(forward(c.net, params, xt, true, updates).stepLogits));
      for (const u of updates) tf.dispose([u.mean, u.variance]);
      const shard = shardGradients(
        c.net,
        params,
        trainables.map((v) => v.v),
        { x, y, ...(c.kd ? { soft } : {}) },
        [28, 28, 1],
        c.loss,
      );
      return { c, file, params, trainables, evalLogits, trainLogits, shard };
    });
    const spec = {
      x: Array.from(x),
      y: Array.from(y),
      cases: [
        ...expected.map((e) => ({
          args: [...common, ...e.c.args, '--load-weights', `${e.file}.json`],
          steps: 2,
          schedule: scheduleAt,
          ...(e.c.kd ? { soft: Array.from(soft) } : {}),
        })),
        { args: ['--width', String(width), '--seed', '9', '--theta-init', 'depth'], params: true },
      ],
      data: {
        args: [
          '--val-size',
          '1000',
          '--batch',
          String(batch),
          '--recalibrate',
          '3',
          '--seed',
          String(seed),
          '--width',
          String(width),
          '--load-weights',
          `${expected[0]!.file}.json`,
        ],
      },
    };
    writeFileSync(join(tmp, 'spec.json'), JSON.stringify(spec));
    const out = JSON.parse(
      execFileSync(PYTHON, [SCRIPT, '--check', join(tmp, 'spec.json')], { encoding: 'utf8', maxBuffer: 1 << 28 })
        .trim()
        .split('\n')
        .pop()!,
    );

    for (const [k, e] of expected.entries()) {
      const got = out.cases[k];
      const what = (s: string) => `${e.c.name}: ${s}`;
      assertClose(what('eval-mode per-step logits'), got.evalLogits, e.evalLogits);
      assertClose(what('training-mode per-step logits'), got.trainLogits, e.trainLogits);
      assertClose(what('loss'), [got.loss], [e.shard.loss]);
      assert.equal(got.correct, e.shard.correct, what('correct predictions'));
      e.shard.bn.forEach((s, i) => {
        assertClose(what(`BN ${i} batch mean`), got.bn[i].mean, s.mean);
        assertClose(what(`BN ${i} batch variance`), got.bn[i].variance, s.variance);
        assert.equal(got.bn[i].count, s.count, what(`BN ${i} count`));
      });
      assert.deepEqual(
        Object.keys(got.grads).sort(),
        e.trainables.map((v) => v.name).sort(),
        what('trainable variables'),
      );
      e.trainables.forEach((v, i) => assertClose(what(`gradient of ${v.name}`), got.grads[v.name], e.shard.grads[i]!));
      assertClose(
        what('schedule'),
        got.schedule,
        scheduleAt.map((t) => learningRate(scheduleCfg, t)),
        1e-12,
      );

      // Two optimizer steps on the batch in micro-batches of 4.
      const before = new Map(namedVariables(e.params).map(({ name, v }) => [name, values(v)]));
      const optimizer = new ParamOptimizer(e.c.net, e.params, lr, e.c.net.weights === 'binary' ? latentLr : lr);
      optimizer.setLearningRate(lr);
      const ctx = {
        net: e.c.net,
        params: e.params,
        trainables: e.trainables.map((v) => v.v),
        optimizer,
        frame: [28, 28, 1] as const,
        loss: e.c.loss,
        microBatch: micro,
      };
      for (let s = 0; s < 2; s++) await trainStep(ctx, { x, y, ...(e.c.kd ? { soft } : {}) });
      optimizer.dispose();
      for (const { name, v, trainable } of namedVariables(e.params)) {
        const ts = values(v),
          py = got.after[name] as number[],
          was = before.get(name)!;
        if (!trainable) {
          assertClose(what(`${name} after two steps`), py, ts);
          continue;
        }
        // Adam's first steps move each element by about lr·sign(g): where |g| is near float noise the two may
        // step differently, so compare element by element and allow a few of those.
        const bound = 2 * 2 * lr * 1.001;
        const latent = e.c.net.weights === 'binary' && /^l[1-9]\.w$/.test(name);
        let off = 0;
        for (let j = 0; j < ts.length; j++) {
          const d = Math.abs(py[j]! - ts[j]!);
          assert.ok(d <= bound, what(`${name}[${j}] after two steps: torch ${py[j]}, TS ${ts[j]}`));
          if (d > 1e-3 * lr) off++;
          // The clip: |w| <= 1 after every step (layer 1 started with about half its latents beyond).
          if (latent && Math.abs(py[j]!) > 1)
            assert.fail(what(`${name}[${j}] = ${py[j]} after two steps (was ${was[j]}): not clipped`));
        }
        assert.ok(
          off <= Math.max(1, 0.01 * ts.length),
          what(`${name} after two steps: ${off} of ${ts.length} elements differ by > lr/1000`),
        );
      }
    }

    // θ starts at θ·√k per layer (k: the currents its shortcuts sum, 1 … 6 with multiple shortcuts).
    const init = initParams({ ...DEFAULT_NET, width, thetaInit: 'depth' }, 9, 'parity-init/');
    for (const { name, v } of namedVariables(init))
      assertClose(`initialisation from --seed 9: ${name}`, out.cases[cases.length].params[name], values(v), 1e-6);

    // The data pipeline and BN recalibration.
    const d = out.data;
    assert.deepEqual(d.counts, [data.train.count, data.val.count, data.test.count]);
    assert.deepEqual(d.valLabels, Array.from(data.val.labels), 'validation split labels');
    const sums = Array.from({ length: data.val.count }, (_, i) =>
      data.val.images.subarray(i * 784, (i + 1) * 784).reduce((a, b) => a + b, 0),
    );
    assert.deepEqual(d.valPixelSums, sums, 'validation split frames');
    assert.deepEqual(d.trainLabels, Array.from(data.train.labels.subarray(0, 100)), 'training split order');
    const first = epochOrder(data.train.count, batch, seed, 0)[0]!;
    assert.deepEqual(d.firstBatch, Array.from(first), 'epoch 0 shuffle');
    const aug = makeBatch(data.train, first, DEFAULT_AUGMENT, stream(seed, 'augment', 0));
    assert.deepEqual(d.augmented, Array.from(aug.x), 'augmented frames (flip, shift, zero fill)');
    assert.deepEqual(d.augmentedLabels, Array.from(aug.y));
    const recal = { batches: 3, batchSize: batch, seed };
    assert.deepEqual(
      d.recalibration,
      recalibrationBatches(data.train.count, recal).map((b) => Array.from(b)),
      'recalibration frames',
    );
    const net = cases[0]!.net;
    // Case 0's checkpoint: its weights before the optimizer steps, which the Python side loaded too.
    const params = initParams(net, seed, 'parity-recal/');
    const ck = loadCheckpoint(tmp, 'case0');
    for (const { name, v } of namedVariables(params)) v.assign(ck.tensors.get(`param/${name}`)!);
    const rec = recalibrateBn(net, params, data.train, recal);
    rec.layers.forEach((l, i) => {
      assertClose(`recalibrated BN ${i} mean`, d.recalibrated[i].mean, values(l.bn.mean));
      assertClose(`recalibrated BN ${i} variance`, d.recalibrated[i].variance, values(l.bn.variance));
    });
    const p = predict(net, rec, data.val);
    assert.ok(
      Math.abs(d.valAccuracy - accuracy(p.predictions, data.val.labels)) <= 0.002,
      `validation accuracy: torch ${d.valAccuracy}, TS ${accuracy(p.predictions, data.val.labels)}`,
    );
    assertClose('validation spike rates', d.valSpikeRates, p.spikeRates, 1e-3);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
