/**
 * The short fuzz pass (`npm run fuzz` is the long one): every fuzz target of test/fuzz/targets.ts with a modest
 * number of fast-check inputs (mutated seeds, random bytes) and its properties (round trips); every input saved
 * from a crash, under test/fixtures/fuzz/<target>/, replayed; the bugs those inputs found, each asserted on its
 * own. The coverage-guided Jazzer.js pass runs here only when its Debian trixie root is cached already (building
 * one takes minutes; `npm run fuzz` builds it) or SEI_FUZZ_JAZZER=1 asks for it, and never without root.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormatError, FrameError, OtaError, parseIdx, readBwsnn } from '../runtime/index.js';
import { verifyManifest } from '../device-agent/ota/manifest.js';
import { decodePicture } from '../device-agent/sources/image.js';
import { decodeFrame } from '../device-agent/sources/mqtt.js';
import { fastCheckPass } from './fuzz/pass.js';
import { jazzerSetup, ROOT, runJazzer } from './fuzz/jazzer.js';
import { TARGETS, closeTargets, prepareTargets, target } from './fuzz/targets.js';

const FIXTURES = join(ROOT, 'test/fixtures/fuzz');
const RUNS = 60;

before(() => prepareTargets());
after(() => closeTargets());

describe('fuzz targets: fast-check inputs and properties', () => {
  for (const t of TARGETS) {
    test(`${t.name}: ${RUNS} inputs and each property (${t.parses})`, async () => {
      const r = await fastCheckPass(t, { runs: RUNS, seed: 42 });
      assert.ok(r.inputs >= RUNS, `${r.inputs} inputs`);
      const f = r.failures[0];
      assert.equal(f, undefined, f && `${f.what} failed on ${f.example.slice(0, 300)}\n${f.error}`);
    });
  }
});

describe('fuzz crashes: every saved input replays without a crash', () => {
  const dirs = existsSync(FIXTURES)
    ? readdirSync(FIXTURES, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
    : [];
  test('each fixture folder names a target', () => {
    for (const d of dirs) assert.doesNotThrow(() => target(d), d);
    assert.ok(dirs.length > 0, 'test/fixtures/fuzz holds the crashes found so far');
  });
  for (const d of dirs) {
    for (const f of readdirSync(join(FIXTURES, d)).filter((n) => !n.endsWith('.md'))) {
      test(`${d}/${f}`, async () => {
        await target(d).run(new Uint8Array(readFileSync(join(FIXTURES, d, f))));
      });
    }
  }
});

const fixture = (path: string) => new Uint8Array(readFileSync(join(FIXTURES, path)));

describe('fuzz crashes: what each one was', () => {
  test('a raw frame whose first pixel is 123 ("{") is a raw frame, not broken JSON', () => {
    const bytes = fixture('frame-mqtt/raw-first-pixel-123');
    assert.equal(bytes[0], 0x7b);
    const f = decodeFrame(Buffer.from(bytes), undefined, { target: [6, 6, 1], crop: null, invert: false });
    assert.deepEqual(f.data, bytes);
    // Of any other length it is still JSON, and broken JSON is refused as such.
    assert.throws(
      () => decodeFrame(Buffer.from('{"data": '), undefined, { target: [6, 6, 1], crop: null, invert: false }),
      (e: unknown) => e instanceof FrameError && /broken JSON/.test(e.message),
    );
  });

  test('a few header bytes asking for a huge constant tensor are refused before it is allocated (were 1 GiB, 256 MiB)', () => {
    for (const [file, field, bytes] of [
      ['bwsnn/constant-head-2p28', 'header.head.inFeatures', 274],
      ['bwsnn/constant-head-16384x4096', 'header.head.outFeatures', 41031],
    ] as const) {
      const data = fixture(file);
      assert.equal(data.length, bytes);
      // Peak resident memory: reading the file must not raise it by anything near the tensor it declares.
      const before = process.resourceUsage().maxRSS;
      assert.throws(
        () => readBwsnn(data),
        (e: unknown) => e instanceof FormatError && e.field === field,
      );
      const grewMiB = (process.resourceUsage().maxRSS - before) / 1024;
      assert.ok(grewMiB < 64, `${file}: peak RSS grew ${grewMiB.toFixed(1)} MiB`);
    }
  });

  test('a broken gzip IDX file is a FormatError naming gzip (was a zlib error)', () => {
    assert.throws(
      () => parseIdx(fixture('idx/broken-gzip')),
      (e: unknown) => e instanceof FormatError && e.field === 'gzip',
    );
  });

  test('a PGM header number of 140,000 digits is refused (was a stack overflow in the number parser)', () => {
    assert.throws(
      () => decodePicture(fixture('picture/pgm-long-number')),
      (e: unknown) => e instanceof FrameError && /at most 9 digits/.test(e.message),
    );
  });

  test('raw video whose stream ends before the reader comes: every whole frame is still read (were dropped)', async () => {
    const { PassThrough } = await import('node:stream');
    const { createSource } = await import('../device-agent/sources/index.js');
    const bytes = fixture('video/stream-ends-first');
    // The target's layout: byte 0 is grey 4x6, byte 1 the chunk length - 1, then the stream (2 frames + 16 bytes).
    assert.deepEqual([bytes[0], bytes.length - 2], [0x22, 64]);
    const stream = new PassThrough();
    const source = createSource(
      { kind: 'stdin', format: 'grey', width: 4, height: 6 },
      { target: [6, 6, 1], frameRate: 0, loop: false, crop: null, invert: false, stdin: stream },
    );
    stream.end(bytes.subarray(2));
    await new Promise((r) => setTimeout(r, 50));
    const frames = [];
    for await (const f of source) frames.push(f);
    assert.equal(frames.length, 2);
  });

  test('a signed manifest that is JSON but no object is an OtaError (was a TypeError)', () => {
    for (const text of ['null', '7', '"x"', '[]']) {
      assert.throws(
        () => verifyManifest({ manifest: text, keyId: 'k', signature: '' }, []),
        (e: unknown) => e instanceof OtaError,
      );
    }
    // The target signs what it is given: the fixture goes past the signature check to the JSON.
    assert.equal(new TextDecoder().decode(fixture('ota-manifest/null')), 'null');
  });
});

/** Why the coverage-guided pass does not run here, or false. */
function jazzerSkip(): string | false {
  if (process.env['SEI_SKIP_ARM'] === '1') return 'SEI_SKIP_ARM=1';
  const cached = existsSync(join(ROOT, '.cache/arm/trixie-amd64-nodejs/.sei-rootfs'));
  if (!cached && process.env['SEI_FUZZ_JAZZER'] !== '1')
    return 'the Debian trixie root that hosts Jazzer.js is not cached (npm run fuzz builds it; SEI_FUZZ_JAZZER=1 builds it here)';
  return false;
}

test('the coverage-guided pass (Jazzer.js in the trixie root) runs a target, covers edges and finds no crash', {
  skip: jazzerSkip(),
  timeout: 15 * 60_000,
}, async (t) => {
  const setup = jazzerSetup();
  if ('unavailable' in setup) {
    t.skip(setup.unavailable);
    return;
  }
  const r = await runJazzer(setup, target('bwsnn'), 5);
  assert.equal(r.crash, null, r.tail);
  assert.equal(r.status, 0, r.tail);
  assert.ok(r.inputs > 10, `inputs: ${r.inputs}\n${r.tail}`);
  assert.ok(r.edges > 50, `edges: ${r.edges}\n${r.tail}`);
});
