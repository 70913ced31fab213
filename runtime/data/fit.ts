/**
 * How a picture of any size becomes a model's input frame: the one function the trainer, `sei eval`, `sei run`,
 * `sei verify` and `sei finetune` use, and the box's sources can: a model sees the same bytes in training and in
 * the field. Pure TypeScript on uint8 HWC pixels: the box has no image library, and a second resampler there
 * would give other bytes.
 *
 * Policy (`fit`):
 * - `crop` (default): the largest centred box of the frame's aspect ratio (whole pixels; for a square frame the
 *   centred square), resized to the frame. Nothing is padded; the picture's border beyond that box is lost.
 * - `letterbox`: the whole picture resized to fit inside the frame (aspect ratio kept, sides rounded), centred,
 *   the rest 0 (black, as the first conv pads). Nothing is lost; the padding carries no information.
 *
 * Resampling is the area filter the device agent's sources use (device-agent/sources/image.ts `toModelFrame`):
 * each output pixel is the mean of the source pixels it covers, weighted by the covered fraction, summed in
 * float64 (rows outer, columns inner), then the channels converted on those sums (1 → 3 repeats gray; 3 → 1 is
 * luma 0.299 R + 0.587 G + 0.114 B) and rounded once. For a square frame under `crop` the bytes are the agent's.
 */
import { FrameError } from '../errors.js';

export const FITS = ['crop', 'letterbox'] as const;
export type Fit = (typeof FITS)[number];
export const DEFAULT_FIT: Fit = 'crop';

/** [height, width, channels]. */
export type FrameShape = readonly [number, number, number];

/**
 * For each of `m` output cells, the source indices it covers (of `n`), from `first[o]`, `count[o]` of them, with
 * their fractional weights (summing to 1) at `weight[o * stride ..]`.
 */
interface AreaCells {
  readonly first: Int32Array;
  readonly count: Int32Array;
  readonly weight: Float64Array;
  readonly stride: number;
}

const cellCache = new Map<string, AreaCells>();

function areaWeights(n: number, m: number): AreaCells {
  const key = `${n}:${m}`;
  const hit = cellCache.get(key);
  if (hit) return hit;
  const step = n / m;
  const stride = Math.ceil(step) + 1;
  const first = new Int32Array(m),
    count = new Int32Array(m),
    weight = new Float64Array(m * stride);
  for (let o = 0; o < m; o++) {
    const lo = o * step;
    const hi = lo + step;
    let k = 0;
    for (let i = Math.floor(lo); i < Math.min(n, Math.ceil(hi)); i++) {
      const cover = Math.min(hi, i + 1) - Math.max(lo, i);
      if (cover > 1e-12) {
        if (k === 0) first[o] = i;
        weight[o * stride + k++] = cover / step;
      }
    }
    count[o] = k;
  }
  // A stream of frames of one size reuses its tables; a folder of many sizes does not grow the map without bound.
  if (cellCache.size >= 64) cellCache.clear();
  const cells = { first, count, weight, stride };
  cellCache.set(key, cells);
  return cells;
}

const level = (v: number) => Math.min(255, Math.max(0, Math.round(v)));

/**
 * Area-resizes box (bx, by, bw, bh) of an HWC picture of width `w` with `inC` channels into an ow × oh region of
 * `out` (row stride `outW` pixels, origin (ox0, oy0)) with `outC` channels.
 */
function areaResize(
  src: Uint8Array,
  w: number,
  inC: number,
  bx: number,
  by: number,
  bw: number,
  bh: number,
  out: Uint8Array,
  outW: number,
  outC: number,
  ox0: number,
  oy0: number,
  ow: number,
  oh: number,
): void {
  const xs = areaWeights(bw, ow),
    ys = areaWeights(bh, oh);
  const acc = new Float64Array(inC);
  for (let oy = 0; oy < oh; oy++) {
    const fy = ys.first[oy]!,
      ny = ys.count[oy]!,
      wyBase = oy * ys.stride;
    for (let ox = 0; ox < ow; ox++) {
      const fx = xs.first[ox]!,
        nx = xs.count[ox]!,
        wxBase = ox * xs.stride;
      acc.fill(0);
      for (let ky = 0; ky < ny; ky++) {
        const wy = ys.weight[wyBase + ky]!;
        const row = (by + fy + ky) * w + bx + fx;
        for (let kx = 0; kx < nx; kx++) {
          const wt = wy * xs.weight[wxBase + kx]!;
          const p = (row + kx) * inC;
          for (let c = 0; c < inC; c++) acc[c] += wt * src[p + c]!;
        }
      }
      const o = ((oy0 + oy) * outW + ox0 + ox) * outC;
      if (outC === inC) for (let c = 0; c < outC; c++) out[o + c] = level(acc[c]!);
      else if (inC === 1) for (let c = 0; c < outC; c++) out[o + c] = level(acc[0]!);
      else out[o] = level(0.299 * acc[0]! + 0.587 * acc[1]! + 0.114 * acc[2]!);
    }
  }
}

function checkShape(shape: FrameShape, name: string): void {
  const ok =
    shape.length === 3 && shape.every((d) => Number.isInteger(d) && d >= 1) && (shape[2] === 1 || shape[2] === 3);
  if (!ok)
    throw new FrameError(
      `fitFrame: ${name}: expected [height, width, 1 or 3 channels] of positive integers, got [${shape.join(', ')}]`,
      name,
    );
}

/**
 * The picture `src` (HWC uint8 of shape `from`) as a frame of shape `to` under `fit`. A picture already of
 * shape `to` comes back as it is (the same array).
 */
export function fitFrame(src: Uint8Array, from: FrameShape, to: FrameShape, fit: Fit = DEFAULT_FIT): Uint8Array {
  checkShape(from, 'from');
  checkShape(to, 'to');
  if (!FITS.includes(fit))
    throw new FrameError(`fitFrame: fit: expected one of ${FITS.join(', ')}, got ${JSON.stringify(fit)}`, 'fit');
  const [h, w, c] = from;
  const [th, tw, tc] = to;
  if (src.length !== h * w * c)
    throw new FrameError(
      `fitFrame: expected ${h * w * c} bytes for a ${h}×${w}×${c} picture, got ${src.length}`,
      'frame',
    );
  if (h === th && w === tw && c === tc) return src;
  const out = new Uint8Array(th * tw * tc);
  if (h === th && w === tw) {
    areaResize(src, w, c, 0, 0, w, h, out, tw, tc, 0, 0, tw, th);
  } else if (fit === 'crop') {
    // Wider than the frame: full height, the centred columns; else full width, the centred rows.
    const wide = w * th > h * tw;
    const bw = wide ? Math.max(1, Math.round((h * tw) / th)) : w,
      bh = wide ? h : Math.max(1, Math.round((w * th) / tw));
    areaResize(src, w, c, (w - bw) >> 1, (h - bh) >> 1, bw, bh, out, tw, tc, 0, 0, tw, th);
  } else {
    const scale = Math.min(th / h, tw / w);
    const ih = Math.min(th, Math.max(1, Math.round(h * scale))),
      iw = Math.min(tw, Math.max(1, Math.round(w * scale)));
    areaResize(src, w, c, 0, 0, w, h, out, tw, tc, (tw - iw) >> 1, (th - ih) >> 1, iw, ih);
  }
  return out;
}

/**
 * The fit policy a model was trained with: its header's `fit` when the format carries one, else the `fit` its
 * trainer wrote into `meta`, else the default (models trained on frames already of their input shape).
 */
export function modelFit(model: { readonly fit?: unknown; readonly meta?: Readonly<Record<string, unknown>> }): Fit {
  const f = model.fit ?? model.meta?.['fit'];
  return FITS.includes(f as Fit) ? (f as Fit) : DEFAULT_FIT;
}
