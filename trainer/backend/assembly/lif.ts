// Part of the trainer's WebAssembly module (./kernels.ts):
// the T-step leaky integrate-and-fire of trainer/layers/lif.ts and its BPTT gradient, the same arithmetic as that
// file's JavaScript loops (the reference, and the path without this module).
//
// Layout: T steps stacked time-major, M values per step, rows of C channels (channels innermost); theta is [C]
// float32. Four channels per v128 up to the last multiple of 4, the rest one at a time.
//
// Forward, float32 as the runtime computes it: v = I at the first step, then v = fround(fround(β·v) + I); spike
// v >= θ, soft reset v = fround(v − θ). f32x4 lanes round as scalar f32 ops do, so the result is the JavaScript
// loop's bit for bit.
//
// Backward in float64, operation for operation the JavaScript's (dI and dθ equal it bit for bit; dβ is one sum over
// every value, accumulated here in several lanes, so its rounding differs).

/** u (membrane before reset) and s (0/1 spikes) of every step from the input current I. */
export function lifForward(I: usize, theta: usize, u: usize, s: usize, beta: f32, T: i32, M: i32, C: i32): void {
  const vec = C & ~3;
  const step = <usize>M << 2;
  const bv = f32x4.splat(beta);
  const one = f32x4.splat(1);
  for (let row = 0; row < M; row += C) {
    let c = 0;
    for (; c < vec; c += 4) {
      const th = v128.load(theta + (<usize>c << 2));
      let k = <usize>(row + c) << 2;
      let v = v128.load(I + k);
      for (let t = 0; ; ) {
        v128.store(u + k, v);
        const fired = f32x4.ge(v, th);
        v128.store(s + k, v128.and(fired, one));
        v = v128.bitselect(f32x4.sub(v, th), v, fired);
        if (++t == T) break;
        k += step;
        v = f32x4.add(f32x4.mul(bv, v), v128.load(I + k));
      }
    }
    for (; c < C; c++) {
      const th = load<f32>(theta + (<usize>c << 2));
      let k = <usize>(row + c) << 2;
      let v = load<f32>(I + k);
      for (let t = 0; ; ) {
        store<f32>(u + k, v);
        if (v >= th) {
          store<f32>(s + k, 1);
          v = v - th;
        } else store<f32>(s + k, 0);
        if (++t == T) break;
        k += step;
        v = beta * v + load<f32>(I + k);
      }
    }
  }
}

/** The upper two float32 lanes of `a` as float64. */
// @ts-ignore: decorator
@inline
function promoteHigh(a: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(a, a, 2, 3, 2, 3));
}

/**
 * dL/dI into dI from dL/ds (g) and the forward's membranes u; dL/dθ per channel into dTheta ([C] float64); returns
 * dL/dβ. `thetaWindow` nonzero: the surrogate's half-width is θ (trainer/layers/lif.ts `theta`), else 1.
 */
export function lifBackward(
  g: usize,
  u: usize,
  theta: usize,
  dI: usize,
  dTheta: usize,
  beta: f64,
  T: i32,
  M: i32,
  C: i32,
  thetaWindow: i32,
): f64 {
  memory.fill(dTheta, 0, <usize>C << 3);
  const vec = C & ~3;
  const step = <usize>M << 2;
  const last = <usize>(T - 1) * step;
  const one = f64x2.splat(1);
  const zero = f64x2.splat(0);
  const bv = f64x2.splat(beta);
  let dBetaLo = zero,
    dBetaHi = zero,
    dBeta: f64 = 0;
  for (let row = 0; row < M; row += C) {
    let c = 0;
    for (; c < vec; c += 4) {
      const th4 = v128.load(theta + (<usize>c << 2));
      const thLo = f64x2.promote_low_f32x4(th4),
        thHi = promoteHigh(th4);
      const iwLo = thetaWindow ? f64x2.div(one, thLo) : one,
        iwHi = thetaWindow ? f64x2.div(one, thHi) : one;
      let deltaLo = zero,
        deltaHi = zero,
        dthLo = zero,
        dthHi = zero;
      let k = (<usize>(row + c) << 2) + last;
      for (let t = T - 1; t >= 0; t--, k -= step) {
        const u4 = v128.load(u + k),
          g4 = v128.load(g + k);
        const vLo = f64x2.promote_low_f32x4(u4),
          vHi = promoteHigh(u4);
        const gLo = f64x2.promote_low_f32x4(g4),
          gHi = promoteHigh(g4);
        // Surrogate max(0, 1 − |v − θ|·iw)·iw.
        const xLo = f64x2.sub(one, f64x2.mul(f64x2.abs(f64x2.sub(vLo, thLo)), iwLo)),
          xHi = f64x2.sub(one, f64x2.mul(f64x2.abs(f64x2.sub(vHi, thHi)), iwHi));
        const sgLo = v128.and(f64x2.mul(xLo, iwLo), f64x2.gt(xLo, zero)),
          sgHi = v128.and(f64x2.mul(xHi, iwHi), f64x2.gt(xHi, zero));
        const tsLo = f64x2.mul(thLo, sgLo),
          tsHi = f64x2.mul(thHi, sgHi);
        const dvLo = f64x2.add(f64x2.mul(gLo, sgLo), f64x2.mul(deltaLo, f64x2.sub(one, tsLo))),
          dvHi = f64x2.add(f64x2.mul(gHi, sgHi), f64x2.mul(deltaHi, f64x2.sub(one, tsHi)));
        const sLo = v128.and(f64x2.ge(vLo, thLo), one),
          sHi = v128.and(f64x2.ge(vHi, thHi), one);
        dthLo = f64x2.add(
          dthLo,
          f64x2.add(f64x2.mul(f64x2.neg(gLo), sgLo), f64x2.mul(deltaLo, f64x2.sub(tsLo, sLo))),
        );
        dthHi = f64x2.add(
          dthHi,
          f64x2.add(f64x2.mul(f64x2.neg(gHi), sgHi), f64x2.mul(deltaHi, f64x2.sub(tsHi, sHi))),
        );
        v128.store(dI + k, v128.shuffle<f32>(f32x4.demote_f64x2_zero(dvLo), f32x4.demote_f64x2_zero(dvHi), 0, 1, 4, 5));
        if (t > 0) {
          const p4 = v128.load(u + k - step);
          const pLo = f64x2.promote_low_f32x4(p4),
            pHi = promoteHigh(p4);
          // The previous step's membrane after its reset.
          const rLo = v128.bitselect(f64x2.sub(pLo, thLo), pLo, f64x2.ge(pLo, thLo)),
            rHi = v128.bitselect(f64x2.sub(pHi, thHi), pHi, f64x2.ge(pHi, thHi));
          dBetaLo = f64x2.add(dBetaLo, f64x2.mul(dvLo, rLo));
          dBetaHi = f64x2.add(dBetaHi, f64x2.mul(dvHi, rHi));
          deltaLo = f64x2.mul(bv, dvLo);
          deltaHi = f64x2.mul(bv, dvHi);
        }
      }
      const at = dTheta + (<usize>c << 3);
      v128.store(at, f64x2.add(v128.load(at), dthLo));
      v128.store(at + 16, f64x2.add(v128.load(at + 16), dthHi));
    }
    for (; c < C; c++) {
      const th = <f64>load<f32>(theta + (<usize>c << 2));
      const iw: f64 = thetaWindow ? 1 / th : 1;
      let delta: f64 = 0,
        dth: f64 = 0;
      let k = (<usize>(row + c) << 2) + last;
      for (let t = T - 1; t >= 0; t--, k -= step) {
        const v = <f64>load<f32>(u + k);
        const x = 1 - Math.abs(v - th) * iw;
        const sg = x > 0 ? x * iw : 0;
        const gs = <f64>load<f32>(g + k);
        const dv = gs * sg + delta * (1 - th * sg);
        dth += -gs * sg + delta * (th * sg - (v >= th ? 1 : 0));
        store<f32>(dI + k, <f32>dv);
        if (t > 0) {
          const prev = <f64>load<f32>(u + k - step);
          dBeta += dv * (prev >= th ? prev - th : prev);
          delta = beta * dv;
        }
      }
      const at = dTheta + (<usize>c << 3);
      store<f64>(at, load<f64>(at) + dth);
    }
  }
  const lanes = f64x2.add(dBetaLo, dBetaHi);
  return dBeta + (f64x2.extract_lane(lanes, 0) + f64x2.extract_lane(lanes, 1));
}
