/**
 * Structural checks of a BwsnnModel, run before writing and after reading, so that a file either means exactly
 * what the engine will compute or is refused. Every failure is a FormatError whose `field` is the dotted path
 * of the offending value and whose message gives the expected and the actual value.
 */
import { FormatError, show } from '../errors.js';
import { FITS } from '../data/fit.js';
import { dirtyPadding } from './bits.js';
import type {
  BinaryConvLayer,
  BinaryLinearLayer,
  BwsnnModel,
  ConvInt8Layer,
  HiddenLayer,
  Lif,
  Shape3,
} from './model.js';
import { convOut, rowWords } from './model.js';
import { HIDDEN_OPS, layerChannels, perOp } from './ops.js';
import type { PerOp } from './ops.js';

/** Sanity limits: far above any edge model, low enough that no size computation can overflow or exhaust memory. */
export const LIMITS = {
  /** Elements in any one tensor or feature map. */
  maxElements: 2 ** 28,
  maxKernel: 15,
  maxStride: 8,
  maxT: 16,
  maxHidden: 256,
  maxClasses: 65536,
  /** Height and width of the input and of every feature map. */
  maxSide: 4096,
  /** Channels of the input and of every layer's output (a blinear's outFeatures). */
  maxChannels: 4096,
  /**
   * Bytes all of a model's tensors take in memory (weights as the engine holds them, scales, biases, thresholds,
   * the head): what a file may make the reader allocate for them. Checked from the layers' shapes before any
   * tensor is read, so that a few header bytes (a version-2 constant tensor) cannot ask for more.
   */
  maxTensorBytes: 64 * 2 ** 20,
  maxStringLength: 1024,
  /** Nesting depth of `meta`. */
  maxMetaDepth: 32,
  /**
   * First-layer fan-in (k*k*cin): 128 * 255 * fanIn must stay below 2^24 so that the integer accumulation is
   * exact in float32 too (ARCHITECTURE.md, "First layer").
   */
  maxFirstFanIn: Math.floor((2 ** 24 - 1) / (128 * 255)),
} as const;

export function fail(field: string, expected: string, actual: string): never {
  throw new FormatError(`${field}: expected ${expected}, got ${actual}`, field);
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

export function checkInt(v: unknown, field: string, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
    fail(field, `an integer in ${lo}..${hi}`, show(v));
  return v;
}

export function checkString(v: unknown, field: string, minLength = 0): string {
  if (typeof v !== 'string' || v.length < minLength || v.length > LIMITS.maxStringLength) {
    fail(field, `a string of ${minLength}..${LIMITS.maxStringLength} characters`, show(v));
  }
  return v;
}

/** Product of positive integer dims, refusing as soon as it passes maxElements (so it can never overflow). */
export function checkElements(dims: readonly number[], field: string): number {
  let n = 1;
  for (const d of dims) {
    n *= d;
    if (n > LIMITS.maxElements) fail(field, `at most ${LIMITS.maxElements} elements`, `[${dims.join(', ')}]`);
  }
  return n;
}

/** [height, width, channels], each within its limit (maxSide, maxChannels), at most maxElements in all. */
export function checkShape3(v: unknown, field: string): Shape3 {
  if (!Array.isArray(v) || v.length !== 3) fail(field, '[height, width, channels]', show(v));
  v.forEach((d, i) => checkInt(d, `${field}[${i}]`, 1, i < 2 ? LIMITS.maxSide : LIMITS.maxChannels));
  checkElements(v as number[], field);
  return v as unknown as Shape3;
}

function sameShape(a: Shape3, b: Shape3): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function checkFloats(v: unknown, field: string, length: number, positive = false): void {
  if (!(v instanceof Float32Array)) fail(field, 'a Float32Array', show(v));
  if (v.length !== length) fail(`${field}.length`, String(length), String(v.length));
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (!Number.isFinite(x) || (positive && !(x > 0)))
      fail(`${field}[${i}]`, positive ? 'a finite value > 0' : 'a finite value', String(x));
  }
}

function checkLif(lif: Lif, field: string, channels: number): void {
  if (!isRecord(lif)) fail(field, 'an object {beta, theta}', show(lif));
  const beta = lif.beta;
  if (typeof beta !== 'number' || !(beta > 0 && beta <= 1)) fail(`${field}.beta`, 'a number in (0, 1]', show(beta));
  // The engine computes in float32; a beta that is not a float32 value would mean different things to different readers.
  if (Math.fround(beta) !== beta)
    fail(`${field}.beta`, `a float32 value (Math.fround(beta) = ${Math.fround(beta)})`, String(beta));
  checkFloats(lif.theta, `${field}.theta`, channels, true);
}

function checkAffine(layer: { scale: unknown; bias: unknown }, field: string, channels: number): void {
  checkFloats(layer.scale, `${field}.scale`, channels);
  checkFloats(layer.bias, `${field}.bias`, channels);
}

/** Kernel, stride, pad and the output-size arithmetic of a conv on `inShape`. */
function checkConvGeometry(
  layer: { inShape: unknown; outShape: unknown; kernel: unknown; stride: unknown; pad: unknown },
  field: string,
  inShape: Shape3,
): { k: number; outShape: Shape3 } {
  const given = checkShape3(layer.inShape, `${field}.inShape`);
  if (!sameShape(given, inShape))
    fail(`${field}.inShape`, `${fmt(inShape)} (the output of the layer before)`, fmt(given));
  const k = checkInt(layer.kernel, `${field}.kernel`, 1, LIMITS.maxKernel);
  const s = checkInt(layer.stride, `${field}.stride`, 1, LIMITS.maxStride);
  const p = checkInt(layer.pad, `${field}.pad`, 0, k - 1);
  const outShape = checkShape3(layer.outShape, `${field}.outShape`);
  for (const axis of [0, 1] as const) {
    const want = convOut(inShape[axis], k, s, p);
    if (want < 1) fail(`${field}.kernel`, `a kernel that fits the padded input (${inShape[axis]} + 2*${p})`, String(k));
    if (outShape[axis] !== want)
      fail(
        `${field}.outShape[${axis}]`,
        `${want} (floor((${inShape[axis]} + 2*${p} - ${k}) / ${s}) + 1)`,
        String(outShape[axis]),
      );
  }
  return { k, outShape };
}

function checkBits(v: unknown, field: string, rows: number, bits: number): void {
  if (!(v instanceof Uint32Array)) fail(field, 'a Uint32Array', show(v));
  const words = checkElements([rows, rowWords(bits)], field);
  if (v.length !== words)
    fail(`${field}.length`, `${words} (${rows} rows of ${rowWords(bits)} words)`, String(v.length));
  const dirty = dirtyPadding(v, rows, bits);
  if (dirty)
    fail(
      `${field}[${dirty.row * rowWords(bits) + dirty.word}]`,
      `zero padding bits past bit ${bits} of row ${dirty.row}`,
      `0x${(dirty.value >>> 0).toString(16)}`,
    );
}

/** What a layer's tensors are: `rows` output units (scale, bias, theta each), weights of `fanIn` per row. */
interface Units {
  readonly rows: number;
  readonly fanIn: number;
}

/** What a hidden layer receives: a spike map with a shape, or a flat vector after a linear layer. */
type Incoming = { shape: Shape3; features: number } | { shape: null; features: number };

/** A hidden layer's shapes checked: what it hands on, and its tensors' sizes. */
type Checked = { readonly out: Incoming; readonly units: Units };

function firstShapes(first: ConvInt8Layer, field: string, input: Shape3): { out: Shape3; units: Units } {
  if (!isRecord(first) || first.kind !== 'conv_int8')
    fail(`${field}.kind`, '"conv_int8"', show(isRecord(first) ? first.kind : first));
  checkString(first.name, `${field}.name`);
  const { k, outShape } = checkConvGeometry(first, field, input);
  const fanIn = k * k * input[2];
  if (fanIn > LIMITS.maxFirstFanIn)
    fail(
      `${field}.kernel`,
      `kernel*kernel*cin <= ${LIMITS.maxFirstFanIn} (exact integer accumulation)`,
      `${k}*${k}*${input[2]} = ${fanIn}`,
    );
  return { out: outShape, units: { rows: outShape[2], fanIn } };
}

function checkFirstTensors(first: ConvInt8Layer, field: string, units: Units): void {
  const { rows: cout, fanIn } = units;
  if (!(first.weights instanceof Int8Array)) fail(`${field}.weights`, 'an Int8Array', show(first.weights));
  const n = checkElements([cout, fanIn], `${field}.weights`);
  if (first.weights.length !== n)
    fail(
      `${field}.weights.length`,
      `${n} ([${cout}][${first.kernel}][${first.kernel}][${first.inShape[2]}])`,
      String(first.weights.length),
    );
  checkAffine(first, field, cout);
  checkLif(first.lif, `${field}.lif`, cout);
}

function bconvShapes(layer: BinaryConvLayer, field: string, incoming: Incoming): Checked {
  if (!incoming.shape)
    fail(`${field}.kind`, 'a layer on a flat vector (blinear): a bconv cannot follow a blinear', '"bconv"');
  const inShape = incoming.shape;
  const { k, outShape } = checkConvGeometry(layer, field, inShape);
  const [h, w, cin] = inShape;
  const cout = outShape[2];
  if (layer.shortcut === 'identity') {
    if (!sameShape(inShape, outShape))
      fail(`${field}.shortcut`, `equal in and out shapes for identity (in ${fmt(inShape)})`, `out ${fmt(outShape)}`);
  } else if (layer.shortcut === 'avgpool_repeat') {
    const ok =
      layer.stride === 2 &&
      h % 2 === 0 &&
      w % 2 === 0 &&
      outShape[0] === h / 2 &&
      outShape[1] === w / 2 &&
      cout % cin === 0;
    if (!ok) {
      fail(
        `${field}.shortcut`,
        'avgpool_repeat only with stride 2, even input size, out = in/2 and cout a multiple of cin',
        `stride ${String(layer.stride)}, in ${fmt(inShape)}, out ${fmt(outShape)}`,
      );
    }
  } else if (layer.shortcut !== 'none') {
    fail(`${field}.shortcut`, '"none", "identity" or "avgpool_repeat"', show(layer.shortcut));
  }
  return {
    out: { shape: outShape, features: outShape[0] * outShape[1] * outShape[2] },
    units: { rows: cout, fanIn: k * k * cin },
  };
}

function blinearShapes(layer: BinaryLinearLayer, field: string, incoming: Incoming): Checked {
  const inF = checkInt(layer.inFeatures, `${field}.inFeatures`, 1, LIMITS.maxElements);
  if (inF !== incoming.features)
    fail(`${field}.inFeatures`, `${incoming.features} (the units of the layer before)`, String(inF));
  const outF = checkInt(layer.outFeatures, `${field}.outFeatures`, 1, LIMITS.maxChannels);
  if (layer.shortcut === 'identity') {
    if (inF !== outF) fail(`${field}.shortcut`, `inFeatures = outFeatures for identity (in ${inF})`, `out ${outF}`);
  } else if (layer.shortcut !== 'none') {
    fail(`${field}.shortcut`, '"none" or "identity" on a blinear', show(layer.shortcut));
  }
  return { out: { shape: null, features: outF }, units: { rows: outF, fanIn: inF } };
}

/** Each hidden op's shape checks: given what the layer before hands on, what this one hands on. */
const HIDDEN_SHAPES: PerOp<HiddenLayer, [field: string, incoming: Incoming], Checked> = {
  bconv: bconvShapes,
  blinear: blinearShapes,
};

function hiddenShapes(layer: HiddenLayer, field: string, incoming: Incoming): Checked {
  if (!isRecord(layer)) fail(field, 'a layer object', show(layer));
  checkString(layer.name, `${field}.name`);
  return (
    perOp(HIDDEN_SHAPES, layer, field, incoming) ??
    fail(
      `${field}.kind`,
      HIDDEN_OPS.map((op) => JSON.stringify(op)).join(' or '),
      show((layer as { kind: unknown }).kind),
    )
  );
}

/** Every hidden op's tensors are the same: binary rows, then scale, bias and theta per output unit. */
function checkHiddenTensors(layer: HiddenLayer, field: string, units: Units): void {
  checkBits(layer.weightBits, `${field}.weightBits`, units.rows, units.fanIn);
  checkAffine(layer, field, units.rows);
  checkLif(layer.lif, `${field}.lif`, units.rows);
}

/** `meta` must survive JSON unchanged: plain objects, arrays, strings, finite numbers, booleans, null. */
export function checkJson(v: unknown, field: string, depth = 0): void {
  if (depth > LIMITS.maxMetaDepth) fail(field, `nesting of at most ${LIMITS.maxMetaDepth} levels`, 'deeper');
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) fail(field, 'a finite number (JSON)', String(v));
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkJson(x, `${field}[${i}]`, depth + 1));
    return;
  }
  if (isRecord(v) && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
    for (const [key, x] of Object.entries(v)) checkJson(x, `${field}.${key}`, depth + 1);
    return;
  }
  fail(field, 'a JSON value', show(v));
}

/** Each layer's tensor sizes, as checkShapes found them. */
interface Shapes {
  readonly first: Units;
  readonly hidden: readonly Units[];
  readonly head: Units;
}

type Weights = 'int8' | 'bits' | 'float32';

/**
 * Bytes a layer's tensors take in memory: int8, float32 or binary rows (u32 words, padded: rowWords) of weights,
 * and `vectors` float32 values per row (scale, bias, theta; the head has only a bias).
 */
const tensorBytes = (u: Units, weights: Weights, vectors: number): number =>
  u.rows * (weights === 'int8' ? u.fanIn : weights === 'bits' ? 4 * rowWords(u.fanIn) : 4 * u.fanIn) +
  4 * vectors * u.rows;

/**
 * Every check of validateModel that reads no tensor: the scalars, each layer's shapes against the layer before,
 * the labels, and the bytes all the tensors will take (at most LIMITS.maxTensorBytes, refused at the field of the
 * layer that passes it). The reader runs it on a header before it materialises any tensor.
 */
export function checkShapes(model: BwsnnModel, prefix = ''): Shapes {
  if (!isRecord(model)) fail(prefix + 'model', 'a BwsnnModel object', show(model));
  checkString(model.name, `${prefix}name`, 1);
  checkInt(model.version, `${prefix}version`, 0, Number.MAX_SAFE_INTEGER);
  checkInt(model.T, `${prefix}T`, 1, LIMITS.maxT);
  let total = 0;
  const budget = (units: Units, weights: Weights, field: string, vectors = 3): Units => {
    total += tensorBytes(units, weights, vectors);
    if (total > LIMITS.maxTensorBytes)
      fail(
        field,
        `a model whose tensors take at most ${LIMITS.maxTensorBytes} bytes in memory (LIMITS.maxTensorBytes)`,
        `${total} bytes up to this layer`,
      );
    return units;
  };
  const input = checkShape3(model.input, `${prefix}input`);
  const first = firstShapes(model.first, `${prefix}first`, input);
  budget(first.units, 'int8', `${prefix}first.outShape`);
  let incoming: Incoming = { shape: first.out, features: first.out[0] * first.out[1] * first.out[2] };
  if (!Array.isArray(model.hidden) || model.hidden.length > LIMITS.maxHidden)
    fail(`${prefix}hidden`, `an array of at most ${LIMITS.maxHidden} layers`, show(model.hidden));
  const hidden = model.hidden.map((layer, i) => {
    const field = `${prefix}hidden[${i}]`;
    const checked = hiddenShapes(layer, field, incoming);
    incoming = checked.out;
    return budget(checked.units, 'bits', `${field}.${checked.out.shape ? 'outShape' : 'outFeatures'}`);
  });
  const head = model.head;
  if (!isRecord(head)) fail(`${prefix}head`, 'an object', show(head));
  const last = model.hidden.length ? model.hidden[model.hidden.length - 1]! : model.first;
  const inF = checkInt(head.inFeatures, `${prefix}head.inFeatures`, 1, LIMITS.maxChannels);
  if (inF !== layerChannels(last))
    fail(`${prefix}head.inFeatures`, `${layerChannels(last)} (the channels of ${last.name})`, String(inF));
  const outF = checkInt(head.outFeatures, `${prefix}head.outFeatures`, 1, LIMITS.maxClasses);
  const headUnits = budget({ rows: outF, fanIn: inF }, 'float32', `${prefix}head.outFeatures`, 1);
  if (!Array.isArray(model.labels) || model.labels.length !== outF) {
    fail(`${prefix}labels`, `${outF} labels (one per head output)`, show(model.labels));
  }
  model.labels.forEach((l, i) => checkString(l, `${prefix}labels[${i}]`));
  if (!isRecord(model.meta)) fail(`${prefix}meta`, 'a plain object', show(model.meta));
  checkJson(model.meta, `${prefix}meta`);
  if (model.fit !== undefined && !FITS.includes(model.fit))
    fail(`${prefix}fit`, `one of ${FITS.join(', ')}`, show(model.fit));
  return { first: first.units, hidden, head: headUnits };
}

/**
 * Checks every structural invariant of a model: checkShapes, then every tensor against its layer. `prefix` is
 * prepended to field paths (the reader passes `header.` so that a refusal names the field as it appears in the
 * file).
 */
export function validateModel(model: BwsnnModel, prefix = ''): void {
  const shapes = checkShapes(model, prefix);
  checkFirstTensors(model.first, `${prefix}first`, shapes.first);
  model.hidden.forEach((layer, i) => checkHiddenTensors(layer, `${prefix}hidden[${i}]`, shapes.hidden[i]!));
  const { rows: outF, fanIn: inF } = shapes.head;
  checkFloats(model.head.weight, `${prefix}head.weight`, checkElements([outF, inF], `${prefix}head.weight`));
  checkFloats(model.head.bias, `${prefix}head.bias`, outF);
}
