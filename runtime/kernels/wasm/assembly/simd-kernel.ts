// The WebAssembly SIMD kernel (AssemblyScript, built by scripts/build-wasm.mjs with --enable simd).
// It runs a whole frame — first layer once, then T steps of every layer — in one call, so JS crosses into
// WASM once per frame. All memory is laid out by the planner (runtime/kernels/wasm/planner.ts); each layer is
// described by a table of DESC_WORDS i32 fields at the offsets below, and every buffer is 16-byte aligned. The
// offsets are exported (immutable globals) so that the planner's copy of them (../module.ts) is checked against
// this module (test/kernels.test.ts): add or move a field in both.
//
// Spike maps hold, per position (row-major), `cw` words of channel bits (channel c in word c>>5, bit c&31),
// i.e. byte c>>3, bit c&7. A binary layer step, per output position, sums per-channel counts over its window
// in u8 lanes of 16 output channels per v128 (then u16), and the dot is `2*count - spikes under the window`:
// - dense path: each non-zero input byte (8 channels of one tap) is splatted and ANDed with the v128 holding,
//   per lane, the 8 matching weight bits of 16 output channels; i8x16.popcnt gives the counts. Weights:
//   [j][group] v128s, j = (ky*k + kx)*cb + byte.
// - event path: each input spike adds its 0/1 weight bytes (16 output channels per v128): a load and an add
//   where the dense path pays an AND and a popcount (about ten x64 instructions under V8) per byte. Weights:
//   [j][group] v128s, j = (ky*k + kx)*cb*8 + input channel.
// Each layer picks its path at every step from its input's spike rate (up to SWITCH: events), which the layer before counts
// in its output pass (no separate pass over the map). Work follows the non-zero bytes or the spikes: `compact`
// lists them once per step, and a window row is one run of that list; a window without spikes skips the walk.
// Uniform regions (a camera's background) are cheap twice over: a window equal to the previous one reuses its
// counts, and a position whose whole state equals its left neighbour's copies it (`cloneLeft`).
// First-layer weights are [group of 4][tap pair] of i16x8 (channel-major pairs) for i32x4.dot_i16x8_s.
// Currents, membranes and per-channel vectors are f32 in exact HWC order, with per-channel vectors padded to
// a multiple of 16 (theta padded with +inf, so pad lanes never spike). f32x4 lanes round like scalar f32 ops,
// so every float value equals the reference engine's bit for bit.

export const KIND: i32 = 0; // 0 = first layer (int8 conv on bytes), 1 = binary conv / linear
export const IN: i32 = 1; // input: frame bytes (first) or spike map
export const IH: i32 = 2;
export const IW: i32 = 3;
export const ICW: i32 = 4; // first: input channels; binary: words per input position
export const OH: i32 = 5;
export const OW: i32 = 6;
export const COUT: i32 = 7;
export const OCW: i32 = 8; // words per output position
export const K: i32 = 9;
export const STRIDE: i32 = 10;
export const PAD: i32 = 11;
export const WGT: i32 = 12;
export const SCALE: i32 = 13;
export const BIAS: i32 = 14;
export const THETA: i32 = 15;
export const BETA: i32 = 16; // f32 bits
export const V: i32 = 17;
export const CUR: i32 = 18;
export const OUT: i32 = 19;
export const SC_KIND: i32 = 20; // 0 none, 1 identity, 2 avgpool_repeat
export const SC_PTR: i32 = 21; // previous layer's current
export const SC_CIN: i32 = 22;
export const SC_W: i32 = 23;
export const COUNTS: i32 = 24; // per-channel spike counts (i32, padded), or 0
export const I0: i32 = 25; // first layer: its constant current
export const SPIKES: i32 = 26; // -> total spikes of this layer (one i32, accumulated over steps)
export const DOTS: i32 = 27; // when non-zero: write the integer dots here instead of the LIF output (tests)
export const LIST: i32 = 28; // scratch (first layer: the window as i16); binary: the entries of every input position
export const START: i32 = 29; // scratch: per input position, the index of its first entry (positions + 1 of them)
export const SCTMP: i32 = 30; // scratch: one position's pooled shortcut (f32, cout)
export const GROUPS: i32 = 31; // first layer: ceil(cout / 4); binary: ceil(cout / 16)
export const ICB: i32 = 32; // binary: bytes of channel bits scanned per input position
export const SAME: i32 = 33; // scratch: per input position, how many positions before it equal the one STRIDE to their left
export const SAVE: i32 = 34; // scratch: the last computed position's per-channel counts (u16, two v128 per group)
export const WEV: i32 = 35; // binary: event weights, one 0/1 byte per (input bit, output channel)
export const PATH: i32 = 36; // 0 = choose per step by input spike rate, 1 = always dense, 2 = always events (tests)
export const EVENTS: i32 = 37; // this step's choice: 1 = events
export const ZERO: i32 = 38; // first layer: per output position, 1 when its window is all zero (background)
export const SPIKED: i32 = 39; // scratch: per input position, the spikes of all positions before it
export const CLONE: i32 = 40; // per output position, 1 while its whole state has equalled its left neighbour's this frame
export const SC_CLONE: i32 = 41; // the previous layer's CLONE (for the shortcut's equality)
export const STEP: i32 = 42; // this layer's spikes in the current step (the next layer's path choice reads them)
export const IN_STEP: i32 = 43; // address of the previous layer's STEP, or 0: count the input map's spikes here
export const SWITCH: i32 = 44; // input spike rate (per mille) up to which the event path runs; measured per layer by the planner
export const DESC_WORDS: i32 = 48;

@inline function field(d: usize, f: i32): i32 {
  return load<i32>(d + (<usize>f << 2));
}

@inline function widen(acc: v128): v128 {
  return i32x4.extadd_pairwise_i16x8_u(i16x8.extadd_pairwise_i8x16_u(acc));
}

// A popcnt lane is at most 8, so a u8 lane holds 31 of them before it could overflow; an event adds at most 1.
const CHUNK: i32 = 31;
const EVENT_CHUNK: i32 = 255;

/** Runs the first layer's int8 conv and affine: its constant current for this frame. */
function firstCurrents(d: usize): void {
  const inp = <usize>field(d, IN);
  const ih = field(d, IH), iw = field(d, IW), cin = field(d, ICW);
  const oh = field(d, OH), ow = field(d, OW), cout = field(d, COUT);
  const k = field(d, K), stride = field(d, STRIDE), pad = field(d, PAD);
  const wgt = <usize>field(d, WGT), scale = <usize>field(d, SCALE), bias = <usize>field(d, BIAS);
  const cur = <usize>field(d, I0), xs = <usize>field(d, LIST), zero = <usize>field(d, ZERO);
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
      store<u8>(zero + <usize>pos, <u8>(any == 0));
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
 * The output pass of one position, shared by the first and the binary layers: per neuron the current, then LIF
 * `v = beta*v + I`, spike when `v >= theta`, soft reset, and the spike bits packed for the next layer; returns
 * the spike count. The current is, for `kind` 0, the first layer's constant current at `src`; for `kind` 1,
 * `scale*dot + bias (+ the shortcut at src)` with the dots from the u16 counts at SAVE and the window's spike
 * count `popS`. Descriptor fields are read once per position, not per neuron.
 */
// True during a frame's first step: every membrane is 0 then (`start` does not clear them; they are not read).
let fresh = false;

@inline function outputPosition(d: usize, pos: i32, kind: i32, src: usize, popS: i32): i32 {
  const cout = field(d, COUT), counts = <usize>field(d, COUNTS);
  const beta = f32x4.splat(reinterpret<f32>(field(d, BETA)));
  const theta = <usize>field(d, THETA), scale = <usize>field(d, SCALE), bias = <usize>field(d, BIAS);
  const save = <usize>field(d, SAVE);
  const unit = pos * cout;
  const vp = <usize>field(d, V) + (<usize>unit << 2), cp = <usize>field(d, CUR) + (<usize>unit << 2);
  const op = <usize>field(d, OUT) + (<usize>(pos * field(d, OCW)) << 2);
  const spikes = i32x4.splat(popS);
  const zero = fresh;
  let word: u32 = 0;
  let total = 0;
  let c = 0;
  // Whole groups of 4 with constant lane counts (no per-lane branches), then the tail.
  for (; c + 4 <= cout; c += 4) {
    const bits = lif4(kind, c, 4, src, save, spikes, scale, bias, theta, beta, vp, cp, counts, zero);
    total += popcnt(bits);
    word |= bits << (c & 31);
    if ((c & 31) == 28) {
      store<u32>(op + (<usize>(c >> 5) << 2), word);
      word = 0;
    }
  }
  if (c < cout) {
    const bits = lif4(kind, c, cout - c, src, save, spikes, scale, bias, theta, beta, vp, cp, counts, zero);
    total += popcnt(bits);
    word |= bits << (c & 31);
  }
  if (cout & 31) store<u32>(op + (<usize>((cout - 1) >> 5) << 2), word);
  return total;
}

/** Current, LIF and spike mask of the `n` (1..4) neurons of channels c.. of one position (see outputPosition). */
@inline function lif4(kind: i32, c: i32, n: i32, src: usize, save: usize, spikes: v128, scale: usize, bias: usize, theta: usize, beta: v128, vp: usize, cp: usize, counts: usize, zero: bool): u32 {
  const at = <usize>c << 2;
  let I: v128;
  if (kind == 0) {
    I = loadLanes(src + at, n);
  } else {
    const dot = i32x4.sub(i32x4.shl(v128.load16x4_u(save + (<usize>c << 1)), 1), spikes);
    I = f32x4.add(f32x4.mul(v128.load(scale + at), f32x4.convert_i32x4_s(dot)), v128.load(bias + at));
    if (src) I = f32x4.add(I, loadLanes(src + at, n));
  }
  const th = v128.load(theta + at);
  let v = f32x4.add(f32x4.mul(beta, zero ? f32x4.splat(0) : loadLanes(vp + at, n)), I);
  const m = f32x4.ge(v, th);
  v = v128.bitselect(f32x4.sub(v, th), v, m);
  storeLanes(vp + at, v, n);
  if (kind != 0) storeLanes(cp + at, I, n); // the first layer's current is its constant I0 already
  if (counts) v128.store(counts + at, i32x4.sub(v128.load(counts + at), m));
  return <u32>i32x4.bitmask(m);
}

/** A step's spikes: into the frame's total, and as the step's count the next layer chooses its path by. */
@inline function addSpikes(d: usize, total: i32): void {
  const sp = <usize>field(d, SPIKES);
  store<i32>(sp, load<i32>(sp) + total);
  store<i32>(d + (<usize>STEP << 2), total);
}

/**
 * Copies a neuron state (membranes, current, spike bits and count) from the position to the left. Uniform
 * regions (a camera's background) make whole runs of positions share one state trajectory: a position whose
 * state equalled its left neighbour's so far, and whose inputs this step equal that neighbour's, keeps equalling it.
 */
@inline function cloneLeft(d: usize, pos: i32, withCurrent: bool): void {
  const cout = field(d, COUT), ocw = field(d, OCW);
  const v = <usize>field(d, V) + (<usize>(pos * cout) << 2), out = <usize>field(d, OUT) + (<usize>(pos * ocw) << 2);
  copy(v, v - (<usize>cout << 2), cout << 2);
  if (withCurrent) {
    const cur = <usize>field(d, CUR) + (<usize>(pos * cout) << 2);
    copy(cur, cur - (<usize>cout << 2), cout << 2);
  }
  copy(out, out - (<usize>ocw << 2), ocw << 2);
}

/**
 * The first layer's step: LIF on its constant current. Neighbours whose windows are both all zero share one
 * current (the bias) and, every membrane starting at 0, one trajectory: they copy it (see cloneLeft), unless
 * per-channel counts are kept here, which needs every position's bits counted.
 */
function firstStep(d: usize): void {
  const ow = field(d, OW), positions = field(d, OH) * ow;
  const i0 = <usize>field(d, I0), cout = field(d, COUT), zero = <usize>field(d, ZERO), clone = <usize>field(d, CLONE);
  const share = field(d, COUNTS) == 0;
  let total = 0, last = 0, x = 0;
  for (let pos = 0; pos < positions; pos++) {
    const same = share && x > 0 && load<u8>(zero + <usize>pos) != 0 && load<u8>(zero + <usize>(pos - 1)) != 0;
    store<u8>(clone + <usize>pos, <u8>same);
    if (same) cloneLeft(d, pos, false);
    else last = outputPosition(d, pos, 0, i0 + (<usize>(pos * cout) << 2), 0);
    total += last;
    if (++x == ow) x = 0;
  }
  addSpikes(d, total);
}

/** Whether the shortcut current at (oy, ox) equals the one at (oy, ox - 1), from the previous layer's CLONE. */
@inline function shortcutSame(d: usize, pos: i32, oy: i32, ox: i32): bool {
  const kind = field(d, SC_KIND);
  if (kind == 0) return true;
  const prev = <usize>field(d, SC_CLONE);
  if (kind == 1) return load<u8>(prev + <usize>pos) != 0;
  // Pooled: the 2×2 sources of both positions, columns 2ox-2 .. 2ox+1 of two rows, all equal.
  const w = field(d, SC_W);
  const r0 = prev + <usize>(2 * oy * w + 2 * ox), r1 = r0 + <usize>w;
  return (load<u8>(r0 - 1) & load<u8>(r0) & load<u8>(r0 + 1) & load<u8>(r1 - 1) & load<u8>(r1) & load<u8>(r1 + 1)) != 0;
}

/** Copies `bytes` (a multiple of 4) — small runs, where memory.copy's call costs more than the copy. */
@inline function copy(dst: usize, src: usize, bytes: i32): void {
  let i = 0;
  for (; i + 16 <= bytes; i += 16) v128.store(dst + <usize>i, v128.load(src + <usize>i));
  for (; i < bytes; i += 4) store<u32>(dst + <usize>i, load<u32>(src + <usize>i));
}

/**
 * Lists the entries of every input position, one position after the other: its non-zero bytes as
 * `(weight offset) << 8 | byte` (dense path) or its spikes as `weight offset` (event path). An entry's offset
 * includes its column `x` (x taps of weights), so the entries of the k positions under one window row are one
 * contiguous run read against one base. Prefix counts (START, SPIKED, SAME) make each window row O(1) to size.
 * Done once per layer and step; the work that follows is proportional to the non-zero bytes or to the spikes.
 */
function compact(d: usize, events: bool): void {
  const inp = <usize>field(d, IN), positions = field(d, IH) * field(d, IW);
  const cw = field(d, ICW), cb = field(d, ICB), rowBytes = field(d, GROUPS) << 4;
  const list = <usize>field(d, LIST), start = <usize>field(d, START);
  const spiked = <usize>field(d, SPIKED), same = <usize>field(d, SAME);
  const iw = field(d, IW), stride = field(d, STRIDE);
  const tapBytes = (cb * rowBytes) << (events ? 3 : 0);
  let n: i32 = 0, spikes: i32 = 0, sames: i32 = 0;
  let x = 0; // p % iw
  for (let p = 0; p < positions; p++) {
    store<i32>(start + (<usize>p << 2), n);
    store<i32>(spiked + (<usize>p << 2), spikes);
    store<i32>(same + (<usize>p << 2), sames);
    const src = inp + (<usize>(p * cw) << 2);
    const column = x * tapBytes;
    for (let b = 0; b < cb; b += 16) {
      let m = ~i8x16.bitmask(i8x16.eq(v128.load(src + <usize>b), i8x16.splat(0))) & (cb - b >= 16 ? 0xffff : (1 << (cb - b)) - 1);
      while (m) {
        const t = ctz(m);
        m &= m - 1;
        const byte = <i32>load<u8>(src + <usize>(b + t));
        spikes += popcnt(byte);
        if (events) {
          for (let bits = byte; bits; bits &= bits - 1) {
            store<i32>(list + (<usize>n << 2), column + (((b + t) << 3) + ctz(bits)) * rowBytes);
            n++;
          }
        } else {
          store<i32>(list + (<usize>n << 2), ((column + (b + t) * rowBytes) << 8) | byte);
          n++;
        }
      }
    }
    // Uniform regions (a camera's background) give runs of equal inputs, hence equal windows and equal dots.
    let equal = x >= stride;
    const left = src - (<usize>(stride * cw) << 2);
    for (let i = 0; equal && i < cw; i++) equal = load<u32>(src + (<usize>i << 2)) == load<u32>(left + (<usize>i << 2));
    sames += <i32>equal;
    if (++x == iw) x = 0;
  }
  store<i32>(start + (<usize>positions << 2), n);
  store<i32>(spiked + (<usize>positions << 2), spikes);
  store<i32>(same + (<usize>positions << 2), sames);
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

/**
 * Accumulates `G` groups (16 output channels each; `G` given as a type whose size is 1, 2 or 4 so that the unused
 * accumulators fold away at compile time) of one output position over the lists under its window into SAVE. Per-lane counts go u8 (at most CHUNK popcnts of at most 8) → u16, which holds any lane's total since
 * that is at most the fan-in, kept below 2^16 by the runner.
 */
@inline function pass<G>(d: usize, oy: i32, ox: i32, g: i32): void {
  const ih = field(d, IH), iw = field(d, IW), cb = field(d, ICB);
  const k = field(d, K), stride = field(d, STRIDE), pad = field(d, PAD);
  const entries = <usize>field(d, LIST), start = <usize>field(d, START);
  const events = field(d, EVENTS) != 0;
  // Weight bytes per tap: cb bytes of 8 input bits each, one v128 per group per byte (dense) or per bit (events).
  const tapBytes = (<usize>(cb * field(d, GROUPS)) << 4) << (events ? 3 : 0);
  const wg = <usize>field(d, events ? WEV : WGT) + (<usize>g << 4);
  const chunk = events ? EVENT_CHUNK : CHUNK;
  let l0 = i32x4.splat(0), h0 = i32x4.splat(0), l1 = i32x4.splat(0), h1 = i32x4.splat(0);
  let l2 = i32x4.splat(0), h2 = i32x4.splat(0), l3 = i32x4.splat(0), h3 = i32x4.splat(0);
  let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
  let room = chunk;
  const x0 = ox * stride - pad;
  const xa = max(x0, 0), xb = min(x0 + k, iw);
  for (let ky = 0; ky < k; ky++) {
    const iy = oy * stride - pad + ky;
    if (iy < 0 || iy >= ih) continue;
    // The window row's entries are one run; their offsets hold their column, so one base serves them all.
    const w0 = wg + <usize>((ky * k - x0) * <i32>tapBytes);
    let i = load<i32>(start + (<usize>(iy * iw + xa) << 2));
    const n = load<i32>(start + (<usize>(iy * iw + xb) << 2));
    while (i < n) {
      const end = min(n, i + room);
      room -= end - i;
      if (events) {
        for (; i < end; i++) {
          const w = w0 + <usize>load<i32>(entries + (<usize>i << 2));
          a0 = i8x16.add(a0, v128.load(w));
          if (sizeof<G>() >= 2) a1 = i8x16.add(a1, v128.load(w, 16));
          if (sizeof<G>() >= 4) {
            a2 = i8x16.add(a2, v128.load(w, 32));
            a3 = i8x16.add(a3, v128.load(w, 48));
          }
        }
      } else {
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
        room = chunk;
      }
    }
  }
  const save = <usize>field(d, SAVE) + (<usize>g << 5);
  v128.store(save, i16x8.add(l0, i16x8.extend_low_i8x16_u(a0)));
  v128.store(save, i16x8.add(h0, i16x8.extend_high_i8x16_u(a0)), 16);
  if (sizeof<G>() >= 2) {
    v128.store(save, i16x8.add(l1, i16x8.extend_low_i8x16_u(a1)), 32);
    v128.store(save, i16x8.add(h1, i16x8.extend_high_i8x16_u(a1)), 48);
  }
  if (sizeof<G>() >= 4) {
    v128.store(save, i16x8.add(l2, i16x8.extend_low_i8x16_u(a2)), 64);
    v128.store(save, i16x8.add(h2, i16x8.extend_high_i8x16_u(a2)), 80);
    v128.store(save, i16x8.add(l3, i16x8.extend_low_i8x16_u(a3)), 96);
    v128.store(save, i16x8.add(h3, i16x8.extend_high_i8x16_u(a3)), 112);
  }
}

/**
 * Spikes under the window of one output position (the popcount term of every dot there), in the high half; the
 * low bit says whether the window equals the previous position's (both inside the map horizontally and every
 * input under it equal to the one STRIDE to its left), so that the counts in SAVE can be reused.
 */
@inline function window(d: usize, oy: i32, ox: i32): i64 {
  const ih = field(d, IH), iw = field(d, IW), k = field(d, K), stride = field(d, STRIDE), pad = field(d, PAD);
  const spiked = <usize>field(d, SPIKED), same = <usize>field(d, SAME);
  const x0 = ox * stride - pad;
  const a0 = max(x0, 0), a1 = min(x0 + k, iw);
  let spikes: i32 = 0, sames: i32 = 0, inside: i32 = 0;
  for (let ky = 0; ky < k; ky++) {
    const iy = oy * stride - pad + ky;
    if (iy < 0 || iy >= ih) continue;
    const a = <usize>(iy * iw + a0) << 2, b = <usize>(iy * iw + a1) << 2;
    spikes += load<i32>(spiked + b) - load<i32>(spiked + a);
    sames += load<i32>(same + b) - load<i32>(same + a);
    inside += a1 - a0;
  }
  const equal = x0 - stride >= 0 && x0 + k <= iw && sames == inside;
  return (<i64>spikes << 32) | <i64>equal;
}

/** One step of a binary conv (or linear, as a 1×1 conv on a 1×1 map) with the fused output pass. */
function binaryStep(d: usize): void {
  const oh = field(d, OH), ow = field(d, OW), groups = field(d, GROUPS);
  const scKind = field(d, SC_KIND), scPtr = <usize>field(d, SC_PTR);
  const save = <usize>field(d, SAVE), dots = <usize>field(d, DOTS), cout = field(d, COUT);
  let events = field(d, PATH) == 2;
  if (field(d, PATH) == 0) {
    // The layer before counted its spikes in its output pass; a layer run alone (tests) counts its input here.
    const inp = <usize>field(d, IN), words = field(d, IH) * field(d, IW) * field(d, ICW), inStep = <usize>field(d, IN_STEP);
    let spikes: i32 = 0;
    if (inStep) spikes = load<i32>(inStep);
    else for (let i = 0; i < words; i++) spikes += popcnt(load<u32>(inp + (<usize>i << 2)));
    events = spikes * 1000 <= field(d, SWITCH) * (words << 5);
  }
  store<i32>(d + (<usize>EVENTS << 2), <i32>events);
  compact(d, events);
  const clone = <usize>field(d, CLONE), share = dots == 0 && field(d, COUNTS) == 0;
  let total = 0, last = 0;
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      const pos = oy * ow + ox;
      const win = window(d, oy, ox);
      const popS = <i32>(win >>> 32);
      if (share && (win & 1) && load<u8>(clone + <usize>pos) && shortcutSame(d, pos, oy, ox)) {
        cloneLeft(d, pos, true);
        total += last;
        continue;
      }
      store<u8>(clone + <usize>pos, 0);
      if (!(win & 1)) {
        if (popS == 0) {
          // No spike under the window: every count is 0, nothing to walk.
          for (let g = 0; g < groups; g++) {
            v128.store(save + (<usize>g << 5), i32x4.splat(0));
            v128.store(save + (<usize>g << 5), i32x4.splat(0), 16);
          }
        } else {
          // Up to 64 output channels per walk over the window.
          let g = 0;
          for (; g + 4 <= groups; g += 4) pass<u32>(d, oy, ox, g);
          if (g + 2 <= groups) {
            pass<u16>(d, oy, ox, g);
            g += 2;
          }
          if (g < groups) pass<u8>(d, oy, ox, g);
        }
      }
      if (dots) {
        for (let c = 0; c < cout; c++) store<i32>(dots + (<usize>(pos * cout + c) << 2), 2 * <i32>load<u16>(save + (<usize>c << 1)) - popS);
        continue;
      }
      const sc: usize = scKind == 1 ? scPtr + (<usize>(pos * cout) << 2) : scKind == 2 ? pooled(d, oy, ox) : 0;
      last = outputPosition(d, pos, 1, sc, popS);
      total += last;
    }
  }
  addSpikes(d, total);
}

/** One time step through every layer. */
export function step(desc: usize, layers: i32): void {
  for (let i = 0; i < layers; i++) {
    const d = desc + (<usize>(i * DESC_WORDS) << 2);
    if (field(d, KIND) == 0) firstStep(d);
    else binaryStep(d);
  }
  fresh = false;
}

/** Starts a frame: zeroes every layer's membranes and counters, then computes the first layer's current. */
export function start(desc: usize, layers: i32): void {
  for (let i = 0; i < layers; i++) {
    const d = desc + (<usize>(i * DESC_WORDS) << 2);
    store<i32>(<usize>field(d, SPIKES), 0);
    // Every membrane starts at 0: every position equals its left neighbour (the first column never clones).
    if (i > 0) memory.fill(<usize>field(d, CLONE), 1, <usize>(field(d, OH) * field(d, OW)));
    const counts = <usize>field(d, COUNTS);
    if (counts) memory.fill(counts, 0, <usize>((field(d, COUT) + 15) & ~15) << 2);
  }
  firstCurrents(desc);
  fresh = true;
}

/** A whole frame: start, then T steps. */
export function frame(desc: usize, layers: i32, T: i32): void {
  start(desc, layers);
  for (let t = 0; t < T; t++) step(desc, layers);
}

/** One binary layer alone (tests: dots or fused output of a single layer; membranes carry over between calls). */
export function layer(d: usize): void {
  fresh = false;
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
