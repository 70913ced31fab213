/**
 * On-device fine-tuning, unit level: features agree with the engine (and with the recorded trace), the loss
 * gradient agrees with finite differences, training is deterministic and pulled toward the parent head, the
 * split is stratified, the gate's rules, the new version's lineage, and the simulated shifts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ConfigError,
  createEngine,
  FASHION_MNIST_DIR,
  readBwsnn,
  readMnistSplit,
  rng,
  writeBwsnn,
} from '../runtime/index.js';
import type { BwsnnModel, Head } from '../runtime/index.js';
import {
  accuracy,
  applyShift,
  backboneId,
  blur,
  brightnessContrast,
  childModel,
  decide,
  extractFeatures,
  featureEngine,
  gateOptions,
  headParams,
  lossAndGradient,
  MemoryFeatureCache,
  noise,
  predict,
  rotate,
  selectRows,
  SHIFTS,
  signTestP,
  stratifiedSplit,
  toHead,
  trainHead,
} from '../device-agent/finetune/index.js';
import type { FeatureSet } from '../device-agent/finetune/index.js';
import { FineTuner } from '../device-agent/finetuner.js';
import type { FineTunerHost } from '../device-agent/finetuner.js';
import { FMNIST_BLOCKS, randomModel } from '../runtime/format/random-model.js';

const test = readMnistSplit(FASHION_MNIST_DIR, 't10k');
const frames = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    id: `t10k#${from + i}`,
    data: test.frame(from + i),
    label: test.labels[from + i]!,
  }));

/** A random feature set (rates in [0, 1]) with random labels. */
function randomSet(seed: number, count: number, dim: number, classes: number): FeatureSet {
  const u = rng(seed);
  return {
    count,
    dim,
    x: Float64Array.from({ length: count * dim }, u),
    labels: Int32Array.from({ length: count }, () => Math.floor(u() * classes)),
  };
}

function randomHead(seed: number, inFeatures: number, outFeatures: number): Head {
  const u = rng(seed);
  return {
    inFeatures,
    outFeatures,
    weight: Float32Array.from({ length: inFeatures * outFeatures }, () => 2 * u() - 1),
    bias: Float32Array.from({ length: outFeatures }, () => u() - 0.5),
  };
}

describe('features', () => {
  const model = randomModel({ seed: 3, blocks: FMNIST_BLOCKS, firstChannels: 32 });
  const engine = createEngine(model);
  const fe = featureEngine(model);
  const sample = frames(0, 40);
  const set = extractFeatures(fe, 10, sample);

  it("are the last layer's spike rates of the recorded trace (count over space and T / (H*W*T)), bit for bit", () => {
    const last = model.hidden[model.hidden.length - 1]!;
    assert.equal(last.kind, 'bconv');
    const [h, w, c] = last.kind === 'bconv' ? last.outShape : [1, 1, 0];
    for (let i = 0; i < 5; i++) {
      const trace = engine.infer(sample[i]!.data, { record: true }).trace!;
      const spikes = trace[trace.length - 1]!.spikes;
      const counts = new Float64Array(c);
      spikes.forEach((s, j) => (counts[j % c]! += s));
      for (let ch = 0; ch < c; ch++)
        assert.equal(set.x[i * c + ch], counts[ch]! / (h * w * model.T), `frame ${i} channel ${ch}`);
    }
  });

  it("reproduce the engine's predictions through any head (the gate judges what the device will run)", () => {
    const other = { ...model, head: randomHead(9, model.head.inFeatures, 10) };
    for (const m of [model, other]) {
      const expected = sample.map((f) => createEngine(m).infer(f.data).prediction);
      assert.deepEqual(Array.from(predict(m.head, set)), expected);
    }
  });

  it('are computed once per backbone and frame; a new head on the same backbone reuses the cache', () => {
    const cache = new MemoryFeatureCache();
    assert.equal(extractFeatures(fe, 10, sample.slice(0, 8), { cache }).computed, 8);
    const child = childModel(model, randomHead(4, model.head.inFeatures, 10), 'a'.repeat(64), 1, {});
    const again = extractFeatures(featureEngine(child), 10, sample.slice(0, 10), { cache });
    assert.equal(again.computed, 2);
    assert.deepEqual(again.x.subarray(0, 8 * fe.dim), set.x.subarray(0, 8 * fe.dim));
    assert.equal(cache.size, 10);
  });

  it('backboneId ignores head, version and meta but not a changed threshold', () => {
    const id = backboneId(model);
    assert.equal(
      backboneId({ ...model, version: 7, meta: { x: 1 }, head: randomHead(1, model.head.inFeatures, 10) }),
      id,
    );
    const hidden = model.hidden.map((l, i) =>
      i === 0 ? { ...l, lif: { ...l.lif, theta: l.lif.theta.map((t, c) => (c === 0 ? t + 0.25 : t)) } } : l,
    );
    assert.notEqual(backboneId({ ...model, hidden }), id);
  });

  it("refuses a label outside the head's classes, naming the frame", () => {
    assert.throws(
      () => extractFeatures(fe, 10, [{ id: 'x', data: test.frame(0), label: 10 }]),
      /frames\[0\]\.label: expected an integer class index 0\.\.9, got 10/,
    );
  });
});

describe('head optimiser', () => {
  it('gradient of cross-entropy + L2-to-parent matches central finite differences', () => {
    const set = randomSet(1, 12, 5, 4);
    const p = headParams(randomHead(2, 5, 4));
    const anchor = headParams(randomHead(3, 5, 4)).values;
    const rows = Array.from({ length: set.count }, (_, i) => i);
    const grad = new Float64Array(p.values.length);
    lossAndGradient(p, set, rows, anchor, 0.3, grad);
    const scratch = new Float64Array(p.values.length);
    const h = 1e-6;
    for (let i = 0; i < p.values.length; i++) {
      const v = p.values[i]!;
      p.values[i] = v + h;
      const up = lossAndGradient(p, set, rows, anchor, 0.3, scratch);
      p.values[i] = v - h;
      const down = lossAndGradient(p, set, rows, anchor, 0.3, scratch);
      p.values[i] = v;
      const numeric = (up - down) / (2 * h);
      assert.ok(
        Math.abs(numeric - grad[i]!) <= 1e-7 * Math.max(1, Math.abs(numeric)),
        `parameter ${i}: analytic ${grad[i]}, numeric ${numeric}`,
      );
    }
  });

  it('loss is the mean cross-entropy: log(classes) for a zero head', () => {
    const set = randomSet(5, 7, 3, 4);
    const zero = headParams({ inFeatures: 3, outFeatures: 4, weight: new Float32Array(12), bias: new Float32Array(4) });
    const loss = lossAndGradient(zero, set, [0, 1, 2, 3, 4, 5, 6], zero.values, 1, new Float64Array(16));
    assert.ok(Math.abs(loss - Math.log(4)) < 1e-12);
  });

  it('is deterministic for a seed, and another seed gives another head', () => {
    const set = randomSet(6, 60, 8, 3);
    const start = randomHead(7, 8, 3);
    const a = trainHead(start, set, { epochs: 5, seed: 11 });
    const b = trainHead(start, set, { epochs: 5, seed: 11 });
    const c = trainHead(start, set, { epochs: 5, seed: 12 });
    assert.deepEqual(a.params.values, b.params.values);
    assert.deepEqual(a.losses, b.losses);
    assert.notDeepEqual(a.params.values, c.params.values);
  });

  it('fits learnable data, and a strong pull keeps the head near the parent, not near zero', () => {
    // Labels from a known linear rule: the optimiser must find it from a random start.
    const teacher = randomHead(8, 6, 3);
    const x = randomSet(9, 300, 6, 3);
    const labels = predict(teacher, x);
    const set = { ...x, labels };
    const start = randomHead(10, 6, 3);
    const free = trainHead(start, set, { epochs: 200, learningRate: 0.05, decay: 0 });
    assert.ok(accuracy(toHead(free.params), set) >= 0.95, `fit accuracy ${accuracy(toHead(free.params), set)}`);
    assert.ok(free.losses[free.losses.length - 1]! < free.losses[0]! / 2);
    const distance = (v: Float64Array) => Math.hypot(...v.map((y, i) => y - headParams(start).values[i]!));
    const pulled = trainHead(start, set, { epochs: 200, learningRate: 0.05, decay: 100 });
    assert.ok(
      distance(pulled.params.values) < 0.05 * distance(free.params.values),
      `pulled ${distance(pulled.params.values)} vs free ${distance(free.params.values)}`,
    );
  });

  it('refuses bad options, naming them', () => {
    const set = randomSet(1, 4, 2, 2);
    assert.throws(
      () => trainHead(randomHead(1, 2, 2), set, { epochs: 0 }),
      /finetune\.epochs: expected a positive integer, got 0/,
    );
    assert.throws(
      () => trainHead(randomHead(1, 2, 2), set, { decay: -1 }),
      /finetune\.decay: expected a number >= 0, got -1/,
    );
    assert.throws(() => trainHead(randomHead(1, 3, 2), set), /features: expected 3 per frame/);
  });
});

describe('split and gate', () => {
  it('stratified split: disjoint, complete, seeded, each class held out in proportion', () => {
    const labels = Int32Array.from({ length: 203 }, (_, i) => (i * 7) % 10);
    const a = stratifiedSplit(labels, 0.25, 1);
    assert.deepEqual(
      [...a.train, ...a.holdout].sort((x, y) => x - y),
      Array.from({ length: 203 }, (_, i) => i),
    );
    assert.equal(a.holdout.length, Math.floor(203 * 0.25));
    for (let c = 0; c < 10; c++) {
      const total = labels.filter((l) => l === c).length;
      const held = a.holdout.filter((i) => labels[i] === c).length;
      assert.ok(Math.abs(held - total * 0.25) <= 1, `class ${c}: ${held} of ${total} held out`);
    }
    assert.deepEqual(stratifiedSplit(labels, 0.25, 1), a);
    assert.notDeepEqual(stratifiedSplit(labels, 0.25, 2).holdout, a.holdout);
  });

  it('decide: accepts a significant holdout gain with a small reference fall, refuses each failed rule with its numbers', () => {
    const o = gateOptions({ minGain: 0.02, maxReferenceDrop: 0.02 });
    const train = { frames: 300, before: 0.5, after: 0.9 };
    const ok = decide(
      train,
      { frames: 100, before: 0.5, after: 0.6, fixed: 12, broken: 2 },
      { frames: 500, before: 0.8, after: 0.79 },
      o,
      400,
    );
    assert.equal(ok.accepted, true, ok.reasons.join('\n'));
    assert.ok(ok.reasons.every((r) => r.startsWith('pass')));
    assert.ok(Math.abs(ok.holdout.gain - 0.1) < 1e-12 && Math.abs(ok.reference.drop - 0.01) < 1e-12);
    const flat = decide(
      train,
      { frames: 100, before: 0.5, after: 0.51, fixed: 1, broken: 0 },
      { frames: 500, before: 0.8, after: 0.8 },
      o,
      400,
    );
    assert.equal(flat.accepted, false);
    assert.match(
      flat.reasons.find((r) => r.startsWith('FAIL'))!,
      /holdout accuracy 50\.0% -> 51\.0% \(\+1\.0 points; at least \+2\.0 points required\)/,
    );
    // +4 points on 25 frames is one frame net: luck, refused by the sign test although above minGain.
    const lucky = decide(
      train,
      { frames: 25, before: 0.64, after: 0.68, fixed: 3, broken: 2 },
      { frames: 500, before: 0.8, after: 0.8 },
      o,
      100,
    );
    assert.equal(lucky.accepted, false);
    assert.match(
      lucky.reasons.find((r) => r.startsWith('FAIL'))!,
      /holdout: the candidate fixes 3 frames and breaks 2 \(sign test p = 0\.50; at most 0\.05 required\)/,
    );
    assert.equal(
      decide(
        train,
        { frames: 25, before: 0.64, after: 0.68, fixed: 3, broken: 2 },
        { frames: 500, before: 0.8, after: 0.8 },
        gateOptions({ maxPValue: 1 }),
        100,
      ).accepted,
      true,
    );
    const forgets = decide(
      train,
      { frames: 100, before: 0.5, after: 0.7, fixed: 20, broken: 0 },
      { frames: 500, before: 0.8, after: 0.7 },
      o,
      400,
    );
    assert.equal(forgets.accepted, false);
    assert.match(
      forgets.reasons.find((r) => r.startsWith('FAIL'))!,
      /reference accuracy 80\.0% -> 70\.0% \(-10\.0 points; a fall of at most 2\.0 points allowed\)/,
    );
    const few = decide(
      train,
      { frames: 5, before: 0, after: 1, fixed: 5, broken: 0 },
      { frames: 500, before: 0.8, after: 0.8 },
      o,
      20,
    );
    assert.equal(few.accepted, false);
    assert.match(few.reasons[0]!, /FAIL: 20 labelled frames \(at least 40 needed\)/);
    // Exactly at the margins passes.
    assert.equal(
      decide(
        train,
        { frames: 100, before: 0.5, after: 0.52, fixed: 5, broken: 0 },
        { frames: 100, before: 0.8, after: 0.78 },
        o,
        400,
      ).accepted,
      true,
    );
  });

  it('sign test: exact one-sided binomial tail', () => {
    assert.equal(signTestP(0, 0), 1);
    assert.ok(Math.abs(signTestP(5, 0) - 1 / 32) < 1e-15);
    assert.ok(Math.abs(signTestP(3, 1) - 5 / 16) < 1e-15);
    assert.ok(Math.abs(signTestP(0, 7) - 1) < 1e-12);
    // Large counts stay finite: 600 of 1000 is far in the tail.
    assert.ok(signTestP(600, 400) > 0 && signTestP(600, 400) < 1e-9);
  });

  it('gate options are validated, naming the field', () => {
    assert.throws(
      () => gateOptions({ holdoutFraction: 1 }),
      /finetune\.gate\.holdoutFraction: expected a number between 0 and 1/,
    );
    assert.throws(() => gateOptions({ maxReferenceDrop: -0.1 }), /finetune\.gate\.maxReferenceDrop/);
  });

  it('the finetune command refuses a gate option named after an inherited property (toString) before a run starts', async () => {
    // Only what a run needs before its first step: nothing may be read from the store or the model when refused.
    const host = { ota: { busy: () => null } } as unknown as FineTunerHost;
    const tuner = new FineTuner(host);
    for (const key of ['toString', 'constructor', 'hasOwnProperty', '__proto__']) {
      await assert.rejects(
        tuner.run(JSON.parse(`{"gate":{"${key}":0.1}}`)),
        (e: unknown) => e instanceof ConfigError && e.field === `gate.${key}`,
        key,
      );
    }
  });
});

describe('new version', () => {
  it('is the parent with a new head and version, its parent recorded, and survives the .bwsnn round trip', () => {
    const parent: BwsnnModel = {
      ...randomModel({ seed: 5, blocks: FMNIST_BLOCKS.slice(0, 2) }),
      version: 3,
      meta: { producer: 'test', parent: { version: 1 } },
    };
    const head = randomHead(6, parent.head.inFeatures, 10);
    const child = readBwsnn(writeBwsnn(childModel(parent, head, 'b'.repeat(64), 4, { accepted: true })));
    assert.equal(child.version, 4);
    assert.equal(child.name, parent.name);
    assert.deepEqual(child.meta.parent, { name: parent.name, version: 3, sha256: 'b'.repeat(64) });
    assert.equal(child.meta.producer, 'test');
    assert.deepEqual(child.head.weight, head.weight);
    assert.equal(backboneId(child), backboneId(parent));
  });
});

describe('simulated camera shifts', () => {
  const shape = [28, 28, 1] as const;
  const frame = test.frame(0);

  it('exposure is y = gain*x + offset, rounded and clamped', () => {
    assert.deepEqual(Array.from(brightnessContrast(Uint8Array.from([0, 100, 250]), 0.8, 30)), [30, 110, 230]);
    assert.deepEqual(Array.from(brightnessContrast(Uint8Array.from([0, 255]), 2, -10)), [0, 255]);
  });

  it('blur keeps a flat image flat and spreads a point symmetrically', () => {
    assert.ok(blur(new Uint8Array(28 * 28).fill(77), shape, 1.2).every((v) => v === 77));
    const dot = new Uint8Array(28 * 28);
    dot[14 * 28 + 14] = 255;
    const b = blur(dot, shape, 1);
    assert.ok(b[14 * 28 + 14]! < 255 && b[14 * 28 + 14]! > 0);
    assert.equal(b[14 * 28 + 13], b[14 * 28 + 15]);
    assert.equal(b[13 * 28 + 14], b[15 * 28 + 14]);
  });

  it('rotation by 0 is the identity and by 90 degrees moves a pixel a quarter turn about the centre', () => {
    assert.deepEqual(rotate(frame, shape, 0), frame);
    const dot = new Uint8Array(28 * 28);
    dot[2 * 28 + 13] = 200;
    const r = rotate(dot, shape, 90);
    assert.equal(
      r.reduce((a, v) => a + (v > 0 ? 1 : 0), 0),
      1,
    );
    assert.ok(r[13 * 28 + 25] === 200 || r[14 * 28 + 2] === 200 || r[13 * 28 + 2] === 200 || r[14 * 28 + 25] === 200);
  });

  it('noise has about the asked spread and is seeded per frame index', () => {
    const flat = new Uint8Array(10000).fill(128);
    const n = noise(flat, 20, rng(1));
    const mean = n.reduce((a, v) => a + v, 0) / n.length;
    const sd = Math.sqrt(n.reduce((a, v) => a + (v - mean) ** 2, 0) / n.length);
    assert.ok(Math.abs(mean - 128) < 1 && Math.abs(sd - 20) < 1, `mean ${mean}, sd ${sd}`);
    for (const shift of Object.values(SHIFTS)) {
      assert.deepEqual(applyShift(shift, frame, shape, 1, 17), applyShift(shift, frame, shape, 1, 17));
      assert.equal(applyShift(shift, frame, shape, 1, 17).length, frame.length);
    }
    assert.notDeepEqual(applyShift(SHIFTS.noise, frame, shape, 1, 17), applyShift(SHIFTS.noise, frame, shape, 1, 18));
    assert.notDeepEqual(applyShift(SHIFTS.noise, frame, shape, 1, 17), frame);
  });
});

// Keeps the helpers honest: a selected subset is the rows asked for.
it('selectRows picks rows in the given order', () => {
  const set = randomSet(2, 5, 3, 2);
  const s = selectRows(set, [4, 0]);
  assert.deepEqual(Array.from(s.x), [...set.x.subarray(12, 15), ...set.x.subarray(0, 3)]);
  assert.deepEqual(Array.from(s.labels), [set.labels[4], set.labels[0]]);
});
