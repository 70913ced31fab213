/**
 * The network planner of the WebAssembly backend: lays a model out in the kernel's memory once (descriptors,
 * weights repacked for the SIMD loops, state and scratch buffers) and says which models the kernel cannot take.
 * The descriptor fields it writes are ./module.ts's FIELDS; ./runner.ts runs the planned network.
 */
import type {
  BinaryConvLayer,
  BinaryLinearLayer,
  BwsnnModel,
  ConvInt8Layer,
  HiddenLayer,
  Shape3,
} from '../../format/model.js';
import { rowWords } from '../../format/model.js';
import { rng } from '../../data/random.js';
import { layerChannels, mapShape, perOp } from '../../format/ops.js';
import type { PerOp } from '../../format/ops.js';
import { DESC_WORDS, FIELDS as F, instantiate } from './module.js';
import type { KernelExports } from './module.js';

/**
 * Why the kernel cannot run this model, or undefined: per-channel counts are u16 lanes (fan-in below 2^16) and a
 * dense list entry keeps its weight offset within a window row (input width × weights per tap) in 24 bits.
 */
export function wasmUnsupported(model: BwsnnModel): string | undefined {
  const layers = [model.first, ...model.hidden];
  for (let i = 1; i < layers.length; i++) {
    const layer = model.hidden[i - 1]!;
    const g = geometry(layer, mapShape(layers[i - 1]!));
    if (g.fanIn > 0xffff) return `${layer.name}: fan-in ${g.fanIn} exceeds the wasm kernel's 65535`;
    if (g.iw * g.icb * groupsOf(layerChannels(layer), 16) * 16 >= 2 ** 24)
      return `${layer.name}: weights per window row exceed the wasm kernel's 16 MiB`;
  }
  return undefined;
}

/** Words of channel bits per position. */
export const cwOf = (channels: number) => Math.ceil(channels / 32);
/** Output channels per v128 group: 4 f32/i32 lanes in the first layer, 16 byte lanes in the binary kernel. */
const groupsOf = (channels: number, lanes: 4 | 16) => Math.ceil(channels / lanes);
/** Bytes of a spike map of `positions` × `channels`, plus the slack the kernel's 16-byte loads may read. */
const mapBytes = (positions: number, channels: number) => positions * cwOf(channels) * 4 + 16;

/**
 * A bump allocator over the kernel's memory, above whatever the module itself uses. Offsets are handed out
 * first; `commit` then grows the memory once and writes the initial contents.
 */
class Arena {
  private top: number;
  private readonly writes: Array<(buf: ArrayBuffer) => void> = [];
  constructor(private readonly kernel: KernelExports) {
    this.top = Math.max(64, kernel.memory.buffer.byteLength);
  }
  /** Reserves `bytes` (16-aligned; at least the size of `init`, which is written once the memory has grown). */
  alloc(bytes: number, init?: ArrayBufferView): number {
    const at = this.top;
    this.top += Math.ceil(Math.max(bytes, init?.byteLength ?? 0, 16) / 16) * 16;
    if (init)
      this.writes.push((buf) =>
        new Uint8Array(buf, at, init.byteLength).set(new Uint8Array(init.buffer, init.byteOffset, init.byteLength)),
      );
    return at;
  }
  commit(): void {
    const need = this.top - this.kernel.memory.buffer.byteLength;
    if (need > 0) this.kernel.memory.grow(Math.ceil(need / 65536));
    for (const w of this.writes) w(this.kernel.memory.buffer);
  }
}

/** Per-channel f32 vector padded to whole groups of 16 with `pad`. */
function padded(values: Float32Array, pad: number): Float32Array {
  const out = new Float32Array(groupsOf(values.length, 16) * 16).fill(pad);
  out.set(values);
  return out;
}

/** First-layer weights as [group][tap pair] i16x8: lanes (w[c][2p], w[c][2p+1]) for the group's 4 channels. */
function firstWeights(layer: ConvInt8Layer): Int16Array {
  const cout = layer.outShape[2];
  const taps = layer.kernel * layer.kernel * layer.inShape[2];
  const pairs = Math.ceil(taps / 2);
  const out = new Int16Array(groupsOf(cout, 4) * pairs * 8);
  for (let c = 0; c < cout; c++) {
    for (let j = 0; j < taps; j++)
      out[((c >> 2) * pairs + (j >> 1)) * 8 + (c & 3) * 2 + (j & 1)] = layer.weights[c * taps + j]!;
  }
  return out;
}

/**
 * Dense weights as [byte j][group] v128s (byte lane = output channel): fan-in element f of the canonical row is
 * (tap = f / cin, channel ci = f % cin) and lands in bit ci&7 of byte j = tap*tapBytes + ci/8. A linear layer is
 * the same with tap = input position.
 */
function binaryWeights(
  weightBits: Uint32Array,
  cout: number,
  fanIn: number,
  cin: number,
  tapBytes: number,
): Uint8Array {
  const words = rowWords(fanIn);
  const groups = groupsOf(cout, 16);
  const out = new Uint8Array((fanIn / cin) * tapBytes * groups * 16);
  for (let c = 0; c < cout; c++) {
    for (let f = 0; f < fanIn; f++) {
      if (!((weightBits[c * words + (f >> 5)]! >>> (f & 31)) & 1)) continue;
      const ci = f % cin;
      const j = Math.floor(f / cin) * tapBytes + (ci >> 3);
      out[(j * groups + (c >> 4)) * 16 + (c & 15)]! |= 1 << (ci & 7);
    }
  }
  return out;
}

/** Event weights as [input bit j][group] v128s of 0/1 bytes (byte lane = output channel), j = tap*tapBytes*8 + ci. */
function eventWeights(weightBits: Uint32Array, cout: number, fanIn: number, cin: number, tapBytes: number): Uint8Array {
  const words = rowWords(fanIn);
  const groups = groupsOf(cout, 16);
  const out = new Uint8Array((fanIn / cin) * tapBytes * 8 * groups * 16);
  for (let c = 0; c < cout; c++) {
    for (let f = 0; f < fanIn; f++) {
      const j = Math.floor(f / cin) * tapBytes * 8 + (f % cin);
      out[(j * groups + (c >> 4)) * 16 + (c & 15)] = (weightBits[c * words + (f >> 5)]! >>> (f & 31)) & 1;
    }
  }
  return out;
}

/** Which binary path a layer takes: chosen per step from the input spike rate, or forced (tests). */
export type BinaryPath = 'auto' | 'dense' | 'events';

/** One layer as planned: its descriptor and where the buffers the runner reads back are. */
export interface Planned {
  readonly desc: Int32Array;
  /** Byte offset of the layer's per-position CLONE flags. */
  readonly clone: number;
  /** Byte offsets of the layer's current (f32, HWC) and spike map (`cwOf(channels)` words per position). */
  readonly cur: number;
  readonly out: number;
  readonly units: number;
  readonly channels: number;
}

/** A model laid out in one kernel instance's memory. */
export interface NetworkPlan {
  readonly kernel: KernelExports;
  /** Byte offset of the descriptor table (DESC_WORDS i32 per layer, first layer first). */
  readonly descAt: number;
  readonly layers: readonly Planned[];
}

/**
 * Plans every layer of a validated model; only the last layer keeps per-channel counts (the head's input). Each
 * binary layer's switch between the dense and the event path is measured for its shape on this machine
 * (`measuredSwitch`) unless `measure` is false (then DEFAULT_SWITCH).
 */
export function planNetwork(model: BwsnnModel, measure = true): NetworkPlan {
  const kernel = instantiate();
  const a = new Arena(kernel);
  const layers = [model.first, ...model.hidden];
  const plans: Planned[] = [planFirst(a, model.first, layers.length === 1)];
  model.hidden.forEach((layer, h) => {
    const from = mapShape(layers[h]!);
    plans.push(planBinary(a, layer, plans[h]!, from, h === model.hidden.length - 1));
    if (measure) plans[h + 1]!.desc[F.SWITCH] = measuredSwitch(layer, from);
  });
  const descAt = a.alloc(plans.length * DESC_WORDS * 4);
  // Each binary layer reads the step's spike count of the layer before from that layer's descriptor.
  for (let i = 1; i < plans.length; i++) plans[i]!.desc[F.IN_STEP] = descAt + ((i - 1) * DESC_WORDS + F.STEP) * 4;
  a.commit();
  const descs = new Int32Array(kernel.memory.buffer, descAt, plans.length * DESC_WORDS);
  plans.forEach((p, i) => descs.set(p.desc, i * DESC_WORDS));
  return { kernel, descAt, layers: plans };
}

/** A binary layer as the kernel sees it: a k×k conv on an ih×iw map (icw words, icb scanned bytes per position). */
interface Geometry {
  readonly ih: number;
  readonly iw: number;
  readonly icw: number;
  readonly icb: number;
  /** Bytes of input bits per tap in the weight layout. */
  readonly tapBytes: number;
  readonly k: number;
  readonly stride: number;
  readonly pad: number;
  readonly fanIn: number;
}

const GEOMETRY: PerOp<HiddenLayer, [from: Shape3], Geometry> = {
  bconv: (layer, from) => {
    const icb = Math.ceil(from[2] / 8);
    return {
      ih: from[0],
      iw: from[1],
      icw: cwOf(from[2]),
      icb,
      tapBytes: icb,
      k: layer.kernel,
      stride: layer.stride,
      pad: layer.pad,
      fanIn: layer.kernel * layer.kernel * from[2],
    };
  },
  // A linear layer is a 1×1 conv on a 1×1 map: the whole input map is one position whose every byte is scanned
  // (the bytes past each position's channels are zero).
  blinear: (layer, from) => {
    const icw = from[0] * from[1] * cwOf(from[2]);
    return {
      ih: 1,
      iw: 1,
      icw,
      icb: 4 * icw,
      tapBytes: 4 * cwOf(from[2]),
      k: 1,
      stride: 1,
      pad: 0,
      fanIn: layer.inFeatures,
    };
  },
};

/** Geometry of a binary layer on the map `from` of the layer before it. */
function geometry(layer: HiddenLayer, from: Shape3): Geometry {
  return perOp(GEOMETRY, layer, from)!;
}

function planFirst(a: Arena, layer: ConvInt8Layer, counts: boolean): Planned {
  const [oh, ow, cout] = layer.outShape;
  const units = oh * ow * cout;
  const d = new Int32Array(DESC_WORDS);
  const taps = layer.kernel * layer.kernel * layer.inShape[2];
  d[F.KIND] = 0;
  d[F.IN] = a.alloc(layer.inShape[0] * layer.inShape[1] * layer.inShape[2]);
  [d[F.IH], d[F.IW], d[F.ICW]] = layer.inShape;
  d[F.OH] = oh;
  d[F.OW] = ow;
  d[F.COUT] = cout;
  d[F.OCW] = cwOf(cout);
  d[F.K] = layer.kernel;
  d[F.STRIDE] = layer.stride;
  d[F.PAD] = layer.pad;
  d[F.WGT] = a.alloc(0, firstWeights(layer));
  d[F.I0] = d[F.CUR] = a.alloc(units * 4);
  d[F.LIST] = a.alloc((taps + 1) * 2);
  d[F.ZERO] = a.alloc(oh * ow);
  common(a, d, layer, units, counts);
  return { desc: d, clone: d[F.CLONE]!, cur: d[F.CUR]!, out: d[F.OUT]!, units, channels: cout };
}

function planBinary(
  a: Arena,
  layer: HiddenLayer,
  prev: Planned,
  from: Shape3,
  counts: boolean,
  path: BinaryPath = 'auto',
): Planned {
  const [oh, ow, cout] = mapShape(layer);
  const units = oh * ow * cout;
  const g = geometry(layer, from);
  const d = new Int32Array(DESC_WORDS);
  d[F.KIND] = 1;
  d[F.IN] = prev.out;
  d[F.IH] = g.ih;
  d[F.IW] = g.iw;
  d[F.ICW] = g.icw;
  d[F.ICB] = g.icb;
  d[F.OH] = oh;
  d[F.OW] = ow;
  d[F.COUT] = cout;
  d[F.OCW] = cwOf(cout);
  d[F.K] = g.k;
  d[F.STRIDE] = g.stride;
  d[F.PAD] = g.pad;
  d[F.WGT] = a.alloc(0, binaryWeights(layer.weightBits, cout, g.fanIn, from[2], g.tapBytes));
  d[F.WEV] = a.alloc(0, eventWeights(layer.weightBits, cout, g.fanIn, from[2], g.tapBytes));
  d[F.PATH] = { auto: 0, dense: 1, events: 2 }[path];
  d[F.SWITCH] = DEFAULT_SWITCH;
  d[F.CUR] = a.alloc(units * 4);
  d[F.SC_KIND] = { none: 0, identity: 1, avgpool_repeat: 2 }[layer.shortcut];
  d[F.SC_PTR] = prev.cur;
  d[F.SC_CLONE] = prev.clone;
  d[F.SC_CIN] = from[2];
  d[F.SC_W] = from[1];
  const positions = g.ih * g.iw;
  d[F.LIST] = a.alloc(positions * g.icb * 32);
  d[F.START] = a.alloc((positions + 1) * 4);
  d[F.SPIKED] = a.alloc((positions + 1) * 4);
  d[F.SAME] = a.alloc((positions + 1) * 4);
  d[F.SAVE] = a.alloc(groupsOf(cout, 16) * 32);
  d[F.SCTMP] = a.alloc(cout * 4);
  common(a, d, layer, units, counts);
  return { desc: d, clone: d[F.CLONE]!, cur: d[F.CUR]!, out: d[F.OUT]!, units, channels: cout };
}

function common(a: Arena, d: Int32Array, layer: ConvInt8Layer | HiddenLayer, units: number, counts: boolean): void {
  const cout = layerChannels(layer);
  d[F.GROUPS] = groupsOf(cout, layer.kind === 'conv_int8' ? 4 : 16);
  d[F.SCALE] = a.alloc(0, padded(layer.scale, 0));
  d[F.BIAS] = a.alloc(0, padded(layer.bias, 0));
  d[F.THETA] = a.alloc(0, padded(layer.lif.theta, Infinity));
  d[F.BETA] = new Int32Array(Float32Array.of(layer.lif.beta).buffer)[0]!;
  d[F.OUT] = a.alloc(mapBytes(units / cout, cout));
  d[F.V] = a.alloc(units * 4);
  d[F.SPIKES] = a.alloc(4);
  d[F.CLONE] = a.alloc(units / cout);
  d[F.COUNTS] = counts ? a.alloc(groupsOf(cout, 16) * 64) : 0;
}

/**
 * Packs one spike map into the kernel's layout: `positions` positions of `channels` values each (HWC, read from
 * `values` at `offset`; any non-zero value is a spike) into `cwOf(channels)` words per position of `out`, channel
 * c in word c >> 5, bit c & 31.
 */
export function packSpikes(
  values: ArrayLike<number>,
  offset: number,
  positions: number,
  channels: number,
  out: Uint32Array,
): void {
  const cw = cwOf(channels);
  let i = offset;
  for (let p = 0; p < positions; p++) {
    for (let w = 0; w < cw; w++) {
      const end = Math.min(32, channels - 32 * w);
      let word = 0;
      // Branch-free: spikes are unpredictable, a mispredicted branch per value cost 2.5× the loop.
      for (let b = 0; b < end; b++, i++) word |= +(values[i] !== 0) << b;
      out[p * cw + w] = word;
    }
  }
}

/**
 * The switch point of a layer planned without measuring (per mille of input spikes): where the two paths crossed,
 * per layer, between 20 % and 35 % on the 32-64-128 model on x86 (more spikes per byte favour the popcount, and
 * the event weights are 8× larger in cache).
 */
export const DEFAULT_SWITCH = 200;

/** Input spike rates the switch is measured at. */
const SWITCH_RATES = [0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5];
const switches = new Map<string, number>();
let measurements = 0;

/** How many layer shapes this process has measured a switch for (each once: asked again, it is looked up). */
export function switchMeasurements(): number {
  return measurements;
}

/** Seconds per call of `fn`: the best of three rounds, each at least 0.3 ms of calls. */
function secondsPerCall(fn: () => void): number {
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    let calls = 0;
    const t0 = performance.now();
    let t = t0;
    do {
      fn();
      calls++;
      t = performance.now();
    } while (t - t0 < 0.3);
    best = Math.min(best, (t - t0) / calls);
  }
  return best / 1000;
}

/**
 * The input spike rate (per mille) up to which a binary layer's event path is not slower than its dense path,
 * measured on this machine for this layer's shape: both paths run on the same seeded random spike maps at rising
 * rates, and the switch is the last rate at which the events kept up (the work of either follows the input, not
 * the weights). Measured once per shape and process (a few milliseconds); the two paths compute the same dots, so
 * only the speed depends on it.
 */
export function measuredSwitch(layer: HiddenLayer, from: Shape3): number {
  const key = `${layer.kind} ${from.join('x')} ${mapShape(layer).join('x')} ${
    layer.kind === 'bconv' ? `${layer.kernel}/${layer.stride}/${layer.pad}` : ''
  }`;
  const known = switches.get(key);
  if (known !== undefined) return known;
  const units = from[0] * from[1] * from[2];
  const dense = singleLayer(layer, new Uint8Array(units), from, false, 'dense');
  const events = singleLayer(layer, new Uint8Array(units), from, false, 'events');
  const packed = new Uint32Array(from[0] * from[1] * cwOf(from[2]));
  const random = rng(0x9e3779b9);
  let at = 0;
  for (const rate of SWITCH_RATES) {
    packSpikes(
      Uint8Array.from({ length: units }, () => (random() < rate ? 1 : 0)),
      0,
      from[0] * from[1],
      from[2],
      packed,
    );
    dense.setInput(packed);
    events.setInput(packed);
    if (secondsPerCall(events.run) > secondsPerCall(dense.run)) break;
    at = Math.round(rate * 1000);
  }
  switches.set(key, at);
  measurements++;
  return at;
}

/** One binary layer planned alone in its own kernel instance (see `singleLayer`). */
export interface SingleLayer {
  /** Runs one step of the layer on its current input. */
  run(): void;
  /** The integer dots of the last run, a copy ([position][output channel]); only when planned with `dots`. */
  dots(): Int32Array;
  /** The same as a view into the kernel's memory: valid until the next run. */
  dotsView(): Int32Array;
  /** Replaces the input spike map (`packSpikes`'s layout). */
  setInput(packed: Uint32Array): void;
  /** Replaces the weights (rows in `BinaryConvLayer.weightBits`'s layout). */
  setWeights(weightBits: Uint32Array): void;
}

/**
 * One binary layer alone in its own kernel instance, on input spikes of shape `from` (HWC 0/1 bytes at first,
 * `setInput` replaces them), for the property tests (`dots`: the integer dots instead of the LIF output), the
 * kernel benchmark (`run`) and the trainer's forward conv on spike maps (trainer/backend/spike-conv.ts, which
 * changes input and weights between runs).
 */
export function singleLayer(
  layer: BinaryConvLayer | BinaryLinearLayer,
  spikes: Uint8Array,
  from: Shape3,
  dots: boolean,
  path: BinaryPath = 'auto',
): SingleLayer {
  const kernel = instantiate();
  const a = new Arena(kernel);
  const cw = cwOf(from[2]);
  const positions = from[0] * from[1];
  const packed = new Uint32Array(positions * cw);
  packSpikes(spikes, 0, positions, from[2], packed);
  const prev: Planned = {
    desc: new Int32Array(0),
    clone: a.alloc(positions),
    cur: a.alloc(positions * from[2] * 4),
    out: a.alloc(mapBytes(positions, from[2]), packed),
    units: positions * from[2],
    channels: from[2],
  };
  const p = planBinary(a, layer, prev, from, false, path);
  if (dots) p.desc[F.DOTS] = a.alloc(p.units * 4);
  const descAt = a.alloc(DESC_WORDS * 4, p.desc);
  a.commit();
  // Nothing allocates after the commit, so the memory (and views of it) stays put.
  const g = geometry(layer, from);
  const cout = layerChannels(layer);
  const write = (at: number, bytes: Uint8Array) => new Uint8Array(kernel.memory.buffer, at, bytes.length).set(bytes);
  const view = () => new Int32Array(kernel.memory.buffer, p.desc[F.DOTS]!, p.units);
  return {
    run: () => kernel.layer(descAt),
    dots: () => view().slice(),
    dotsView: view,
    setInput: (bits) => {
      if (bits.length !== packed.length) throw new RangeError(`setInput: expected ${packed.length} words`);
      new Uint32Array(kernel.memory.buffer, prev.out, bits.length).set(bits);
    },
    setWeights: (bits) => {
      if (bits.length !== layer.weightBits.length)
        throw new RangeError(`setWeights: expected ${layer.weightBits.length} words`);
      write(p.desc[F.WGT]!, binaryWeights(bits, cout, g.fanIn, from[2], g.tapBytes));
      write(p.desc[F.WEV]!, eventWeights(bits, cout, g.fanIn, from[2], g.tapBytes));
    },
  };
}

/** Integer dots of one binary layer computed by the kernel: the property tests hold them equal to the reference's. */
export function wasmDots(
  layer: BinaryConvLayer | BinaryLinearLayer,
  spikes: Uint8Array,
  from: Shape3,
  path: BinaryPath = 'auto',
): Int32Array {
  const l = singleLayer(layer, spikes, from, true, path);
  l.run();
  return l.dots();
}

/** The bare AND-popcount loop over `rows` × `vecs` v128s of random bits; returns `(reps) => checksum`. */
export function bareLoop(rows: number, vecs: number): (reps: number) => number {
  const kernel = instantiate();
  const a = new Arena(kernel);
  const random = (n: number) =>
    Uint32Array.from({ length: n * 4 }, (_, i) => Math.imul(i + 1, 0x9e3779b1) ^ (i * 7919));
  const w = a.alloc(0, random(rows * vecs));
  const x = a.alloc(0, random(vecs));
  a.commit();
  return (reps) => kernel.bare(w, x, rows, vecs, reps);
}
