import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ConfigError } from '../runtime/errors.js';
import { encodeIdx, readIdx } from '../runtime/data/idx.js';
import { createEngine, loadModel, SAMPLE_IMAGES, SAMPLE_LABELS, writeBwsnn } from '../runtime/index.js';
import { formatFrameLine, runFrames, type FrameLine } from '../scripts/commands/run.js';
import { FMNIST_BLOCKS, randomModel } from '../runtime/format/random-model.js';

const dir = mkdtempSync(join(tmpdir(), 'sei-run-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = randomModel({ seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 });
const file = join(dir, 'random-1.bwsnn');
writeFileSync(file, writeBwsnn(model));

describe('sei run', () => {
  it('a model read from a .bwsnn file infers exactly like the model it was written from', async () => {
    const fromFile = await loadModel(file, { kernel: 'reference' });
    const direct = createEngine(model, { kernel: 'reference' });
    const images = readIdx(SAMPLE_IMAGES);
    for (let i = 0; i < 3; i++) {
      const frame = images.data.subarray(i * 784, (i + 1) * 784);
      const a = fromFile.infer(frame, { record: true });
      const b = direct.infer(frame, { record: true });
      assert.deepEqual(a.logits, b.logits);
      assert.deepEqual(
        a.trace!.map((t) => t.spikes),
        b.trace!.map((t) => t.spikes),
      );
    }
  });

  it('streams the shipped samples with labels; file and random:SEED agree line by line', async () => {
    const lines: FrameLine[] = [];
    const s = await runFrames({ model: file, limit: 12 }, (l) => lines.push(l));
    assert.equal(s.frames, 12);
    assert.equal(lines.length, 12);
    assert.deepEqual(
      lines.map((l) => l.index),
      [...Array(12).keys()],
    );
    const truth = readIdx(SAMPLE_LABELS).data;
    assert.deepEqual(
      lines.map((l) => l.truth),
      [...truth.subarray(0, 12)].map((t) => model.labels[t]),
    );
    assert.equal(s.correct, lines.filter((l) => l.truth === l.prediction).length);
    assert.equal(s.accuracy, s.correct! / 12);
    assert.ok(s.meanSpikeRate > 0 && s.meanSpikeRate < 1, `spike rate ${s.meanSpikeRate}`);
    const again: FrameLine[] = [];
    await runFrames({ model: 'random:1', limit: 12 }, (l) => again.push(l));
    assert.deepEqual(
      again.map((l) => [l.prediction, l.confidence]),
      lines.map((l) => [l.prediction, l.confidence]),
    );
    assert.match(formatFrameLine(lines[0]!), /^#0 +\S.* p=0\.\d{3} {2}true .* ms {2}spikes \d+\.\d%$/);
  });

  it('--threads 2 prints the lines --threads 1 prints, in order; --steps 1 runs one step of the two the file states', async () => {
    const strip = (l: FrameLine) => ({ ...l, latencyMs: 0 });
    const one: FrameLine[] = [];
    const two: FrameLine[] = [];
    const s1 = await runFrames({ model: file, limit: 30 }, (l) => one.push(strip(l)));
    const s2 = await runFrames({ model: file, limit: 30, threads: 2 }, (l) => two.push(strip(l)));
    assert.deepEqual(two, one);
    assert.equal(s2.threads, 2);
    assert.deepEqual([s2.correct, s2.meanSpikeRate, s2.meanSynOps], [s1.correct, s1.meanSpikeRate, s1.meanSynOps]);
    const lines: FrameLine[] = [];
    const t1 = await runFrames({ model: file, limit: 30, steps: 1, threads: 2 }, (l) => lines.push(strip(l)));
    assert.deepEqual([t1.T, t1.trainedT, s1.T, s1.trainedT], [1, 2, 2, 2]);
    const engine = createEngine(model, { steps: 1 });
    const images = readIdx(SAMPLE_IMAGES);
    assert.deepEqual(
      lines.map((l) => l.confidence),
      lines.map((_, i) => engine.infer(images.data.subarray(i * 784, (i + 1) * 784)).confidence),
    );
    assert.notDeepEqual(
      lines.map((l) => l.spikeRate),
      one.map((l) => l.spikeRate),
    );
    await assert.rejects(
      runFrames({ model: file, threads: 0 }),
      (e: Error) => e instanceof ConfigError && e.field === 'threads',
    );
  });

  it('custom frames without labels; a bad frame size is a clear ConfigError', async () => {
    const images = readIdx(SAMPLE_IMAGES);
    const frames = join(dir, 'three.idx');
    writeFileSync(frames, encodeIdx([3, 28, 28], images.data.subarray(0, 3 * 784)));
    const s = await runFrames({ model: file, frames });
    assert.equal(s.frames, 3);
    assert.equal(s.labelled, false);
    assert.equal(s.accuracy, null);
    const small = join(dir, 'small.idx');
    writeFileSync(small, encodeIdx([2, 27, 28], new Uint8Array(2 * 27 * 28)));
    await assert.rejects(
      runFrames({ model: file, frames: small }),
      (e: Error) => e instanceof ConfigError && /\[n, 28, 28, 1\].*\[2, 27, 28\]/.test(e.message),
    );
    await assert.rejects(
      runFrames({ model: file, frames, labels: SAMPLE_LABELS }),
      (e: Error) => e instanceof ConfigError && e.message.startsWith('--labels: expected shape [3]'),
    );
    await assert.rejects(runFrames({ model: file, labels: SAMPLE_LABELS }), ConfigError);
    await assert.rejects(runFrames({ model: 'random:x' }), ConfigError);
  });

  it('CLI: --json puts the summary on the last line; bad flags exit non-zero with the flag named', async () => {
    const run = promisify(execFile);
    const sei = (args: string[]) =>
      run(process.execPath, ['scripts/sei.js', 'run', ...args], { cwd: join(import.meta.dirname, '..') });
    const { stdout } = await sei(['--model', file, '--limit', '4', '--json']);
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 6, 'a start line, 4 frame lines, the JSON summary');
    assert.match(lines[0]!, /^model random-1 \(T=2, 6 layers\), kernel \w+, 4 frames from .*with labels$/);
    const summary = JSON.parse(lines[5]!);
    assert.equal(summary.frames, 4);
    assert.equal(summary.model, 'random-1');
    assert.equal(typeof summary.framesPerSecond, 'number');
    for (const [args, flag] of [
      [['--model', file, '--limit', '0'], '--limit'],
      [['--model', file, '--kernel', 'gpu'], '--kernel'],
      [['--model', file, '--steps', '17'], '--steps'],
      [['--model', file, '--threads', '0'], '--threads'],
    ] as const) {
      await assert.rejects(
        sei([...args]),
        (e: { code: number; stderr: string }) => e.code === 2 && e.stderr.includes(`ConfigError: ${flag}: expected`),
      );
    }
    // A signed file is fine to run (the signature is checked where keys are configured: the agent's OTA).
    const signed = join(dir, 'signed.bwsnn');
    writeFileSync(signed, writeBwsnn(model, { signingKey: generateKeyPairSync('ed25519').privateKey }));
    assert.equal(
      JSON.parse((await sei(['--model', signed, '--limit', '1', '--json'])).stdout.trim().split('\n').pop()!).frames,
      1,
    );
  });
});
