// Frame sources: IDX replay, PNG/PGM folders, raw video from ffmpeg on a pipe, area resize, the drop-oldest queue.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PNG } from 'pngjs';
import {
  createSource,
  decodePgm,
  decodePicture,
  DropOldestQueue,
  parseSourceSpec,
  toModelFrame,
} from '../device-agent/index.js';
import type { FrameSource, SourceFrame, SourceOptions } from '../device-agent/index.js';
import { ConfigError, FrameError, sampleFrames } from '../runtime/index.js';

const dir = mkdtempSync(join(tmpdir(), 'sei-sources-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const samples = sampleFrames();
const base: SourceOptions = { target: [28, 28, 1], frameRate: 0, loop: false, crop: null, invert: false };

async function take(source: FrameSource, n: number): Promise<SourceFrame[]> {
  const out: SourceFrame[] = [];
  for await (const f of source) {
    out.push(f);
    if (out.length === n) break;
  }
  source.close();
  return out;
}

/** Byte equality whatever the view type (Buffer or Uint8Array). */
function sameBytes(a: Uint8Array, b: Uint8Array, msg?: string): void {
  assert.deepEqual(new Uint8Array(a), new Uint8Array(b), msg);
}

function pgm(width: number, height: number, data: Uint8Array): Uint8Array {
  const header = Buffer.from(`P5\n# made by the test\n${width} ${height}\n255\n`);
  return Buffer.concat([header, data]);
}

describe('source specs', () => {
  test('every form parses, bad ones name the field and the expected form', () => {
    assert.deepEqual(parseSourceSpec('stdin:yuv420:640x480'), {
      kind: 'stdin',
      format: 'yuv420',
      width: 640,
      height: 480,
    });
    assert.deepEqual(parseSourceSpec('idx:/a.gz:/b.gz'), { kind: 'idx', images: '/a.gz', labels: '/b.gz' });
    assert.deepEqual(parseSourceSpec('images:/pics'), { kind: 'images', dir: '/pics' });
    assert.deepEqual(parseSourceSpec('mqtt'), { kind: 'mqtt' });
    for (const bad of ['stdin:rgb:10x10', 'stdin:yuv420:641x480', 'stdin:grey:0x5', 'images:', 'webcam', 'fmnist:x']) {
      assert.throws(
        () => parseSourceSpec(bad, '--source'),
        (e: Error) =>
          e instanceof ConfigError &&
          e.message.startsWith('--source: expected') &&
          e.message.includes(JSON.stringify(bad)),
      );
    }
  });
});

describe('pictures', () => {
  test('PGM P5 (with a comment) and P2 decode to the same pixels; 16-bit samples scale to 8 bits', () => {
    const data = Uint8Array.from({ length: 12 }, (_, i) => i * 20);
    const p5 = decodePgm(pgm(4, 3, data));
    assert.deepEqual([p5.width, p5.height, p5.channels], [4, 3, 1]);
    assert.deepEqual(p5.data, data);
    const p2 = decodePgm(Buffer.from(`P2 4 3 255\n${[...data].join(' ')}\n`));
    assert.deepEqual(p2.data, data);
    const wide = decodePgm(Buffer.concat([Buffer.from('P5 1 1 65535\n'), Buffer.from([0xff, 0xff])]));
    assert.equal(wide.data[0], 255);
  });

  test('broken pictures are refused with a FrameError that says what was expected', () => {
    assert.throws(
      () => decodePicture(Buffer.from('P5 4 3 255\n\x01\x02'), 'x.pgm'),
      (e: Error) => e instanceof FrameError && /needs 12 sample bytes, got 2/.test(e.message),
    );
    assert.throws(
      () => decodePicture(Buffer.from('GIF89a'), 'x'),
      (e: Error) => e instanceof FrameError && /expected a PNG or PGM/.test(e.message),
    );
    assert.throws(
      () => decodePicture(Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]), 'y.png'),
      (e: Error) => e instanceof FrameError && /expected a valid PNG/.test(e.message),
    );
  });

  test('area resize: a frame scaled up 3x by pixel replication comes back exactly; centred square crop', () => {
    const f = samples.frame(0);
    const big = new Uint8Array(84 * 84);
    for (let y = 0; y < 84; y++)
      for (let x = 0; x < 84; x++) big[y * 84 + x] = f[Math.floor(y / 3) * 28 + Math.floor(x / 3)]!;
    sameBytes(toModelFrame({ width: 84, height: 84, channels: 1, data: big }, [28, 28, 1], null, false), f);
    // A 2x2 mean is the area filter's answer for an exact halving.
    const down = toModelFrame(
      { width: 4, height: 2, channels: 1, data: Uint8Array.of(0, 10, 100, 200, 20, 30, 100, 100) },
      [1, 2, 1],
      { x: 0, y: 0, width: 4, height: 2 },
      false,
    );
    assert.deepEqual([...down], [15, 125]);
    const inv = toModelFrame(
      { width: 1, height: 1, channels: 3, data: Uint8Array.of(255, 255, 255) },
      [1, 1, 1],
      null,
      true,
    );
    assert.equal(inv[0], 0);
  });
});

describe('file sources', () => {
  test('samples replay in order with their labels and loop', async () => {
    const frames = await take(createSource({ kind: 'samples' }, { ...base, loop: true }), 1003);
    assert.equal(frames.length, 1003);
    sameBytes(frames[5]!.data, samples.frame(5));
    assert.equal(frames[5]!.label, samples.labels[5]);
    sameBytes(frames[1002]!.data, samples.frame(2));
  });

  test('an IDX file without labels yields frames with label null', async () => {
    const path = join(dir, 'imgs.idx');
    const header = Buffer.from([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]);
    writeFileSync(path, Buffer.concat([header, samples.frame(0), samples.frame(1)]));
    const frames = await take(createSource(parseSourceSpec(`idx:${path}`), base), 10);
    assert.deepEqual(
      frames.map((f) => f.label),
      [null, null],
    );
    sameBytes(frames[1]!.data, samples.frame(1));
  });

  test('a folder of PNG and PGM images, labels from the file name prefix, resized to the model input', async () => {
    const pics = join(dir, 'pics');
    mkdirSync(pics);
    // 56x56 RGB PNG of frame 0 (2x replication), and a 28x28 PGM of frame 1.
    const png = new PNG({ width: 56, height: 56 });
    const f0 = samples.frame(0);
    for (let i = 0; i < 56 * 56; i++) {
      const v = f0[Math.floor(i / 56 / 2) * 28 + Math.floor((i % 56) / 2)]!;
      png.data.set([v, v, v, 255], 4 * i);
    }
    writeFileSync(join(pics, `${samples.labels[0]}_a.png`), PNG.sync.write(png));
    writeFileSync(join(pics, 'b.pgm'), pgm(28, 28, samples.frame(1)));
    writeFileSync(join(pics, 'notes.txt'), 'ignored');
    const frames = await take(createSource(parseSourceSpec(`images:${pics}`), base), 10);
    assert.equal(frames.length, 2);
    sameBytes(frames[0]!.data, f0);
    assert.equal(frames[0]!.label, samples.labels[0]);
    sameBytes(frames[1]!.data, samples.frame(1));
    assert.equal(frames[1]!.label, null);
    assert.throws(() => createSource({ kind: 'images', dir: join(dir, 'none') }, base), FrameError);
  });
});

describe('stdin video (ffmpeg)', () => {
  function ffmpeg(args: string[]) {
    return spawn('ffmpeg', ['-loglevel', 'error', ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  }

  test('yuv420 at 112x112 made from sample frames comes back as the sample frames', async () => {
    const raw = Buffer.concat([0, 1, 2, 3].map((i) => samples.frame(i)));
    const proc = ffmpeg([
      '-f',
      'rawvideo',
      '-pix_fmt',
      'gray',
      '-s',
      '28x28',
      '-i',
      '-',
      '-vf',
      'scale=112:112:flags=neighbor',
      '-f',
      'rawvideo',
      '-pix_fmt',
      'yuvj420p',
      '-',
    ]);
    proc.stdin.end(raw);
    const frames = await take(
      createSource(parseSourceSpec('stdin:yuv420:112x112'), { ...base, stdin: proc.stdout }),
      100,
    );
    assert.equal(frames.length, 4);
    frames.forEach((f, i) => sameBytes(f.data, samples.frame(i)));
  });

  test("yuv420 in chunks of any size (split anywhere, even inside the chroma) gives each frame's resized luma", async () => {
    const [w, h] = [64, 48];
    const frames = [0, 1, 2].map((k) => {
      const y = Uint8Array.from({ length: w * h }, (_, i) => (i * (k + 5) + (i >> 6)) & 255);
      return { y, whole: Buffer.concat([y, Buffer.alloc((w * h) / 2, 0x80 + k)]) };
    });
    const stream = Buffer.concat(frames.map((f) => f.whole));
    for (const sizes of [[1], [7, 3000], [w * h], [w * h + 1, 5], [stream.length]]) {
      const input = new PassThrough();
      const source = createSource(parseSourceSpec(`stdin:yuv420:${w}x${h}`), { ...base, stdin: input });
      const got = take(source, 3);
      for (let at = 0, i = 0; at < stream.length; i++) {
        const n = sizes[i % sizes.length]!;
        input.write(stream.subarray(at, at + n));
        at += n;
      }
      input.end();
      const out = await got;
      assert.equal(out.length, 3, `chunks of ${sizes}`);
      out.forEach((f, k) =>
        sameBytes(
          f.data,
          toModelFrame({ width: w, height: h, channels: 1, data: frames[k]!.y }, [28, 28, 1], null, false),
          `frame ${k}, chunks of ${sizes}`,
        ),
      );
      assert.notEqual(
        out[0]!.data.buffer,
        out[1]!.data.buffer,
        'each frame handed on is its own (the agent keeps recent ones)',
      );
    }
  });

  test("the process's own stdin as a pipe (no stream given: fd 0 read into one reused buffer) gives the same frames", async () => {
    const [w, h] = [64, 48];
    const lumas = [0, 1, 2, 3].map((k) => Uint8Array.from({ length: w * h }, (_, i) => (i * (k + 3) + (i >> 5)) & 255));
    const url = new URL('../device-agent/index.js', import.meta.url).href;
    const code = `import { createSource, parseSourceSpec } from ${JSON.stringify(url)};
      const source = createSource(parseSourceSpec('stdin:yuv420:${w}x${h}'), { target: [28, 28, 1], frameRate: 0, loop: false, crop: null, invert: false });
      for await (const f of source) process.stdout.write(Buffer.from(f.data).toString('hex') + '\\n');`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    for (const y of lumas) child.stdin.write(Buffer.concat([y, Buffer.alloc((w * h) / 2, 0x80)]));
    child.stdin.end();
    assert.equal(await new Promise((r) => child.once('close', r)), 0);
    const lines = out.trim().split('\n');
    assert.equal(lines.length, 4);
    lines.forEach((line, k) =>
      sameBytes(
        Buffer.from(line, 'hex'),
        toModelFrame({ width: w, height: h, channels: 1, data: lumas[k]! }, [28, 28, 1], null, false),
        `frame ${k}`,
      ),
    );
  });

  test('testsrc 640x480 yuv420 and grey: one frame per input frame, centred square or configured crop', async () => {
    for (const [fmt, pix] of [
      ['yuv420', 'yuv420p'],
      ['grey', 'gray'],
    ] as const) {
      const proc = ffmpeg([
        '-f',
        'lavfi',
        '-i',
        'testsrc=size=640x480:rate=30',
        '-t',
        '1',
        '-f',
        'rawvideo',
        '-pix_fmt',
        pix,
        '-',
      ]);
      const frames = await take(
        createSource(parseSourceSpec(`stdin:${fmt}:640x480`), { ...base, stdin: proc.stdout }),
        1000,
      );
      assert.equal(frames.length, 30, fmt);
      assert.equal(frames[0]!.data.length, 784);
      assert.ok(new Set(frames[0]!.data).size > 4, 'the test pattern survives the resize');
    }
    assert.throws(
      () =>
        createSource(parseSourceSpec('stdin:grey:64x48'), {
          ...base,
          crop: { x: 40, y: 0, width: 40, height: 40 },
          stdin: process.stdin,
        }),
      (e: Error) => e instanceof FrameError && e.field === 'source.crop',
    );
  });
});

describe('DropOldestQueue', () => {
  test('drops the oldest when full and counts it; waiters get items in order; close drains', async () => {
    const q = new DropOldestQueue<number>(3);
    for (let i = 1; i <= 5; i++) q.push(i);
    assert.equal(q.dropped, 2);
    assert.equal(q.depth, 3);
    assert.deepEqual([await q.take(), await q.take()], [3, 4]);
    const pending = q.take().then(async (a) => [a, await q.take()]);
    q.push(6);
    q.close();
    assert.deepEqual(await pending, [5, 6]);
    assert.equal(await q.take(), undefined);
    assert.equal(q.push(7), false);
  });

  test('waitForRoom holds a pulled source until the engine takes a frame', async () => {
    const q = new DropOldestQueue<number>(1);
    q.push(1);
    let released = false;
    const waiting = q.waitForRoom().then(() => (released = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(released, false);
    await q.take();
    await waiting;
    assert.equal(released, true);
    assert.equal(q.dropped, 0);
  });
});
