/**
 * The gate both ways on real Fashion-MNIST frames: a helpful fine-tune on a shifted camera (adapted affines and a
 * retrained head) is accepted and ships as a new version whose engine does what the gate measured; harmful ones
 * (systematically wrong labels, random labels) are refused, each for its own reason, although their affines are
 * adapted too. And `sei finetune` offline, end to end, as a process.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { sha256 } from '../device-agent/index.js';
import {
  accuracy,
  applyShift,
  extractFeatures,
  featureEngine,
  fineTune,
  fineTuneAsync,
  MemoryFeatureCache,
  SHIFTS,
} from '../device-agent/finetune/index.js';
import type { FeatureEngine, TrainingFrame } from '../device-agent/finetune/index.js';
import { createEngine, encodeIdx, FASHION_MNIST_DIR, readBwsnn, readMnistSplit, writeBwsnn } from '../runtime/index.js';
import type { BwsnnModel } from '../runtime/index.js';
import { readTrainingFrames, standInModel } from '../scripts/commands/finetune.js';
import { SAMPLE_IMAGES, SAMPLE_LABELS } from '../runtime/index.js';

const test = readMnistSplit(FASHION_MNIST_DIR, 't10k');
const shape = [28, 28, 1] as const;
/** Exposure-shifted test frames from..from+n (never the shipped reference frames 0..999). */
const shifted = (from: number, n: number, relabel: (label: number, i: number) => number = (l) => l): TrainingFrame[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `exposure#${from + i}`,
    data: applyShift(SHIFTS.exposure, test.frame(from + i), shape, 1, from + i),
    label: relabel(test.labels[from + i]!, i),
  }));

describe('fine-tuning gate on a shifted camera', () => {
  let parent: BwsnnModel;
  let bytes: Uint8Array;
  let reference: TrainingFrame[];
  let features: FeatureEngine;
  // One cache for all runs: every run shares the backbone, so labelled and reference features are computed once.
  const cache = new MemoryFeatureCache();
  // 300 labelled frames: enough for the gate to tell; each run adapts six layers on them.
  const labelled = shifted(3000, 300);
  const run = (frames: TrainingFrame[]) =>
    fineTune({
      parent,
      parentSha256: sha256(bytes),
      frames,
      reference,
      cache,
      features,
      now: new Date('2026-01-01T00:00:00Z'),
    });
  // The helpful run, once: several tests compare against it.
  let helpful: ReturnType<typeof run> | undefined;
  const helpfulRun = () => (helpful ??= run(labelled));

  before(() => {
    parent = { ...standInModel(1, 3000), version: 2 };
    bytes = writeBwsnn(parent);
    reference = readTrainingFrames(SAMPLE_IMAGES, SAMPLE_LABELS, parent, '--reference-frames', 'reference');
    features = featureEngine(parent);
  });

  it('accepts a helpful fine-tune and ships it as version 3 with its parent recorded', () => {
    const result = helpfulRun();
    const { decision } = result;
    assert.equal(decision.accepted, true, decision.reasons.join('\n'));
    assert.ok(
      decision.reasons.some((r) => r.startsWith('info: on the original camera')),
      decision.reasons.join('\n'),
    );
    assert.ok(decision.holdout.after - decision.holdout.before >= 0.02);
    assert.ok(decision.reference.before - decision.reference.after <= 0.02);
    const model = result.model!;
    assert.equal(model.version, 3);
    assert.deepEqual(model.meta.parent, { name: parent.name, version: 2, sha256: sha256(bytes) });
    const finetune = model.meta.finetune as { accepted: boolean; adapted: { method: string; layers: string[] } };
    assert.equal(finetune.accepted, true);
    // A whole new version: every layer's affine re-estimated (recorded), weights and thresholds kept.
    assert.equal(finetune.adapted.method, 'batch-norm re-estimation');
    assert.equal(finetune.adapted.layers.length, parent.hidden.length + 1);
    assert.notDeepEqual(model.first.scale, parent.first.scale);
    assert.deepEqual(model.first.weights, parent.first.weights);
    assert.deepEqual(
      model.hidden.map((l) => l.lif),
      parent.hidden.map((l) => l.lif),
    );
    // On shifted frames it never saw, the new version is better than its parent, as measured by the engine itself.
    const evaluation = shifted(1000, 300);
    const engineAccuracy = (m: BwsnnModel) => {
      const engine = createEngine(readBwsnn(writeBwsnn(m)));
      return evaluation.filter((f) => engine.infer(f.data).prediction === f.label).length / evaluation.length;
    };
    const before = engineAccuracy(parent);
    const afterAccuracy = engineAccuracy(model);
    assert.ok(afterAccuracy > before + 0.1, `parent ${before}, fine-tuned ${afterAccuracy}`);
    // The gate's numbers are the engine's: the feature-level accuracy equals the engine-level one.
    assert.equal(accuracy(model.head, extractFeatures(featureEngine(model), 10, evaluation)), afterAccuracy);
    assert.equal(accuracy(parent.head, extractFeatures(features, 10, evaluation, { cache })), before);
  });

  it('is deterministic: the same request gives the same head', () => {
    assert.deepEqual(run(labelled).candidate, helpfulRun().candidate);
  });

  it('refuses systematically wrong labels: the holdout agrees with them, the reference frames do not', () => {
    const { decision, model } = run(labelled.map((f) => ({ ...f, label: (f.label + 1) % 10 })));
    assert.equal(decision.accepted, false);
    assert.equal(model, null);
    assert.ok(decision.reference.drop > 0.02, `reference drop ${decision.reference.drop}`);
    assert.ok(
      decision.reasons.some((r) => r.startsWith('FAIL: reference accuracy')),
      decision.reasons.join('\n'),
    );
  });

  it('refuses random labels: nothing generalises to the holdout', () => {
    let s = 12345;
    const nextLabel = () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s % 10;
    };
    const { decision } = run(labelled.map((f) => ({ ...f, label: nextLabel() })));
    assert.equal(decision.accepted, false);
    // Chance may lift the holdout by a few frames; then the sign test says it is chance.
    assert.ok(
      decision.reasons.some((r) => r.startsWith('FAIL: holdout')),
      decision.reasons.join('\n'),
    );
  });

  it('fineTuneAsync gives the same result and lets the event loop run between steps', async () => {
    let turns = 0;
    let running = true;
    const spin = () => {
      turns++;
      if (running) setImmediate(spin);
    };
    setImmediate(spin);
    const phases = new Set<string>();
    const result = await fineTuneAsync(
      {
        parent,
        parentSha256: sha256(bytes),
        frames: labelled,
        reference,
        cache,
        features,
        now: new Date('2026-01-01T00:00:00Z'),
        onProgress: (p) => phases.add(p.phase),
      },
      { sliceMs: 0 },
    );
    running = false;
    assert.ok(turns > 10, `the event loop turned ${turns} times`);
    assert.deepEqual([...phases], ['features', 'adapt', 'train', 'gate']);
    assert.deepEqual(result.candidate, helpfulRun().candidate);
  });

  it('refuses too few labelled frames whatever they say', () => {
    const { decision } = run(labelled.slice(0, 30));
    assert.equal(decision.accepted, false);
    assert.match(decision.reasons[0]!, /FAIL: 30 labelled frames \(at least 40 needed\)/);
  });

  describe('sei finetune (offline, as a process)', () => {
    let dir: string;
    before(() => (dir = mkdtempSync(join(tmpdir(), 'sei-finetune-test-'))));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it("writes the accepted version with the parent file's sha256, and reports the decision as JSON", async () => {
      const modelPath = join(dir, 'parent.bwsnn');
      writeFileSync(modelPath, bytes);
      const frames = labelled;
      const pixels = new Uint8Array(frames.length * 784);
      frames.forEach((f, i) => pixels.set(f.data as Uint8Array, i * 784));
      writeFileSync(join(dir, 'images.idx'), encodeIdx([frames.length, 28, 28], pixels));
      writeFileSync(
        join(dir, 'labels.idx'),
        encodeIdx(
          [frames.length],
          Uint8Array.from(frames, (f) => f.label),
        ),
      );
      const out = join(dir, 'child.bwsnn');
      const cli = new URL('../scripts/cli.ts', import.meta.url).pathname;
      const { stdout } = await promisify(execFile)(process.execPath, [
        '--import',
        'tsx',
        cli,
        'finetune',
        '--model',
        modelPath,
        '--frames',
        join(dir, 'images.idx'),
        '--labels',
        join(dir, 'labels.idx'),
        '--out',
        out,
        '--json',
      ]);
      const report = JSON.parse(stdout.trim().split('\n').pop()!);
      assert.equal(report.accepted, true, report.reasons?.join('\n'));
      assert.equal(report.written, out);
      assert.equal(report.parent.sha256, sha256(new Uint8Array(readFileSync(modelPath))));
      assert.ok(report.memory.extraMB >= 0 && report.seconds > 0);
      assert.ok(existsSync(out));
      const child = readBwsnn(new Uint8Array(readFileSync(out)));
      assert.equal(child.version, 3);
      assert.deepEqual(child.meta.parent, report.parent);
      // Same frames, same defaults: the process's head is the in-process one.
      assert.deepEqual(child.head, helpfulRun().candidate.head);
      assert.deepEqual(child.first.scale, helpfulRun().candidate.first.scale);
    });
  });
});
