// Part of the trainer's WebAssembly module (./kernels.ts):
// the weight gradient of a VALID convolution, the one training op that XNNPACK (tfjs-backend-wasm's conv) runs
// far below its forward speed when it is phrased as a convolution (trainer/backend/conv.ts).
//
//   dw[ky, kx, ci, co] = Σ_{n, oy, ox} xp[n, oy·s + ky, ox·s + kx, ci] · dy[n, oy, ox, co]
//
// All tensors NHWC float32 in this module's memory at the given byte offsets; dw is [kh, kw, cin, cout]. The sum
// runs as rank-1 updates: for each output position, each tap's input row scales dy's row into that tap's rows of
// dw (cin × cout floats, which stay in cache). A zero input value is skipped: the inputs of the binary layers are
// spike maps, mostly zeros.

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
): void {
  memory.fill(dw, 0, <usize>(kh * kw * cin * cout) << 2);
  const vec = cout & ~3;
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        const d = dy + ((<usize>(((b * oh + oy) * ow + ox) * cout)) << 2);
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const x = xp + ((<usize>(((b * hp + oy * s + ky) * wp + ox * s + kx) * cin)) << 2);
            const tap = dw + ((<usize>((ky * kw + kx) * cin * cout)) << 2);
            for (let ci = 0; ci < cin; ci++) {
              const xs = load<f32>(x + (<usize>ci << 2));
              if (xs == 0) continue;
              const xv = f32x4.splat(xs);
              const w = tap + ((<usize>(ci * cout)) << 2);
              let co = 0;
              for (; co < vec; co += 4) {
                const at = w + (<usize>co << 2);
                v128.store(at, f32x4.add(v128.load(at), f32x4.mul(xv, v128.load(d + (<usize>co << 2)))));
              }
              for (; co < cout; co++) {
                const at = w + (<usize>co << 2);
                store<f32>(at, load<f32>(at) + xs * load<f32>(d + (<usize>co << 2)));
              }
            }
          }
        }
      }
    }
  }
}
