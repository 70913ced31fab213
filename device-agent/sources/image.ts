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
      png = (require('pngjs') as typeof import('pngjs')).PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
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
  if (magic !== 'P5' && magic !== 'P2') throw new FrameError(`${what}: expected a PNG or PGM (P5/P2) picture, got bytes starting ${show(magic)}`, what);
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
    throw new FrameError(`${what}: PGM header expected width, height >= 1 and maxval 1..65535, got ${width}x${height} maxval ${maxval}`, what);
  }
  const n = width * height;
  const data = new Uint8Array(n);
  const scale = 255 / maxval;
  if (magic === 'P5') {
    pos++; // the single whitespace byte after maxval
    const wide = maxval > 255;
    const need = n * (wide ? 2 : 1);
    if (bytes.length - pos < need) throw new FrameError(`${what}: PGM ${width}x${height} needs ${need} sample bytes, got ${bytes.length - pos}`, what);
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

/**
 * Crops, area-resizes and converts an image to the model's input shape [h, w, c]. Area resize averages every
 * source pixel a destination pixel covers (fractional at the edges), the right filter for shrinking.
 */
export function toModelFrame(img: Image, target: Shape3, crop: Crop | null, invert: boolean): Uint8Array {
  const [outH, outW, outC] = target;
  const box = crop ?? (img.width === outW && img.height === outH ? { x: 0, y: 0, width: img.width, height: img.height } : centredSquare(img.width, img.height));
  if (box.x + box.width > img.width || box.y + box.height > img.height) {
    throw new FrameError(`source.crop: expected a box inside the ${img.width}x${img.height} frame, got ${box.width}x${box.height} at (${box.x}, ${box.y})`, 'source.crop');
  }
  const xs = areaWeights(box.width, outW);
  const ys = areaWeights(box.height, outH);
  const out = new Uint8Array(outH * outW * outC);
  const inC = img.channels;
  const acc = new Float64Array(inC);
  for (let oy = 0; oy < outH; oy++) {
    for (let ox = 0; ox < outW; ox++) {
      acc.fill(0);
      for (const [sy, wy] of ys[oy]!) {
        const row = (box.y + sy) * img.width + box.x;
        for (const [sx, wx] of xs[ox]!) {
          const w = wy * wx;
          const p = (row + sx) * inC;
          for (let c = 0; c < inC; c++) acc[c] += w * img.data[p + c]!;
        }
      }
      const o = (oy * outW + ox) * outC;
      if (outC === inC) for (let c = 0; c < outC; c++) out[o + c] = level(acc[c]!, invert);
      else if (inC === 1) for (let c = 0; c < outC; c++) out[o + c] = level(acc[0]!, invert);
      else if (outC === 1) out[o] = level(0.299 * acc[0]! + 0.587 * acc[1]! + 0.114 * acc[2]!, invert);
      else throw new FrameError(`model input: expected 1 or 3 channels, got ${outC}`, 'input.channels');
    }
  }
  return out;
}

function level(v: number, invert: boolean): number {
  const x = Math.min(255, Math.max(0, Math.round(v)));
  return invert ? 255 - x : x;
}

const weightCache = new Map<string, Array<Array<[number, number]>>>();

/** For each of `m` output cells, the source indices it covers (of `n`) with their fractional weights (summing to 1). */
function areaWeights(n: number, m: number): Array<Array<[number, number]>> {
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
