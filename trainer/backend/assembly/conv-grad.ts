// Part of the trainer's WebAssembly module (./kernels.ts):
// the weight gradient of a VALID convolution, the one training op that XNNPACK (tfjs-backend-wasm's conv) runs
// far below its forward speed when it is phrased as a convolution (trainer/backend/conv.ts).
//
//   dw[ky, kx, ci, co] = Σ_{n, oy, ox} xp[n, oy·s + ky, ox·s + kx, ci] · dy[n, oy, ox, co]
//
// All tensors NHWC float32 in this module's memory at the given byte offsets; dw is [kh, kw, cin, cout]. The sum
// runs as rank-1 updates: for each output position, each tap's input row scales dy's row into that tap's rows of
// dw (cin × cout floats, which stay in cache). Zero inputs are skipped without a test per value: the inputs of the
// binary layers are spike maps, mostly zeros, so each image's input positions are first compacted into lists of
// their non-zero channels (found four at a time by a vector compare), and an output position then walks the lists
// under its window. Its dy row is held in registers, up to 32 output channels at a time, while every listed input
// adds its multiple into dw.
//
// `scratch` holds one image's lists: (hp·wp + 1) i32 starts, then up to hp·wp·cin (i32 channel, f32 value) pairs.

/** Bytes of scratch `filterGrad` needs for an input of hp × wp × cin. */
export function filterGradScratch(hp: i32, wp: i32, cin: i32): i32 {
  return (hp * wp + 1) * 4 + hp * wp * cin * 8;
}

export function filterGrad(
  xp: usize,
  dy: usize,
  dw: usize,
  n: i32,
  hp: i32,
  wp: i32,
  cin: i32,
  oh: i32,
  ow: i32,
  cout: i32,
  kh: i32,
  kw: i32,
  s: i32,
  scratch: usize,
): void {
  memory.fill(dw, 0, <usize>(kh * kw * cin * cout) << 2);
  const positions = hp * wp;
  const starts = scratch;
  const entries = scratch + ((<usize>(positions + 1)) << 2);
  for (let b = 0; b < n; b++) {
    compact(xp + ((<usize>(b * positions * cin)) << 2), positions, cin, starts, entries);
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        const d = dy + ((<usize>(((b * oh + oy) * ow + ox) * cout)) << 2);
        let co = 0;
        for (; co + 32 <= cout; co += 32) window<u64>(d, dw, co, oy * s, ox * s, wp, cin, cout, kh, kw, starts, entries);
        for (; co + 4 <= cout; co += 4) window<u16>(d, dw, co, oy * s, ox * s, wp, cin, cout, kh, kw, starts, entries);
        for (; co < cout; co++) window<u8>(d, dw, co, oy * s, ox * s, wp, cin, cout, kh, kw, starts, entries);
      }
    }
  }
}

/** Lists, per input position, its non-zero channels as (channel, value) pairs; `starts` gets each list's first index. */
function compact(x: usize, positions: i32, cin: i32, starts: usize, entries: usize): void {
  let count = 0;
  const vec = cin & ~3;
  const zero = f32x4.splat(0);
  for (let q = 0; q < positions; q++) {
    store<i32>(starts + ((<usize>q) << 2), count);
    const row = x + ((<usize>(q * cin)) << 2);
    let ci = 0;
    for (; ci < vec; ci += 4) {
      let mask = i32x4.bitmask(f32x4.ne(v128.load(row + ((<usize>ci) << 2)), zero));
      while (mask) {
        const c = ci + ctz(mask);
        const e = entries + ((<usize>count) << 3);
        store<i32>(e, c);
        store<f32>(e, load<f32>(row + ((<usize>c) << 2)), 4);
        count++;
        mask &= mask - 1;
      }
    }
    for (; ci < cin; ci++) {
      const v = load<f32>(row + ((<usize>ci) << 2));
      if (v == 0) continue;
      const e = entries + ((<usize>count) << 3);
      store<i32>(e, ci);
      store<f32>(e, v, 4);
      count++;
    }
  }
  store<i32>(starts + ((<usize>positions) << 2), count);
}

@inline function axpy(w: usize, offset: usize, xv: v128, d: v128): void {
  v128.store(w + offset, f32x4.add(v128.load(w + offset), f32x4.mul(xv, d)));
}

/**
 * The output channels from `co` of one output position: 32 (`G` of size 8: dy's eight vectors stay in registers
 * over every listed input under the window), 4 (size 2: one vector, for the channels past the last whole 32) or 1
 * (size 1: the last cout % 4). `G` is a type only for its size, so the unused lanes fold away at compile time.
 */
@inline function window<G>(
  d: usize,
  dw: usize,
  co: i32,
  y0: i32,
  x0: i32,
  wp: i32,
  cin: i32,
  cout: i32,
  kh: i32,
  kw: i32,
  starts: usize,
  entries: usize,
): void {
  const at = d + ((<usize>co) << 2);
  const wide = sizeof<G>() == 8;
  const dv: f32 = sizeof<G>() == 1 ? load<f32>(at) : 0;
  const d0 = sizeof<G>() >= 2 ? v128.load(at) : f32x4.splat(0);
  const d1 = wide ? v128.load(at, 16) : d0,
    d2 = wide ? v128.load(at, 32) : d0,
    d3 = wide ? v128.load(at, 48) : d0;
  const d4 = wide ? v128.load(at, 64) : d0,
    d5 = wide ? v128.load(at, 80) : d0,
    d6 = wide ? v128.load(at, 96) : d0,
    d7 = wide ? v128.load(at, 112) : d0;
  for (let ky = 0; ky < kh; ky++) {
    for (let kx = 0; kx < kw; kx++) {
      const q = (y0 + ky) * wp + x0 + kx;
      const end = load<i32>(starts + ((<usize>(q + 1)) << 2));
      for (let i = load<i32>(starts + ((<usize>q) << 2)); i < end; i++) {
        const e = entries + ((<usize>i) << 3);
        const w = dw + ((<usize>(((ky * kw + kx) * cin + load<i32>(e)) * cout + co)) << 2);
        if (sizeof<G>() == 1) {
          store<f32>(w, load<f32>(w) + load<f32>(e, 4) * dv);
          continue;
        }
        const xv = v128.load32_splat(e + 4);
        axpy(w, 0, xv, d0);
        if (wide) {
          axpy(w, 16, xv, d1);
          axpy(w, 32, xv, d2);
          axpy(w, 48, xv, d3);
          axpy(w, 64, xv, d4);
          axpy(w, 80, xv, d5);
          axpy(w, 96, xv, d6);
          axpy(w, 112, xv, d7);
        }
      }
    }
  }
}
