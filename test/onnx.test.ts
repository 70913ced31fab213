/**
 * The ONNX twins on real onnxruntime: the SNN twin against a direct float32 simulation written from the numeric
 * semantics in ARCHITECTURE.md (independent of the runtime engine, which `sei verify` checks in verify.test.ts),
 * and the ANN twin's shape and determinism.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  annTwinOnnx,
  frameToNchw,
  hwcToNchwIndex,
  snnTwinOnnx,
  spikeOutputName,
  TWIN_OUTPUT,
} from '../trainer/export/onnx.js';
import { openOrt } from '../trainer/export/ort.js';
import type { BwsnnModel, HiddenLayer, Shape3 } from '../runtime/format/model.js';
import { rowWords } from '../runtime/format/model.js';
import { rng } from '../runtime/data/random.js';
import { FMNIST_BLOCKS, randomModel, type RandomModelSpec } from '../runtime/format/random-model.js';
import { readIdx } from '../runtime/data/idx.js';

const f = Math.fround;

/** Float32 simulation: per layer, T × units spikes in HWC order, plus the logits. */
function simulate(model: BwsnnModel, frame: ArrayLike<number>): { spikes: Uint8Array[]; logits: Float64Array } {
  const { T, first } = model;
  const [oh, ow, c0] = first.outShape;
  const cin0 = first.inShape[2];
  const I0 = new Float32Array(oh * ow * c0);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++)
      for (let o = 0; o < c0; o++) {
        let acc = 0;
        for (let ky = 0; ky < first.kernel; ky++)
          for (let kx = 0; kx < first.kernel; kx++) {
            const iy = y * first.stride + ky - first.pad;
            const ix = x * first.stride + kx - first.pad;
            if (iy < 0 || ix < 0 || iy >= first.inShape[0] || ix >= first.inShape[1]) continue;
            for (let c = 0; c < cin0; c++)
              acc +=
                first.weights[((o * first.kernel + ky) * first.kernel + kx) * cin0 + c]! *
                frame[(iy * first.inShape[1] + ix) * cin0 + c]!;
          }
        I0[(y * ow + x) * c0 + o] = f(f(first.scale[o]! * acc) + first.bias[o]!);
      }
  const units = (l: HiddenLayer | typeof first) =>
    l.kind === 'blinear' ? l.outFeatures : l.outShape[0] * l.outShape[1] * l.outShape[2];
  const channelOf = (l: HiddenLayer | typeof first, i: number) => (l.kind === 'blinear' ? i : i % l.outShape[2]);
  const run = (l: HiddenLayer | typeof first, current: (t: number) => Float32Array) => {
    const n = units(l);
    const v = new Float32Array(n);
    const s = new Uint8Array(T * n);
    const currents: Float32Array[] = [];
    for (let t = 0; t < T; t++) {
      const I = current(t);
      currents.push(I);
      for (let i = 0; i < n; i++) {
        const th = l.lif.theta[channelOf(l, i)]!;
        let vi = f(f(l.lif.beta * v[i]!) + I[i]!);
        const fired = vi >= th ? 1 : 0;
        s[t * n + i] = fired;
        vi = f(vi - f(th * fired));
        v[i] = vi;
      }
    }
    return { s, currents };
  };
  let prev = run(first, () => I0);
  const spikes = [prev.s];
  let prevShape: Shape3 | undefined = first.outShape;
  for (const l of model.hidden) {
    const n = units(l);
    const inUnits = l.kind === 'blinear' ? l.inFeatures : l.inShape[0] * l.inShape[1] * l.inShape[2];
    const words = rowWords(l.kind === 'blinear' ? l.inFeatures : l.kernel * l.kernel * l.inShape[2]);
    const w = (o: number, j: number) => ((l.weightBits[o * words + (j >>> 5)]! >>> (j & 31)) & 1 ? 1 : -1);
    const p = prev;
    const ps = prevShape;
    const cur = (t: number) => {
      const sIn = p.s.subarray(t * inUnits, (t + 1) * inUnits);
      const src = p.currents[t]!;
      const I = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let dot = 0;
        let o: number;
        if (l.kind === 'blinear') {
          o = i;
          for (let j = 0; j < l.inFeatures; j++) dot += sIn[j]! * w(o, j);
        } else {
          const [, W, C] = l.outShape;
          o = i % C;
          const x = Math.floor(i / C) % W;
          const y = Math.floor(i / C / W);
          const cin = l.inShape[2];
          for (let ky = 0; ky < l.kernel; ky++)
            for (let kx = 0; kx < l.kernel; kx++) {
              const iy = y * l.stride + ky - l.pad;
              const ix = x * l.stride + kx - l.pad;
              if (iy < 0 || ix < 0 || iy >= l.inShape[0] || ix >= l.inShape[1]) continue;
              for (let c = 0; c < cin; c++)
                dot += sIn[(iy * l.inShape[1] + ix) * cin + c]! * w(o, (ky * l.kernel + kx) * cin + c);
            }
        }
        let v = f(f(l.scale[o]! * dot) + l.bias[o]!);
        if (l.shortcut === 'identity') v = f(v + src[i]!);
        if (l.shortcut === 'avgpool_repeat' && l.kind === 'bconv' && ps) {
          const [, W, C] = l.outShape;
          const [, iw, ic] = ps;
          const x = Math.floor(i / C) % W;
          const y = Math.floor(i / C / W);
          const c = o % ic;
          const at = (yy: number, xx: number) => src[(yy * iw + xx) * ic + c]!;
          const pooled = f(
            f(f(f(at(2 * y, 2 * x) + at(2 * y, 2 * x + 1)) + at(2 * y + 1, 2 * x)) + at(2 * y + 1, 2 * x + 1)) * 0.25,
          );
          v = f(v + pooled);
        }
        I[i] = v;
      }
      return I;
    };
    prev = run(l, cur);
    spikes.push(prev.s);
    prevShape = l.kind === 'bconv' ? l.outShape : undefined;
  }
  const last = model.hidden.at(-1) ?? first;
  const n = units(last);
  const C = model.head.inFeatures;
  const counts = new Float64Array(C);
  const s = spikes.at(-1)!;
  for (let k = 0; k < T * n; k++) counts[channelOf(last, k % n)]! += s[k]!;
  const logits = new Float64Array(model.head.outFeatures);
  for (let o = 0; o < logits.length; o++) {
    let sum = model.head.bias[o]!;
    for (let c = 0; c < C; c++) sum += model.head.weight[o * C + c]! * (counts[c]! / ((n / C) * T));
    logits[o] = sum;
  }
  return { spikes, logits };
}

const SHAPES: Record<string, RandomModelSpec> = {
  'fmnist T=2': { seed: 11, blocks: FMNIST_BLOCKS, firstChannels: 32 },
  'odd sizes, kernels 1 and 5, T=4': {
    seed: 12,
    input: [13, 11, 2],
    T: 4,
    firstKernel: 5,
    firstChannels: 8,
    blocks: [
      { cout: 8, kernel: 1 },
      { cout: 12, stride: 2, kernel: 5 },
      { cout: 12, kernel: 5 },
    ],
  },
  'pool shortcut + binary linear layers, T=1': {
    seed: 13,
    input: [16, 16, 1],
    T: 1,
    firstChannels: 8,
    blocks: [{ cout: 16, stride: 2 }, { cout: 16 }],
    linear: [40, 40],
    classes: 5,
  },
};

describe('snnTwinOnnx on onnxruntime (optimisations disabled)', () => {
  const samples = readIdx('models/samples/fmnist-t10k-first1000-images-idx3-ubyte.gz');
  for (const [label, spec] of Object.entries(SHAPES)) {
    it(`matches the float32 simulation bit for bit: ${label}`, async () => {
      const model = randomModel(spec);
      const ort = await openOrt(snnTwinOnnx(model, { exposeSpikes: true }), { optimize: false });
      const r = rng(spec.seed);
      const size = model.input[0] * model.input[1] * model.input[2];
      const layers = [model.first, ...model.hidden];
      let compared = 0;
      for (let k = 0; k < 4; k++) {
        const frame =
          model.input[0] === 28 && k % 2 === 1
            ? samples.data.subarray(k * size, (k + 1) * size)
            : Uint8Array.from({ length: size }, () => Math.floor(r() * 256));
        const sim = simulate(model, frame);
        const out = await ort.run(frameToNchw(frame, model.input), [1, model.input[2], model.input[0], model.input[1]]);
        layers.forEach((layer, li) => {
          const n = sim.spikes[li]!.length / model.T;
          for (let t = 0; t < model.T; t++) {
            const got = out[spikeOutputName(layer.name, t)]!;
            for (let i = 0; i < n; i++) {
              const j = layer.kind === 'blinear' ? i : hwcToNchwIndex(i, layer.outShape);
              if (got[j] !== sim.spikes[li]![t * n + i])
                assert.fail(
                  `frame ${k} layer ${layer.name} step ${t} neuron ${i}: onnx ${got[j]} vs sim ${sim.spikes[li]![t * n + i]}`,
                );
            }
            compared += n;
          }
        });
        const logits = out[TWIN_OUTPUT]!;
        const scale = Math.max(...Array.from(sim.logits, Math.abs));
        sim.logits.forEach((v, o) =>
          assert.ok(Math.abs(v - logits[o]!) <= 1e-5 * scale, `logit ${o}: ${logits[o]} vs ${v}`),
        );
      }
      assert.ok(compared > 0);
    });
  }

  it('without exposeSpikes has the logits as its only output', async () => {
    const model = randomModel(SHAPES['fmnist T=2']!);
    const ort = await openOrt(snnTwinOnnx(model), { optimize: false });
    assert.deepEqual(ort.session.outputNames, [TWIN_OUTPUT]);
  });
});

/** Float64 forward pass of the ANN that annTwinOnnx describes (ReLU for LIF, T = 1, mean over space into the head). */
function annForward(model: BwsnnModel, frame: ArrayLike<number>): Float64Array {
  const conv = (
    x: ArrayLike<number>,
    [h, w, cin]: Shape3,
    [oh, ow, cout]: Shape3,
    k: number,
    stride: number,
    pad: number,
    weight: (o: number, j: number) => number,
  ) => {
    const y = new Float64Array(oh * ow * cout);
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++)
        for (let o = 0; o < cout; o++) {
          let acc = 0;
          for (let ky = 0; ky < k; ky++)
            for (let kx = 0; kx < k; kx++) {
              const iy = oy * stride + ky - pad;
              const ix = ox * stride + kx - pad;
              if (iy < 0 || ix < 0 || iy >= h || ix >= w) continue;
              for (let c = 0; c < cin; c++) acc += weight(o, (ky * k + kx) * cin + c) * x[(iy * w + ix) * cin + c]!;
            }
          y[(oy * ow + ox) * cout + o] = acc;
        }
    return y;
  };
  const { first } = model;
  const fanIn0 = first.kernel * first.kernel * first.inShape[2];
  let x = conv(
    frame,
    first.inShape,
    first.outShape,
    first.kernel,
    first.stride,
    first.pad,
    (o, j) => first.weights[o * fanIn0 + j]! * first.scale[o]!,
  );
  const relu = (v: Float64Array, bias: Float32Array) =>
    v.forEach((a, i) => (v[i] = Math.max(0, a + bias[i % bias.length]!)));
  relu(x, first.bias);
  let shape: Shape3 = first.outShape;
  for (const l of model.hidden) {
    const words = rowWords(l.kind === 'blinear' ? l.inFeatures : l.kernel * l.kernel * l.inShape[2]);
    const w = (o: number, j: number) =>
      ((l.weightBits[o * words + (j >>> 5)]! >>> (j & 31)) & 1 ? 1 : -1) * l.scale[o]!;
    const outShape: Shape3 = l.kind === 'blinear' ? [1, 1, l.outFeatures] : l.outShape;
    const y =
      l.kind === 'blinear'
        ? conv(x, [1, 1, l.inFeatures], outShape, 1, 1, 0, w)
        : conv(x, l.inShape, l.outShape, l.kernel, l.stride, l.pad, w);
    if (l.shortcut === 'identity') y.forEach((_, i) => (y[i]! += x[i]!));
    if (l.shortcut === 'avgpool_repeat') {
      const [oh, ow, cout] = outShape;
      const [, iw, cin] = shape;
      for (let oy = 0; oy < oh; oy++)
        for (let ox = 0; ox < ow; ox++)
          for (let c = 0; c < cout; c++) {
            const at = (dy: number, dx: number) => x[((2 * oy + dy) * iw + 2 * ox + dx) * cin + (c % cin)]!;
            y[(oy * ow + ox) * cout + c]! += (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4;
          }
    }
    relu(y, l.bias);
    x = y;
    shape = outShape;
  }
  const [h, w, c] = shape;
  const rates = new Float64Array(c);
  x.forEach((v, i) => (rates[i % c]! += v / (h * w)));
  return Float64Array.from({ length: model.head.outFeatures }, (_, o) =>
    rates.reduce((sum, r, i) => sum + model.head.weight[o * c + i]! * r, model.head.bias[o]!),
  );
}

describe('annTwinOnnx', () => {
  it('computes the described float ANN (first conv, ±scale convs, biases, shortcuts, ReLU, mean pool, head)', async () => {
    for (const spec of Object.values(SHAPES)) {
      const model = randomModel(spec);
      const ort = await openOrt(annTwinOnnx(model), { optimize: true });
      const r = rng(spec.seed + 100);
      const frame = Uint8Array.from({ length: model.input[0] * model.input[1] * model.input[2] }, () =>
        Math.floor(r() * 256),
      );
      const { logits } = await ort.run(frameToNchw(frame, model.input), [
        1,
        model.input[2],
        model.input[0],
        model.input[1],
      ]);
      const expected = annForward(model, frame);
      const scale = Math.max(...Array.from(expected, Math.abs));
      expected.forEach((v, o) =>
        assert.ok(Math.abs(v - logits![o]!) <= 1e-4 * scale, `${spec.seed}: logit ${o}: onnx ${logits![o]} vs ${v}`),
      );
    }
  });

  it('is deterministic, runs with full optimisation and gives one logit per class', async () => {
    for (const spec of Object.values(SHAPES)) {
      const model = randomModel(spec);
      const bytes = annTwinOnnx(model);
      assert.deepEqual(annTwinOnnx(model), bytes);
      const ort = await openOrt(bytes, { optimize: true });
      const frame = new Float32Array(model.input[0] * model.input[1] * model.input[2]).fill(128);
      const { logits } = await ort.run(frame, [1, model.input[2], model.input[0], model.input[1]]);
      assert.equal(logits!.length, model.head.outFeatures);
      assert.ok(logits!.every(Number.isFinite));
    }
  });

  it('holds float weights: at least 25x the bits of the binary layers', () => {
    const model = randomModel(SHAPES['fmnist T=2']!);
    const binaryBits = model.hidden.reduce((n, l) => n + l.weightBits.length * 32, 0);
    assert.ok(annTwinOnnx(model).length * 8 > 25 * binaryBits);
  });
});
