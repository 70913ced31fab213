/**
 * Every kernel variant against the reference, demanding exact equality: integer dots, spike bits, currents and
 * whole-engine logits (bitwise), over shapes × stride 1/2 × kernel 1/3/5 × padding × spike rates × channel
 * counts (including ones that are not multiples of 32 or 4).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { BinaryConvLayer, BinaryLinearLayer, Shape3 } from '../runtime/format/model.js';
import { convOut, rowWords } from '../runtime/format/model.js';
import { binaryDot, bconvDots, blinearDots, packBits, popcount32 } from '../runtime/kernels/reference/layers.js';
import { DESC_WORDS, FIELDS, moduleLayout } from '../runtime/kernels/wasm/module.js';
import {
  DEFAULT_SWITCH,
  cwOf,
  measuredSwitch,
  planNetwork,
  switchMeasurements,
  wasmDots,
} from '../runtime/kernels/wasm/planner.js';
import { mapShape } from '../runtime/format/ops.js';
import { createEngine, wasmUnavailable } from '../runtime/index.js';
import { rng } from '../runtime/data/random.js';
import type { BlockSpec } from '../runtime/format/random-model.js';
import { randomModel } from '../runtime/format/random-model.js';

const SEED = 20250812;
const KERNELS = ['reference', 'wasm'] as const;

test('the wasm kernel is available here (built at install)', () => {
  assert.equal(wasmUnavailable(), undefined);
});

test('the descriptor layout the planner writes is the one the compiled kernel exports', () => {
  assert.deepEqual(moduleLayout(), { ...FIELDS, DESC_WORDS });
  const words = Object.values(FIELDS);
  assert.equal(new Set(words).size, words.length, 'two fields share a word');
  assert.ok(Math.max(...words) < DESC_WORDS, 'a field past the descriptor');
});

test('popcount32 and binaryDot follow 2*popcount(s & w) - popcount(s)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 12, maxLength: 12 }),
      (s, w) => {
        const sw = Uint32Array.from(s);
        const ww = Uint32Array.from(w);
        let expected = 0;
        for (let i = 0; i < s.length; i++) {
          for (let b = 0; b < 32; b++) if ((sw[i]! >>> b) & 1) expected += (ww[i]! >>> b) & 1 ? 1 : -1;
        }
        assert.equal(binaryDot(sw, 0, ww, 0, s.length), expected);
        assert.equal(popcount32(sw[0]!), [...sw[0]!.toString(2)].filter((c) => c === '1').length);
      },
    ),
    { seed: SEED, numRuns: 200 },
  );
});

function randomSpikes(n: number, rate: number, r: () => number): Uint8Array {
  return Uint8Array.from({ length: n }, () => (r() < rate ? 1 : 0));
}

function randomBitsRows(rows: number, bits: number, r: () => number): Uint32Array {
  const out = new Uint32Array(rows * rowWords(bits));
  for (let o = 0; o < rows; o++) packBits(randomSpikes(bits, 0.5, r), out, o * rowWords(bits));
  return out;
}

const convCase = fc.record({
  h: fc.integer({ min: 1, max: 11 }),
  w: fc.integer({ min: 1, max: 11 }),
  cin: fc.constantFrom(1, 3, 8, 31, 32, 33, 64, 70),
  cout: fc.constantFrom(1, 2, 4, 5, 16, 17, 33, 64),
  kernel: fc.constantFrom(1, 3, 5),
  stride: fc.constantFrom(1, 2),
  padFraction: fc.constantFrom(0, 0.5, 1),
  rate: fc.constantFrom(0, 0.02, 0.15, 0.5, 1),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
});

const PATHS = ['dense', 'events', 'auto'] as const;

test('binary conv dots: wasm (dense popcount, event-driven, auto) equals reference exactly', () => {
  fc.assert(
    fc.property(convCase, fc.constantFrom(...PATHS), (c, path) => {
      const pad = Math.floor(((c.kernel - 1) * c.padFraction) / 1);
      const oh = convOut(c.h, c.kernel, c.stride, pad);
      const ow = convOut(c.w, c.kernel, c.stride, pad);
      fc.pre(oh >= 1 && ow >= 1);
      const r = rng(c.seed);
      const inShape: Shape3 = [c.h, c.w, c.cin];
      const layer: BinaryConvLayer = {
        kind: 'bconv',
        name: 'l',
        inShape,
        outShape: [oh, ow, c.cout],
        kernel: c.kernel,
        stride: c.stride,
        pad,
        weightBits: randomBitsRows(c.cout, c.kernel * c.kernel * c.cin, r),
        scale: new Float32Array(c.cout).fill(1),
        bias: new Float32Array(c.cout),
        shortcut: 'none',
        lif: { beta: 1, theta: new Float32Array(c.cout).fill(1) },
      };
      const spikes = randomSpikes(c.h * c.w * c.cin, c.rate, r);
      assert.deepEqual(wasmDots(layer, spikes, inShape, path), bconvDots(layer, spikes));
    }),
    { seed: SEED, numRuns: 250 },
  );
});

test('binary linear dots: wasm (every path) equals reference exactly', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }),
      fc.constantFrom(1, 7, 32, 40),
      fc.constantFrom(1, 3, 10, 64),
      fc.constantFrom(0, 0.2, 1),
      fc.integer(),
      fc.constantFrom(...PATHS),
      (h, w, c, out, rate, seed, path) => {
        const r = rng(seed);
        const inFeatures = h * w * c;
        const layer: BinaryLinearLayer = {
          kind: 'blinear',
          name: 'l',
          inFeatures,
          outFeatures: out,
          weightBits: randomBitsRows(out, inFeatures, r),
          scale: new Float32Array(out).fill(1),
          bias: new Float32Array(out),
          shortcut: 'none',
          lif: { beta: 1, theta: new Float32Array(out).fill(1) },
        };
        const spikes = randomSpikes(inFeatures, rate, r);
        assert.deepEqual(wasmDots(layer, spikes, [h, w, c], path), blinearDots(layer, spikes));
      },
    ),
    { seed: SEED, numRuns: 100 },
  );
});

const blockCase = fc.record({
  cout: fc.constantFrom(4, 6, 16, 32, 40),
  stride: fc.constantFrom(1, 2),
  kernel: fc.constantFrom(1, 3, 5),
  tile: fc.boolean(),
});

test('whole engine: wasm and reference agree bit for bit (logits, spikes, currents, rates, synOps)', () => {
  fc.assert(
    fc.property(
      fc.record({
        seed: fc.integer({ min: 1, max: 1 << 30 }),
        h: fc.constantFrom(4, 6, 8, 9),
        cin: fc.constantFrom(1, 2, 3),
        first: fc.constantFrom(3, 8, 32, 33),
        firstKernel: fc.constantFrom(1, 3, 5),
        T: fc.integer({ min: 1, max: 4 }),
        blocks: fc.array(blockCase, { minLength: 0, maxLength: 3 }),
        linear: fc.array(fc.constantFrom(10, 33), { maxLength: 2 }),
        brightness: fc.constantFrom(0.1, 0.5, 1),
      }),
      (c) => {
        let channels: number = c.first;
        // A stride-2 block that can tile its input channels gets the pooled shortcut; the generator decides.
        const blocks: BlockSpec[] = c.blocks.map((b) => {
          const cout = b.stride === 2 && b.tile ? channels * 2 : b.cout;
          channels = cout;
          return { cout, stride: b.stride, kernel: b.kernel };
        });
        const model = randomModel({
          seed: c.seed,
          input: [c.h, c.h, c.cin],
          T: c.T,
          firstChannels: c.first,
          firstKernel: c.firstKernel,
          blocks,
          linear: c.linear,
          classes: 5,
        });
        const r = rng(c.seed ^ 0x5eed);
        // One noisy frame, and one with a uniform background around a noisy object (equal windows get reused).
        const size = c.h * c.h * c.cin;
        const noisy = Uint8Array.from({ length: size }, () => Math.floor(r() * 256 * c.brightness));
        const object = noisy.map((x, i) =>
          Math.floor(i / c.cin) % c.h > c.h / 2 && Math.floor(i / c.cin / c.h) > c.h / 3 ? x : 0,
        );
        const frames = [noisy, object];
        const engines = KERNELS.map((kernel) => createEngine(model, { kernel }));
        for (const frame of frames) {
          const [ref, wasm] = engines.map((e) => e.infer(frame, { record: true }));
          const plain = engines[1]!.infer(frame);
          assert.deepEqual(Buffer.from(wasm!.logits.buffer), Buffer.from(ref!.logits.buffer));
          assert.deepEqual(Buffer.from(plain.logits.buffer), Buffer.from(ref!.logits.buffer));
          assert.deepEqual(wasm!.spikeRates, ref!.spikeRates);
          assert.equal(wasm!.synOps, ref!.synOps);
          assert.equal(wasm!.prediction, ref!.prediction);
          ref!.trace!.forEach((layer, i) => {
            assert.deepEqual(wasm!.trace![i]!.spikes, layer.spikes, `spikes of ${layer.name}`);
            assert.deepEqual(
              Buffer.from(wasm!.trace![i]!.currents.buffer),
              Buffer.from(layer.currents.buffer),
              `currents of ${layer.name}`,
            );
          });
        }
      },
    ),
    { seed: SEED, numRuns: 80 },
  );
});

test("each layer counts its spikes per step for the next layer's path choice: STEP is the popcount of its output map", () => {
  // A wrong count would only steer a layer to the other (equally exact) path, which no equality above can see.
  const model = randomModel({
    seed: 11,
    input: [12, 12, 1],
    firstChannels: 16,
    T: 3,
    blocks: [{ cout: 16 }, { cout: 32, stride: 2 }, { cout: 40 }],
    linear: [33],
    classes: 4,
  });
  const { kernel, descAt, layers } = planNetwork(model);
  const r = rng(5);
  const frame = Uint8Array.from({ length: 144 }, (_, i) => (i % 12 > 5 ? Math.floor(r() * 256) : 0));
  new Uint8Array(kernel.memory.buffer, layers[0]!.desc[FIELDS.IN]!, frame.length).set(frame);
  kernel.start(descAt, layers.length);
  const ints = () => new Int32Array(kernel.memory.buffer);
  const word = (i: number, field: number) => ints()[(descAt >> 2) + i * DESC_WORDS + field]!;
  layers.forEach((_, i) =>
    assert.equal(
      word(i, FIELDS.IN_STEP),
      i === 0 ? 0 : descAt + ((i - 1) * DESC_WORDS + FIELDS.STEP) * 4,
      `layer ${i} reads the count of layer ${i - 1}`,
    ),
  );
  const counts = new Set<number>();
  for (let t = 0; t < model.T; t++) {
    kernel.step(descAt, layers.length);
    layers.forEach((p, i) => {
      const words = new Uint32Array(kernel.memory.buffer, p.out, (p.units / p.channels) * cwOf(p.channels));
      const spikes = words.reduce((n, w) => n + popcount32(w), 0);
      assert.equal(word(i, FIELDS.STEP), spikes, `layer ${i}, step ${t}`);
      counts.add(spikes);
    });
  }
  assert.ok(counts.size > 3, 'the frame makes layers spike, differently');
});

test("each binary layer's switch to the event path is measured for its shape, and the kernel takes the path it sets", () => {
  const model = randomModel({
    seed: 12,
    input: [12, 12, 1],
    firstChannels: 16,
    T: 2,
    blocks: [{ cout: 16 }, { cout: 32, stride: 2 }],
    linear: [20],
    classes: 4,
  });
  const from = (h: number) => mapShape(h === 0 ? model.first : model.hidden[h - 1]!);
  const measured = model.hidden.map((l, h) => measuredSwitch(l, from(h)));
  for (const m of measured) assert.ok([0, 20, 50, 100, 150, 200, 250, 300, 400, 500].includes(m), `switch ${m}`);
  // Once per shape and process: asked again, the same value without measuring.
  const before = switchMeasurements();
  assert.deepEqual(
    model.hidden.map((l, h) => measuredSwitch(l, from(h))),
    measured,
  );
  assert.equal(switchMeasurements(), before, 'a measured shape is looked up, not measured again');
  const word = (plan: ReturnType<typeof planNetwork>, i: number, field: number) =>
    new Int32Array(plan.kernel.memory.buffer)[(plan.descAt >> 2) + i * DESC_WORDS + field]!;
  const planned = planNetwork(model);
  const fixed = planNetwork(model, false);
  model.hidden.forEach((_, h) => {
    assert.equal(word(planned, h + 1, FIELDS.SWITCH), measured[h]);
    assert.equal(word(fixed, h + 1, FIELDS.SWITCH), DEFAULT_SWITCH);
  });
  // The kernel reads the field: at 0 ‰ a layer with input spikes goes dense, at 1000 ‰ it always takes the events.
  const frame = Uint8Array.from({ length: 144 }, (_, i) => (i * 37) % 256);
  for (const [sw, events] of [
    [0, 0],
    [1000, 1],
  ] as const) {
    const plan = planNetwork(model, false);
    const ints = new Int32Array(plan.kernel.memory.buffer);
    model.hidden.forEach((_, h) => {
      ints[(plan.descAt >> 2) + (h + 1) * DESC_WORDS + FIELDS.SWITCH] = sw;
    });
    new Uint8Array(plan.kernel.memory.buffer, plan.layers[0]!.desc[FIELDS.IN]!, frame.length).set(frame);
    plan.kernel.frame(plan.descAt, plan.layers.length, model.T);
    const spiking = model.hidden.filter((_, h) => word(plan, h, FIELDS.STEP) > 0).length;
    assert.ok(spiking > 0, 'some layer has input spikes');
    model.hidden.forEach((_, h) => {
      if (word(plan, h, FIELDS.STEP) > 0)
        assert.equal(word(plan, h + 1, FIELDS.EVENTS), events, `layer ${h + 1} at ${sw}`);
    });
  }
});

test("at a step count other than the file's T, both kernels agree bit for bit at every T in 1..16, and a run at s steps is the first s steps of a longer one", () => {
  const LONG = 16;
  fc.assert(
    fc.property(
      fc.record({
        seed: fc.integer({ min: 1, max: 1 << 30 }),
        h: fc.constantFrom(5, 8),
        trained: fc.integer({ min: 1, max: 4 }),
        steps: fc.integer({ min: 1, max: LONG }),
        blocks: fc.array(blockCase, { minLength: 1, maxLength: 2 }),
      }),
      (c) => {
        const model = randomModel({
          seed: c.seed,
          input: [c.h, c.h, 1],
          T: c.trained,
          firstChannels: 8,
          blocks: c.blocks.map((b) => ({ cout: b.cout, stride: b.stride, kernel: b.kernel })),
          classes: 4,
        });
        const r = rng(c.seed);
        const frame = Uint8Array.from({ length: c.h * c.h }, () => Math.floor(r() * 256));
        const [ref, wasm] = KERNELS.map((kernel) => createEngine(model, { kernel, steps: c.steps }));
        assert.equal(wasm!.kernel, 'wasm');
        assert.equal(ref!.steps, c.steps);
        assert.equal(ref!.model.T, c.trained, "the engine keeps the model's own T");
        const [a, b] = [ref!.infer(frame, { record: true }), wasm!.infer(frame, { record: true })];
        const plain = wasm!.infer(frame);
        assert.deepEqual(Buffer.from(b.logits.buffer), Buffer.from(a.logits.buffer));
        assert.deepEqual(Buffer.from(plain.logits.buffer), Buffer.from(a.logits.buffer));
        assert.deepEqual(b.spikeRates, a.spikeRates);
        assert.deepEqual(b.features, a.features);
        assert.equal(b.synOps, a.synOps);
        const long = createEngine(model, { kernel: 'reference', steps: LONG }).infer(frame, { record: true });
        a.trace!.forEach((layer, i) => {
          const units = layer.spikes.length / c.steps;
          assert.equal(units, long.trace![i]!.spikes.length / LONG);
          assert.deepEqual(b.trace![i]!.spikes, layer.spikes, `wasm spikes of ${layer.name}`);
          assert.deepEqual(
            Buffer.from(b.trace![i]!.currents.buffer),
            Buffer.from(layer.currents.buffer),
            `wasm currents of ${layer.name}`,
          );
          assert.deepEqual(
            layer.spikes,
            long.trace![i]!.spikes.subarray(0, c.steps * units),
            `prefix of ${layer.name}`,
          );
          const prefix = long.trace![i]!.currents.subarray(0, c.steps * units);
          assert.deepEqual(
            Buffer.from(layer.currents.buffer),
            Buffer.from(prefix.buffer, prefix.byteOffset, prefix.byteLength),
            `current prefix of ${layer.name}`,
          );
        });
        // The head's input is each last-layer channel's count over space and the s steps, divided by H·W·s.
        const last = a.trace!.at(-1)!;
        const channels = a.features.length;
        const counts = new Float64Array(channels);
        last.spikes.forEach((s, u) => (counts[u % channels]! += s));
        const positions = last.spikes.length / c.steps / channels;
        counts.forEach((n, ch) => assert.equal(a.features[ch], n / (positions * c.steps)));
      },
    ),
    { seed: SEED, numRuns: 40 },
  );
});
