/**
 * Pictures to model frames: PNG/PGM decoding, crop, area resize, channel conversion. Everything here works on
 * 8-bit HWC images, the sensor representation the runtime takes.
 */
import { createRequire } from 'node:module';
import type { PNG } from 'pngjs';
import { FrameError, show } from '../../runtime/index.js';
import type { Crop } from '../config.js';

/** An 8-bit HWC image, 1 (grey) or 3 (RGB) channels. */
export interface Image {
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly data: Uint8Array;
}

export type Shape3 = readonly [number, number, number];

// pngjs is loaded on the first PNG: an agent reading a camera never needs it.
const require = createRequire(import.meta.url);

/** True if the bytes start like a PNG or a binary/ASCII PGM. */
export function isPicture(bytes: Uint8Array): boolean {
  return isPng(bytes) || (bytes[0] === 0x50 && (bytes[1] === 0x35 || bytes[1] === 0x32));
}

function isPng(b: Uint8Array): boolean {
  return b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
}

/** Decodes a PNG (via pngjs) or a PGM (P5 binary or P2 ASCII). */
export function decodePicture(bytes: Uint8Array, what = 'image'): Image {
  if (isPng(bytes)) {
    let png: PNG;
    try {
      png = (require('pngjs') as typeof import('pngjs')).PNG.sync.read(
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      );
    } catch (err) {
      throw new FrameError(`${what}: expected a valid PNG, got a broken one (${(err as Error).message})`, what);
    }
    const { width, height } = png;
    const rgba = png.data;
    // pngjs expands every PNG to RGBA; its colour type (not in its typings) says whether the source was grey.
    const colorType = (png as unknown as { colorType?: number }).colorType;
    const grey = colorType === 0 || colorType === 4;
    const channels = grey ? 1 : 3;
    const data = new Uint8Array(width * height * channels);
    for (let i = 0; i < width * height; i++) {
      // Transparent pixels composite onto black, the background of the data sets the models are trained on.
      const a = rgba[4 * i + 3]! / 255;
      for (let c = 0; c < channels; c++) data[i * channels + c] = Math.round(rgba[4 * i + c]! * a);
    }
    return { width, height, channels, data };
  }
  return decodePgm(bytes, what);
}

/** PGM: "P5" or "P2", width, height, maxval (whitespace separated, # comments), then the samples. */
export function decodePgm(bytes: Uint8Array, what = 'image'): Image {
  const magic = String.fromCharCode(bytes[0] ?? 0, bytes[1] ?? 0);
  if (magic !== 'P5' && magic !== 'P2')
    throw new FrameError(`${what}: expected a PNG or PGM (P5/P2) picture, got bytes starting ${show(magic)}`, what);
  let pos = 2;
  const token = (): number => {
    for (;;) {
      while (pos < bytes.length && /\s/.test(String.fromCharCode(bytes[pos]!))) pos++;
      if (bytes[pos] !== 0x23) break;
      while (pos < bytes.length && bytes[pos] !== 0x0a) pos++;
    }
    const start = pos;
    while (pos < bytes.length && bytes[pos]! >= 0x30 && bytes[pos]! <= 0x39) pos++;
    if (start === pos) throw new FrameError(`${what}: PGM header is truncated or not numeric at byte ${start}`, what);
    return Number(String.fromCharCode(...bytes.subarray(start, pos)));
  };
  const width = token();
  const height = token();
  const maxval = token();
  if (width < 1 || height < 1 || maxval < 1 || maxval > 65535) {
    throw new FrameError(
      `${what}: PGM header expected width, height >= 1 and maxval 1..65535, got ${width}x${height} maxval ${maxval}`,
      what,
    );
  }
  const n = width * height;
  const data = new Uint8Array(n);
  const scale = 255 / maxval;
  if (magic === 'P5') {
    pos++; // the single whitespace byte after maxval
    const wide = maxval > 255;
    const need = n * (wide ? 2 : 1);
    if (bytes.length - pos < need)
      throw new FrameError(
        `${what}: PGM ${width}x${height} needs ${need} sample bytes, got ${bytes.length - pos}`,
        what,
      );
    for (let i = 0; i < n; i++) {
      const v = wide ? (bytes[pos + 2 * i]! << 8) | bytes[pos + 2 * i + 1]! : bytes[pos + i]!;
      data[i] = Math.round(v * scale);
    }
  } else {
    for (let i = 0; i < n; i++) data[i] = Math.round(Math.min(token(), maxval) * scale);
  }
  return { width, height, channels: 1, data };
}

/** The largest centred square: what a camera frame becomes before it is resized to a square model input. */
export function centredSquare(width: number, height: number): Crop {
  const side = Math.min(width, height);
  return { x: (width - side) >> 1, y: (height - side) >> 1, width: side, height: side };
}

/** The crop a frame of `width`×`height` is resized from: `crop`, the whole frame when it has the target size, else the centred square. */
function cropBox(width: number, height: number, target: Shape3, crop: Crop | null): Crop {
  const box =
    crop ??
    (width === target[1] && height === target[0] ? { x: 0, y: 0, width, height } : centredSquare(width, height));
  if (box.x + box.width > width || box.y + box.height > height) {
    throw new FrameError(
      `source.crop: expected a box inside the ${width}x${height} frame, got ${box.width}x${box.height} at (${box.x}, ${box.y})`,
      'source.crop',
    );
  }
  return box;
}

function checkChannels(inC: number, outC: number): void {
  if (outC !== inC && inC !== 1 && outC !== 1)
    throw new FrameError(`model input: expected 1 or 3 channels, got ${outC}`, 'input.channels');
}

/**
 * One output pixel of the float area filter (the reference): every source pixel the destination pixel covers,
 * weighted by the covered fraction, summed in float64 (rows outer, columns inner), channels converted, rounded.
 */
function areaPixel(
  img: Image,
  box: Crop,
  xs: AreaCells,
  ys: AreaCells,
  ox: number,
  oy: number,
  out: Uint8Array,
  o: number,
  outC: number,
  invert: boolean,
  acc: Float64Array,
): void {
  const inC = img.channels;
  acc.fill(0);
  for (const [sy, wy] of ys[oy]!) {
    const row = (box.y + sy) * img.width + box.x;
    for (const [sx, wx] of xs[ox]!) {
      const w = wy * wx;
      const p = (row + sx) * inC;
      for (let c = 0; c < inC; c++) acc[c] += w * img.data[p + c]!;
    }
  }
  if (outC === inC) for (let c = 0; c < outC; c++) out[o + c] = level(acc[c]!, invert);
  else if (inC === 1) for (let c = 0; c < outC; c++) out[o + c] = level(acc[0]!, invert);
  else out[o] = level(grey(acc[0]!, acc[1]!, acc[2]!), invert);
}

const grey = (r: number, g: number, b: number) => 0.299 * r + 0.587 * g + 0.114 * b;

/**
 * Crops, area-resizes and converts an image to the model's input shape [h, w, c]. Area resize averages every
 * source pixel a destination pixel covers (fractional at the edges), the right filter for shrinking. This is the
 * reference: a stream of same-sized frames goes through an AreaResizer, which computes the same bytes.
 */
export function toModelFrame(img: Image, target: Shape3, crop: Crop | null, invert: boolean): Uint8Array {
  const [outH, outW, outC] = target;
  const box = cropBox(img.width, img.height, target, crop);
  checkChannels(img.channels, outC);
  const xs = areaWeights(box.width, outW);
  const ys = areaWeights(box.height, outH);
  const out = new Uint8Array(outH * outW * outC);
  const acc = new Float64Array(img.channels);
  for (let oy = 0; oy < outH; oy++)
    for (let ox = 0; ox < outW; ox++)
      areaPixel(img, box, xs, ys, ox, oy, out, (oy * outW + ox) * outC, outC, invert, acc);
  return out;
}

function level(v: number, invert: boolean): number {
  const x = Math.min(255, Math.max(0, Math.round(v)));
  return invert ? 255 - x : x;
}

type AreaCells = Array<Array<[number, number]>>;
const weightCache = new Map<string, AreaCells>();

/** For each of `m` output cells, the source indices it covers (of `n`) with their fractional weights (summing to 1). */
function areaWeights(n: number, m: number): AreaCells {
  const key = `${n}:${m}`;
  let w = weightCache.get(key);
  if (w) return w;
  w = [];
  const step = n / m;
  for (let o = 0; o < m; o++) {
    const lo = o * step;
    const hi = lo + step;
    const cells: Array<[number, number]> = [];
    for (let i = Math.floor(lo); i < Math.min(n, Math.ceil(hi)); i++) {
      const cover = Math.min(hi, i + 1) - Math.max(lo, i);
      if (cover > 1e-12) cells.push([i, cover / step]);
    }
    w.push(cells);
  }
  if (weightCache.size > 64) weightCache.clear();
  weightCache.set(key, w);
  return w;
}

/**
 * The area filter on one axis in integers: output cell o of m covers [o·n, (o+1)·n) and source cell i covers
 * [i·m, (i+1)·m) (both scaled by m·n / n), so cell i's weight in cell o is its overlap, an integer, over n. Per
 * output cell: the first and last source cells with their overlaps; every cell between them overlaps fully (m).
 */
interface AxisPlan {
  readonly first: Int32Array;
  readonly last: Int32Array;
  readonly firstCover: Float64Array;
  readonly lastCover: Float64Array;
  /** Overlap of a fully covered source cell. */
  readonly full: number;
}

function axisPlan(n: number, m: number): AxisPlan {
  const plan = {
    first: new Int32Array(m),
    last: new Int32Array(m),
    firstCover: new Float64Array(m),
    lastCover: new Float64Array(m),
    full: m,
  };
  for (let o = 0; o < m; o++) {
    const lo = o * n,
      hi = (o + 1) * n;
    const a = Math.floor(lo / m),
      b = Math.ceil(hi / m) - 1;
    const cover = (i: number) => Math.min(hi, (i + 1) * m) - Math.max(lo, i * m);
    plan.first[o] = a;
    plan.last[o] = b;
    plan.firstCover[o] = cover(a);
    plan.lastCover[o] = cover(b);
  }
  return plan;
}

/**
 * The area resize of toModelFrame for a stream of frames of one geometry, planned once: integer overlap tables
 * per axis, a horizontal pass per source row into a reused buffer, a vertical pass, no allocation per frame but
 * the output (frames are kept downstream). Every sum is an exact integer (at most 255 · crop area < 2^53), so the
 * value is the exact area mean; where that mean lies within 1e-9 of a rounding boundary (an exact .5, or a
 * grey conversion's near-tie) the pixel is recomputed by the float reference instead, whose own error (~1e-10 for
 * crops up to 4K) cannot cross a boundary farther away: the bytes equal toModelFrame's exactly.
 */
export class AreaResizer {
  private readonly box: Crop;
  private readonly xs: AxisPlan;
  private readonly ys: AxisPlan;
  /** Horizontal sums: per crop row, per output column, per input channel. */
  private readonly rows: Float64Array;
  private readonly sums: Float64Array;
  private readonly acc: Float64Array;
  private readonly area: number;

  constructor(
    readonly width: number,
    readonly height: number,
    readonly channels: 1 | 3,
    readonly target: Shape3,
    crop: Crop | null,
    readonly invert: boolean,
  ) {
    this.box = cropBox(width, height, target, crop);
    checkChannels(channels, target[2]);
    this.xs = axisPlan(this.box.width, target[1]);
    this.ys = axisPlan(this.box.height, target[0]);
    this.rows = new Float64Array(this.box.height * target[1] * channels);
    this.sums = new Float64Array(channels);
    this.acc = new Float64Array(channels);
    this.area = this.box.width * this.box.height;
  }

  /** The model frame of one `width`×`height`×`channels` image (HWC bytes). */
  resize(
    data: Uint8Array,
    out: Uint8Array = new Uint8Array(this.target[0] * this.target[1] * this.target[2]),
  ): Uint8Array {
    const { box, xs, ys, rows, channels: inC } = this;
    const [outH, outW, outC] = this.target;
    const stride = this.width * inC;
    for (let y = 0; y < box.height; y++) {
      const src = (box.y + y) * stride + box.x * inC;
      const at = y * outW * inC;
      for (let ox = 0; ox < outW; ox++) {
        const a = xs.first[ox]!,
          b = xs.last[ox]!;
        for (let c = 0; c < inC; c++) {
          let s: number;
          if (a === b) s = xs.firstCover[ox]! * data[src + a * inC + c]!;
          else {
            // Small integers: int32 adds (at most 255 per pixel of a row).
            let inner = 0;
            for (let i = src + (a + 1) * inC + c, end = src + b * inC + c; i < end; i += inC)
              inner = (inner + data[i]!) | 0;
            s =
              xs.firstCover[ox]! * data[src + a * inC + c]! +
              xs.full * inner +
              xs.lastCover[ox]! * data[src + b * inC + c]!;
          }
          rows[at + ox * inC + c] = s;
        }
      }
    }
    const sums = this.sums;
    const rowStride = outW * inC;
    for (let oy = 0; oy < outH; oy++) {
      const a = ys.first[oy]!,
        b = ys.last[oy]!;
      for (let ox = 0; ox < outW; ox++) {
        for (let c = 0; c < inC; c++) {
          const col = ox * inC + c;
          let s = ys.firstCover[oy]! * rows[a * rowStride + col]!;
          if (b > a) {
            let inner = 0;
            for (let y = a + 1; y < b; y++) inner += rows[y * rowStride + col]!;
            s += ys.full * inner + ys.lastCover[oy]! * rows[b * rowStride + col]!;
          }
          sums[c] = s / this.area;
        }
        const v = inC === outC || inC === 1 ? sums[0]! : grey(sums[0]!, sums[1]!, sums[2]!);
        const o = (oy * outW + ox) * outC;
        if (Math.abs(v - Math.floor(v) - 0.5) < 1e-9 || (inC === outC && inC > 1 && this.nearTie())) {
          this.reference(data, ox, oy, out, o);
          continue;
        }
        if (inC === outC) for (let c = 0; c < outC; c++) out[o + c] = level(sums[c]!, this.invert);
        else for (let c = 0; c < outC; c++) out[o + c] = level(v, this.invert);
      }
    }
    return out;
  }

  /** Whether any channel's mean lies next to a rounding boundary (RGB to RGB). */
  private nearTie(): boolean {
    for (const v of this.sums) if (Math.abs(v - Math.floor(v) - 0.5) < 1e-9) return true;
    return false;
  }

  private reference(data: Uint8Array, ox: number, oy: number, out: Uint8Array, o: number): void {
    const img: Image = { width: this.width, height: this.height, channels: this.channels, data };
    areaPixel(
      img,
      this.box,
      areaWeights(this.box.width, this.target[1]),
      areaWeights(this.box.height, this.target[0]),
      ox,
      oy,
      out,
      o,
      this.target[2],
      this.invert,
      this.acc,
    );
  }
}
