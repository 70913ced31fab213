/**
 * Trainer layers: LIF forward = the runtime's arithmetic, triangle surrogate gradient, clipped STE, int8 QAT; the
 * network's shortcut layouts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../trainer/backend/index.js';
import { lif, lifConstants } from '../trainer/layers/lif.js';
import { binarize, int8Parts, signSte } from '../trainer/layers/binary.js';
import { shortcutCurrent } from '../trainer/layers/shortcut.js';
import { rng } from '../trainer/data/random.js';
import { foldModel } from '../trainer/export/bwsnn.js';
import type { NetConfig } from '../trainer/model.js';
import {
  DEFAULT_NET,
  SHORTCUT_LAYOUTS,
  currentTerms,
  disposeParams,
  exportable,
  forward,
  initParams,
  netDifference,
  plan,
} from '../trainer/model.js';

await initBackend();

test('LIF over T steps matches a scalar float32 simulation (v = beta*v + I, v >= theta, soft reset)', () => {
  const r = rng(3);
  const T = 4,
    n = 50,
    beta = 0.75,
    theta = 1;
  const I = Float32Array.from({ length: T * n }, () => Math.fround(r() * 2.4 - 0.6));
  const got = lif(tf.tensor2d(I, [T * n, 1]), T, lifConstants(1, theta, beta)).dataSync();
  const f = Math.fround;
  let spikes = 0;
  for (let i = 0; i < n; i++) {
    let v = 0;
    for (let t = 0; t < T; t++) {
      v = f(f(f(beta) * v) + I[t * n + i]!);
      const s = v >= theta ? 1 : 0;
      spikes += s;
      if (s) v = f(v - theta);
      assert.equal(got[t * n + i], s, `neuron ${i} step ${t}`);
    }
  }
  assert.ok(spikes > 20 && spikes < T * n - 20, `a test with ${spikes} spikes checks little`);
});

test('spike surrogate gradient is the triangle max(0, 1 - |v - theta|)', () => {
  const theta = 1;
  const v = tf.tensor1d([-0.5, 0, 0.25, 0.5, 0.999, 1, 1.5, 1.9999, 2.5, 3]);
  // One step: the spike of v itself, so the gradient is the surrogate at v.
  const g = tf
    .grad((x: tf.Tensor) => tf.sum(tf.mul(lif(x, 1, lifConstants(1, theta, 0.5)), 2)))(v.reshape([10, 1]))
    .dataSync();
  const want = [0, 0, 0.25, 0.5, 0.999, 1, 0.5, 0.0001, 0, 0].map((x) => 2 * x);
  want.forEach((w, i) => assert.ok(Math.abs(g[i]! - w) < 1e-5, `v=${v.dataSync()[i]}: ${g[i]} vs ${w}`));
});

test('BPTT reaches earlier steps through the membrane (and the reset)', () => {
  const I = tf.tensor2d([0.8, 0.2], [2, 1]);
  const g = tf
    .grad((x: tf.Tensor) => tf.sum(lif(x, 2, lifConstants(1, 1, 0.5))))(I)
    .dataSync();
  // step 0: v0 = 0.8, no spike, surrogate 0.8; step 1: v1 = beta*(v0 - theta*s0) + I1 = 0.6, surrogate 0.6.
  // d s1/d I0 = 0.6 * beta * (1 - theta * ds0/dv0) = 0.6 * 0.5 * (1 - 0.8): the reset path counts.
  assert.ok(Math.abs(g[0]! - (0.8 + 0.6 * 0.5 * 0.2)) < 1e-6, `dI0 ${g[0]}`);
  assert.ok(Math.abs(g[1]! - 0.6) < 1e-6, `dI1 ${g[1]}`);
});

test('binary weights: sign(0) = +1, alpha = mean|w| per output channel, STE passes only |w| <= 1', () => {
  const w = tf.tensor2d(
    [
      [0, -2],
      [-0.5, 0.5],
      [1, 3],
    ],
    [3, 2],
  ); // fan-in 3, 2 output channels
  assert.deepEqual(Array.from(signSte(w).dataSync()), [1, -1, -1, 1, 1, 1]);
  const wb = binarize(w).dataSync();
  const a0 = (0 + 0.5 + 1) / 3,
    a1 = (2 + 0.5 + 3) / 3;
  [a0, -a1, -a0, a1, a0, a1].forEach((x, i) => assert.ok(Math.abs(wb[i]! - x) < 1e-6));
  const up = tf.tensor2d([
    [1, 2],
    [3, 4],
    [5, 6],
  ]);
  const g = tf
    .grad((x: tf.Tensor) => tf.sum(tf.mul(signSte(x), up)))(w)
    .dataSync();
  assert.deepEqual(Array.from(g), [1, 0, 3, 4, 5, 0]);
});

test('int8 first layer: per-channel step max|w|/127, integers in [-127, 127], STE gradient 1', () => {
  const w = tf.tensor2d(
    [
      [0.5, -0.011],
      [-1, 0.02],
      [0.25, 0.005],
    ],
    [3, 2],
  );
  const { step, ints } = int8Parts(w);
  assert.deepEqual(Array.from(ints.dataSync()), [64, -70, -127, 127, 32, 32]);
  assert.ok(Math.abs(step.dataSync()[0]! - 1 / 127) < 1e-8);
  const g = tf.grad((x: tf.Tensor) => tf.sum(int8Parts(x).ints))(w);
  assert.ok(g.dataSync().some((x) => x !== 0));
});

/** avgpool_repeat as plain tfjs ops with autodiff: the oracle of the fused host op. */
function oracleAvgpoolRepeat(x: tf.Tensor4D, cout: number): tf.Tensor4D {
  const [b, h, w, cin] = x.shape;
  const tap = (dy: number, dx: number) =>
    tf
      .slice(tf.reshape(x, [b, h / 2, 2, w / 2, 2, cin]), [0, 0, dy, 0, dx, 0], [b, h / 2, 1, w / 2, 1, cin])
      .reshape([b, h / 2, w / 2, cin]);
  const pooled = tf.mul(tf.add(tf.add(tf.add(tap(0, 0), tap(0, 1)), tap(1, 0)), tap(1, 1)), 0.25);
  return tf.concat(
    Array.from({ length: cout / cin }, () => pooled),
    3,
  ) as tf.Tensor4D;
}

for (const backend of ['wasm', 'cpu'] as const) {
  test(`avgpool_repeat host op (${backend}): value and gradient equal the tfjs-ops oracle`, async () => {
    const was = tf.getBackend();
    await tf.setBackend(backend);
    try {
      for (const [b, h, w, cin, cout] of [
        [2, 4, 6, 3, 6],
        [3, 8, 8, 4, 4],
        [1, 2, 2, 1, 3],
      ] as const) {
        const x = tf.tensor4d(
          Float32Array.from({ length: b * h * w * cin }, (_, i) => Math.fround(Math.sin(i * 1.7) * 3)),
          [b, h, w, cin],
        );
        const up = tf.tensor4d(
          Float32Array.from({ length: b * (h / 2) * (w / 2) * cout }, (_, i) => Math.cos(i * 0.3)),
          [b, h / 2, w / 2, cout],
        );
        const loss = (fn: (t: tf.Tensor4D) => tf.Tensor4D) => (t: tf.Tensor) =>
          tf.sum(tf.mul(fn(t as tf.Tensor4D), up));
        const got = shortcutCurrent('avgpool_repeat', x, cout)!;
        const want = oracleAvgpoolRepeat(x, cout);
        assert.deepEqual(got.shape, want.shape);
        assert.deepEqual(Array.from(got.dataSync()), Array.from(want.dataSync()), `value ${[b, h, w, cin, cout]}`);
        const g = tf
          .grad(loss((t) => shortcutCurrent('avgpool_repeat', t, cout)!))(x)
          .dataSync();
        const o = tf
          .grad(loss((t) => oracleAvgpoolRepeat(t, cout)))(x)
          .dataSync();
        for (let i = 0; i < g.length; i++)
          assert.ok(Math.abs(g[i]! - o[i]!) < 1e-6, `gradient ${i}: ${g[i]} vs ${o[i]}`);
      }
    } finally {
      await tf.setBackend(was);
    }
  });
}

test('avgpool_repeat shortcut sums ((x00 + x01) + x10) + x11 then * 0.25 and tiles channels c % cin', () => {
  const x = tf.tensor4d(
    Float32Array.from({ length: 2 * 4 * 4 * 3 }, (_, i) => Math.fround(Math.sin(i) * 3)),
    [2, 4, 4, 3],
  );
  const y = shortcutCurrent('avgpool_repeat', x, 6)!;
  assert.deepEqual(y.shape, [2, 2, 2, 6]);
  const xs = x.dataSync(),
    ys = y.dataSync();
  const f = Math.fround;
  for (let b = 0; b < 2; b++)
    for (let oy = 0; oy < 2; oy++)
      for (let ox = 0; ox < 2; ox++)
        for (let c = 0; c < 6; c++) {
          const at = (dy: number, dx: number) => xs[((b * 4 + 2 * oy + dy) * 4 + 2 * ox + dx) * 3 + (c % 3)]!;
          assert.equal(
            ys[((b * 2 + oy) * 2 + ox) * 6 + c],
            f(f(f(f(at(0, 0) + at(0, 1)) + at(1, 0)) + at(1, 1)) * 0.25),
          );
        }
});

test('shortcut layouts: multi around every conv, blocks (ResNet) around every two, downsample on the stride-2 convs', () => {
  const layout = (shortcuts: NetConfig['shortcuts']) =>
    plan({ ...DEFAULT_NET, width: 8, shortcuts }).map((l) => `${l.shortcut}:${l.shortcutFrom}`);
  assert.deepEqual(layout('multi'), [
    'none:-1',
    'identity:0',
    'avgpool_repeat:1',
    'identity:2',
    'avgpool_repeat:3',
    'identity:4',
  ]);
  // bconv1–2 and bconv3–4 are blocks (shortcut from the block's input current), bconv5 gets its own: the currents
  // of conv0, bconv2, bconv4 and bconv5 form an identity path.
  assert.deepEqual(layout('blocks'), [
    'none:-1',
    'none:-1',
    'avgpool_repeat:0',
    'none:-1',
    'avgpool_repeat:2',
    'identity:4',
  ]);
  assert.deepEqual(layout('downsample'), [
    'none:-1',
    'none:-1',
    'avgpool_repeat:1',
    'none:-1',
    'avgpool_repeat:3',
    'none:-1',
  ]);
  assert.deepEqual(layout('plain'), layout('downsample'), "older runs' name");
  // How many BN outputs each LIF input current sums through its chain of shortcuts.
  assert.deepEqual(currentTerms({ ...DEFAULT_NET, shortcuts: 'blocks' }), [1, 1, 2, 1, 3, 4]);
  assert.deepEqual(currentTerms({ ...DEFAULT_NET, shortcuts: 'multi' }), [1, 2, 3, 4, 5, 6]);
  // The format's shortcut adds the previous layer's current: blocks do not fold into a .bwsnn file.
  assert.deepEqual(
    SHORTCUT_LAYOUTS.map((shortcuts) => exportable({ ...DEFAULT_NET, shortcuts })),
    [true, false, true],
  );
});

test("a blocks network's forward adds the block input's current, and export refuses it by name", () => {
  const cfg: NetConfig = { ...DEFAULT_NET, width: 4, T: 1, shortcuts: 'blocks' };
  const params = initParams(cfg, 3, 'blocks/');
  const frames = tf.tensor4d(
    Float32Array.from({ length: 2 * 28 * 28 }, (_, i) => (i * 37) % 256),
    [2, 28, 28, 1],
  );
  // The same parameters under the downsample layout differ only in what bconv2, bconv4 and bconv5 add: the layers
  // before bconv2 fire alike, bconv2 (whose shortcut reads conv0's current, not bconv1's) does not.
  const rates = (shortcuts: NetConfig['shortcuts']) =>
    tf.tidy(() => forward({ ...cfg, shortcuts }, params, frames, false).layerRates.map((r) => r.dataSync()[0]!));
  const [blocks, downsample] = [rates('blocks'), rates('downsample')];
  assert.deepEqual(blocks.slice(0, 2), downsample.slice(0, 2));
  assert.notEqual(blocks[2], downsample[2]);
  assert.deepEqual(rates('blocks'), blocks, 'deterministic');
  assert.throws(
    () => foldModel(cfg, params, { name: 'b', labels: [] }),
    /the \.bwsnn format's shortcuts span one conv; this network's 'blocks' layout/,
  );
  disposeParams(params);
  frames.dispose();
});

test('netDifference names the first field two configs differ in, reading defaults and old names as today', () => {
  assert.equal(netDifference(DEFAULT_NET, { ...DEFAULT_NET, lif: 'fixed', thetaInit: 'uniform' }), undefined);
  assert.equal(
    netDifference({ ...DEFAULT_NET, shortcuts: 'plain' }, { ...DEFAULT_NET, shortcuts: 'downsample' }),
    undefined,
  );
  assert.deepEqual(netDifference(DEFAULT_NET, { ...DEFAULT_NET, T: 4 }), { field: 'T', a: '2', b: '4' });
  // An ANN has no LIF: its teacher config may carry a student's LIF options.
  const ann: NetConfig = { ...DEFAULT_NET, neuron: 'relu', weights: 'float', T: 1 };
  assert.equal(netDifference(ann, { ...ann, lif: 'learn', theta: 2 }), undefined);
  assert.deepEqual(netDifference(ann, { ...ann, shortcuts: 'blocks' }), {
    field: 'shortcuts',
    a: 'multi',
    b: 'blocks',
  });
  assert.deepEqual(netDifference(DEFAULT_NET, { ...DEFAULT_NET, input: [32, 32, 3] }), {
    field: 'input',
    a: '28×28×1',
    b: '32×32×3',
  });
});
