/**
 * `sei verify`: the runtime engine against its ONNX twin on real onnxruntime, on random models of several shapes
 * and on real Fashion-MNIST frames; a twin nudged by one float32 ulp must be caught, in the right layer.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, writeBwsnn } from '../runtime/index.js';
import type { BwsnnModel } from '../runtime/format/model.js';
import { layerUnits } from '../runtime/format/ops.js';
import { snnTwinOnnx } from '../trainer/export/onnx.js';
import { verifyEngine, verifyFrames } from '../scripts/commands/verify.js';
import { FMNIST_BLOCKS, randomModel, type RandomModelSpec } from '../runtime/format/random-model.js';

const SHAPES: Record<string, RandomModelSpec> = {
  'Fashion-MNIST layout, T=2': { seed: 21, blocks: FMNIST_BLOCKS, firstChannels: 32 },
  'odd sizes, 2 input channels, kernels 1 and 5, T=4': {
    seed: 22,
    input: [13, 11, 2],
    T: 4,
    firstKernel: 5,
    firstChannels: 8,
    blocks: [
      { cout: 8, kernel: 1 },
      { cout: 12, stride: 2, kernel: 5 },
      { cout: 12, kernel: 5 },
      { cout: 24, stride: 2, kernel: 1 },
    ],
  },
  'pool shortcuts and binary linear layers, T=1': {
    seed: 23,
    input: [16, 16, 1],
    T: 1,
    firstChannels: 8,
    blocks: [{ cout: 16, stride: 2 }, { cout: 16 }],
    linear: [40, 40],
    classes: 5,
  },
  'binary linear with identity shortcut on a conv map, T=2': {
    seed: 24,
    input: [8, 8, 3],
    T: 2,
    firstChannels: 4,
    blocks: [{ cout: 4, stride: 2 }],
    linear: [64, 30],
    classes: 3,
  },
};

const KERNELS = ['reference', 'wasm'] as const;

/** The smallest float32 strictly greater than x (x > 0). */
function nextUp(x: number): number {
  const b = new Float32Array([x]);
  new Uint32Array(b.buffer)[0]! += 1;
  return b[0]!;
}

/**
 * A copy of the model with one theta of layer `index` raised by the least amount that stops one spike at step 0
 * of frame `frame` (the spiking neuron whose current is closest to its threshold).
 */
function nudgedTheta(model: BwsnnModel, index: number, frame: Uint8Array): BwsnnModel {
  const layers = [model.first, ...model.hidden];
  const layer = layers[index]!;
  const trace = createEngine(model, { kernel: 'reference' }).infer(frame, { record: true }).trace![index]!;
  const theta = Float32Array.from(layer.lif.theta);
  const channels = theta.length;
  let best = -1;
  for (let i = 0; i < layerUnits(layer); i++) {
    if (
      trace.spikes[i] &&
      (best < 0 || trace.currents[i]! - theta[i % channels]! < trace.currents[best]! - theta[best % channels]!)
    )
      best = i;
  }
  assert.ok(best >= 0, `layer ${layer.name} has no spike at step 0`);
  theta[best % channels] = nextUp(trace.currents[best]!);
  const nudged = { ...layer, lif: { ...layer.lif, theta } };
  return index === 0
    ? { ...model, first: nudged as BwsnnModel['first'] }
    : { ...model, hidden: model.hidden.map((l, i) => (i === index - 1 ? (nudged as typeof l) : l)) };
}

describe('verify: runtime engine vs ONNX twin', () => {
  for (const [label, spec] of Object.entries(SHAPES)) {
    for (const kernel of KERNELS) {
      it(`every spike identical, logits within 1e-5: ${label}, ${kernel} kernel`, async () => {
        const model = randomModel(spec);
        const engine = createEngine(model, { kernel });
        const frames = verifyFrames(model.input, 3, spec.seed);
        const report = await verifyEngine(engine, frames);
        assert.equal(report.mismatch, undefined, JSON.stringify(report.mismatch));
        assert.ok(report.ok);
        assert.equal(report.frames, frames.length);
        assert.ok(report.spikesCompared > 0);
        assert.ok(report.maxLogitRelError <= 1e-5);
      });
    }
  }

  it('compares real Fashion-MNIST frames as well as random ones for 28×28×1 models', () => {
    const frames = verifyFrames([28, 28, 1], 4);
    assert.deepEqual(
      frames.map((f) => f.id.split('#')[0]),
      ['random', 'random', 'random', 'random', 'fashion-mnist', 'fashion-mnist', 'fashion-mnist', 'fashion-mnist'],
    );
  });

  for (const which of ['first', 'last'] as const) {
    it(`catches a twin whose ${which} layer theta is one ulp above a current, and names that layer at step 0`, async () => {
      const model = randomModel(SHAPES['Fashion-MNIST layout, T=2']!);
      const frames = verifyFrames(model.input, 1);
      const index = which === 'first' ? 0 : model.hidden.length;
      const twin = snnTwinOnnx(nudgedTheta(model, index, frames[0]!.data), { exposeSpikes: true });
      const report = await verifyEngine(createEngine(model, { kernel: 'reference' }), frames, { twin });
      assert.equal(report.ok, false);
      assert.equal(report.mismatch?.frame, 'random#0');
      assert.equal(report.mismatch?.layer, [model.first, ...model.hidden][index]!.name);
      assert.equal(report.mismatch?.step, 0);
      assert.equal(report.mismatch?.engine, 1);
      assert.equal(report.mismatch?.twin, 0);
    });
  }
});

describe('sei verify (CLI)', () => {
  it('passes on random:1 and prints the JSON summary last', () => {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', 'scripts/cli.ts', 'verify', '--model', 'random:1', '--frames', '2', '--json'],
      { encoding: 'utf8' },
    );
    const summary = JSON.parse(out.trim().split('\n').at(-1)!);
    assert.equal(summary.ok, true);
    assert.equal(summary.frames, 4);
    assert.equal(summary.layers, 6);
    assert.ok(summary.spikes_compared > 0);
  });

  it('passes on a .bwsnn file read back through the format reader', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sei-verify-'));
    const file = join(dir, 'odd.bwsnn');
    writeFileSync(file, writeBwsnn(randomModel(SHAPES['odd sizes, 2 input channels, kernels 1 and 5, T=4']!)));
    try {
      const out = execFileSync(
        process.execPath,
        [
          '--import',
          'tsx',
          'scripts/cli.ts',
          'verify',
          '--model',
          file,
          '--frames',
          '3',
          '--kernel',
          'reference',
          '--json',
        ],
        { encoding: 'utf8' },
      );
      const summary = JSON.parse(out.trim().split('\n').at(-1)!);
      assert.equal(summary.ok, true);
      assert.equal(summary.kernel, 'reference');
      // 13×11×2 input: random frames only.
      assert.equal(summary.frames, 3);
      assert.equal(summary.real_frames, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a malformed --model, naming the flag', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'verify', '--model', 'random:x'], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /--model/);
  });
});
