/**
 * Simulated camera shifts on uint8 HWC frames, for the fine-tuning experiment and its tests: other light
 * (brightness/contrast), focus (blur), mounting angle (rotation) and sensor noise. Deterministic: the random
 * parts draw from a generator seeded with (seed, frame index), so a frame's shifted version never depends on
 * which other frames were shifted.
 */
import { gaussian, rng } from '../../runtime/index.js';

export type Shape = readonly [number, number, number];

const clampByte = (x: number) => (x <= 0 ? 0 : x >= 255 ? 255 : Math.round(x));

/** `y = gain * x + offset`, clamped: a brighter, flatter (or darker, harsher) exposure. */
export function brightnessContrast(frame: Uint8Array, gain: number, offset: number): Uint8Array {
  return frame.map((x) => clampByte(gain * x + offset));
}

/** Separable Gaussian blur (kernel radius ceil(3 sigma), edges clamped): a camera out of focus. */
export function blur(frame: Uint8Array, [h, w, c]: Shape, sigma: number): Uint8Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const norm = kernel.reduce((a, b) => a + b, 0);
  const pass = (src: Float64Array, dy: number, dx: number) => {
    const out = new Float64Array(src.length);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let ch = 0; ch < c; ch++) {
          let sum = 0;
          for (let k = -radius; k <= radius; k++) {
            const yy = Math.min(h - 1, Math.max(0, y + k * dy));
            const xx = Math.min(w - 1, Math.max(0, x + k * dx));
            sum += kernel[k + radius]! * src[(yy * w + xx) * c + ch]!;
          }
          out[(y * w + x) * c + ch] = sum / norm;
        }
      }
    }
    return out;
  };
  const out = pass(pass(Float64Array.from(frame), 0, 1), 1, 0);
  return Uint8Array.from(out, clampByte);
}

/** Rotation by `degrees` about the centre, bilinear, zero outside the original field of view: a tilted mount. */
export function rotate(frame: Uint8Array, [h, w, c]: Shape, degrees: number): Uint8Array {
  const a = (degrees * Math.PI) / 180;
  const [cos, sin] = [Math.cos(a), Math.sin(a)];
  const [cy, cx] = [(h - 1) / 2, (w - 1) / 2];
  const out = new Uint8Array(frame.length);
  const at = (y: number, x: number, ch: number) =>
    y < 0 || y >= h || x < 0 || x >= w ? 0 : frame[(y * w + x) * c + ch]!;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // Inverse mapping: where in the source does this output pixel come from.
      const sy = cos * (y - cy) - sin * (x - cx) + cy;
      const sx = sin * (y - cy) + cos * (x - cx) + cx;
      const [y0, x0] = [Math.floor(sy), Math.floor(sx)];
      const [fy, fx] = [sy - y0, sx - x0];
      for (let ch = 0; ch < c; ch++) {
        const top = at(y0, x0, ch) * (1 - fx) + at(y0, x0 + 1, ch) * fx;
        const bottom = at(y0 + 1, x0, ch) * (1 - fx) + at(y0 + 1, x0 + 1, ch) * fx;
        out[(y * w + x) * c + ch] = clampByte(top * (1 - fy) + bottom * fy);
      }
    }
  }
  return out;
}

/** Additive Gaussian sensor noise of standard deviation `sigma` (in 0..255 units), clamped. */
export function noise(frame: Uint8Array, sigma: number, uniform: () => number): Uint8Array {
  const normal = gaussian(uniform);
  return frame.map((x) => clampByte(x + sigma * normal()));
}

/** A camera shift: the parameters of each component (absent = not applied), applied in this order. */
export interface Shift {
  /** Exposure: `y = gain * x + offset`. */
  readonly exposure?: { readonly gain: number; readonly offset: number };
  /** Blur sigma in pixels. */
  readonly blur?: number;
  /** Rotation in degrees, plus a per-frame jitter drawn uniformly from ±jitter. */
  readonly rotation?: { readonly degrees: number; readonly jitter: number };
  /** Noise sigma in 0..255 units. */
  readonly noise?: number;
}

/** The shifts the experiment measures, each alone and all together. */
export const SHIFTS = {
  exposure: { exposure: { gain: 0.8, offset: 30 } },
  blur: { blur: 1.2 },
  rotation: { rotation: { degrees: 15, jitter: 3 } },
  noise: { noise: 40 },
  combined: { exposure: { gain: 0.9, offset: 15 }, blur: 0.8, rotation: { degrees: 8, jitter: 2 }, noise: 15 },
} as const satisfies Record<string, Shift>;

export type ShiftName = keyof typeof SHIFTS;

/** Applies a shift to frame number `index` of a stream; the same (shift, seed, index) gives the same bytes. */
export function applyShift(shift: Shift, frame: Uint8Array, shape: Shape, seed: number, index: number): Uint8Array {
  const uniform = rng(Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ index);
  let out = frame;
  if (shift.exposure) out = brightnessContrast(out, shift.exposure.gain, shift.exposure.offset);
  if (shift.blur !== undefined) out = blur(out, shape, shift.blur);
  if (shift.rotation) out = rotate(out, shape, shift.rotation.degrees + shift.rotation.jitter * (2 * uniform() - 1));
  if (shift.noise !== undefined) out = noise(out, shift.noise, uniform);
  return out === frame ? frame.slice() : out;
}
