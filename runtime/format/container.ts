/**
 * The .bwsnn container: fixed prefix, JSON header, 16-byte aligned tensor sections, SHA-256, optional Ed25519
 * signature block. The byte layout, header schema and refusals are specified in ./README.md; this file and that
 * one change together.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, FormatError, SeiError, show } from '../errors.js';
import type { BinaryConvLayer, BinaryLinearLayer, BwsnnModel, ConvInt8Layer, HiddenLayer, Lif } from './model.js';
import { rowWords } from './model.js';
import { FIRST_OPS, HEAD_OPS, HIDDEN_OPS, OPS } from './ops.js';
import type { Op } from './ops.js';
import { KEY_ID_BYTES, SIGNATURE_BYTES, keyId, privateKey, publicKey, signDigest, verifyDigest } from './sign.js';
import { LIMITS, checkElements, checkInt, checkString, fail, isRecord, validateModel } from './validate.js';

export const MAGIC = Uint8Array.of(0x42, 0x57, 0x53, 0x4e); // "BWSN"
export const FORMAT_VERSION = 1;
/** magic (4) + formatVersion u16 + flags u16 + headerLength u32 + dataLength u32. */
export const PREFIX_BYTES = 16;
export const CHECKSUM_BYTES = 32;
/** Flag bit 0: a signature block follows the checksum. */
export const FLAG_SIGNED = 1;
export const SIGNATURE_TAG = Uint8Array.of(0x45, 0x44, 0x32, 0x35); // "ED25"
export const SIGNATURE_BLOCK_BYTES = SIGNATURE_TAG.length + KEY_ID_BYTES + SIGNATURE_BYTES;
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;
const ALIGN = 16;
const MAX_DATA_BYTES = 0xffffffff - (ALIGN - 1);

export type DType = 'int8' | 'float32' | 'bits';
const DTYPES: readonly DType[] = ['int8', 'float32', 'bits'];

/** A tensor section, as the header references it. Offsets are relative to the start of the data area. */
export interface TensorRef {
  readonly offset: number;
  readonly length: number;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export interface WriteOptions {
  /** Ed25519 private key (KeyObject or PEM). When given, a signature block is appended. Default: unsigned. */
  readonly signingKey?: KeyObject | string;
  /** Header `producer`. Default: `meta.producer` when it is a string, else "sei-edge". */
  readonly producer?: string;
  /** Header `createdAt` (ISO 8601). Default: now. Fix it to make a write byte-for-byte reproducible. */
  readonly createdAt?: string;
}

export interface ReadOptions {
  /** Public keys (KeyObject or PEM; a private key stands for its public key) a signature may come from. */
  readonly trustedKeys?: readonly (KeyObject | string)[];
  /** Refuse unsigned files. Needs trustedKeys. Default false. */
  readonly requireSignature?: boolean;
}

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());
const LITTLE_ENDIAN_HOST = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** A copy with its own ArrayBuffer: `Buffer#slice` is a view into a shared pool, so never rely on `.slice`. */
function copyBytes(b: Uint8Array, start = 0, end = b.length): Uint8Array {
  const out = new Uint8Array(end - start);
  out.set(b.subarray(start, end));
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Reverses every 4-byte group in place (only ever needed on a big-endian host). */
function swap32(b: Uint8Array): Uint8Array {
  for (let i = 0; i + 3 < b.length; i += 4) {
    const [x0, x1] = [b[i]!, b[i + 1]!];
    b[i] = b[i + 3]!;
    b[i + 1] = b[i + 2]!;
    b[i + 2] = x1;
    b[i + 3] = x0;
  }
  return b;
}

function littleEndianBytes(array: Int8Array | Uint32Array | Float32Array): Uint8Array {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  return LITTLE_ENDIAN_HOST || array instanceof Int8Array ? bytes : swap32(copyBytes(bytes));
}

// ---------------------------------------------------------------------------------------------- writing

/** Appends a tensor section; returns the header's reference to it. */
type Put = (array: Int8Array | Uint32Array | Float32Array, dtype: DType, shape: number[]) => TensorRef;

/** Serialises a model (validated first: an invalid model is never written). */
export function writeBwsnn(model: BwsnnModel, opts: WriteOptions = {}): Uint8Array {
  validateModel(model);
  const key = opts.signingKey === undefined ? null : privateKey(opts.signingKey);
  const sections: { offset: number; bytes: Uint8Array }[] = [];
  let dataLength = 0;
  const put: Put = (array, dtype, shape) => {
    const bytes = littleEndianBytes(array);
    const offset = dataLength;
    sections.push({ offset, bytes });
    dataLength = align(offset + bytes.length);
    return { offset, length: bytes.length, dtype, shape };
  };
  const lif = (l: Lif) => ({ beta: l.beta, theta: put(l.theta, 'float32', [l.theta.length]) });
  const affine = (l: { scale: Float32Array; bias: Float32Array }) => ({
    scale: put(l.scale, 'float32', [l.scale.length]),
    bias: put(l.bias, 'float32', [l.bias.length]),
  });
  const f: ConvInt8Layer = model.first;
  const first = {
    op: f.kind, name: f.name, inShape: [...f.inShape], outShape: [...f.outShape], kernel: f.kernel, stride: f.stride, pad: f.pad,
    weights: put(f.weights, 'int8', [f.outShape[2], f.kernel, f.kernel, f.inShape[2]]),
    ...affine(f), lif: lif(f.lif),
  };
  const hidden = model.hidden.map((l: HiddenLayer) => ({
    op: l.kind, name: l.name, ...(HIDDEN_CODECS[l.kind] as HiddenCodec<HiddenLayer>).write(l, put), ...affine(l), shortcut: l.shortcut, lif: lif(l.lif),
  }));
  const h = model.head;
  const head = {
    op: HEAD_OPS[0], inFeatures: h.inFeatures, outFeatures: h.outFeatures,
    weight: put(h.weight, 'float32', [h.outFeatures, h.inFeatures]), bias: put(h.bias, 'float32', [h.outFeatures]),
  };
  const producer = opts.producer ?? (typeof model.meta.producer === 'string' ? model.meta.producer : 'sei-edge');
  const header = {
    name: model.name, version: model.version, T: model.T, input: [...model.input], labels: [...model.labels],
    producer: checkString(producer, 'producer'),
    createdAt: checkString(opts.createdAt ?? new Date().toISOString(), 'createdAt'),
    meta: model.meta, first, hidden, head,
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  if (json.length > MAX_HEADER_BYTES) fail('header', `at most ${MAX_HEADER_BYTES} bytes of JSON`, `${json.length} bytes`);
  if (dataLength > MAX_DATA_BYTES) fail('dataLength', `at most ${MAX_DATA_BYTES} bytes of tensors`, `${dataLength} bytes`);

  const dataStart = align(PREFIX_BYTES + json.length);
  const dataEnd = dataStart + dataLength;
  const out = new Uint8Array(dataEnd + CHECKSUM_BYTES + (key ? SIGNATURE_BLOCK_BYTES : 0));
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint16(4, FORMAT_VERSION, true);
  view.setUint16(6, key ? FLAG_SIGNED : 0, true);
  view.setUint32(8, json.length, true);
  view.setUint32(12, dataLength, true);
  out.set(json, PREFIX_BYTES);
  for (const s of sections) out.set(s.bytes, dataStart + s.offset);
  const digest = sha256(out.subarray(0, dataEnd));
  out.set(digest, dataEnd);
  if (key) {
    const at = dataEnd + CHECKSUM_BYTES;
    out.set(SIGNATURE_TAG, at);
    out.set(keyId(key), at + SIGNATURE_TAG.length);
    out.set(signDigest(digest, key), at + SIGNATURE_TAG.length + KEY_ID_BYTES);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- reading

interface Envelope {
  readonly formatVersion: number;
  readonly headerLength: number;
  readonly dataStart: number;
  readonly dataLength: number;
  readonly checksum: Uint8Array;
  readonly signature: { readonly keyId: Uint8Array; readonly bytes: Uint8Array } | null;
}

/** Everything outside the header: prefix, lengths, checksum, signature block. Nothing inside is parsed yet. */
function parseEnvelope(bytes: Uint8Array): Envelope {
  if (!(bytes instanceof Uint8Array)) fail('file', 'a Uint8Array', show(bytes));
  if (bytes.length < PREFIX_BYTES) fail('file.length', `at least ${PREFIX_BYTES} bytes (the fixed prefix)`, `${bytes.length} bytes (truncated)`);
  if (!equalBytes(bytes.subarray(0, 4), MAGIC)) fail('magic', '"BWSN" (42 57 53 4e)', hex(bytes.subarray(0, 4)).replace(/(..)(?!$)/g, '$1 '));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const formatVersion = view.getUint16(4, true);
  if (formatVersion > FORMAT_VERSION) {
    throw new FormatError(`formatVersion: expected at most ${FORMAT_VERSION} (this reader), got ${formatVersion}: the file needs a newer sei-edge runtime`, 'formatVersion');
  }
  if (formatVersion < 1) fail('formatVersion', `1..${FORMAT_VERSION}`, String(formatVersion));
  const flags = view.getUint16(6, true);
  if ((flags & ~FLAG_SIGNED) !== 0) fail('flags', `only bit 0 (signed) set, 0x0000 or 0x0001`, `0x${flags.toString(16).padStart(4, '0')}`);
  const headerLength = view.getUint32(8, true);
  const maxHeader = Math.min(MAX_HEADER_BYTES, bytes.length - PREFIX_BYTES);
  if (headerLength < 2 || headerLength > maxHeader) fail('headerLength', `2..${maxHeader} bytes (file of ${bytes.length} bytes)`, String(headerLength));
  const dataLength = view.getUint32(12, true);
  if (dataLength % ALIGN !== 0) fail('dataLength', `a multiple of ${ALIGN}`, String(dataLength));
  const dataStart = align(PREFIX_BYTES + headerLength);
  const dataEnd = dataStart + dataLength;
  const signed = (flags & FLAG_SIGNED) !== 0;
  const total = dataEnd + CHECKSUM_BYTES + (signed ? SIGNATURE_BLOCK_BYTES : 0);
  if (bytes.length !== total) {
    const parts = `header ${headerLength}, data ${dataLength}, checksum ${CHECKSUM_BYTES}${signed ? `, signature ${SIGNATURE_BLOCK_BYTES}` : ''}`;
    fail('file.length', `${total} bytes (${parts})`, `${bytes.length} bytes (${bytes.length < total ? 'truncated' : 'trailing bytes'})`);
  }
  const checksum = bytes.subarray(dataEnd, dataEnd + CHECKSUM_BYTES);
  const actual = sha256(bytes.subarray(0, dataEnd));
  if (!equalBytes(actual, checksum)) fail('checksum', `SHA-256 ${hex(actual)} of the preceding ${dataEnd} bytes`, `${hex(checksum)} stored (corrupted or tampered)`);
  let signature: Envelope['signature'] = null;
  if (signed) {
    const at = dataEnd + CHECKSUM_BYTES;
    const tag = bytes.subarray(at, at + SIGNATURE_TAG.length);
    if (!equalBytes(tag, SIGNATURE_TAG)) fail('signature.algorithm', '"ED25" (Ed25519)', JSON.stringify(Buffer.from(tag).toString('latin1')));
    const k = at + SIGNATURE_TAG.length;
    signature = { keyId: copyBytes(bytes, k, k + KEY_ID_BYTES), bytes: copyBytes(bytes, k + KEY_ID_BYTES, k + KEY_ID_BYTES + SIGNATURE_BYTES) };
  }
  return { formatVersion, headerLength, dataStart, dataLength, checksum: copyBytes(checksum), signature };
}

function checkSignature(env: Envelope, opts: ReadOptions): void {
  const require = opts.requireSignature === true;
  const keys = (opts.trustedKeys ?? []).map((k, i) => publicKey(k, `trustedKeys[${i}]`));
  if (require && keys.length === 0) throw new ConfigError('trustedKeys: expected at least one key when requireSignature is set, got none', 'trustedKeys');
  if (!env.signature) {
    if (require) fail('signature', 'a signed file (requireSignature is set)', 'an unsigned file');
    return;
  }
  // Without trusted keys a signature can be carried but not checked; the checksum still holds.
  if (keys.length === 0) return;
  const id = env.signature.keyId;
  const key = keys.find((k) => equalBytes(keyId(k), id));
  if (!key) fail('signature.keyId', `one of the trusted keys (${keys.map((k) => hex(keyId(k)).slice(0, 16)).join(', ')})`, `${hex(id).slice(0, 16)} (untrusted key)`);
  if (!verifyDigest(env.checksum, env.signature.bytes, key)) {
    fail('signature', `a valid Ed25519 signature by key ${hex(id).slice(0, 16)}`, 'a signature that does not verify (tampered)');
  }
}

function parseHeaderJson(bytes: Uint8Array, env: Envelope): Record<string, unknown> {
  const end = PREFIX_BYTES + env.headerLength;
  for (let i = end; i < env.dataStart; i++) if (bytes[i] !== 0) fail('header.padding', `zero bytes ${end}..${env.dataStart - 1}`, `byte ${i} = ${bytes[i]}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(PREFIX_BYTES, end));
  } catch {
    return fail('header', 'UTF-8 text', 'invalid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    return fail('header', 'valid JSON', `${(err as Error).message}`);
  }
  if (!isRecord(header)) fail('header', 'a JSON object', show(header));
  return header;
}

/** Refuses keys a version-1 reader does not know: any addition to the schema bumps the format version. */
function onlyKeys(obj: Record<string, unknown>, allowed: readonly string[], field: string): void {
  for (const key of Object.keys(obj)) if (!allowed.includes(key)) fail(`${field}.${key}`, `one of the fields ${allowed.join(', ')} (format version ${FORMAT_VERSION})`, 'an unknown field');
}

function record(v: unknown, field: string): Record<string, unknown> {
  if (!isRecord(v)) fail(field, 'an object', show(v));
  return v;
}

const BYTES_PER: Record<DType, number> = { int8: 1, float32: 4, bits: 4 };

/** Resolves header tensor references into typed arrays, checking bounds, alignment, dtype, length and overlap. */
class TensorReader {
  private readonly regions: { start: number; end: number; field: string }[] = [];
  private readonly shapes: { field: string; shape: readonly number[]; expected: () => number[] }[] = [];
  constructor(private readonly data: Uint8Array) {}

  read(ref: unknown, field: string, dtype: 'int8', expected: () => number[]): Int8Array;
  read(ref: unknown, field: string, dtype: 'bits', expected: () => number[]): Uint32Array;
  read(ref: unknown, field: string, dtype: 'float32', expected: () => number[]): Float32Array;
  read(ref: unknown, field: string, dtype: DType, expected: () => number[]): Int8Array | Uint32Array | Float32Array {
    const r = record(ref, field);
    onlyKeys(r, ['offset', 'length', 'dtype', 'shape'], field);
    if (typeof r.dtype !== 'string' || !DTYPES.includes(r.dtype as DType)) fail(`${field}.dtype`, `one of ${DTYPES.join(', ')}`, show(r.dtype));
    if (r.dtype !== dtype) fail(`${field}.dtype`, JSON.stringify(dtype), show(r.dtype));
    const shape = r.shape;
    const rank = dtype === 'bits' ? '2' : '1..4';
    if (!Array.isArray(shape) || shape.length < 1 || shape.length > 4 || (dtype === 'bits' && shape.length !== 2)) fail(`${field}.shape`, `an array of ${rank} dims`, show(shape));
    shape.forEach((d, i) => checkInt(d, `${field}.shape[${i}]`, 1, LIMITS.maxElements));
    const dims = shape as number[];
    const elements = dtype === 'bits' ? checkElements([dims[0]!, rowWords(dims[1]!)], `${field}.shape`) : checkElements(dims, `${field}.shape`);
    const length = elements * BYTES_PER[dtype];
    const what = dtype === 'bits' ? `${dims[0]} rows of ${rowWords(dims[1]!)} u32 words` : `${elements} × ${dtype}`;
    checkInt(r.length, `${field}.length`, 0, Number.MAX_SAFE_INTEGER);
    if (r.length !== length) fail(`${field}.length`, `${length} bytes (${what} for shape [${dims.join(', ')}])`, String(r.length));
    const offset = checkInt(r.offset, `${field}.offset`, 0, Number.MAX_SAFE_INTEGER);
    if (offset % ALIGN !== 0) fail(`${field}.offset`, `a multiple of ${ALIGN} (aligned)`, String(offset));
    if (offset + length > this.data.length) fail(`${field}.offset`, `offset + length <= ${this.data.length} (the data area)`, `${offset} + ${length} (out of bounds)`);
    this.regions.push({ start: offset, end: offset + length, field });
    this.shapes.push({ field: `${field}.shape`, shape: dims, expected });
    const bytes = copyBytes(this.data, offset, offset + length);
    if (!LITTLE_ENDIAN_HOST && dtype !== 'int8') swap32(bytes);
    if (dtype === 'int8') return new Int8Array(bytes.buffer);
    return dtype === 'bits' ? new Uint32Array(bytes.buffer) : new Float32Array(bytes.buffer);
  }

  /** After the model validated: sections must not overlap, the rest of the data area is zero, shapes match the layers. */
  finish(): void {
    const sorted = [...this.regions].sort((a, b) => a.start - b.start);
    let covered = 0;
    sorted.forEach((r, i) => {
      const prev = sorted[i - 1];
      if (prev && r.start < prev.end) fail(`${r.field}.offset`, `>= ${prev.end} (the end of ${prev.field}): sections must not overlap`, String(r.start));
      for (let i = covered; i < r.start; i++) if (this.data[i] !== 0) fail('data', `zero bytes between tensor sections`, `byte ${i} of the data area = ${this.data[i]}`);
      covered = r.end;
    });
    for (let i = covered; i < this.data.length; i++) if (this.data[i] !== 0) fail('data', `zero bytes after the last tensor section`, `byte ${i} of the data area = ${this.data[i]}`);
    for (const s of this.shapes) {
      const want = s.expected();
      if (want.length !== s.shape.length || want.some((d, i) => d !== s.shape[i])) fail(s.field, `[${want.join(', ')}]`, `[${s.shape.join(', ')}]`);
    }
  }
}

const TOP_KEYS = ['name', 'version', 'T', 'input', 'labels', 'producer', 'createdAt', 'meta', 'first', 'hidden', 'head'];

function checkOp(layer: Record<string, unknown>, field: string, ops: readonly string[]): string {
  if (typeof layer.op !== 'string' || !ops.includes(layer.op)) {
    fail(`${field}.op`, `one of ${ops.join(', ')} (format version ${FORMAT_VERSION})`, `${show(layer.op)} (unknown op)`);
  }
  return layer.op;
}

function lifFrom(v: unknown, field: string, t: TensorReader, channels: () => number): Lif {
  const l = record(v, field);
  onlyKeys(l, ['beta', 'theta'], field);
  return { beta: l.beta as number, theta: t.read(l.theta, `${field}.theta`, 'float32', () => [channels()]) };
}

/** Output channels of a header layer with an outShape, once validateModel has passed. */
const cout = (l: Record<string, unknown>) => () => (l.outShape as number[])[2]!;

/**
 * Each hidden op's own header fields (its shapes and its weight tensor; name, affine, shortcut and LIF are common
 * to all): written from a layer, and read back with the layer's channel count. Read scalars pass through unchecked
 * (validateModel checks them); expected tensor shapes are evaluated only after it.
 */
interface HiddenCodec<L extends HiddenLayer> {
  readonly keys: readonly string[];
  write(layer: L, put: Put): Record<string, unknown>;
  read(l: Record<string, unknown>, field: string, t: TensorReader): { readonly fields: Record<string, unknown>; readonly channels: () => number };
}

const HIDDEN_CODECS: { readonly [K in HiddenLayer['kind']]: HiddenCodec<Extract<HiddenLayer, { kind: K }>> } = {
  bconv: {
    keys: ['inShape', 'outShape', 'kernel', 'stride', 'pad'],
    write: (l: BinaryConvLayer, put) => ({
      inShape: [...l.inShape], outShape: [...l.outShape], kernel: l.kernel, stride: l.stride, pad: l.pad,
      weightBits: put(l.weightBits, 'bits', [l.outShape[2], l.kernel * l.kernel * l.inShape[2]]),
    }),
    read: (l, field, t) => {
      const k = () => l.kernel as number;
      return {
        fields: {
          inShape: l.inShape, outShape: l.outShape, kernel: l.kernel, stride: l.stride, pad: l.pad,
          weightBits: t.read(l.weightBits, `${field}.weightBits`, 'bits', () => [cout(l)(), k() * k() * (l.inShape as number[])[2]!]),
        },
        channels: cout(l),
      };
    },
  },
  blinear: {
    keys: ['inFeatures', 'outFeatures'],
    write: (l: BinaryLinearLayer, put) => ({
      inFeatures: l.inFeatures, outFeatures: l.outFeatures, weightBits: put(l.weightBits, 'bits', [l.outFeatures, l.inFeatures]),
    }),
    read: (l, field, t) => {
      const outF = () => l.outFeatures as number;
      return {
        fields: {
          inFeatures: l.inFeatures, outFeatures: l.outFeatures,
          weightBits: t.read(l.weightBits, `${field}.weightBits`, 'bits', () => [outF(), l.inFeatures as number]),
        },
        channels: outF,
      };
    },
  },
};

/** Header JSON + data area → model. Scalars are passed through and checked by validateModel afterwards. */
function modelFromHeader(h: Record<string, unknown>, t: TensorReader): BwsnnModel {
  onlyKeys(h, TOP_KEYS, 'header');
  const f = record(h.first, 'header.first');
  checkOp(f, 'header.first', FIRST_OPS);
  onlyKeys(f, ['op', 'name', 'inShape', 'outShape', 'kernel', 'stride', 'pad', 'weights', 'scale', 'bias', 'lif'], 'header.first');
  // Expected shapes are only evaluated after validateModel, when every scalar is known to be sane.
  const first = {
    kind: 'conv_int8', name: f.name, inShape: f.inShape, outShape: f.outShape, kernel: f.kernel, stride: f.stride, pad: f.pad,
    weights: t.read(f.weights, 'header.first.weights', 'int8', () => {
      const k = f.kernel as number;
      return [cout(f)(), k, k, (f.inShape as number[])[2]!];
    }),
    scale: t.read(f.scale, 'header.first.scale', 'float32', () => [cout(f)()]),
    bias: t.read(f.bias, 'header.first.bias', 'float32', () => [cout(f)()]),
    lif: lifFrom(f.lif, 'header.first.lif', t, cout(f)),
  } as unknown as ConvInt8Layer;

  if (!Array.isArray(h.hidden) || h.hidden.length > LIMITS.maxHidden) fail('header.hidden', `an array of at most ${LIMITS.maxHidden} layers`, show(h.hidden));
  const hidden = h.hidden.map((v: unknown, i: number): HiddenLayer => {
    const field = `header.hidden[${i}]`;
    const l = record(v, field);
    const op = checkOp(l, field, HIDDEN_OPS) as HiddenLayer['kind'];
    const codec = HIDDEN_CODECS[op];
    onlyKeys(l, ['op', 'name', 'weightBits', 'scale', 'bias', 'shortcut', 'lif', ...codec.keys], field);
    const own = codec.read(l, field, t);
    return {
      kind: op, name: l.name, ...own.fields,
      scale: t.read(l.scale, `${field}.scale`, 'float32', () => [own.channels()]),
      bias: t.read(l.bias, `${field}.bias`, 'float32', () => [own.channels()]),
      shortcut: l.shortcut, lif: lifFrom(l.lif, `${field}.lif`, t, own.channels),
    } as unknown as HiddenLayer;
  });

  const hd = record(h.head, 'header.head');
  checkOp(hd, 'header.head', HEAD_OPS);
  onlyKeys(hd, ['op', 'inFeatures', 'outFeatures', 'weight', 'bias'], 'header.head');
  const head = {
    inFeatures: hd.inFeatures, outFeatures: hd.outFeatures,
    weight: t.read(hd.weight, 'header.head.weight', 'float32', () => [hd.outFeatures as number, hd.inFeatures as number]),
    bias: t.read(hd.bias, 'header.head.bias', 'float32', () => [hd.outFeatures as number]),
  };
  return { name: h.name, version: h.version, T: h.T, input: h.input, labels: h.labels, first, hidden, head, meta: h.meta } as unknown as BwsnnModel;
}

function readUnchecked(bytes: Uint8Array, opts: ReadOptions): BwsnnModel {
  const env = parseEnvelope(bytes);
  checkSignature(env, opts);
  const header = parseHeaderJson(bytes, env);
  const tensors = new TensorReader(bytes.subarray(env.dataStart, env.dataStart + env.dataLength));
  const model = modelFromHeader(header, tensors);
  validateModel(model, 'header.');
  checkString(header.producer, 'header.producer');
  checkString(header.createdAt, 'header.createdAt');
  tensors.finish();
  return model;
}

/**
 * Parses and fully validates a .bwsnn file. Throws FormatError (field set, expected vs actual in the message)
 * on anything malformed, and ConfigError on unusable trustedKeys.
 */
export function readBwsnn(bytes: Uint8Array, opts: ReadOptions = {}): BwsnnModel {
  return guarded(() => readUnchecked(bytes, opts));
}

/** Reads a .bwsnn file from disk; see readBwsnn. */
export function readBwsnnFile(path: string, opts: ReadOptions = {}): BwsnnModel {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new FormatError(`path: expected a readable .bwsnn file, got ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 'path');
  }
  return readBwsnn(bytes, opts);
}

/**
 * Last line of defence: a bug that lets a TypeError or RangeError through must still surface as a refusal of
 * the file, never as a crash of the caller. Field `internal` marks these so tests can tell them apart.
 */
function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SeiError) throw err;
    throw new FormatError(`file: expected a readable .bwsnn file, got an unexpected ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} while parsing`, 'internal');
  }
}

// ---------------------------------------------------------------------------------------------- inspecting

export interface LayerSummary {
  readonly op: string;
  readonly name: string;
  /** [h, w, c] for conv layers; [features] for linear layers and the head. */
  readonly inShape: readonly number[];
  readonly outShape: readonly number[];
  readonly shortcut?: string;
  /** Bytes of this layer's tensor sections. */
  readonly bytes: number;
}

export interface BwsnnSummary {
  readonly formatVersion: number;
  readonly name: string;
  readonly version: number;
  readonly T: number;
  readonly input: readonly number[];
  readonly labels: readonly string[];
  readonly producer: string;
  readonly createdAt: string;
  readonly layers: readonly LayerSummary[];
  readonly sizes: { readonly file: number; readonly header: number; readonly data: number };
  readonly signed: boolean;
  /** Hex key id (SHA-256 of the raw Ed25519 public key) of the signer, null when unsigned. */
  readonly keyId: string | null;
  /** Hex SHA-256 stored in the file (verified). */
  readonly checksum: string;
}

function tensorBytes(layer: Record<string, unknown>): number {
  let n = 0;
  for (const v of Object.values(layer)) {
    if (isRecord(v) && typeof v.length === 'number' && typeof v.dtype === 'string') n += v.length;
    else if (isRecord(v)) n += tensorBytes(v);
  }
  return n;
}

function layerSummary(v: unknown, field: string, ops: readonly string[]): LayerSummary {
  const l = record(v, field);
  const op = checkOp(l, field, ops) as Op;
  const shape = (s: unknown, f: string) => {
    if (!Array.isArray(s) || s.length !== 3) fail(f, '[height, width, channels]', show(s));
    return s.map((d, i) => checkInt(d, `${f}[${i}]`, 1, LIMITS.maxElements));
  };
  const conv = OPS[op].shape === 'map';
  return {
    op,
    name: OPS[op].role === 'head' ? 'head' : checkString(l.name, `${field}.name`),
    inShape: conv ? shape(l.inShape, `${field}.inShape`) : [checkInt(l.inFeatures, `${field}.inFeatures`, 1, LIMITS.maxElements)],
    outShape: conv ? shape(l.outShape, `${field}.outShape`) : [checkInt(l.outFeatures, `${field}.outFeatures`, 1, LIMITS.maxElements)],
    ...(typeof l.shortcut === 'string' ? { shortcut: l.shortcut } : {}),
    bytes: tensorBytes(l),
  };
}

/** Header summary without building tensors: for `sei` commands and the OTA to look before they load. */
export function inspectBwsnn(bytes: Uint8Array): BwsnnSummary {
  return guarded(() => {
    const env = parseEnvelope(bytes);
    const h = parseHeaderJson(bytes, env);
    if (!Array.isArray(h.hidden)) fail('header.hidden', 'an array', show(h.hidden));
    if (!Array.isArray(h.labels)) fail('header.labels', 'an array', show(h.labels));
    if (!Array.isArray(h.input)) fail('header.input', '[height, width, channels]', show(h.input));
    return {
      formatVersion: env.formatVersion,
      name: checkString(h.name, 'header.name'),
      version: checkInt(h.version, 'header.version', 0, Number.MAX_SAFE_INTEGER),
      T: checkInt(h.T, 'header.T', 1, LIMITS.maxT),
      input: h.input.map((d, i) => checkInt(d, `header.input[${i}]`, 1, LIMITS.maxElements)),
      labels: h.labels.map((l, i) => checkString(l, `header.labels[${i}]`)),
      producer: checkString(h.producer, 'header.producer'),
      createdAt: checkString(h.createdAt, 'header.createdAt'),
      layers: [
        layerSummary(h.first, 'header.first', FIRST_OPS),
        ...h.hidden.map((l, i) => layerSummary(l, `header.hidden[${i}]`, HIDDEN_OPS)),
        layerSummary(h.head, 'header.head', HEAD_OPS),
      ],
      sizes: { file: bytes.length, header: env.headerLength, data: env.dataLength },
      signed: env.signature !== null,
      keyId: env.signature ? hex(env.signature.keyId) : null,
      checksum: hex(env.checksum),
    };
  });
}
