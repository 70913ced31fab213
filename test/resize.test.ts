// The one resampler (runtime/data/fit.ts AreaResizer) behind the trainer's fitFrame and the agent's sources: on
// random geometries, fits, boxes, channel conversions and contents it equals the area filter's definition pixel by
// pixel (exact means in BigInt, rounded half up); the float per-pixel filter it replaced differs only at exact
// ties; the trainer and the agent give the same bytes; camera yuv420 becomes BT.601 RGB for a colour model.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { createSource, parseSourceSpec, toModelFrame, yuv420ToRgb } from '../device-agent/index.js';
import type { SourceFrame } from '../device-agent/index.js';
import { AreaResizer, FrameError, fitFrame, fitGeometry } from '../runtime/index.js';
import type { Box, Fit, FrameShape } from '../runtime/index.js';

/** Overlap, in units of 1/m, of source cell i with output cell o (n source cells into m). */
const overlap = (n: number, m: number, o: number, i: number) =>
  Math.max(0, Math.min((o + 1) * n, (i + 1) * m) - Math.max(o * n, i * m));

/** The definition: each output pixel is the exact mean of what it covers, converted, rounded half up, inverted. */
function definition(src: Uint8Array, from: FrameShape, to: FrameShape, fit: Fit, box: Box, invert: boolean) {
  const [, w, inC] = from;
  const [th, tw, outC] = to;
  const g = fitGeometry(box, to, fit);
  const out = new Uint8Array(th * tw * outC);
  const exact = new Array<bigint[] | null>(th * tw).fill(null);
  for (let oy = 0; oy < g.dh; oy++)
    for (let ox = 0; ox < g.dw; ox++) {
      const sums = new Array<bigint>(inC).fill(0n);
      for (let y = 0; y < g.sh; y++) {
        const wy = overlap(g.sh, g.dh, oy, y);
        if (!wy) continue;
        for (let x = 0; x < g.sw; x++) {
          const wx = overlap(g.sw, g.dw, ox, x);
          if (!wx) continue;
          for (let c = 0; c < inC; c++)
            sums[c]! += BigInt(wx * wy) * BigInt(src[((g.sy + y) * w + g.sx + x) * inC + c]!);
        }
      }
      const area = BigInt(g.sw * g.sh);
      const pick = (c: number): [bigint, bigint] =>
        inC === 3 && outC === 1
          ? [299n * sums[0]! + 587n * sums[1]! + 114n * sums[2]!, 1000n * area]
          : [sums[inC === outC ? c : 0]!, area];
      const o = (g.dy + oy) * tw + g.dx + ox;
      exact[o] = [];
      for (let c = 0; c < outC; c++) {
        const [s, d] = pick(c);
        exact[o]!.push(s * 2n, d * 2n);
        const v = Number((2n * s + d) / (2n * d));
        out[o * outC + c] = invert ? 255 - v : v;
      }
    }
  return { out, exact };
}

/** The float filter the resize used to be: weights cover/step in float64, summed rows outer, Math.round. */
function floatFilter(src: Uint8Array, from: FrameShape, to: FrameShape, fit: Fit, box: Box): Uint8Array {
  const [, w, inC] = from;
  const [th, tw, outC] = to;
  const g = fitGeometry(box, to, fit);
  const cells = (n: number, m: number) =>
    Array.from({ length: m }, (_, o) => {
      const step = n / m,
        lo = o * step,
        hi = lo + step;
      const list: Array<[number, number]> = [];
      for (let i = Math.floor(lo); i < Math.min(n, Math.ceil(hi)); i++) {
        const cover = Math.min(hi, i + 1) - Math.max(lo, i);
        if (cover > 1e-12) list.push([i, cover / step]);
      }
      return list;
    });
  const xs = cells(g.sw, g.dw),
    ys = cells(g.sh, g.dh);
  const out = new Uint8Array(th * tw * outC);
  for (let oy = 0; oy < g.dh; oy++)
    for (let ox = 0; ox < g.dw; ox++) {
      const acc = new Array<number>(inC).fill(0);
      for (const [y, wy] of ys[oy]!)
        for (const [x, wx] of xs[ox]!)
          for (let c = 0; c < inC; c++) acc[c]! += wy * wx * src[((g.sy + y) * w + g.sx + x) * inC + c]!;
      const o = ((g.dy + oy) * tw + g.dx + ox) * outC;
      const lv = (v: number) => Math.min(255, Math.max(0, Math.round(v)));
      if (inC === outC) for (let c = 0; c < outC; c++) out[o + c] = lv(acc[c]!);
      else if (inC === 1) for (let c = 0; c < outC; c++) out[o + c] = lv(acc[0]!);
      else out[o] = lv(0.299 * acc[0]! + 0.587 * acc[1]! + 0.114 * acc[2]!);
    }
  return out;
}

const geometry = fc.record({
  w: fc.integer({ min: 1, max: 48 }),
  h: fc.integer({ min: 1, max: 48 }),
  tw: fc.integer({ min: 1, max: 20 }),
  th: fc.integer({ min: 1, max: 20 }),
  inC: fc.constantFrom(1 as const, 3 as const),
  outC: fc.constantFrom(1 as const, 3 as const),
  fit: fc.constantFrom<Fit>('crop', 'letterbox'),
  invert: fc.boolean(),
  box: fc.option(
    fc.record({
      x: fc.nat({ max: 16 }),
      y: fc.nat({ max: 16 }),
      width: fc.integer({ min: 1, max: 40 }),
      height: fc.integer({ min: 1, max: 40 }),
    }),
    { nil: null },
  ),
  // Few distinct values make exact .5 means (and gray conversions next to them) common, not rare.
  levels: fc.constantFrom([0, 1], [0, 255], [7, 8, 9, 10], null),
  seed: fc.nat(),
});

function picture(g: { w: number; h: number; inC: number; levels: readonly number[] | null; seed: number }): Uint8Array {
  let x = g.seed;
  const next = () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 8;
  };
  return Uint8Array.from({ length: g.w * g.h * g.inC }, () =>
    g.levels ? g.levels[next() % g.levels.length]! : next() & 255,
  );
}

describe('AreaResizer: one planned integer resampler for the trainer and the box', () => {
  test('equals the area filter by definition on random geometries, fits, boxes, channels, inversion, ties', () => {
    fc.assert(
      fc.property(geometry, (g) => {
        const box =
          g.box && g.box.x + g.box.width <= g.w && g.box.y + g.box.height <= g.h
            ? g.box
            : { x: 0, y: 0, width: g.w, height: g.h };
        const from: FrameShape = [g.h, g.w, g.inC],
          to: FrameShape = [g.th, g.tw, g.outC];
        const src = picture(g);
        const resizer = new AreaResizer(from, to, { fit: g.fit, box, invert: g.invert });
        const out = new Uint8Array(g.th * g.tw * g.outC).fill(77);
        assert.equal(resizer.resize(src, out), out, 'writes into the buffer it is given');
        assert.deepEqual(out, definition(src, from, to, g.fit, box, g.invert).out);
        assert.deepEqual(resizer.resize(src), out, 'the same again: nothing carried over between frames');
      }),
      { numRuns: 400 },
    );
  });

  test('a picture at any byte offset in its buffer (word-aligned or not) gives the same bytes', () => {
    fc.assert(
      fc.property(geometry, fc.nat({ max: 7 }), (g, offset) => {
        const from: FrameShape = [g.h, g.w, g.inC],
          to: FrameShape = [g.th, g.tw, g.outC];
        const box = { x: 0, y: 0, width: g.w, height: g.h };
        const src = picture(g);
        // The picture inside a larger buffer, as a camera's frame sits in a stream's chunk.
        const held = new Uint8Array(src.length + 16).fill(255);
        held.set(src, offset);
        const resizer = new AreaResizer(from, to, { fit: g.fit, box, invert: g.invert });
        assert.deepEqual(
          resizer.resize(held.subarray(offset, offset + src.length)),
          definition(src, from, to, g.fit, box, g.invert).out,
        );
      }),
      { numRuns: 300 },
    );
  });

  test('tall boxes: 257 whole rows into one (the most a 16-bit lane sums) and more, all 255, exact', () => {
    // 259 rows into one: 257 whole rows between the first and the last, 257 · 255 = 65535 per lane.
    for (const h of [258, 259, 260, 300])
      for (const w of [8, 12, 28]) {
        const from: FrameShape = [h, w, 1],
          to: FrameShape = [1, 1, 1];
        const box = { x: 0, y: 0, width: w, height: h };
        const src = new Uint8Array(h * w).fill(255);
        const out = new AreaResizer(from, to, { fit: 'letterbox', box }).resize(src);
        assert.deepEqual(out, definition(src, from, to, 'letterbox', box, false).out, `${h}x${w}`);
      }
  });

  test('the float filter it replaced gives the same bytes except where the exact mean is a tie (x.5)', () => {
    let ties = 0;
    fc.assert(
      fc.property(geometry, (g) => {
        const from: FrameShape = [g.h, g.w, g.inC],
          to: FrameShape = [g.th, g.tw, g.outC];
        const box = { x: 0, y: 0, width: g.w, height: g.h };
        const src = picture(g);
        const { out, exact } = definition(src, from, to, g.fit, box, false);
        const old = floatFilter(src, from, to, g.fit, box);
        for (let i = 0; i < out.length; i++) {
          if (out[i] === old[i]) continue;
          const e = exact[Math.floor(i / g.outC)]!;
          const [s2, d2] = [e[2 * (i % g.outC)]!, e[2 * (i % g.outC) + 1]!];
          // s/d = s2/d2; a tie is 2·s2 ≡ d2 (mod 2·d2), i.e. frac(s/d) = 1/2.
          assert.equal((2n * s2) % (2n * d2), d2, `pixel ${i}: ${out[i]} vs ${old[i]} at a mean that is no tie`);
          ties++;
        }
      }),
      { numRuns: 300 },
    );
    assert.ok(ties > 0, 'the contents make ties, where the two may differ');
  });

  test("the trainer's fitFrame and the agent's toModelFrame give the same bytes, square or not, crop or letterbox", () => {
    const src = Uint8Array.from({ length: 37 * 53 * 3 }, (_, i) => (Math.imul(i + 9, 2654435761) >>> 24) & 255);
    for (const to of [
      [28, 28, 1],
      [24, 32, 3],
      [32, 24, 3],
      [16, 16, 1],
    ] as FrameShape[])
      for (const fit of ['crop', 'letterbox'] as Fit[])
        assert.deepEqual(
          toModelFrame({ width: 53, height: 37, channels: 3, data: src }, to, null, false, fit),
          fitFrame(src, [37, 53, 3], to, fit),
          `${to.join('x')} ${fit}`,
        );
    // Pixels 0 and 1 into one (the whole picture: letterbox): the mean is exactly 0.5, rounded up.
    assert.deepEqual([...new AreaResizer([1, 2, 1], [1, 1, 1], { fit: 'letterbox' }).resize(Uint8Array.of(0, 1))], [1]);
    // A 2x2 mean is the area filter's answer for an exact halving.
    assert.deepEqual([...fitFrame(Uint8Array.of(0, 10, 100, 200, 20, 30, 100, 100), [2, 4, 1], [1, 2, 1])], [15, 125]);
  });

  test('refusals name the field', () => {
    assert.throws(
      () =>
        new AreaResizer([48, 64, 1], [28, 28, 1], {
          box: { x: 40, y: 0, width: 40, height: 40 },
          boxField: 'source.crop',
        }),
      (e: Error) => e instanceof FrameError && e.field === 'source.crop' && /inside the 64x48 frame/.test(e.message),
    );
    assert.throws(
      () => new AreaResizer([8, 8, 3], [2, 2, 2]),
      (e: Error) => e instanceof FrameError && e.field === 'to',
    );
    assert.throws(
      () => new AreaResizer([8, 8, 1], [2, 2, 1]).resize(new Uint8Array(63)),
      (e: Error) => e instanceof FrameError && /expected 64 bytes/.test(e.message),
    );
  });
});

describe('camera yuv420 for a colour model', () => {
  test('BT.601 limited range in integers: black, white, the primaries', () => {
    // One 2x2 block per colour: Y, then U and V.
    const rgb = (y: number, u: number, v: number) => [
      ...yuv420ToRgb(Uint8Array.of(y, y, y, y, u, v), 2, 2, new Uint8Array(12)).subarray(0, 3),
    ];
    assert.deepEqual(rgb(16, 128, 128), [0, 0, 0]);
    assert.deepEqual(rgb(235, 128, 128), [255, 255, 255]);
    assert.deepEqual(rgb(126, 128, 128), [128, 128, 128]);
    assert.deepEqual(rgb(81, 90, 240), [255, 0, 0]);
    assert.deepEqual(rgb(145, 54, 34), [0, 255, 1]);
    assert.deepEqual(rgb(41, 240, 110), [0, 0, 255]);
  });

  test('stdin:yuv420 into a 24x32x3 model: the RGB picture fitted as the trainer fits it, crop or letterbox', async () => {
    const [w, h] = [40, 30];
    const frames = [0, 1].map((k) =>
      Uint8Array.from({ length: (w * h * 3) / 2 }, (_, i) =>
        i < w * h ? (i * (k + 3) + (i >> 4)) & 255 : 60 + ((i * 7 + k * 31) % 140),
      ),
    );
    for (const fit of ['crop', 'letterbox'] as Fit[]) {
      const input = new PassThrough();
      const source = createSource(parseSourceSpec(`stdin:yuv420:${w}x${h}`), {
        target: [24, 32, 3],
        frameRate: 0,
        loop: false,
        crop: null,
        invert: false,
        fit,
        stdin: input,
      });
      const got: SourceFrame[] = [];
      const done = (async () => {
        for await (const f of source) if (got.push(f) === 2) break;
        source.close();
      })();
      // Split inside the chroma planes.
      const all = Buffer.concat(frames);
      input.write(all.subarray(0, 1500));
      input.write(all.subarray(1500));
      input.end();
      await done;
      assert.equal(got.length, 2);
      got.forEach((f, k) =>
        assert.deepEqual(
          f.data,
          fitFrame(yuv420ToRgb(frames[k]!, w, h, new Uint8Array(w * h * 3)), [h, w, 3], [24, 32, 3], fit),
          `${fit} frame ${k}`,
        ),
      );
    }
  });
});
