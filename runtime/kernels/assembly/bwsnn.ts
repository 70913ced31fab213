// The WebAssembly SIMD kernel (AssemblyScript, built by scripts/build-wasm.mjs with --enable simd).
// It runs a whole frame — first layer once, then T steps of every layer — in one call, so JS crosses into
// WASM once per frame. All memory is laid out by runtime/kernels/wasm.ts; each layer is described by a
// table of i32 fields (offsets below, mirrored there) and every buffer is 16-byte aligned.
//
// Layouts: a spike map holds, per position (row-major), `cw` words of channel bits (channel c in word c>>5,
// bit c&31), i.e. byte c>>3, bit c&7. The binary kernel works on bytes: each non-zero input byte (8 channels
// of one tap) is splatted to 16 lanes and ANDed with a v128 holding, per lane, the 8 matching weight bits of
// 16 output channels, so i8x16.popcnt yields per-channel counts directly. Binary weights are repacked as
// [j][group] v128s, j = (ky*k + kx)*cb + byte, a group being 16 output channels. Skipping zero bytes makes
// the work proportional to the non-zero bytes: at low spike rates a byte mostly holds one spike and the
// kernel degenerates into event-driven accumulation of weight rows; at high rates it is the dense popcount.
// First-layer weights are [group of 4][tap pair] of i16x8 (channel-major pairs) for i32x4.dot_i16x8_s.
// Currents, membranes and per-channel vectors are f32 in exact HWC order, with per-channel vectors padded to
// a multiple of 16 (theta padded with +inf, so pad lanes never spike).

const KIND: i32 = 0; // 0 = first layer (int8 conv on bytes), 1 = binary conv / linear
const IN: i32 = 1; // input: frame bytes (first) or spike map
const IH: i32 = 2;
const IW: i32 = 3;
const ICW: i32 = 4; // first: input channels; binary: words per input position
const OH: i32 = 5;
const OW: i32 = 6;
const COUT: i32 = 7;
const OCW: i32 = 8; // words per output position
const K: i32 = 9;
const STRIDE: i32 = 10;
const PAD: i32 = 11;
const WGT: i32 = 12;
const SCALE: i32 = 13;
const BIAS: i32 = 14;
const THETA: i32 = 15;
const BETA: i32 = 16; // f32 bits
const V: i32 = 17;
const CUR: i32 = 18;
const OUT: i32 = 19;
const SC_KIND: i32 = 20; // 0 none, 1 identity, 2 avgpool_repeat
const SC_PTR: i32 = 21; // previous layer's current
const SC_CIN: i32 = 22;
const SC_W: i32 = 23;
const COUNTS: i32 = 24; // per-channel spike counts (i32, padded), or 0
const I0: i32 = 25; // first layer: its constant current
const SPIKES: i32 = 26; // -> total spikes of this layer (one i32, accumulated over steps)
const DOTS: i32 = 27; // when non-zero: write the integer dots here instead of the LIF output (tests)
const LIST: i32 = 28; // scratch (first layer: the window as i16); binary: per input position, its non-zero bytes (i32 entries, ICB slots per position)
const NZ: i32 = 29; // scratch: per input position, the entry count (u16) and spike count (u16)
const SCTMP: i32 = 30; // scratch: one position's pooled shortcut (f32, cout)
const GROUPS: i32 = 31; // first layer: ceil(cout / 4); binary: ceil(cout / 16)
const ICB: i32 = 32; // binary: bytes of channel bits scanned per input position
export const DESC_WORDS: i32 = 40;

@inline function field(d: usize, f: i32): i32 {
  return load<i32>(d + (<usize>f << 2));
}

@inline function widen(acc: v128): v128 {
  return i32x4.extadd_pairwise_i16x8_u(i16x8.extadd_pairwise_i8x16_u(acc));
}

// A popcnt lane is at most 8, so a u8 lane holds 31 of them before it could overflow.
const CHUNK: i32 = 31;

/** Runs the first layer's int8 conv and affine: its constant current for this frame. */
function firstCurrents(d: usize): void {
  const inp = <usize>field(d, IN);
  const ih = field(d, IH), iw = field(d, IW), cin = field(d, ICW);
  const oh = field(d, OH), ow = field(d, OW), cout = field(d, COUT);
  const k = field(d, K), stride = field(d, STRIDE), pad = field(d, PAD);
  const wgt = <usize>field(d, WGT), scale = <usize>field(d, SCALE), bias = <usize>field(d, BIAS);
  const cur = <usize>field(d, I0), xs = <usize>field(d, LIST);
  const groups = field(d, GROUPS);
  const taps = k * k * cin;
  const pairs = (taps + 1) >> 1;
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      // Gather the window as i16 pairs (zero padding in raw value space); all-zero windows skip the MACs.
      let any: i32 = 0;
      let j = 0;
      for (let ky = 0; ky < k; ky++) {
        const iy = oy * stride - pad + ky;
        for (let kx = 0; kx < k; kx++) {
          const ix = ox * stride - pad + kx;
          const inside = iy >= 0 && iy < ih && ix >= 0 && ix < iw;
          for (let ci = 0; ci < cin; ci++) {
            const x: i32 = inside ? <i32>load<u8>(inp + <usize>((iy * iw + ix) * cin + ci)) : 0;
            any |= x;
            store<u16>(xs + (<usize>j << 1), <u16>x);
            j++;
          }
        }
      }
      if (j & 1) store<u16>(xs + (<usize>j << 1), 0);
      const pos = oy * ow + ox;
      for (let g = 0; g < groups; g++) {
        let acc = i32x4.splat(0);
        if (any) {
          const wg = wgt + (<usize>(g * pairs) << 4);
          for (let p = 0; p < pairs; p++) {
            const x2 = i32x4.splat(load<i32>(xs + (<usize>p << 2)));
            acc = i32x4.add(acc, i32x4.dot_i16x8_s(x2, v128.load(wg + (<usize>p << 4))));
          }
        }
        const I = f32x4.add(f32x4.mul(v128.load(scale + (<usize>g << 4)), f32x4.convert_i32x4_s(acc)), v128.load(bias + (<usize>g << 4)));
        storeLanes(cur + (<usize>(pos * cout + g * 4) << 2), I, cout - g * 4);
      }
    }
  }
}

/** Stores the first `n` (>= 1) lanes of `x` (all four when n >= 4): per-neuron arrays are exact HWC. */
@inline function storeLanes(p: usize, x: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, x);
  } else {
    store<f32>(p, f32x4.extract_lane(x, 0));
    if (n > 1) store<f32>(p + 4, f32x4.extract_lane(x, 1));
    if (n > 2) store<f32>(p + 8, f32x4.extract_lane(x, 2));
  }
}

@inline function loadLanes(p: usize, n: i32): v128 {
  if (n >= 4) return v128.load(p);
  let x = f32x4.splat(0);
  x = f32x4.replace_lane(x, 0, load<f32>(p));
  if (n > 1) x = f32x4.replace_lane(x, 1, load<f32>(p + 4));
  if (n > 2) x = f32x4.replace_lane(x, 2, load<f32>(p + 8));
  return x;
}

/**
 * LIF on 4 neurons (channels c..c+3 of one position) given their input current; stores v and the current,
 * returns the spike mask bits (bit l = lane l spiked).
 */
@inline function lif4(d: usize, unit: i32, c: i32, I: v128, n: i32): i32 {
  const vp = <usize>field(d, V) + (<usize>unit << 2);
  const th = v128.load(<usize>field(d, THETA) + (<usize>c << 2));
  let v = f32x4.add(f32x4.mul(f32x4.splat(reinterpret<f32>(field(d, BETA))), loadLanes(vp, n)), I);
  const m = f32x4.ge(v, th);
  v = v128.bitselect(f32x4.sub(v, th), v, m);
  storeLanes(vp, v, n);
  storeLanes(<usize>field(d, CUR) + (<usize>unit << 2), I, n);
  const counts = <usize>field(d, COUNTS);
  if (counts) {
    const cp = counts + (<usize>c << 2);
    v128.store(cp, i32x4.sub(v128.load(cp), m));
  }
  return i32x4.bitmask(m);
}

/** The first layer's step: LIF on its constant current. */
function firstStep(d: usize): void {
  const units = field(d, OH) * field(d, OW);
  const cout = field(d, COUT), ocw = field(d, OCW), groups = field(d, GROUPS);
  const out = <usize>field(d, OUT), i0 = <usize>field(d, I0);
  let total: i32 = 0;
  for (let pos = 0; pos < units; pos++) {
    const ow = out + (<usize>(pos * ocw) << 2);
    memory.fill(ow, 0, <usize>ocw << 2);
    for (let g = 0; g < groups; g++) {
      const c = g * 4, unit = pos * cout + c;
      const bits = lif4(d, unit, c, loadLanes(i0 + (<usize>unit << 2), cout - c), cout - c);
      const wp = ow + (<usize>(c >> 5) << 2);
      store<u32>(wp, load<u32>(wp) | (<u32>bits << (c & 31)));
      total += popcnt(bits);
    }
  }
  const sp = <usize>field(d, SPIKES);
  store<i32>(sp, load<i32>(sp) + total);
}

/** Fused output of one group: dot → affine → + shortcut → LIF → spike bits (or raw dots in test mode). */
@inline function emit(d: usize, pos: i32, g: i32, pop: v128, popS: i32, sc: usize, ow: usize): i32 {
  const cout = field(d, COUT);
  const c = g * 4, unit = pos * cout + c, n = cout - c;
  const dot = i32x4.sub(i32x4.shl(pop, 1), i32x4.splat(popS));
  const dots = <usize>field(d, DOTS);
  if (dots) {
    storeLanes(dots + (<usize>unit << 2), dot, n);
    return 0;
  }
  let I = f32x4.add(f32x4.mul(v128.load(<usize>field(d, SCALE) + (<usize>c << 2)), f32x4.convert_i32x4_s(dot)), v128.load(<usize>field(d, BIAS) + (<usize>c << 2)));
  if (sc) I = f32x4.add(I, loadLanes(sc + (<usize>c << 2), n));
  const bits = lif4(d, unit, c, I, n);
  const wp = ow + (<usize>(c >> 5) << 2);
  store<u32>(wp, load<u32>(wp) | (<u32>bits << (c & 31)));
  return popcnt(bits);
}

/**
 * Lists, for every input position, its non-zero bytes as entries `(weight offset of that byte) << 8 | byte`, and
 * counts them and their spikes. Done once per layer and step; each output position then walks the lists of the
 * positions under its window, so the work is proportional to the non-zero bytes.
 */
function compact(d: usize): void {
  const inp = <usize>field(d, IN), positions = field(d, IH) * field(d, IW);
  const cw = field(d, ICW), cb = field(d, ICB), rowBytes = field(d, GROUPS) << 4;
  const list = <usize>field(d, LIST), nz = <usize>field(d, NZ);
  for (let p = 0; p < positions; p++) {
    const src = inp + (<usize>(p * cw) << 2);
    const dst = list + (<usize>(p * cb) << 2);
    let n: i32 = 0, spikes: i32 = 0;
    for (let b = 0; b < cb; b += 16) {
      let m = ~i8x16.bitmask(i8x16.eq(v128.load(src + <usize>b), i8x16.splat(0))) & (cb - b >= 16 ? 0xffff : (1 << (cb - b)) - 1);
      while (m) {
        const t = ctz(m);
        m &= m - 1;
        const x = <i32>load<u8>(src + <usize>(b + t));
        spikes += popcnt(x);
        store<i32>(dst + (<usize>n << 2), (((b + t) * rowBytes) << 8) | x);
        n++;
      }
    }
    store<u32>(nz + (<usize>p << 2), <u32>n | (<u32>spikes << 16));
  }
}

/** Fills the pooled shortcut of one output position (avgpool_repeat) into SCTMP and returns it. */
function pooled(d: usize, oy: i32, ox: i32): usize {
  const src = <usize>field(d, SC_PTR), cin = field(d, SC_CIN), w = field(d, SC_W);
  const cout = field(d, COUT), tmp = <usize>field(d, SCTMP);
  const r0 = src + (<usize>(((2 * oy) * w + 2 * ox) * cin) << 2);
  const r1 = r0 + (<usize>(w * cin) << 2);
  const step = <usize>cin << 2;
  const quarter = f32x4.splat(0.25);
  let c = 0;
  // f32x4 lanes round like scalar f32 ops, so the vector and scalar loops compute the same values.
  for (; c + 4 <= cin; c += 4) {
    const o = <usize>c << 2;
    const s = f32x4.add(f32x4.add(f32x4.add(v128.load(r0 + o), v128.load(r0 + step + o)), v128.load(r1 + o)), v128.load(r1 + step + o));
    v128.store(tmp + o, f32x4.mul(s, quarter));
  }
  for (; c < cin; c++) {
    const o = <usize>c << 2;
    const s = ((load<f32>(r0 + o) + load<f32>(r0 + step + o)) + load<f32>(r1 + o)) + load<f32>(r1 + step + o);
    store<f32>(tmp + o, s * <f32>0.25);
  }
  // Output channel c reads input channel c % cin: tile the pooled block.
  for (c = cin; c < cout; c++) store<f32>(tmp + (<usize>c << 2), load<f32>(tmp + (<usize>(c - cin) << 2)));
  return tmp;
}

/** Emits the (up to) 16 channels of group g from their per-lane counts, split in i16 halves. */
@inline function emit16(d: usize, pos: i32, g: i32, lo: v128, hi: v128, popS: i32, sc: usize, op: usize): i32 {
  const cout = field(d, COUT);
  const q = g * 4;
  let total = emit(d, pos, q, i32x4.extend_low_i16x8_u(lo), popS, sc, op);
  if (q * 4 + 4 < cout) total += emit(d, pos, q + 1, i32x4.extend_high_i16x8_u(lo), popS, sc, op);
  if (q * 4 + 8 < cout) total += emit(d, pos, q + 2, i32x4.extend_low_i16x8_u(hi), popS, sc, op);
  if (q * 4 + 12 < cout) total += emit(d, pos, q + 3, i32x4.extend_high_i16x8_u(hi), popS, sc, op);
  return total;
}

/**
 * Accumulates `G` groups (16 output channels each; `G` given as a type whose size is 1, 2 or 4 so that the unused
 * accumulators fold away at compile time) of one output position over the lists under its window, then emits
 * them. Per-lane counts go u8 (at most CHUNK popcnts of at most 8) → u16, which holds any lane's total since
 * that is at most the fan-in, kept below 2^16 by the runner.
 */
@inline function pass<G>(d: usize, oy: i32, ox: i32, g: i32, popS: i32, sc: usize, op: usize): i32 {
  const ih = field(d, IH), iw = field(d, IW), cb = field(d, ICB);
  const k = field(d, K), stride = field(d, STRIDE), pad = field(d, PAD);
  const list = <usize>field(d, LIST), nz = <usize>field(d, NZ);
  const tapBytes = <usize>(cb * field(d, GROUPS)) << 4;
  const wg = <usize>field(d, WGT) + (<usize>g << 4);
  let l0 = i32x4.splat(0), h0 = i32x4.splat(0), l1 = i32x4.splat(0), h1 = i32x4.splat(0);
  let l2 = i32x4.splat(0), h2 = i32x4.splat(0), l3 = i32x4.splat(0), h3 = i32x4.splat(0);
  let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
  let room = CHUNK;
  for (let ky = 0; ky < k; ky++) {
    const iy = oy * stride - pad + ky;
    if (iy < 0 || iy >= ih) continue;
    for (let kx = 0; kx < k; kx++) {
      const ix = ox * stride - pad + kx;
      if (ix < 0 || ix >= iw) continue;
      const p = iy * iw + ix;
      const entries = list + (<usize>(p * cb) << 2);
      const w0 = wg + <usize>(ky * k + kx) * tapBytes;
      const n = <i32>(load<u32>(nz + (<usize>p << 2)) & 0xffff);
      let i = 0;
      while (i < n) {
        const end = min(n, i + room);
        room -= end - i;
        for (; i < end; i++) {
          const e = load<i32>(entries + (<usize>i << 2));
          const s = i8x16.splat(<i8>e);
          const w = w0 + <usize>(e >>> 8);
          a0 = i8x16.add(a0, i8x16.popcnt(v128.and(s, v128.load(w))));
          if (sizeof<G>() >= 2) a1 = i8x16.add(a1, i8x16.popcnt(v128.and(s, v128.load(w, 16))));
          if (sizeof<G>() >= 4) {
            a2 = i8x16.add(a2, i8x16.popcnt(v128.and(s, v128.load(w, 32))));
            a3 = i8x16.add(a3, i8x16.popcnt(v128.and(s, v128.load(w, 48))));
          }
        }
        if (room == 0) {
          l0 = i16x8.add(l0, i16x8.extend_low_i8x16_u(a0));
          h0 = i16x8.add(h0, i16x8.extend_high_i8x16_u(a0));
          a0 = i32x4.splat(0);
          if (sizeof<G>() >= 2) {
            l1 = i16x8.add(l1, i16x8.extend_low_i8x16_u(a1));
            h1 = i16x8.add(h1, i16x8.extend_high_i8x16_u(a1));
            a1 = i32x4.splat(0);
          }
          if (sizeof<G>() >= 4) {
            l2 = i16x8.add(l2, i16x8.extend_low_i8x16_u(a2));
            h2 = i16x8.add(h2, i16x8.extend_high_i8x16_u(a2));
            l3 = i16x8.add(l3, i16x8.extend_low_i8x16_u(a3));
            h3 = i16x8.add(h3, i16x8.extend_high_i8x16_u(a3));
            a2 = i32x4.splat(0);
            a3 = i32x4.splat(0);
          }
          room = CHUNK;
        }
      }
    }
  }
  let total = emit16(d, oy * field(d, OW) + ox, g, i16x8.add(l0, i16x8.extend_low_i8x16_u(a0)), i16x8.add(h0, i16x8.extend_high_i8x16_u(a0)), popS, sc, op);
  if (sizeof<G>() >= 2) total += emit16(d, oy * field(d, OW) + ox, g + 1, i16x8.add(l1, i16x8.extend_low_i8x16_u(a1)), i16x8.add(h1, i16x8.extend_high_i8x16_u(a1)), popS, sc, op);
  if (sizeof<G>() >= 4) {
    total += emit16(d, oy * field(d, OW) + ox, g + 2, i16x8.add(l2, i16x8.extend_low_i8x16_u(a2)), i16x8.add(h2, i16x8.extend_high_i8x16_u(a2)), popS, sc, op);
    total += emit16(d, oy * field(d, OW) + ox, g + 3, i16x8.add(l3, i16x8.extend_low_i8x16_u(a3)), i16x8.add(h3, i16x8.extend_high_i8x16_u(a3)), popS, sc, op);
  }
  return total;
}

/** Spikes under the window of one output position (the popcount term of every dot there). */
@inline function windowSpikes(d: usize, oy: i32, ox: i32): i32 {
  const ih = field(d, IH), iw = field(d, IW), k = field(d, K), stride = field(d, STRIDE), pad = field(d, PAD);
  const nz = <usize>field(d, NZ);
  let spikes: i32 = 0;
  for (let ky = 0; ky < k; ky++) {
    const iy = oy * stride - pad + ky;
    if (iy < 0 || iy >= ih) continue;
    for (let kx = 0; kx < k; kx++) {
      const ix = ox * stride - pad + kx;
      if (ix >= 0 && ix < iw) spikes += <i32>(load<u32>(nz + (<usize>(iy * iw + ix) << 2)) >>> 16);
    }
  }
  return spikes;
}

/** One step of a binary conv (or linear, as a 1×1 conv on a 1×1 map) with the fused output pass. */
function binaryStep(d: usize): void {
  const oh = field(d, OH), ow = field(d, OW), ocw = field(d, OCW);
  const groups = field(d, GROUPS), scKind = field(d, SC_KIND), scPtr = <usize>field(d, SC_PTR);
  const cout = field(d, COUT), out = <usize>field(d, OUT);
  compact(d);
  let total: i32 = 0;
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      const pos = oy * ow + ox;
      const popS = windowSpikes(d, oy, ox);
      const sc: usize = scKind == 1 ? scPtr + (<usize>(pos * cout) << 2) : scKind == 2 ? pooled(d, oy, ox) : 0;
      const op = out + (<usize>(pos * ocw) << 2);
      memory.fill(op, 0, <usize>ocw << 2);
      // Up to 64 output channels per walk over the window.
      let g = 0;
      for (; g + 4 <= groups; g += 4) total += pass<u32>(d, oy, ox, g, popS, sc, op);
      if (g + 2 <= groups) {
        total += pass<u16>(d, oy, ox, g, popS, sc, op);
        g += 2;
      }
      if (g < groups) total += pass<u8>(d, oy, ox, g, popS, sc, op);
    }
  }
  const sp = <usize>field(d, SPIKES);
  store<i32>(sp, load<i32>(sp) + total);
}

/** One time step through every layer. */
export function step(desc: usize, layers: i32): void {
  for (let i = 0; i < layers; i++) {
    const d = desc + (<usize>(i * DESC_WORDS) << 2);
    if (field(d, KIND) == 0) firstStep(d);
    else binaryStep(d);
  }
}

/** Starts a frame: zeroes every layer's membranes and counters, then computes the first layer's current. */
export function start(desc: usize, layers: i32): void {
  for (let i = 0; i < layers; i++) {
    const d = desc + (<usize>(i * DESC_WORDS) << 2);
    memory.fill(<usize>field(d, V), 0, <usize>(field(d, OH) * field(d, OW) * field(d, COUT)) << 2);
    store<i32>(<usize>field(d, SPIKES), 0);
    const counts = <usize>field(d, COUNTS);
    if (counts) memory.fill(counts, 0, <usize>((field(d, COUT) + 15) & ~15) << 2);
  }
  firstCurrents(desc);
}

/** A whole frame: start, then T steps. */
export function frame(desc: usize, layers: i32, T: i32): void {
  start(desc, layers);
  for (let t = 0; t < T; t++) step(desc, layers);
}

/** One binary layer alone (tests: dots or fused output of a single layer). */
export function layer(d: usize): void {
  binaryStep(d);
}

/**
 * The ceiling the binary conv is measured against (`sei bench`): a bare AND-popcount GEMV, `rows` weight rows of
 * `vecs` v128s against one input of `vecs` v128s, `reps` times. Returns a checksum so nothing is optimised away.
 */
export function bare(w: usize, x: usize, rows: i32, vecs: i32, reps: i32): i32 {
  let sum = i32x4.splat(0);
  for (let r = 0; r < reps; r++) {
    for (let o = 0; o < rows; o++) {
      const row = w + (<usize>(o * vecs) << 4);
      let a = i32x4.splat(0), b = i32x4.splat(0);
      for (let start = 0; start < vecs; start += CHUNK * 2) {
        const end = min(vecs, start + CHUNK * 2);
        let a8 = i32x4.splat(0), b8 = i32x4.splat(0);
        let i = start;
        for (; i + 1 < end; i += 2) {
          a8 = i8x16.add(a8, i8x16.popcnt(v128.and(v128.load(x + (<usize>i << 4)), v128.load(row + (<usize>i << 4)))));
          b8 = i8x16.add(b8, i8x16.popcnt(v128.and(v128.load(x + (<usize>i << 4), 16), v128.load(row + (<usize>i << 4), 16))));
        }
        if (i < end) a8 = i8x16.add(a8, i8x16.popcnt(v128.and(v128.load(x + (<usize>i << 4)), v128.load(row + (<usize>i << 4)))));
        a = i32x4.add(a, widen(a8));
        b = i32x4.add(b, widen(b8));
      }
      sum = i32x4.add(sum, i32x4.add(a, b));
    }
  }
  return i32x4.extract_lane(sum, 0) + i32x4.extract_lane(sum, 1) + i32x4.extract_lane(sum, 2) + i32x4.extract_lane(sum, 3);
}
