// Training on image folders through the CLI, on real Fashion-MNIST frames written as PNG folders (100 per class for
// training, 30 per class for test): a short run on the 28×28 gray folder beats chance by a wide margin and is the
// IDX run on the same frames, weight for weight; a 32×32 RGB folder goes train → export → verify → eval → run →
// finetune; a non-square colour model (24x32x3, letterbox) goes train → export → verify → a real agent process on a
// real broker → eval, the agent scoring the test pictures as `sei eval` does.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { modelFit, readBwsnnFile } from '../runtime/index.js';
import { agentConfig, Operator } from './helpers/agent.js';
import { aedes, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import { CLASS_NAMES, makeFashionFolders } from './helpers/image-folders.js';
import type { FashionFolders } from './helpers/image-folders.js';

const CLI = fileURLToPath(new URL('../scripts/cli.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const tmp = mkdtempSync(join(tmpdir(), 'sei-data-train-'));
const env = { ...process.env, SEI_CACHE_DIR: join(tmp, 'cache') };
let f: FashionFolders;
before(async () => {
  f = await makeFashionFolders(join(tmp, 'data'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function sei(...args: string[]): Promise<{ json: Record<string, unknown>; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', TSX, CLI, ...args],
      { cwd: tmp, env, timeout: 240_000, maxBuffer: 1 << 26 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`sei ${args.join(' ')} failed: ${stderr}`));
        else resolve({ json: JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>, stdout, stderr });
      },
    );
  });
}

// Short and one-threaded: a run is a deterministic function of its frames, flags and thread count.
const BUDGET = [
  '--epochs',
  '2',
  '--width',
  '8',
  '--T',
  '1',
  '--batch',
  '16',
  '--lr',
  '0.005',
  '--threads',
  '1',
  '--recalibrate',
  '0',
  '--json',
];

describe('sei train on image folders', () => {
  test('28×28 gray PNG folder: beats chance by a wide margin, and is the IDX run on the same frames', async () => {
    const png = join(tmp, 'run-png'),
      idx = join(tmp, 'run-idx');
    const a = await sei('train', '--out', png, '--data', f.png28, '--input', '28x28x1', '--holdout', '0,0', ...BUDGET);
    assert.match(a.stderr, /10 classes, 1300 frames: train 1000, val 0, test 300/, 'the data summary at start');
    assert.match(a.stderr, /sizes: 28×28 \(1300\); channels: gray 1300, colour 0/);
    const b = await sei('train', '--out', idx, '--data', f.idx, '--val-size', '0', ...BUDGET);
    // The folder loader yields the IDX loader's frames byte for byte in the same order (test/data-folder.test.ts),
    // and a run is deterministic given frames, flags and threads: the tolerance is zero. Any difference in the
    // weights means the folder path changed a frame, a label or their order.
    assert.ok(
      readFileSync(join(png, 'last.bin')).equals(readFileSync(join(idx, 'last.bin'))),
      'same weights and optimizer state',
    );
    assert.equal(a.json['testAccuracy'], b.json['testAccuracy']);
    // Chance is 10 %; at 300 test frames 30 % is 20 standard deviations above it.
    assert.ok((a.json['testAccuracy'] as number) >= 0.3, `test accuracy ${a.json['testAccuracy']}`);
    const split = JSON.parse(readFileSync(join(png, 'split.json'), 'utf8')) as {
      classes: string[];
      train: unknown[];
      test: unknown[];
    };
    assert.deepEqual([split.classes, split.train.length, split.test.length], [CLASS_NAMES, 1000, 300]);
  });

  test('32×32 RGB folder: train → export → verify (bit for bit) → eval (per class, confusion, --markdown, --errors) → run → finetune', async () => {
    const run = join(tmp, 'run-rgb'),
      model = join(tmp, 'rgb.bwsnn');
    const trained = await sei('train', '--out', run, '--data', f.rgb32, '--holdout', '0.1,0', ...BUDGET);
    assert.match(trained.stderr, /train 900, val 100, test 300/);
    const card = join(tmp, 'rgb.md');
    const exported = await sei(
      'export',
      '--checkpoint',
      run,
      '--out',
      model,
      '--card',
      card,
      '--recalibrate',
      '20',
      '--json',
    );
    assert.match(
      readFileSync(card, 'utf8'),
      /for the image folder .*fmnist-rgb32 \(10 classes: 0-T-shirt-top, .*test accuracy \(300 test frames of the run's split, fitted to 32×32×3 by crop, runtime engine\)/s,
    );
    const m = readBwsnnFile(model);
    assert.deepEqual(
      [m.input, m.labels, m.fit, modelFit(m)],
      [[32, 32, 3], CLASS_NAMES, 'crop', 'crop'],
      'the header carries the input, the class names, the fit',
    );
    assert.equal(m.first.inShape[2], 3, 'the int8 first layer reads 3 channels');

    const verified = await sei('verify', '--model', model, '--frames', '8', '--json');
    assert.equal(verified.json['ok'], true, verified.stdout);
    assert.equal(verified.json['real_frames'], 8, 'real frames, fitted to 32×32×3, as well as random ones');

    const md = join(tmp, 'eval.md'),
      errors = join(tmp, 'errors');
    const ev = await sei(
      'eval',
      '--model',
      model,
      '--data',
      f.rgb32,
      '--compare',
      '--markdown',
      md,
      '--errors',
      errors,
      '--json',
    );
    const e = ev.json as {
      accuracy: number;
      n: number;
      perClass: Array<{ label: string; support: number; precision: number | null; recall: number | null }>;
      confusion: number[][];
      agreement: number;
    };
    assert.equal(e.n, 300);
    assert.equal(
      e.accuracy,
      exported.json['testAccuracy'],
      "the engine scores what export measured on the run's test split",
    );
    assert.equal(e.agreement, 1, 'engine and trainer agree on every frame');
    assert.deepEqual(
      e.perClass.map((c) => c.support),
      new Array(10).fill(30),
    );
    const correct = e.confusion.reduce((s, row, i) => s + row[i]!, 0);
    assert.equal(correct, Math.round(e.accuracy * e.n));
    e.perClass.forEach((c, i) => {
      assert.equal(c.recall, e.confusion[i]![i]! / 30);
      const predicted = e.confusion.reduce((s, row) => s + row[i]!, 0);
      assert.equal(c.precision, predicted ? e.confusion[i]![i]! / predicted : null);
    });
    const table = readFileSync(md, 'utf8');
    assert.match(table, /\| class \| frames \| predicted as it \| precision \| recall \|/);
    assert.match(table, /Confusion matrix/);
    // Every misclassified frame, copied as its file into <true>__<predicted>/.
    const folders = readdirSync(errors);
    let copied = 0;
    for (const d of folders) {
      const [t, p] = d.split('__');
      assert.ok(CLASS_NAMES.includes(t!) && CLASS_NAMES.includes(p!) && t !== p, d);
      const files = readdirSync(join(errors, d));
      assert.equal(files.length, e.confusion[CLASS_NAMES.indexOf(t!)]![CLASS_NAMES.indexOf(p!)]);
      for (const file of files)
        assert.ok(existsSync(join(f.rgb32, 'test', t!, file)), `${d}/${file} is a test frame of class ${t}`);
      copied += files.length;
    }
    assert.equal(copied, e.n - correct);

    const ran = await sei('run', '--model', model, '--frames', join(f.rgb32, 'test'), '--limit', '300', '--json');
    assert.equal(ran.json['labelled'], true);
    assert.equal(ran.json['accuracy'], e.accuracy, 'sei run reads the folder as sei eval does');

    const tuned = await sei(
      'finetune',
      '--model',
      model,
      '--data',
      join(f.rgb32, 'test'),
      '--reference-data',
      join(f.rgb32, 'train'),
      '--epochs',
      '2',
      '--json',
    );
    const reasons = (tuned.json['reasons'] as string[]).join('\n');
    assert.match(reasons, /pass: 300 labelled frames/);
    // The 1000 training pictures are the reference set; the gate checks the half it does not rehearse.
    assert.match(reasons, /pass: 500 reference frames/);
  });

  test('24×32×3 letterbox (non-square, colour): train → export → verify (bit for bit) → agent → eval', async () => {
    const run = join(tmp, 'run-wide'),
      model = join(tmp, 'wide.bwsnn');
    // One epoch and no validation split: this case checks that the shape and fit follow the model, not accuracy.
    await sei(
      'train',
      '--out',
      run,
      '--data',
      f.rgb32,
      '--input',
      '24x32x3',
      '--fit',
      'letterbox',
      '--holdout',
      '0,0',
      ...BUDGET,
      '--epochs',
      '1',
    );
    const exported = await sei('export', '--checkpoint', run, '--out', model, '--name', 'wide', '--json');
    const m = readBwsnnFile(model);
    assert.deepEqual(
      [m.input, m.labels, m.fit, m.first.inShape],
      [[24, 32, 3], CLASS_NAMES, 'letterbox', [24, 32, 3]],
      'the header carries the non-square input, the class names and the letterbox fit',
    );
    const verified = await sei('verify', '--model', model, '--frames', '8', '--json');
    assert.equal(verified.json['ok'], true, verified.stdout);
    assert.equal(verified.json['real_frames'], 8, 'real frames letterboxed to 24×32×3, as well as random ones');

    const ev = await sei('eval', '--model', model, '--data', f.rgb32, '--json');
    const e = ev.json as { accuracy: number; n: number; confusion: number[][] };
    assert.equal(e.n, 300);
    assert.equal(e.accuracy, exported.json['testAccuracy']);
    const correct = e.confusion.reduce((s, row, i) => s + row[i]!, 0);

    // The agent reads the same 300 test pictures from disk (`images:DIR`, the class number as a name prefix),
    // decodes and letterboxes them itself: it must get exactly as many right as `sei eval` does.
    const flat = join(tmp, 'wide-frames');
    mkdirSync(flat);
    CLASS_NAMES.forEach((c, k) => {
      for (const file of readdirSync(join(f.rgb32, 'test', c)))
        copyFileSync(join(f.rgb32, 'test', c, file), join(flat, `${k}_${file}`));
    });
    const broker = mosquittoAvailable ? await mosquitto() : await aedes();
    const config = join(tmp, 'wide-agent.json');
    writeFileSync(
      config,
      JSON.stringify(
        agentConfig({
          dir: tmp,
          model,
          url: broker.url,
          device: 'cam-wide',
          extra: {
            source: { spec: `images:${flat}`, frameRate: 0, loop: false },
            reporting: { predictionBatch: 10 },
          },
        }),
      ),
    );
    const op = await Operator.connect(broker.url, mosquittoAvailable ? 5 : 4);
    const agent = spawn(process.execPath, ['--import', TSX, CLI, 'agent', '--config', config, '--json'], {
      cwd: tmp,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '',
      err = '';
    agent.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    agent.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    try {
      await op.subscribe('sei/test/cam-wide/#');
      const p = await op.waitFor((x) => x.topic === 'sei/test/cam-wide/predictions', 'a prediction', 60_000);
      for (const x of p.json.predictions as Array<{ class: number; name: string; label: number }>) {
        assert.equal(x.name, CLASS_NAMES[x.class], "predictions are named by the model's classes");
        assert.ok(Number.isInteger(x.label), 'the label from the file name');
      }
      await op.waitFor(
        (x) => x.topic === 'sei/test/cam-wide/metrics' && x.json?.accuracy?.labelled === 300,
        `metrics after all 300 frames (${err})`,
        60_000,
      );
    } finally {
      agent.kill('SIGTERM');
      if (agent.exitCode === null) await new Promise((r) => agent.once('exit', r));
      await op.close();
      await broker.close();
    }
    const final = JSON.parse(out.trim().split('\n').pop()!) as { accuracy: { labelled: number; correct: number } };
    assert.deepEqual([final.accuracy.labelled, final.accuracy.correct], [300, correct], err);
  });
});
