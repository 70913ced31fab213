/**
 * Pictures to model frames: PNG/PGM decoding, camera YUV to RGB, and the source's crop before the model's fit
 * (the resize itself is runtime/data/fit.ts, the trainer's). Everything here works on 8-bit HWC images, the
 * sensor representation the runtime takes.
 */
import { createRequire } from 'node:module';
import type { PNG } from 'pngjs';
import { AreaResizer, DEFAULT_FIT, FrameError, show } from '../../runtime/index.js';
import type { Fit } from '../../runtime/index.js';
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

/** Pixels a picture may have (4096x4096): a larger header is refused before anything is allocated for it. */
export const MAX_PICTURE_PIXELS = 4096 * 4096;

function checkPixels(width: number, height: number, what: string, kind: string): void {
  if (width * height > MAX_PICTURE_PIXELS)
    throw new FrameError(
      `${what}: expected a ${kind} of at most ${MAX_PICTURE_PIXELS} pixels (4096x4096), got ${width}x${height}`,
      what,
    );
}

/** Decodes a PNG (via pngjs) or a PGM (P5 binary or P2 ASCII). */
export function decodePicture(bytes: Uint8Array, what = 'image'): Image {
  if (isPng(bytes)) {
    // The IHDR chunk comes first (8-byte signature, length, "IHDR", width, height): pngjs would allocate
    // width*height*4 bytes for whatever it says.
    if (bytes.length >= 24) {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      checkPixels(view.getUint32(16), view.getUint32(20), what, 'PNG');
    }
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
    // 0..65535 and sizes up to 4096 need no more digits (and a spread of millions of them would overflow the stack).
    if (pos - start > 9) throw new FrameError(`${what}: PGM number at byte ${start}: expected at most 9 digits`, what);
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
  checkPixels(width, height, what, 'PGM');
  const n = width * height;
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
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const v = wide ? (bytes[pos + 2 * i]! << 8) | bytes[pos + 2 * i + 1]! : bytes[pos + i]!;
      data[i] = Math.round(v * scale);
    }
    return { width, height, channels: 1, data };
  }
  // P2: every sample is at least a digit and a separator.
  if (bytes.length - pos < 2 * n - 1)
    throw new FrameError(
      `${what}: PGM ${width}x${height} needs ${n} samples (at least ${2 * n - 1} bytes), got ${bytes.length - pos} bytes`,
      what,
    );
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.round(Math.min(token(), maxval) * scale);
  return { width, height, channels: 1, data };
}

/**
 * An image as the model's input frame [h, w, c]: `crop` (the agent's `source.crop`) first when given, then the
 * model's fit policy, the area filter and the channel conversion of runtime/data/fit.ts (the resampler training
 * used), inverted when asked. A stream of same-sized frames plans an AreaResizer once instead.
 */
export function toModelFrame(
  img: Image,
  target: Shape3,
  crop: Crop | null,
  invert: boolean,
  fit: Fit = DEFAULT_FIT,
): Uint8Array {
  return sourceResizer(img.width, img.height, img.channels, target, crop, invert, fit).resize(img.data);
}

/** The resizer of a source's geometry: its frames of `width`×`height`×`channels` into the model's `target`. */
export function sourceResizer(
  width: number,
  height: number,
  channels: 1 | 3,
  target: Shape3,
  crop: Crop | null,
  invert: boolean,
  fit: Fit = DEFAULT_FIT,
): AreaResizer {
  if (target[2] !== 1 && target[2] !== 3)
    throw new FrameError(`model input: expected 1 or 3 channels, got ${target[2]}`, 'input.channels');
  return new AreaResizer([height, width, channels], target, { fit, box: crop, invert, boxField: 'source.crop' });
}

/**
 * I420 (yuv420p: the W×H luma plane, then the W/2×H/2 U and V planes) to RGB, BT.601 limited range, in integers:
 * C = Y − 16, D = U − 128, E = V − 128; R = (298C + 409E + 128) >> 8, G = (298C − 100D − 208E + 128) >> 8,
 * B = (298C + 516D + 128) >> 8, each clamped to 0..255. Each 2×2 block of pixels shares its chroma sample.
 */
export function yuv420ToRgb(frame: Uint8Array, width: number, height: number, out: Uint8Array): Uint8Array {
  // A clamped view of `out`: each store clamps to 0..255.
  const rgb = new Uint8ClampedArray(out.buffer, out.byteOffset, out.length);
  const cw = width >> 1;
  const uAt = width * height,
    vAt = uAt + cw * (height >> 1);
  for (let y = 0; y < height; y++) {
    const row = y * width,
      crow = (y >> 1) * cw;
    for (let x = 0; x < width; x++) {
      const c = 298 * (frame[row + x]! - 16) + 128;
      const d = frame[uAt + crow + (x >> 1)]! - 128,
        e = frame[vAt + crow + (x >> 1)]! - 128;
      const r = (c + 409 * e) >> 8,
        g = (c - 100 * d - 208 * e) >> 8,
        b = (c + 516 * d) >> 8;
      const o = 3 * (row + x);
      rgb[o] = r;
      rgb[o + 1] = g;
      rgb[o + 2] = b;
    }
  }
  return out;
}
