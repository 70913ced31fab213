/**
 * Golden vectors: dot products, spike bits, currents and logits computed on x64 (test/fixtures/golden/vectors.json)
 * must come out bit-identical on every architecture and kernel. `npm test` checks x64; `npm run test:arm` runs this
 * file on arm64 and armhf (Node 18, qemu).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { selectKernel, wasmUnavailable } from '../runtime/index.js';
import { computeGolden, GOLDEN_FILE, MODELS } from './fixtures/golden/compute.js';
import type { GoldenVectors, Kernel, ModelVectors } from './fixtures/golden/compute.js';

const golden = JSON.parse(readFileSync(GOLDEN_FILE, 'utf8')) as GoldenVectors;
// Without WebAssembly SIMD (an ARM core without NEON) the runtime runs its reference kernel; that is then the
// only one to check. Where SIMD works, a missing or wrong .wasm is a failure, not a skip.
const noSimd = wasmUnavailable()?.includes('SIMD') ? 'no WebAssembly SIMD on this machine' : undefined;

function checkModel(name: string, got: ModelVectors, want: ModelVectors): void {
  assert.equal(got.dots.length, want.dots.length, `${name}: number of dot vectors`);
  got.dots.forEach((d, i) =>
    assert.deepEqual(d, want.dots[i], `${name}: dots of ${want.dots[i]!.layer} at spike rate ${want.dots[i]!.rate}`),
  );
  got.frames.forEach((f, i) => {
    const w = want.frames[i]!;
    f.layers.forEach((l, j) => {
      const wl = w.layers[j]!;
      assert.deepEqual(l.spikeCounts, wl.spikeCounts, `${name} frame ${w.frame} layer ${wl.name}: spikes per step`);
      assert.equal(l.spikesSha256, wl.spikesSha256, `${name} frame ${w.frame} layer ${wl.name}: spike bits`);
      assert.equal(l.currentsSha256, wl.currentsSha256, `${name} frame ${w.frame} layer ${wl.name}: currents`);
    });
    assert.deepEqual(f, w, `${name} frame ${w.frame}: logits, prediction, synOps`);
  });
}

describe(`golden vectors on ${process.arch} (node ${process.version})`, () => {
  it('cover every model the generator knows', () => {
    assert.deepEqual(Object.keys(golden.models).sort(), Object.keys(MODELS).sort());
    assert.equal(golden.producedOn.arch, 'x64');
  });
  it(`auto picks ${noSimd ? 'the reference kernel (no SIMD here)' : 'the wasm kernel'}`, () => {
    assert.equal(selectKernel('auto'), noSimd ? 'reference' : 'wasm');
  });
  for (const kernel of ['reference', 'wasm'] as Kernel[]) {
    it(`${kernel} kernel reproduces them bit for bit`, { skip: kernel === 'wasm' ? (noSimd ?? false) : false }, () => {
      const got = computeGolden(kernel);
      for (const name of Object.keys(golden.models)) checkModel(name, got.models[name]!, golden.models[name]!);
    });
  }
});
