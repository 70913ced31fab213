// Image folders as data: the fit function every stage shares, the folder loader against the IDX loader on the same
// real Fashion-MNIST frames, the frame cache, the split and the run's record of it, `sei data inspect` and every bad
// input (corrupt, empty, not an image, an empty class, one class) ending in a clear message with nothing lost.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { toModelFrame } from '../device-agent/index.js';
import {
  ConfigError,
  createEngine,
  FormatError,
  FrameError,
  fitFrame,
  modelFit,
  readBwsnn,
  rng,
  sampleFrames,
  writeBwsnn,
} from '../runtime/index.js';
import { FMNIST_BLOCKS, randomModel } from '../runtime/format/random-model.js';
import { MAX_PICTURE_PIXELS, decodeImage, encodePng, readImageFolder } from '../trainer/data/images.js';
import { inspectData, loadData, loadDataset } from '../trainer/data/index.js';
import { frameShape, holdout } from '../scripts/options.js';
import { verifyEngine, verifyFrames } from '../scripts/commands/verify.js';
import { initBackend } from '../trainer/backend/index.js';
import { foldModel } from '../trainer/export/bwsnn.js';
import { evaluateFolded } from '../trainer/export/evaluate.js';
import { DEFAULT_NET, disposeParams, initParams } from '../trainer/model.js';
import { BAD, CLASS_NAMES, makeFashionFolders } from './helpers/image-folders.js';
import type { FashionFolders } from './helpers/image-folders.js';

const CLI = fileURLToPath(new URL('../scripts/cli.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const tmp = mkdtempSync(join(tmpdir(), 'sei-data-folder-'));
// Every decode of this suite goes to its own frame cache, never the user's.
process.env['SEI_CACHE_DIR'] = join(tmp, 'cache');
let f: FashionFolders;
before(async () => {
  f = await makeFashionFolders(join(tmp, 'data'), { train: 20, test: 5 });
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function sei(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', TSX, CLI, ...args],
      { cwd: tmp, timeout: 120_000, env: process.env },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number }) | null;
        resolve({ code: e ? (e.code ?? null) : 0, stdout, stderr });
      },
    );
  });
}

/** The one-line refusal: exit 2, the message, no stack trace. */
function refused(r: { code: number | null; stderr: string }, message: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, message);
  assert.equal(
    r.stderr
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('sei:')).length,
    1,
    r.stderr,
  );
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

const sameBytes = (a: Uint8Array, b: Uint8Array, msg?: string) =>
  assert.deepEqual(new Uint8Array(a), new Uint8Array(b), msg);

describe('fitFrame: one picture-to-frame function for training, evaluation and the box', () => {
  const real = sampleFrames();
  const frame = real.frame(0);

  test("a picture of the frame's shape comes back as it is", () => {
    assert.equal(fitFrame(frame, [28, 28, 1], [28, 28, 1]), frame);
  });

  test('crop keeps the centre: a frame between black bands is the frame again; letterbox keeps it all and pads with 0', () => {
    const wide = new Uint8Array(28 * 56);
    for (let y = 0; y < 28; y++) wide.set(frame.subarray(y * 28, (y + 1) * 28), y * 56 + 14);
    sameBytes(fitFrame(wide, [28, 56, 1], [28, 28, 1], 'crop'), frame);
    const boxed = fitFrame(wide, [28, 56, 1], [28, 28, 1], 'letterbox');
    const inner = fitFrame(wide, [28, 56, 1], [14, 28, 1], 'crop');
    // 28×56 scaled by 1/2 is 14×28, centred: rows 7..20 hold it, the rest is padding.
    sameBytes(boxed.subarray(7 * 28, 21 * 28), inner);
    assert.ok(boxed.subarray(0, 7 * 28).every((v) => v === 0) && boxed.subarray(21 * 28).every((v) => v === 0));
    assert.ok(
      inner.some((v) => v > 0),
      'the letterboxed content is not blank',
    );
  });

  test('channels: gray repeats into RGB, RGB becomes luma', () => {
    const rgb = fitFrame(frame, [28, 28, 1], [28, 28, 3]);
    for (let i = 0; i < 784; i++)
      assert.ok(rgb[3 * i] === frame[i] && rgb[3 * i + 1] === frame[i] && rgb[3 * i + 2] === frame[i]);
    sameBytes(
      fitFrame(Uint8Array.of(255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30), [2, 2, 3], [2, 2, 1]),
      Uint8Array.of(76, 150, 29, 18),
    );
  });

  test("the same bytes as the agent's sources for a square model input (device-agent/sources toModelFrame)", () => {
    const r = rng(7);
    const cases: Array<[readonly [number, number, number], readonly [number, number, number]]> = [
      [
        [28, 28, 1],
        [32, 32, 3],
      ],
      [
        [480, 640, 3],
        [32, 32, 3],
      ],
      [
        [480, 640, 3],
        [64, 64, 1],
      ],
      [
        [37, 23, 1],
        [16, 16, 1],
      ],
      [
        [100, 60, 3],
        [28, 28, 3],
      ],
    ];
    for (const [from, to] of cases) {
      const src =
        from[0] === 28 ? frame : Uint8Array.from({ length: from[0] * from[1] * from[2] }, () => Math.floor(r() * 256));
      const agent = toModelFrame(
        { height: from[0], width: from[1], channels: from[2] as 1 | 3, data: src },
        to,
        null,
        false,
      );
      sameBytes(fitFrame(src, from, to, 'crop'), agent, `${from.join('x')} -> ${to.join('x')}`);
    }
  });

  test('a bad shape or policy is a FrameError naming it', () => {
    assert.throws(
      () => fitFrame(frame, [28, 28, 1], [28, 28, 2]),
      (e: Error) => e instanceof FrameError && /to: expected \[height, width, 1 or 3 channels\]/.test(e.message),
    );
    assert.throws(
      () => fitFrame(frame, [28, 27, 1], [28, 28, 1]),
      (e: Error) => e instanceof FrameError && /expected 756 bytes/.test(e.message),
    );
    assert.throws(
      () => fitFrame(frame, [28, 28, 1], [8, 8, 1], 'stretch' as 'crop'),
      (e: Error) => e instanceof FrameError && /fit: expected one of crop, letterbox/.test(e.message),
    );
  });

  test("a model's fit: the header's (format version 2), meta.fit in a version-1 file, else crop", () => {
    const model = {
      ...randomModel({ seed: 3, blocks: FMNIST_BLOCKS, firstChannels: 8, input: [32, 32, 3] }),
      fit: 'letterbox' as const,
    };
    const v2 = readBwsnn(writeBwsnn(model));
    assert.equal(v2.fit, 'letterbox');
    assert.equal(modelFit(v2), 'letterbox');
    const v1 = readBwsnn(writeBwsnn(model, { formatVersion: 1 }));
    assert.deepEqual([v1.fit, v1.meta['fit'], modelFit(v1)], [undefined, 'letterbox', 'letterbox']);
    const { fit: _none, ...plain } = model;
    assert.deepEqual([readBwsnn(writeBwsnn(plain)).fit, modelFit(readBwsnn(writeBwsnn(plain)))], [undefined, 'crop']);
    assert.throws(
      () => writeBwsnn({ ...model, fit: 'stretch' as 'crop' }),
      (e: Error) => e instanceof FormatError && e.message === 'fit: expected one of crop, letterbox, got "stretch"',
    );
  });

  test('--input and --holdout parse or refuse naming the flag', () => {
    assert.deepEqual(frameShape('--input')('32x32x3'), [32, 32, 3]);
    assert.deepEqual(frameShape('--input')('48X64x1'), [48, 64, 1]);
    for (const bad of ['32x32', '32x32x2', '0x32x3', '2000x32x3', 'big']) {
      assert.throws(
        () => frameShape('--input')(bad),
        (e: Error) =>
          e instanceof ConfigError &&
          e.message ===
            `--input: expected HEIGHTxWIDTHxCHANNELS with sides 1..1024 and 1 or 3 channels (e.g. 32x32x3), got ${JSON.stringify(bad)}`,
      );
    }
    assert.deepEqual(holdout('--holdout')('0.1,0.2'), { val: 0.1, test: 0.2 });
    for (const bad of ['0.5,0.5', '0.1', '-0.1,0.1', 'a,b'])
      assert.throws(
        () => holdout('--holdout')(bad),
        (e: Error) => e instanceof ConfigError && e.message.startsWith('--holdout: expected VAL,TEST'),
      );
  });
});

describe("any input shape through the trainer's fold and the format", () => {
  test('a non-square 24×40×1 letterboxed network folds to a .bwsnn that passes verify bit for bit and agrees with the trainer', async () => {
    await initBackend();
    const net = { ...DEFAULT_NET, width: 4, T: 2, input: [24, 40, 1] as const, classes: 3 };
    const params = initParams(net, 5);
    const model = readBwsnn(
      writeBwsnn({ ...foldModel(net, params, { name: 'wide', labels: ['a', 'b', 'c'] }), fit: 'letterbox' }),
    );
    disposeParams(params);
    assert.deepEqual([model.input, model.fit, model.first.outShape.slice(0, 2)], [[24, 40, 1], 'letterbox', [24, 40]]);
    const frames = verifyFrames(model.input, 6, 2, modelFit(model));
    const report = await verifyEngine(createEngine(model), frames);
    assert.equal(report.mismatch, undefined, JSON.stringify(report.mismatch));
    assert.equal(report.frames, 12, '6 random and 6 real frames, letterboxed to 24×40');
    const split = {
      count: frames.length,
      shape: model.input,
      images: concatBytes(frames.map((x) => x.data)),
      labels: new Uint8Array(frames.length),
    };
    const engine = createEngine(model);
    assert.ok(
      engine.infer(frames[6]!.data).spikeRates.every((r) => r > 0),
      'every layer spikes: the comparison is not of silent layers',
    );
    assert.deepEqual(
      Array.from(evaluateFolded(model, split).predictions),
      frames.map((x) => engine.infer(x.data).prediction),
    );
  });
});

describe('the image-folder loader', () => {
  test('a PNG whose header claims more than 40 MP is skipped and listed before it is decoded; the rest is read', async () => {
    const dir = join(tmp, 'bomb');
    for (const c of ['a', 'b']) mkdirSync(join(dir, c), { recursive: true });
    const small = await encodePng(new Uint8Array(36).fill(200), [6, 6, 1]);
    writeFileSync(join(dir, 'a', 'ok.png'), small);
    writeFileSync(join(dir, 'b', 'ok.png'), small);
    // The same 6x6 picture under an IHDR claiming 8000x8000 (64 MP, below sharp's own 268 MP default): a few
    // hundred bytes that would otherwise be decoded into a 64 MB buffer.
    const bomb = Buffer.from(small);
    assert.equal(bomb.toString('latin1', 12, 16), 'IHDR');
    bomb.writeUInt32BE(8000, 16);
    bomb.writeUInt32BE(8000, 20);
    bomb.writeUInt32BE(crc32(bomb.subarray(12, 29)), 29);
    writeFileSync(join(dir, 'b', 'bomb.png'), bomb);
    const before = process.resourceUsage().maxRSS;
    const r = await readImageFolder(dir, { fit: 'crop' });
    assert.deepEqual(r.skipped, [
      {
        path: 'b/bomb.png',
        reason: `too many pixels: a 8000x8000 PNG (64000000 pixels), more than the ${MAX_PICTURE_PIXELS} (40 MP) read`,
      },
    ]);
    assert.equal(r.images.length, 2, 'the other pictures are read');
    const grewMiB = (process.resourceUsage().maxRSS - before) / 1024;
    assert.ok(grewMiB < 48, `peak RSS grew ${grewMiB.toFixed(1)} MiB`);
    await assert.rejects(decodeImage(bomb), /^Error: too many pixels: a 8000x8000 PNG/);
  });

  test('a PNG folder of Fashion-MNIST frames is the IDX data set of the same frames, byte for byte', async () => {
    const folder = await loadData({ dir: f.png28, input: [28, 28, 1], holdout: { val: 0, test: 0 } });
    const idx = loadDataset({ dir: f.idx, valSize: 0 });
    assert.equal(folder.kind, 'image-folder');
    assert.deepEqual(folder.labels, CLASS_NAMES, 'class names = folder names, sorted');
    assert.deepEqual([folder.train.count, folder.val.count, folder.test.count], [f.counts.train, 0, f.counts.test]);
    for (const s of ['train', 'test'] as const) {
      sameBytes(folder[s].images, idx[s].images, `${s} frames`);
      sameBytes(folder[s].labels, idx[s].labels, `${s} labels`);
    }
    assert.ok(
      folder.test.files!.every((p, i) => p.includes(`/test/${CLASS_NAMES[folder.test.labels[i]!]}/`)),
      'each frame names its file',
    );
  });

  test('an IDX folder is told apart by its contents and fitted on request', async () => {
    const d = await loadData({ dir: f.idx, valSize: 0, input: [32, 32, 3] });
    assert.equal(d.kind, 'idx');
    assert.deepEqual(d.train.shape, [32, 32, 3]);
    sameBytes(
      d.test.images.subarray(0, 32 * 32 * 3),
      fitFrame(loadDataset({ dir: f.idx, valSize: 0 }).test.images.subarray(0, 784), [28, 28, 1], [32, 32, 3]),
    );
  });

  test('decoded frames are cached by folder listing, shape and fit; a changed file is decoded again', async () => {
    const first = await readImageFolder(f.rgb32, { shape: [16, 16, 3], fit: 'letterbox' });
    const again = await readImageFolder(f.rgb32, { shape: [16, 16, 3], fit: 'letterbox' });
    assert.equal(first.cached, false);
    assert.equal(again.cached, true);
    sameBytes(again.frames!, first.frames!);
    assert.deepEqual(again.images, first.images);
    const other = await readImageFolder(f.rgb32, { shape: [16, 16, 3], fit: 'crop' });
    assert.equal(other.cached, false, 'another fit is another entry');
    const touched = join(f.rgb32, first.images[0]!.path);
    utimesSync(touched, new Date(), new Date(Date.now() - 3_600_000));
    assert.equal((await readImageFolder(f.rgb32, { shape: [16, 16, 3], fit: 'letterbox' })).cached, false);
  });

  test('class folders alone: a seeded stratified split, the same every time, identical files kept on one side', async () => {
    const dir = join(tmp, 'classes-only');
    for (const c of CLASS_NAMES.slice(0, 3)) {
      mkdirSync(join(dir, c), { recursive: true });
      for (let i = 0; i < 20; i++)
        copyFileSync(join(f.png28, 'train', c, readdirFirst(join(f.png28, 'train', c), i)), join(dir, c, `${i}.png`));
    }
    // A second copy of one picture: wherever the split puts the first, the copy goes too.
    copyFileSync(join(dir, CLASS_NAMES[1]!, '3.png'), join(dir, CLASS_NAMES[1]!, 'copy-of-3.png'));
    const h = { val: 0.1, test: 0.2 };
    const a = await loadData({ dir, input: [28, 28, 1], holdout: h });
    const b = await loadData({ dir, input: [28, 28, 1], holdout: h });
    // 20 per class: 10 % and 20 % held out are 2 and 4 frames; the class with a copy holds 21, split by whole groups.
    assert.deepEqual(
      [0, 2].map((i) => {
        const c = a.report.classes[i]!;
        return [c.train, c.val, c.test];
      }),
      [
        [14, 2, 4],
        [14, 2, 4],
      ],
    );
    assert.equal(a.report.classes[1]!.total, 21);
    assert.deepEqual(a.test.files, b.test.files, 'same split every time');
    const side = (name: string) =>
      (['train', 'val', 'test'] as const).find((s) =>
        a[s].files!.some((p) => p.endsWith(`/${CLASS_NAMES[1]}/${name}`)),
      );
    assert.equal(side('copy-of-3.png'), side('3.png'));
    assert.equal(a.report.duplicates.groups, 1);
    assert.equal(a.report.duplicates.acrossSplits.length, 0);
  });

  test('a run keeps its split: pictures added later stay out, a named picture that changed is refused by name', async () => {
    const dir = join(tmp, 'kept');
    cpSync(f.png28, dir, { recursive: true });
    const run = join(tmp, 'run-kept');
    const first = await loadData({ dir, input: [28, 28, 1] }, { run, write: true });
    assert.ok(existsSync(join(run, 'split.json')));
    const extra = join(dir, 'train', CLASS_NAMES[2]!, 'added-later.png');
    copyFileSync(join(dir, 'test', CLASS_NAMES[2]!, readdirFirst(join(dir, 'test', CLASS_NAMES[2]!), 0)), extra);
    const resumed = await loadData({ dir, input: [28, 28, 1] }, { run, reuse: true });
    assert.deepEqual(resumed.train.files, first.train.files);
    sameBytes(resumed.train.images, first.train.images);
    assert.equal(resumed.report.notInSplit, 1);
    const named = first.train.files![5]!;
    writeFileSync(named, readFileSync(first.train.files![6]!));
    await assert.rejects(
      loadData({ dir, input: [28, 28, 1] }, { run, reuse: true }),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message.includes('1 changed') &&
        e.message.includes(named.slice(dir.length + 1)) &&
        e.message.includes('split.json'),
    );
  });
});

describe('sei data inspect and bad folders', () => {
  test('every file of a messy folder is either a frame or listed with its reason; nothing is lost, nothing crashes', async () => {
    const r = await sei(['data', 'inspect', f.bad, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      classes: Array<{ name: string; total: number }>;
      frames: { total: number };
      skipped: Array<{ path: string; reason: string }>;
      emptyClasses: string[];
      sizes: Array<{ width: number; height: number }>;
      channels: { gray: number; colour: number };
      formats: Record<string, number>;
      problems: string[];
    };
    assert.deepEqual(
      rep.classes.map((c) => c.name),
      BAD.classes,
    );
    assert.deepEqual(
      Object.fromEntries(rep.classes.filter((c) => c.total).map((c) => [c.name, c.total])),
      BAD.readable,
    );
    assert.deepEqual(rep.skipped.map((s) => s.path).sort(), [...BAD.skipped].sort());
    const reason = (p: string) => rep.skipped.find((s) => s.path === p)!.reason;
    assert.match(reason('bag/corrupt.png'), /^unreadable PNG \(.+\)$/);
    assert.match(reason('bag/notes.txt'), /^not a picture/);
    assert.match(reason('shoe/zero.png'), /^empty file \(0 bytes\)$/);
    assert.match(reason('README.txt'), /top level/);
    assert.deepEqual(rep.emptyClasses, ['empty']);
    assert.equal(rep.sizes.length, 4, 'mixed sizes are counted');
    assert.deepEqual(rep.channels, { gray: 3, colour: 4 });
    assert.deepEqual(rep.formats, { png: 5, jpeg: 2 });
    assert.ok(
      rep.problems.some((p) => p.includes('empty/')),
      rep.problems.join('; '),
    );
    refused(
      await sei(['data', 'inspect', join(tmp, 'no-such-folder')]),
      /ConfigError: <dir>: expected an image folder or an IDX folder, got ".*no-such-folder" \(no such folder\)/,
    );
    const text = await sei(['data', 'inspect', f.bad]);
    assert.match(text.stdout, /skipped 4 files:/);
    assert.match(text.stdout, /sei train would refuse this folder: .*empty\//);
  });

  test('an identical picture in train/ and test/ is reported as a duplicate across splits', async () => {
    const dir = join(tmp, 'leaky');
    for (const s of ['train', 'test']) for (const c of ['a', 'b']) mkdirSync(join(dir, s, c), { recursive: true });
    const src = (i: number) =>
      join(f.png28, 'train', CLASS_NAMES[0]!, readdirFirst(join(f.png28, 'train', CLASS_NAMES[0]!), i));
    copyFileSync(src(0), join(dir, 'train', 'a', 'x.png'));
    copyFileSync(src(0), join(dir, 'test', 'a', 'x-again.png'));
    copyFileSync(src(1), join(dir, 'train', 'b', 'y.png'));
    copyFileSync(src(2), join(dir, 'test', 'b', 'z.png'));
    const rep = await inspectData({ dir });
    assert.equal(rep.duplicates.acrossSplits.length, 1);
    assert.deepEqual(
      rep.duplicates.acrossSplits[0]!.files.map((x) => [x.path, x.split]),
      [
        ['train/a/x.png', 'train'],
        ['test/a/x-again.png', 'test'],
      ],
    );
  });

  test('sei train refuses an empty class, a single class, a file or a bad --input with one line, writing nothing', async () => {
    const out = join(tmp, 'refused-run');
    refused(
      await sei(['train', '--out', out, '--data', f.bad, '--epochs', '1']),
      /ConfigError: --data: .*expected a readable picture in every class folder, got none in empty\//,
    );
    assert.equal(existsSync(join(out, 'split.json')), false, 'a refused run records no split');
    const one = join(tmp, 'one-class');
    mkdirSync(join(one, 'only'), { recursive: true });
    copyFileSync(join(f.bad, 'bag', 'a.png'), join(one, 'only', 'a.png'));
    refused(
      await sei(['train', '--out', out, '--data', one, '--epochs', '1']),
      /ConfigError: --data: .*expected at least 2 classes, got 1 \(only\)/,
    );
    refused(
      await sei(['train', '--out', out, '--data', join(f.bad, 'bag', 'a.png')]),
      /ConfigError: --data: expected a folder .*got the file/,
    );
    refused(
      await sei(['train', '--out', out, '--data', f.png28, '--input', '32x32x4']),
      /ConfigError: --input: expected HEIGHTxWIDTHxCHANNELS/,
    );
  });

  test('frames for a model whose labels the class folders do not name are refused, naming them', async () => {
    refused(
      await sei(['run', '--model', 'random:1', '--frames', f.bad]),
      /ConfigError: --frames: expected class folders named after the model's labels \(.*\), got "bag", "empty", "shoe"/,
    );
  });
});

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The i-th file of a folder, by name. */
function readdirFirst(dir: string, i: number): string {
  return readdirSync(dir).sort()[i]!;
}
