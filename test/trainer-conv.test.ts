/**
 * The trainer's conv gradient (custom: dx from forward ops, dW from the trainer's WASM kernel or, without it, from
 * forward ops) against TensorFlow.js's own Conv2DBackpropFilter/Input on the `cpu` backend, on random shapes:
 * strides 1 and 2, odd and even sizes, pads 0/1, dense inputs and spike maps (0/1, the binary layers' inputs, with
 * ±alpha weights: their forward value comes from the engine's AND-popcount kernel, trainer/backend/spike-conv.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { conv2d } from '../trainer/backend/conv.js';
import { spikeConvKernel } from '../trainer/backend/spike-conv.js';
import { trainerKernels, useTrainerKernels } from '../trainer/backend/wasm-kernels.js';
import { rng } from '../runtime/data/random.js';

interface Case {
  n: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  pad: number;
  /** Inputs of 0s and 1s and weights ±alpha per output channel, as the binary layers get. */
  spikes?: boolean;
}

function cases(): Case[] {
  const r = rng(7);
  const pick = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const out: Case[] = [];
  for (const stride of [1, 2]) {
    // Spike maps with enough channels for the kernel's 4-wide lanes and their tail.
    out.push({ n: 2, h: 9 + stride, w: 8, cin: 8, cout: 13, k: 3, stride, pad: 1, spikes: true });
    // More than one word of input channels and more than one v128 group (16) of output channels, with tails.
    out.push({ n: 3, h: 7, w: 6 + stride, cin: 40, cout: 33, k: 3, stride, pad: 1, spikes: true });
    for (const parity of [0, 1]) {
      for (const k of [1, 3]) {
        const h = 2 * pick(3, 7) + parity;
        out.push({
          n: pick(1, 3),
          h,
          w: h + (r() < 0.5 ? 1 : 0),
          cin: pick(1, 5),
          cout: pick(1, 6),
          k,
          stride,
          pad: k === 1 ? 0 : pick(0, 1),
        });
      }
    }
  }
  return out;
}

function randomArray(n: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

function maxAbsDiff(a: Float32Array | Int32Array | Uint8Array, b: Float32Array | Int32Array | Uint8Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function compareWithCpu(): Promise<void> {
  const r = rng(11);
  for (const c of cases()) {
    const xs = randomArray(c.n * c.h * c.w * c.cin, r).map((v) => (c.spikes ? (v > 0.4 ? 1 : 0) : v));
    const ws = randomArray(c.k * c.k * c.cin * c.cout, r);
    // A binary layer's weights: sign · alpha_c (HWIO, so channel c is every cout-th value).
    if (c.spikes) {
      const alpha = Array.from({ length: c.cout }, () => 0.05 + r());
      ws.forEach((v, i) => (ws[i] = (v >= 0 ? 1 : -1) * alpha[i % c.cout]!));
    }
    const run = (custom: boolean) => {
      const x = tf.tensor4d(xs, [c.n, c.h, c.w, c.cin]);
      const w = tf.tensor4d(ws, [c.k, c.k, c.cin, c.cout]);
      const f = (a: tf.Tensor, b: tf.Tensor) => {
        const y = custom
          ? conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad, { spikes: c.spikes ?? false })
          : tf.conv2d(
              tf.pad(a as tf.Tensor4D, [
                [0, 0],
                [c.pad, c.pad],
                [c.pad, c.pad],
                [0, 0],
              ]),
              b as tf.Tensor4D,
              c.stride,
              'valid',
            );
        // A non-uniform upstream gradient, so that every position of dy matters.
        return tf.sum(tf.mul(y, tf.sin(tf.range(0, y.size).reshape(y.shape))));
      };
      const [gx, gw] = tf.grads(f)([x, w]);
      const y = custom
        ? conv2d(x, w, c.stride, c.pad, { spikes: c.spikes ?? false })
        : tf.conv2d(
            tf.pad(x, [
              [0, 0],
              [c.pad, c.pad],
              [c.pad, c.pad],
              [0, 0],
            ]),
            w,
            c.stride,
            'valid',
          );
      return {
        y: y.dataSync() as Float32Array,
        gx: gx!.dataSync() as Float32Array,
        gw: gw!.dataSync() as Float32Array,
        gwShape: gw!.shape,
      };
    };
    await tf.setBackend('cpu');
    const ref = run(false);
    await tf.setBackend('wasm');
    const got = run(true);
    const label = JSON.stringify(c);
    assert.deepEqual(got.gwShape, [c.k, c.k, c.cin, c.cout], label);
    assert.ok(maxAbsDiff(got.y, ref.y) < 1e-4, `forward ${label}`);
    assert.ok(maxAbsDiff(got.gx, ref.gx) < 1e-4, `dx ${label}: ${maxAbsDiff(got.gx, ref.gx)}`);
    assert.ok(maxAbsDiff(got.gw, ref.gw) < 1e-4, `dW ${label}: ${maxAbsDiff(got.gw, ref.gw)}`);
  }
}

test("the trainer's own WASM kernels are built and load", () => {
  assert.ok(trainerKernels(), 'trainer/backend/assembly/kernels.wasm missing: npm run build:wasm');
});

test("the engine's kernel is there for the binary layers' forward conv on spike maps", () => {
  assert.ok(spikeConvKernel(), 'runtime/kernels/wasm/assembly/simd-kernel.wasm missing: npm run build:wasm');
});

test('custom conv on wasm matches tfjs cpu Conv2D and Conv2DBackpropFilter/Input (dW and spike forward by kernels)', async () => {
  await compareWithCpu();
});

test('custom conv on wasm matches tfjs cpu Conv2D and Conv2DBackpropFilter/Input (all by tfjs ops)', async () => {
  const was = useTrainerKernels(false);
  try {
    await compareWithCpu();
  } finally {
    useTrainerKernels(was);
  }
});

test('wasm really lacks Conv2DBackpropFilter (else the custom gradient is unnecessary)', async () => {
  await tf.setBackend('wasm');
  assert.equal(tf.getKernel('Conv2DBackpropFilter', 'wasm'), undefined);
});
