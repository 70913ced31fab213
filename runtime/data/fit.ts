/**
 * How a picture of any size becomes a model's input frame: the one resampler the trainer, `sei eval`, `sei run`,
 * `sei verify`, `sei finetune` and the box's sources (device-agent/sources) all use, so that a model sees the same
 * bytes in training and in the field. Pure TypeScript on uint8 HWC pixels: the box has no image library.
 *
 * Policy (`fit`):
 * - `crop` (default): the largest centred box of the frame's aspect ratio (whole pixels; for a square frame the
 *   centred square), resized to the frame. Nothing is padded; the picture's border beyond that box is lost.
 * - `letterbox`: the whole picture resized to fit inside the frame (aspect ratio kept, sides rounded), centred,
 *   the rest 0 (black, as the first conv pads). Nothing is lost; the padding carries no information.
 * A box given first (the agent's `source.crop`) is the picture the policy sees.
 *
 * Resampling is the area filter: each output pixel is the exact mean of the source pixels it covers, each
 * weighted by the fraction of it covered, then the channels converted on that mean (1 → 3 repeats gray; 3 → 1 is
 * luma (299 R + 587 G + 114 B) / 1000) and rounded half up once (then inverted, 255 − v, when asked). Every step is
 * integer arithmetic, so the result is exact and the same whatever order the sums take. `AreaResizer` plans a
 * geometry once (integer overlap tables per axis, reused buffers) and resizes every frame of it; `fitFrame` keeps
 * the plans of the geometries it saw.
 */
import { FrameError } from '../errors.js';

export const FITS = ['crop', 'letterbox'] as const;
export type Fit = (typeof FITS)[number];
export const DEFAULT_FIT: Fit = 'crop';

/** [height, width, channels]. */
export type FrameShape = readonly [number, number, number];

/** A box of a picture, in its pixels. */
export interface Box {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/**
 * The area filter on one axis in integers: output cell o of m covers [o·n, (o+1)·n) and source cell i covers
 * [i·m, (i+1)·m) (both scaled by m), so cell i's weight in cell o is its overlap, an integer, over n. Per output
 * cell: the first and last source cells with their overlaps; every cell between them overlaps fully (m).
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

function checkShape(shape: FrameShape, name: string, who: string): void {
  const ok =
    shape.length === 3 && shape.every((d) => Number.isInteger(d) && d >= 1) && (shape[2] === 1 || shape[2] === 3);
  if (!ok)
    throw new FrameError(
      `${who}: ${name}: expected [height, width, 1 or 3 channels] of positive integers, got [${shape.join(', ')}]`,
      name,
    );
}

function checkFit(fit: Fit, who: string): void {
  if (!FITS.includes(fit))
    throw new FrameError(`${who}: fit: expected one of ${FITS.join(', ')}, got ${JSON.stringify(fit)}`, 'fit');
}

/**
 * Where a picture's box goes in the frame under `fit`: the source box (`sx, sy, sw, sh`, inside `box`) and the
 * destination region (`dx, dy, dw, dh`) of a `to` frame. The whole box when it has the frame's size.
 */
export function fitGeometry(
  box: Box,
  to: FrameShape,
  fit: Fit,
): { sx: number; sy: number; sw: number; sh: number; dx: number; dy: number; dw: number; dh: number } {
  const { width: w, height: h } = box;
  const [th, tw] = to;
  if (h === th && w === tw) return { sx: box.x, sy: box.y, sw: w, sh: h, dx: 0, dy: 0, dw: tw, dh: th };
  if (fit === 'crop') {
    // Wider than the frame: full height, the centred columns; else full width, the centred rows.
    const wide = w * th > h * tw;
    const sw = wide ? Math.max(1, Math.round((h * tw) / th)) : w,
      sh = wide ? h : Math.max(1, Math.round((w * th) / tw));
    return { sx: box.x + ((w - sw) >> 1), sy: box.y + ((h - sh) >> 1), sw, sh, dx: 0, dy: 0, dw: tw, dh: th };
  }
  const scale = Math.min(th / h, tw / w);
  const dh = Math.min(th, Math.max(1, Math.round(h * scale))),
    dw = Math.min(tw, Math.max(1, Math.round(w * scale)));
  return { sx: box.x, sy: box.y, sw: w, sh: h, dx: (tw - dw) >> 1, dy: (th - dh) >> 1, dw, dh };
}

export interface ResizeOptions {
  /** Default `crop`. */
  readonly fit?: Fit;
  /** The part of the picture the policy sees; default the whole picture. */
  readonly box?: Box | null;
  /** 255 − v on every frame pixel (the letterbox padding stays 0). */
  readonly invert?: boolean;
  /** The name a box outside the picture is refused under (the agent's `source.crop`). */
  readonly boxField?: string;
}

/**
 * The area resize of one geometry (picture shape, frame shape, fit, box), planned once: integer overlap tables per
 * axis, a horizontal pass per source row into a reused buffer, a vertical pass, no allocation per frame but the
 * output when none is given. Every sum is an exact integer (at most 255 · 1000 · box area < 2^53), and the
 * rounding is done on integers: the bytes are the exact area means, rounded half up.
 */
export class AreaResizer {
  readonly from: FrameShape;
  readonly to: FrameShape;
  private readonly g: ReturnType<typeof fitGeometry>;
  private readonly xs: AxisPlan;
  private readonly ys: AxisPlan;
  /** Horizontal sums: per source row of the box, per output column, per input channel. */
  private readonly rows: Float64Array;
  private readonly sums: Float64Array;
  private readonly invert: boolean;
  private readonly padded: boolean;

  constructor(from: FrameShape, to: FrameShape, opts: ResizeOptions = {}) {
    checkShape(from, 'from', 'resize');
    checkShape(to, 'to', 'resize');
    const fit = opts.fit ?? DEFAULT_FIT;
    checkFit(fit, 'resize');
    const [h, w] = from;
    const box = opts.box ?? { x: 0, y: 0, width: w, height: h };
    if (
      !(box.width >= 1 && box.height >= 1 && box.x >= 0 && box.y >= 0) ||
      box.x + box.width > w ||
      box.y + box.height > h
    ) {
      const field = opts.boxField ?? 'box';
      throw new FrameError(
        `${field}: expected a box inside the ${w}x${h} frame, got ${box.width}x${box.height} at (${box.x}, ${box.y})`,
        field,
      );
    }
    this.from = [from[0], from[1], from[2]];
    this.to = [to[0], to[1], to[2]];
    this.g = fitGeometry(box, to, fit);
    this.xs = axisPlan(this.g.sw, this.g.dw);
    this.ys = axisPlan(this.g.sh, this.g.dh);
    this.rows = new Float64Array(this.g.sh * this.g.dw * from[2]);
    this.sums = new Float64Array(from[2]);
    this.invert = opts.invert ?? false;
    this.padded = this.g.dw < to[1] || this.g.dh < to[0];
  }

  /** The frame of one picture of shape `from` (HWC bytes), written into `out` when given. */
  resize(data: Uint8Array, out: Uint8Array = new Uint8Array(this.to[0] * this.to[1] * this.to[2])): Uint8Array {
    const [h, w, inC] = this.from;
    const [, tw, outC] = this.to;
    if (data.length !== h * w * inC)
      throw new FrameError(
        `resize: expected ${h * w * inC} bytes for a ${h}×${w}×${inC} picture, got ${data.length}`,
        'frame',
      );
    const { g, xs, ys, rows, sums } = this;
    if (this.padded) out.fill(0);
    const stride = w * inC;
    const outW = g.dw;
    for (let y = 0; y < g.sh; y++) {
      const src = (g.sy + y) * stride + g.sx * inC;
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
    // Mean = sum / area; to gray: (299 R + 587 G + 114 B) / (1000 area). Rounded half up: ⌊(2 sum + d) / 2d⌋.
    const area = g.sw * g.sh;
    const gray = inC === 3 && outC === 1;
    const d = gray ? 1000 * area : area;
    const rowStride = outW * inC;
    for (let oy = 0; oy < g.dh; oy++) {
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
          sums[c] = s;
        }
        const o = ((g.dy + oy) * tw + g.dx + ox) * outC;
        if (gray) out[o] = this.level(299 * sums[0]! + 587 * sums[1]! + 114 * sums[2]!, d);
        else if (inC === outC) for (let c = 0; c < outC; c++) out[o + c] = this.level(sums[c]!, d);
        else {
          const v = this.level(sums[0]!, d);
          for (let c = 0; c < outC; c++) out[o + c] = v;
        }
      }
    }
    return out;
  }

  /** round-half-up(s / d) as a byte (inverted when asked); s and d are integers below 2^53. */
  private level(s: number, d: number): number {
    const n = 2 * s + d,
      dd = 2 * d;
    let q = Math.floor(n / dd);
    // The float quotient can land on the wrong side of an integer only by one: settle it on the integers.
    const r = n - q * dd;
    if (r < 0) q--;
    else if (r >= dd) q++;
    const v = Math.min(q, 255);
    return this.invert ? 255 - v : v;
  }
}

/** Planned geometries, by shapes and fit: a stream of frames of one size plans once. */
const plans = new Map<string, AreaResizer>();

/**
 * The picture `src` (HWC uint8 of shape `from`) as a frame of shape `to` under `fit`. A picture already of
 * shape `to` comes back as it is (the same array).
 */
export function fitFrame(src: Uint8Array, from: FrameShape, to: FrameShape, fit: Fit = DEFAULT_FIT): Uint8Array {
  checkShape(from, 'from', 'fitFrame');
  checkShape(to, 'to', 'fitFrame');
  checkFit(fit, 'fitFrame');
  const [h, w, c] = from;
  if (src.length !== h * w * c)
    throw new FrameError(
      `fitFrame: expected ${h * w * c} bytes for a ${h}×${w}×${c} picture, got ${src.length}`,
      'frame',
    );
  if (h === to[0] && w === to[1] && c === to[2]) return src;
  const key = `${from.join('x')}>${to.join('x')}:${fit}`;
  let plan = plans.get(key);
  if (!plan) {
    // A folder of many sizes does not grow the map without bound.
    if (plans.size >= 64) plans.clear();
    plan = new AreaResizer(from, to, { fit });
    plans.set(key, plan);
  }
  return plan.resize(src);
}

/**
 * The fit policy a model was trained with: its header's `fit` when the format carries one, else the `fit` its
 * trainer wrote into `meta`, else the default (models trained on frames already of their input shape).
 */
export function modelFit(model: { readonly fit?: unknown; readonly meta?: Readonly<Record<string, unknown>> }): Fit {
  const f = model.fit ?? model.meta?.['fit'];
  return FITS.includes(f as Fit) ? (f as Fit) : DEFAULT_FIT;
}
