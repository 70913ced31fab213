/**
 * Golden tests of the numeric semantics (ARCHITECTURE.md, "Numeric semantics") on a model small enough to work
 * out by hand, for every kernel; frame validation; stream(); loadModel.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BwsnnModel } from '../runtime/index.js';
import { ConfigError, createEngine, FrameError, loadModel, writeBwsnn } from '../runtime/index.js';
import { FMNIST_BLOCKS, randomModel } from '../runtime/format/random-model.js';

const KERNELS = ['reference', 'wasm'] as const;

/**
 * 2×2×1 frame → 1×1 int8 conv (w = 2, I = 0.5*acc + 0.25 = x + 0.25, beta 0.5, theta 1) → 3×3 stride-2 pad-1
 * binary conv to 1×1×2 (channel 0 all +1, channel 1 all -1; scale 1, bias [0, 0.5]; pooled shortcut tiled to
 * both channels; beta 1, theta 1) → head [[1,0],[0,1],[1,0]].
 */
function tinyModel(): BwsnnModel {
  return {
    name: 'tiny',
    version: 1,
    T: 2,
    input: [2, 2, 1],
    labels: ['a', 'b', 'c'],
    first: {
      kind: 'conv_int8',
      name: 'conv0',
      inShape: [2, 2, 1],
      outShape: [2, 2, 1],
      kernel: 1,
      stride: 1,
      pad: 0,
      weights: Int8Array.of(2),
      scale: Float32Array.of(0.5),
      bias: Float32Array.of(0.25),
      lif: { beta: 0.5, theta: Float32Array.of(1) },
    },
    hidden: [
      {
        kind: 'bconv',
        name: 'bconv1',
        inShape: [2, 2, 1],
        outShape: [1, 1, 2],
        kernel: 3,
        stride: 2,
        pad: 1,
        weightBits: Uint32Array.of(0x1ff, 0, 0, 0, 0, 0, 0, 0),
        scale: Float32Array.of(1, 1),
        bias: Float32Array.of(0, 0.5),
        shortcut: 'avgpool_repeat',
        lif: { beta: 1, theta: Float32Array.of(1, 1) },
      },
    ],
    head: { inFeatures: 2, outFeatures: 3, weight: Float32Array.of(1, 0, 0, 1, 1, 0), bias: new Float32Array(3) },
    meta: {},
  };
}

for (const kernel of KERNELS) {
  test(`${kernel}: hand-computed frame through int8 conv, LIF with soft reset, binary conv, pooled shortcut, head`, () => {
    const engine = createEngine(tinyModel(), { kernel });
    assert.equal(engine.kernel, kernel);
    const r = engine.infer(Uint8Array.of(0, 1, 2, 3), { record: true });
    // First layer: I = x + 0.25; step 1 v = I → spikes 0111, v = .25 .25 1.25 2.25; step 2 v = .375 1.375 2.875 4.375.
    assert.deepEqual([...r.trace![0]!.currents], [0.25, 1.25, 2.25, 3.25, 0.25, 1.25, 2.25, 3.25]);
    assert.deepEqual([...r.trace![0]!.spikes], [0, 1, 1, 1, 0, 1, 1, 1]);
    // Binary conv: dot = +3 / -3 (the window covers all four inputs, padding never counts); shortcut
    // ((0.25 + 1.25) + 2.25) + 3.25 = 7, * 0.25 = 1.75 on both channels: I = [4.75, -0.75].
    assert.deepEqual([...r.trace![1]!.currents], [4.75, -0.75, 4.75, -0.75]);
    assert.deepEqual([...r.trace![1]!.spikes], [1, 0, 1, 0]);
    // Rates [1, 0] → logits [1, 0, 1]; ties go to the first index.
    assert.deepEqual([...r.logits], [1, 0, 1]);
    assert.equal(r.prediction, 0);
    assert.ok(Math.abs(r.confidence - Math.E / (2 * Math.E + 1)) < 1e-12);
    assert.deepEqual([...r.spikeRates], [0.75, 0.5]);
    // 6 input spikes over the two steps, each driving 3*3*2/2^2 = 4.5 synapses.
    assert.equal(r.synOps, 27);
    assert.ok(r.latencyMs >= 0);
  });

  test(`${kernel}: every float op rounds to float32 (affine and LIF)`, () => {
    const m = tinyModel();
    const f = Math.fround;
    // acc = 7: fround(fround(0.1f*7) + 0.2f) = 0.89999998, where one rounding of the exact sum gives 0.90000004.
    // With beta = 0.6f the second step's v is fround(fround(beta*v) + I) = 1.44000006 (one rounding: 1.43999994),
    // exactly theta: the neuron fires only under the float32 chain.
    const I = f(f(f(0.1) * 7) + f(0.2));
    const theta = f(f(f(0.6) * I) + I);
    assert.equal(I, f(0.8999999761581421));
    assert.ok(f(f(0.6) * I + I) < theta);
    const model: BwsnnModel = {
      ...m,
      first: {
        ...m.first,
        weights: Int8Array.of(7),
        scale: Float32Array.of(0.1),
        bias: Float32Array.of(0.2),
        lif: { beta: f(0.6), theta: Float32Array.of(theta) },
      },
    };
    const r = createEngine(model, { kernel }).infer([1, 1, 1, 1], { record: true });
    assert.deepEqual([...r.trace![0]!.currents], new Array(8).fill(I));
    assert.deepEqual([...r.trace![0]!.spikes], [0, 0, 0, 0, 1, 1, 1, 1]);
  });

  test(`${kernel}: bad frames throw FrameError naming the field; the engine stays usable`, () => {
    const engine = createEngine(tinyModel(), { kernel });
    const cases: Array<[unknown, string, RegExp]> = [
      [[1, 2, 3], 'frame.length', /expected 4 .*got 3/],
      [[0, 1, 2.5, 3], 'frame[2]', /integer in 0\.\.255, got 2\.5/],
      [[0, NaN, 2, 3], 'frame[1]', /got NaN/],
      [Float32Array.of(0, 1, 256, 3), 'frame[2]', /got 256/],
      [[0, -1, 2, 3], 'frame[1]', /got -1/],
      ['abcd', 'frame', /got "abcd"/],
    ];
    for (const [frame, field, message] of cases) {
      assert.throws(
        () => engine.infer(frame as never),
        (err: unknown) => err instanceof FrameError && err.field === field && message.test(err.message),
      );
    }
    assert.deepEqual([...engine.infer(Float64Array.of(0, 1, 2, 3)).logits], [1, 0, 1]);
  });

  test(`${kernel}: stream() yields results in order and reports bad frames without stopping`, async () => {
    const engine = createEngine(tinyModel(), { kernel });
    async function* frames() {
      yield Uint8Array.of(0, 1, 2, 3);
      yield [1, 2];
      yield Uint8ClampedArray.of(0, 0, 0, 0);
    }
    const items = [];
    for await (const item of engine.stream(frames())) items.push(item);
    assert.deepEqual(
      items.map((i) => [i.index, i.ok]),
      [
        [0, true],
        [1, false],
        [2, true],
      ],
    );
    assert.ok(!items[1]!.ok && items[1]!.error instanceof FrameError);
    assert.ok(items[2]!.ok && items[2]!.result.spikeRates[0] === 0);
  });
}

for (const [name, spec] of [
  ['conv', { blocks: FMNIST_BLOCKS.slice(0, 3) }],
  ['linear', { blocks: FMNIST_BLOCKS.slice(0, 2), linear: [40] }],
] as const) {
  test(`features (${name} last layer): each channel's spikes over space and T / (H*W*T), and the logits are the head on them`, () => {
    const model = randomModel({ seed: 11, firstChannels: 16, ...spec });
    const last = model.hidden[model.hidden.length - 1]!;
    const [h, w, c] = last.kind === 'bconv' ? last.outShape : [1, 1, last.outFeatures];
    const frame = Uint8Array.from({ length: 784 }, (_, i) => (i * 53) % 256);
    for (const kernel of KERNELS) {
      const r = createEngine(model, { kernel }).infer(frame, { record: true });
      const spikes = r.trace![r.trace!.length - 1]!.spikes;
      const counts = new Float64Array(c);
      spikes.forEach((s, j) => (counts[j % c]! += s));
      assert.deepEqual(
        r.features,
        counts.map((n) => n / (h * w * model.T)),
        kernel,
      );
      assert.ok(
        r.features.some((x) => x > 0),
        `${kernel}: some channel spikes`,
      );
      const { head } = model;
      const logits = Float32Array.from({ length: head.outFeatures }, (_, o) => {
        let sum = head.bias[o]!;
        for (let i = 0; i < head.inFeatures; i++) sum += head.weight[o * head.inFeatures + i]! * r.features[i]!;
        return sum;
      });
      assert.deepEqual(r.logits, logits, kernel);
    }
  });
}

test('kernel choice: auto picks wasm here; an unknown choice is a ConfigError naming the field', () => {
  assert.equal(createEngine(tinyModel()).kernel, 'wasm');
  assert.throws(
    () => createEngine(tinyModel(), { kernel: 'gpu' as never }),
    (err: unknown) => err instanceof ConfigError && err.field === 'kernel',
  );
});

test('loadModel reads .bwsnn bytes and gives the same result as the in-memory model', async () => {
  const model = randomModel({ seed: 7, blocks: FMNIST_BLOCKS, firstChannels: 32, T: 2 });
  const frame = Uint8Array.from({ length: 784 }, (_, i) => (i * 37) % 256);
  const fromBytes = await loadModel(writeBwsnn(model));
  const direct = createEngine(model, { kernel: 'reference' });
  assert.deepEqual(fromBytes.infer(frame).logits, direct.infer(frame).logits);
});

test('a model past the wasm kernel limits runs on the reference kernel; forcing wasm is a ConfigError', () => {
  // A binary linear layer with a fan-in of 2^16: per-channel counts would overflow the kernel's u16 lanes.
  const model = randomModel({ seed: 3, input: [64, 64, 1], firstChannels: 16, linear: [2], classes: 2, T: 1 });
  assert.equal(createEngine(model).kernel, 'reference');
  assert.throws(
    () => createEngine(model, { kernel: 'wasm' }),
    (err: unknown) => err instanceof ConfigError && err.field === 'kernel' && /65535/.test(err.message),
  );
});

test("steps: the engine runs at the model's T by default; another T in 1..16 when asked; anything else is a ConfigError naming steps", () => {
  const model = tinyModel();
  assert.equal(createEngine(model).steps, 2);
  assert.equal(createEngine(model, { steps: 16 }).steps, 16);
  for (const steps of [0, 17, 1.5, Number.NaN, '2' as never]) {
    assert.throws(
      () => createEngine(model, { steps }),
      (err: unknown) => err instanceof ConfigError && err.field === 'steps' && /1\.\.16/.test(err.message),
      String(steps),
    );
  }
});
