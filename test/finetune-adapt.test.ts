/**
 * Batch-norm re-estimation in the folded format (device-agent/finetune/adapt.ts): it undoes an exposure change of
 * the camera, leaves every layer with the reference statistics, and the adapted version survives the .bwsnn round
 * trip. (The gate on adapted candidates, both ways: test/finetune-gate.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  adaptAffines,
  applyShift,
  backboneId,
  childModel,
  featureEngine,
  fineTune,
  homeModel,
  layerStats,
  matchedAffine,
  SHIFTS,
  spread,
} from '../device-agent/finetune/index.js';
import type { ChannelStats } from '../device-agent/finetune/index.js';
import { createEngine, FASHION_MNIST_DIR, readBwsnn, readMnistSplit, writeBwsnn } from '../runtime/index.js';
import type { BwsnnModel } from '../runtime/index.js';
import { FMNIST_BLOCKS, randomModel } from '../runtime/format/random-model.js';

const test = readMnistSplit(FASHION_MNIST_DIR, 't10k');
const shape = [28, 28, 1] as const;
const model = randomModel({ seed: 7, blocks: FMNIST_BLOCKS });
const images = Array.from({ length: 120 }, (_, i) => test.frame(i));

/** Every channel of every layer: the same mean and standard deviation, up to float32 rounding of the affines. */
function assertSameStats(actual: ChannelStats[], expected: ChannelStats[], tolerance: number): void {
  assert.equal(actual.length, expected.length);
  expected.forEach((e, l) => {
    e.mean.forEach((m, c) => {
      const std = e.std[c]!;
      assert.ok(
        Math.abs(actual[l]!.mean[c]! - m) <= tolerance * (std + 1e-3),
        `layer ${l} channel ${c}: mean ${actual[l]!.mean[c]} vs ${m}`,
      );
      assert.ok(
        Math.abs(actual[l]!.std[c]! - std) <= tolerance * (std + 1e-3),
        `layer ${l} channel ${c}: std ${actual[l]!.std[c]} vs ${std}`,
      );
    });
  });
}

/** Mean absolute difference of the head's features (the last layer's spike rates) of model a and model b, frame by frame. */
function featureDistance(a: BwsnnModel, framesA: Uint8Array[], b: BwsnnModel, framesB: Uint8Array[]): number {
  const [fa, fb] = [featureEngine(a), featureEngine(b)];
  let sum = 0;
  framesA.forEach((f, i) => {
    const [x, y] = [fa.features(f), fb.features(framesB[i]!)];
    x.forEach((v, c) => (sum += Math.abs(v - y[c]!) / x.length));
  });
  return sum / framesA.length;
}

describe('affine re-estimation (AdaBN in the folded format)', () => {
  it("undoes an exact gain change: the first layer's scale halves, its bias stays, and all currents come back", () => {
    // The original camera delivers 0..127; the new one twice that, exactly (no clamping, zero padding stays zero).
    const original = images.map((f) => f.map((x) => x >> 1));
    const doubled = original.map((f) => f.map((x) => 2 * x));
    const reference = layerStats(model, original);
    const adapted = adaptAffines(model, doubled, reference);
    // Exact up to the variance floor (1e-5 against channel variances of about 0.1-5).
    model.first.scale.forEach((s, c) => {
      assert.ok(
        Math.abs(adapted.first.scale[c]! / s - 0.5) < 1e-3,
        `scale ${c}: ${adapted.first.scale[c]} vs ${s} / 2`,
      );
      assert.ok(
        Math.abs(adapted.first.bias[c]! - model.first.bias[c]!) < 1e-3 * reference[0]!.std[c]!,
        `bias ${c}: ${adapted.first.bias[c]} vs ${model.first.bias[c]}`,
      );
    });
    assertSameStats(layerStats(adapted, doubled), reference, 1e-3);
    // The adapted model on the new camera is the parent on the old one (up to spikes flipped by rounding), unlike
    // the parent on the new camera.
    const [after, before] = [
      featureDistance(adapted, doubled, model, original),
      featureDistance(model, doubled, model, original),
    ];
    assert.ok(after < before / 10, `feature distance ${after} adapted, ${before} not`);
  });

  it('after a real exposure shift (gain, offset, clamping) every layer has the reference statistics again', () => {
    const shifted = images.map((f, i) => applyShift(SHIFTS.exposure, f, shape, 1, i));
    const reference = layerStats(model, images);
    const moved = layerStats(model, shifted);
    assert.ok(
      Math.abs(moved[0]!.mean[0]! - reference[0]!.mean[0]!) > 0.05 * reference[0]!.std[0]!,
      'the shift moves the first layer',
    );
    const adapted = adaptAffines(model, shifted, reference);
    assertSameStats(layerStats(adapted, shifted), reference, 1e-3);
    // The adapted model's features on the shifted frames come closer to the parent's on the clean ones.
    const [after, before] = [
      featureDistance(adapted, shifted, model, images),
      featureDistance(model, shifted, model, images),
    ];
    assert.ok(after < before / 2, `feature distance ${after} adapted, ${before} not`);
    // Weights, thresholds and head are untouched.
    assert.deepEqual(adapted.first.weights, model.first.weights);
    adapted.hidden.forEach((l, h) => {
      assert.deepEqual(l.weightBits, model.hidden[h]!.weightBits);
      assert.deepEqual(l.lif, model.hidden[h]!.lif);
    });
    assert.deepEqual(adapted.head, model.head);
  });

  it("a second fine-tune of an adapted version aims at the lab's statistics, which every version records", () => {
    const labelled = (shift: typeof SHIFTS.exposure | typeof SHIFTS.noise) =>
      images
        .slice(0, 60)
        .map((f, i) => ({ id: `${i}`, data: applyShift(shift, f, shape, 1, i), label: test.labels[i]! }));
    const reference = images.map((data, i) => ({ id: `reference#${i}`, data, label: test.labels[i]! }));
    const run = (parent: BwsnnModel, frames: ReturnType<typeof labelled>, adapt = true) =>
      fineTune({ parent, parentSha256: 'd'.repeat(64), frames, reference, adapt }).candidate;
    const child = run(model, labelled(SHIFTS.exposure));
    const grandchild = run(readBwsnn(writeBwsnn(child)), labelled(SHIFTS.noise));
    // A head-only fine-tune of an adapted version keeps its affines and hands the lab's down.
    const headOnly = run(child, labelled(SHIFTS.exposure), false);
    assert.deepEqual(headOnly.first.scale, child.first.scale);
    assert.notDeepEqual(child.first.scale, model.first.scale);
    for (const version of [child, grandchild, headOnly]) {
      const home = homeModel(version);
      assert.deepEqual(
        [home.first, ...home.hidden].map((l) => [l.scale, l.bias]),
        [model.first, ...model.hidden].map((l) => [l.scale, l.bias]),
      );
    }
    // On its camera, the grandchild's layers have the lab model's statistics on the reference frames, not the
    // child's (which are those of the exposure camera's affines on clean frames).
    const lab = layerStats(model, images);
    assertSameStats(
      layerStats(
        grandchild,
        labelled(SHIFTS.noise).map((f) => f.data),
      ),
      lab,
      1e-3,
    );
    assert.throws(
      () => homeModel({ ...child, meta: { finetune: { home: [{ scale: [1], bias: [0] }] } } }),
      /meta\.finetune\.home: expected 6 layers/,
    );
  });

  it('matchedAffine maps one set of statistics onto another, and keeps a channel that does not move', () => {
    const layer = { scale: Float32Array.of(2, 1), bias: Float32Array.of(1, 0) };
    const { scale, bias } = matchedAffine(
      layer,
      { mean: Float64Array.of(5, 3), std: Float64Array.of(4, 0) },
      { mean: Float64Array.of(1, 3), std: Float64Array.of(2, 0) },
    );
    // x -> 0.5 x - 1.5 (mean 5 -> 1, std 4 -> 2), folded: scale 2 -> 1, bias 1 -> -1.
    assert.ok(Math.abs(scale[0]! - 1) < 1e-5 && Math.abs(bias[0]! + 1) < 1e-5, `${scale[0]} ${bias[0]}`);
    assert.deepEqual([scale[1], bias[1]], [1, 0]);
  });

  it('spread picks evenly spaced frames, all of them when there are few', () => {
    assert.deepEqual(spread([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 4), [0, 2, 5, 7]);
    assert.deepEqual(spread([1, 2], 4), [1, 2]);
  });

  it('the adapted version survives the .bwsnn round trip, with a new backbone and its adaptation recorded', () => {
    const shifted = images.slice(0, 40).map((f, i) => applyShift(SHIFTS.blur, f, shape, 1, i));
    const adapted = adaptAffines(model, shifted, layerStats(model, images.slice(0, 40)));
    const child = childModel(adapted, model.head, 'c'.repeat(64), model.version + 1, {
      adapted: { method: 'batch-norm re-estimation' },
    });
    const read = readBwsnn(writeBwsnn(child));
    assert.deepEqual(read.first.scale, adapted.first.scale);
    assert.deepEqual(read.first.bias, adapted.first.bias);
    read.hidden.forEach((l, h) => {
      assert.deepEqual(l.scale, adapted.hidden[h]!.scale);
      assert.deepEqual(l.bias, adapted.hidden[h]!.bias);
    });
    assert.deepEqual(read.meta.finetune, { adapted: { method: 'batch-norm re-estimation' } });
    assert.equal(backboneId(read), backboneId(adapted));
    assert.notEqual(backboneId(read), backboneId(model));
    const [a, b] = [createEngine(read), createEngine(adapted)];
    for (const f of shifted.slice(0, 10)) assert.deepEqual(a.infer(f).logits, b.infer(f).logits);
  });
});
