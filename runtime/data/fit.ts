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

/** Bytes are in address order from a word's low bits (every platform Node runs on; checked, else no SWAR). */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** Rows a 16-bit lane of the SWAR sums can take without overflowing: 257 · 255 = 65535. */
const LANE_ROWS = 257;

/**
 * An Int32Array over each picture buffer seen, made once per buffer (a camera's frames arrive in one), held weakly:
 * a resizer keeps no picture alive.
 */
const wordViews = new WeakMap<ArrayBufferLike, Int32Array>();

function wordView(data: Uint8Array): Int32Array {
  let view = wordViews.get(data.buffer);
  // A resizable buffer may have grown since (or shrunk: the view then has length 0): it must reach the picture's
  // last whole word.
  if (!view || view.length < Math.floor((data.byteOffset + data.length) / 4)) {
    view = new Int32Array(data.buffer, 0, Math.floor(data.buffer.byteLength / 4));
    wordViews.set(data.buffer, view);
  }
  return view;
}

/** No words: the SWAR loop does not run. */
const NO_WORDS = new Int32Array(0);

/**
 * The vertical sums of four columns `j`…`j + 3` of a box: from the words of its first and last rows (with their
 * covers) and the 16-bit lane sums of the rows between (`lo`: bytes 0 and 2, `hi`: bytes 1 and 3; each × full).
 */
function columns4(
  cols: Float64Array,
  j: number,
  first: number,
  last: number,
  lo: number,
  hi: number,
  firstCover: number,
  lastCover: number,
  full: number,
): void {
  cols[j] = firstCover * (first & 255) + full * (lo & 0xffff) + lastCover * (last & 255);
  cols[j + 1] = firstCover * ((first >>> 8) & 255) + full * (hi & 0xffff) + lastCover * ((last >>> 8) & 255);
  cols[j + 2] = firstCover * ((first >>> 16) & 255) + full * (lo >>> 16) + lastCover * ((last >>> 16) & 255);
  cols[j + 3] = firstCover * (first >>> 24) + full * (hi >>> 16) + lastCover * (last >>> 24);
}

/**
 * The area resize of one geometry (picture shape, frame shape, fit, box), planned once: integer overlap tables per
 * axis, then per output row a vertical pass over the box's rows it covers into a reused per-column buffer and a
 * horizontal pass over that buffer; no allocation per frame but the output when none is given. Vertical first
 * because a box row's bytes are contiguous whatever the channels: the bulk of the work (the rows an output row
 * covers fully) is plain byte adds down columns, done four bytes at a time in 16-bit lanes of 32-bit words (SWAR)
 * where the rows are word-aligned, and the horizontal pass touches only one buffer row per output row. Every sum
 * is an exact integer (at most 255 · 1000 · box area < 2^53), so the order of the additions does not matter, and
 * the rounding is done on integers: the bytes are the exact area means, rounded half up.
 */
export class AreaResizer {
  readonly from: FrameShape;
  readonly to: FrameShape;
  private readonly g: ReturnType<typeof fitGeometry>;
  private readonly xs: AxisPlan;
  private readonly ys: AxisPlan;
  /** Vertical sums of one output row: per source column of the box, per input channel (a box row's layout). */
  private readonly cols: Float64Array;
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
    this.cols = new Float64Array(this.g.sw * from[2]);
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
    const { g, xs, ys, cols, sums } = this;
    if (this.padded) out.fill(0);
    const stride = w * inC;
    /** A box row: `span` bytes from `base` + y · stride. */
    const base = g.sy * stride + g.sx * inC,
      span = g.sw * inC;
    // SWAR needs word-aligned rows: a stride of whole words puts every row's bytes at the same place in a word.
    // Then the bytes before the first whole word (`head`) and from `tail` on are summed one by one and the
    // `pairs` pairs of words between them as words (two words a step: fewer loop steps, more adds in flight).
    const aligned = LITTLE_ENDIAN && (stride & 3) === 0;
    const head = aligned ? Math.min(span, -(data.byteOffset + base) & 3) : span;
    const pairs = (span - head) >> 3;
    const words = pairs > 0 ? wordView(data) : NO_WORDS;
    const word0 = (data.byteOffset + base + head) >>> 2,
      rowWords = stride >>> 2;
    // Mean = sum / area; to gray: (299 R + 587 G + 114 B) / (1000 area). Rounded half up: ⌊(2 sum + d) / 2d⌋.
    const area = g.sw * g.sh;
    const gray = inC === 3 && outC === 1;
    const d = gray ? 1000 * area : area;
    for (let oy = 0; oy < g.dh; oy++) {
      // Vertical: cols = first row · its cover + full · (the rows between) + last row · its cover.
      const ya = ys.first[oy]!,
        yb = ys.last[oy]!;
      const full = ys.full,
        firstCover = ys.firstCover[oy]!,
        lastCover = yb > ya ? ys.lastCover[oy]! : 0;
      // Words while a 16-bit lane cannot overflow (a downscale of more than 258 rows to one goes byte by byte).
      const n = yb - ya - 1 <= LANE_ROWS ? pairs : 0,
        tail = head + 8 * n;
      const wa = word0 + ya * rowWords,
        wb = word0 + yb * rowWords;
      for (let k = 0; k < 2 * n; k += 2) {
        // Bytes 0 and 2 of a word summed in the 16-bit lanes of `lo`, bytes 1 and 3 in those of `hi`.
        let lo0 = 0,
          hi0 = 0,
          lo1 = 0,
          hi1 = 0;
        for (let i = wa + rowWords + k; i < wb + k; i += rowWords) {
          const u = words[i]!,
            v = words[i + 1]!;
          lo0 = (lo0 + (u & 0x00ff00ff)) | 0;
          hi0 = (hi0 + ((u >>> 8) & 0x00ff00ff)) | 0;
          lo1 = (lo1 + (v & 0x00ff00ff)) | 0;
          hi1 = (hi1 + ((v >>> 8) & 0x00ff00ff)) | 0;
        }
        const j = head + 4 * k;
        columns4(cols, j, words[wa + k]!, words[wb + k]!, lo0, hi0, firstCover, lastCover, full);
        columns4(cols, j + 4, words[wa + k + 1]!, words[wb + k + 1]!, lo1, hi1, firstCover, lastCover, full);
      }
      // The same byte by byte: before the words, then after them.
      const first = base + ya * stride,
        last = base + yb * stride;
      for (let part = 0; part < 2; part++)
        for (let j = part ? tail : 0, end = part ? span : head; j < end; j++) {
          let inner = 0;
          for (let i = first + stride + j; i < last + j; i += stride) inner += data[i]!;
          cols[j] = firstCover * data[first + j]! + full * inner + lastCover * data[last + j]!;
        }
      // Horizontal, per output column and channel, on the same plan.
      for (let ox = 0; ox < g.dw; ox++) {
        const xa = xs.first[ox]!,
          xb = xs.last[ox]!;
        for (let c = 0; c < inC; c++) {
          let s = xs.firstCover[ox]! * cols[xa * inC + c]!;
          if (xb > xa) {
            let inner = 0;
            for (let i = (xa + 1) * inC + c, end = xb * inC + c; i < end; i += inC) inner += cols[i]!;
            s += xs.full * inner + xs.lastCover[ox]! * cols[xb * inC + c]!;
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
