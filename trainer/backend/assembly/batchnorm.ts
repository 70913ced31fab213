// Part of the trainer's WebAssembly module (./kernels.ts):
// the passes over the values of trainer/layers/batchnorm.ts's training-mode batch norm, the same float64
// arithmetic as that file's JavaScript loops (the reference, and the path without this module), operation for
// operation and in the same order, so every result equals theirs bit for bit. What lies between the passes (the
// all-reduce of the sums over the threads, the per-channel coefficients) stays in JavaScript.
//
// x, y, dy, dx: n float32 values in rows of C channels (channels innermost); the per-channel vectors are float64.
// Four channels per v128 of float32 (two float64x2 halves) up to the last multiple of 4, the rest one at a time.

/** The upper two float32 lanes of `a` as float64. */
// @ts-ignore: decorator
@inline
function promoteHigh(a: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(a, a, 2, 3, 2, 3));
}

/** Two float64x2 as four float32 (each rounded once). */
// @ts-ignore: decorator
@inline
function demote(lo: v128, hi: v128): v128 {
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/**
 * sums[c] = Σ u, sums[C + c] = Σ u·(v − mean_c) per channel (sums: 2C float64); without `centred`, Σ u·v (mean is
 * not read). Inlined with a constant `centred`, so each caller keeps only its own arithmetic.
 */
// @ts-ignore: decorator
@inline
function pairSums(u: usize, v: usize, mean: usize, sums: usize, n: i32, C: i32, centred: bool): void {
  memory.fill(sums, 0, <usize>C << 4);
  const vec = C & ~3;
  const s2 = sums + (<usize>C << 3);
  for (let i = 0; i < n; i += C) {
    const at = <usize>i << 2;
    let c = 0;
    for (; c < vec; c += 4) {
      const u4 = v128.load(u + at + (<usize>c << 2)),
        v4 = v128.load(v + at + (<usize>c << 2));
      const uLo = f64x2.promote_low_f32x4(u4),
        uHi = promoteHigh(u4);
      let vLo = f64x2.promote_low_f32x4(v4),
        vHi = promoteHigh(v4);
      if (centred) {
        const m = mean + (<usize>c << 3);
        vLo = f64x2.sub(vLo, v128.load(m));
        vHi = f64x2.sub(vHi, v128.load(m + 16));
      }
      const a = sums + (<usize>c << 3),
        b = s2 + (<usize>c << 3);
      v128.store(a, f64x2.add(v128.load(a), uLo));
      v128.store(a + 16, f64x2.add(v128.load(a + 16), uHi));
      v128.store(b, f64x2.add(v128.load(b), f64x2.mul(uLo, vLo)));
      v128.store(b + 16, f64x2.add(v128.load(b + 16), f64x2.mul(uHi, vHi)));
    }
    for (; c < C; c++) {
      const o = at + (<usize>c << 2);
      const uc = <f64>load<f32>(u + o);
      let vc = <f64>load<f32>(v + o);
      if (centred) vc -= load<f64>(mean + (<usize>c << 3));
      const a = sums + (<usize>c << 3),
        b = s2 + (<usize>c << 3);
      store<f64>(a, load<f64>(a) + uc);
      store<f64>(b, load<f64>(b) + uc * vc);
    }
  }
}

/** sums[c] = Σ x, sums[C + c] = Σ x² per channel (sums: 2C float64). */
export function bnSums(x: usize, sums: usize, n: i32, C: i32): void {
  pairSums(x, x, 0, sums, n, C, false);
}

/** y = x·scale_c + shift_c in float64, rounded once to float32 (coef: scale then shift, 2C float64). */
export function bnAffine(x: usize, coef: usize, y: usize, n: i32, C: i32): void {
  const vec = C & ~3;
  const shift = coef + (<usize>C << 3);
  for (let i = 0; i < n; i += C) {
    const at = <usize>i << 2;
    let c = 0;
    for (; c < vec; c += 4) {
      const x4 = v128.load(x + at + (<usize>c << 2));
      const a = coef + (<usize>c << 3),
        b = shift + (<usize>c << 3);
      const lo = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(x4), v128.load(a)), v128.load(b));
      const hi = f64x2.add(f64x2.mul(promoteHigh(x4), v128.load(a + 16)), v128.load(b + 16));
      v128.store(y + at + (<usize>c << 2), demote(lo, hi));
    }
    for (; c < C; c++) {
      const o = at + (<usize>c << 2);
      const v = <f64>load<f32>(x + o) * load<f64>(coef + (<usize>c << 3)) + load<f64>(shift + (<usize>c << 3));
      store<f32>(y + o, <f32>v);
    }
  }
}

/** sums[c] = Σ dy, sums[C + c] = Σ dy·(x − mean_c) per channel (mean: C float64; sums: 2C float64). */
export function bnGradSums(dy: usize, x: usize, mean: usize, sums: usize, n: i32, C: i32): void {
  pairSums(dy, x, mean, sums, n, C, true);
}

/** dx = p_c·dy + q_c·x + r_c in float64, rounded once to float32 (coef: p, q, r, 3C float64). */
export function bnInputGrad(dy: usize, x: usize, coef: usize, dx: usize, n: i32, C: i32): void {
  const vec = C & ~3;
  const q = coef + (<usize>C << 3),
    r = coef + (<usize>C << 4);
  for (let i = 0; i < n; i += C) {
    const at = <usize>i << 2;
    let c = 0;
    for (; c < vec; c += 4) {
      const d4 = v128.load(dy + at + (<usize>c << 2)),
        x4 = v128.load(x + at + (<usize>c << 2));
      const o = <usize>c << 3;
      const lo = f64x2.add(
        f64x2.add(
          f64x2.mul(v128.load(coef + o), f64x2.promote_low_f32x4(d4)),
          f64x2.mul(v128.load(q + o), f64x2.promote_low_f32x4(x4)),
        ),
        v128.load(r + o),
      );
      const hi = f64x2.add(
        f64x2.add(f64x2.mul(v128.load(coef + o + 16), promoteHigh(d4)), f64x2.mul(v128.load(q + o + 16), promoteHigh(x4))),
        v128.load(r + o + 16),
      );
      v128.store(dx + at + (<usize>c << 2), demote(lo, hi));
    }
    for (; c < C; c++) {
      const e = at + (<usize>c << 2),
        o = <usize>c << 3;
      const v =
        load<f64>(coef + o) * <f64>load<f32>(dy + e) + load<f64>(q + o) * <f64>load<f32>(x + e) + load<f64>(r + o);
      store<f32>(dx + e, <f32>v);
    }
  }
}
