/**
 * The .bwsnn container: fixed prefix, header, tensor data, SHA-256, optional Ed25519 signature block. Version 1:
 * JSON header, 16-byte aligned sections the header references. Version 2 (what the writer writes by default):
 * raw-deflate compressed JSON header, tensors back to back in the narrowest exact encoding (./tensors.ts). The
 * byte layout, header schema and refusals are specified in ./README.md; this file and that one change together.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { ConfigError, FormatError, SeiError, show } from '../errors.js';
import type { BinaryConvLayer, BinaryLinearLayer, BwsnnModel, ConvInt8Layer, HiddenLayer, Lif } from './model.js';
import { FIRST_OPS, HEAD_OPS, HIDDEN_OPS, OPS } from './ops.js';
import type { Op } from './ops.js';
import type { BwsnnSummary, LayerSummary } from './summary.js';
import { KEY_ID_BYTES, SIGNATURE_BYTES, keyId, privateKey, publicKey, signDigest, verifyDigest } from './sign.js';
import { AlignedReader, AlignedWriter, PackedReader, PackedWriter, copyBytes } from './tensors.js';
import type { TensorKind, TensorReader, TensorWriter } from './tensors.js';
import { LIMITS, checkInt, checkShape3, checkShapes, checkString, fail, isRecord, validateModel } from './validate.js';

export type { DType, TensorRef } from './tensors.js';

export const MAGIC = Uint8Array.of(0x42, 0x57, 0x53, 0x4e); // "BWSN"
/** The newest format version: what this reader reads at most and what the writer writes by default. */
export const FORMAT_VERSION = 2;
/** magic (4) + formatVersion u16 + flags u16 + headerLength u32 + dataLength u32. */
export const PREFIX_BYTES = 16;
export const CHECKSUM_BYTES = 32;
/** Flag bit 0: a signature block follows the checksum. */
export const FLAG_SIGNED = 1;
export const SIGNATURE_TAG = Uint8Array.of(0x45, 0x44, 0x32, 0x35); // "ED25"
export const SIGNATURE_BLOCK_BYTES = SIGNATURE_TAG.length + KEY_ID_BYTES + SIGNATURE_BYTES;
/** Bytes of header JSON (version 2: both compressed and inflated). */
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;
/** Version 1 aligns the data area and every section in it to 16 bytes; version 2 packs them. */
const ALIGN_V1 = 16;
const MAX_DATA_BYTES = 0xffffffff - (ALIGN_V1 - 1);

export interface WriteOptions {
  /** Ed25519 private key (KeyObject or PEM). When given, a signature block is appended. Default: unsigned. */
  readonly signingKey?: KeyObject | string;
  /** Header `producer`. Default: `meta.producer` when it is a string, else "sei-edge". */
  readonly producer?: string;
  /** Header `createdAt` (ISO 8601). Default: now. Fix it to make a write byte-for-byte reproducible. */
  readonly createdAt?: string;
  /**
   * 2 (default) or 1, for a runtime that reads only version 1. Either stores the model exactly: version 2 picks
   * each tensor's narrowest exact encoding, so its size depends on the values (see compactModel).
   */
  readonly formatVersion?: 1 | 2;
}

export interface ReadOptions {
  /** Public keys (KeyObject or PEM; a private key stands for its public key) a signature may come from. */
  readonly trustedKeys?: readonly (KeyObject | string)[];
  /** Refuse unsigned files. Needs trustedKeys. Default false. */
  readonly requireSignature?: boolean;
}

const alignV1 = (n: number) => Math.ceil(n / ALIGN_V1) * ALIGN_V1;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------- writing

/** Appends a tensor to the data area; returns its header entry. */
type Put = (array: Int8Array | Uint32Array | Float32Array, kind: TensorKind, dims: number[]) => unknown;

/** Serialises a model (validated first: an invalid model is never written). */
export function writeBwsnn(model: BwsnnModel, opts: WriteOptions = {}): Uint8Array {
  validateModel(model);
  const version = opts.formatVersion ?? FORMAT_VERSION;
  if (version !== 1 && version !== 2)
    throw new ConfigError(`formatVersion: expected 1 or 2, got ${show(version)}`, 'formatVersion');
  const key = opts.signingKey === undefined ? null : privateKey(opts.signingKey);
  const tensors: TensorWriter = version === 1 ? new AlignedWriter() : new PackedWriter();
  const put: Put = (array, kind, dims) => tensors.put(array, kind, dims);
  const lif = (l: Lif) => ({ beta: l.beta, theta: put(l.theta, 'float', [l.theta.length]) });
  const affine = (l: { scale: Float32Array; bias: Float32Array }) => ({
    scale: put(l.scale, 'float', [l.scale.length]),
    bias: put(l.bias, 'float', [l.bias.length]),
  });
  const f: ConvInt8Layer = model.first;
  const first = {
    op: f.kind,
    name: f.name,
    inShape: [...f.inShape],
    outShape: [...f.outShape],
    kernel: f.kernel,
    stride: f.stride,
    pad: f.pad,
    weights: put(f.weights, 'int8', [f.outShape[2], f.kernel, f.kernel, f.inShape[2]]),
    ...affine(f),
    lif: lif(f.lif),
  };
  const hidden = model.hidden.map((l: HiddenLayer) => ({
    op: l.kind,
    name: l.name,
    ...(HIDDEN_CODECS[l.kind] as HiddenCodec<HiddenLayer>).write(l, put),
    ...affine(l),
    shortcut: l.shortcut,
    lif: lif(l.lif),
  }));
  const h = model.head;
  const head = {
    op: HEAD_OPS[0],
    inFeatures: h.inFeatures,
    outFeatures: h.outFeatures,
    weight: put(h.weight, 'float', [h.outFeatures, h.inFeatures]),
    bias: put(h.bias, 'float', [h.outFeatures]),
  };
  const producer = opts.producer ?? (typeof model.meta.producer === 'string' ? model.meta.producer : 'sei-edge');
  const header = {
    name: model.name,
    version: model.version,
    T: model.T,
    input: [...model.input],
    labels: [...model.labels],
    producer: checkString(producer, 'producer'),
    createdAt: checkString(opts.createdAt ?? new Date().toISOString(), 'createdAt'),
    // `fit` is a version-2 field: a version-1 reader refuses unknown header fields, so there it rides in meta.
    meta: version === 1 && model.fit ? { ...model.meta, fit: model.fit } : model.meta,
    ...(version === 2 && model.fit ? { fit: model.fit } : {}),
    first,
    hidden,
    head,
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  if (json.length > MAX_HEADER_BYTES)
    fail('header', `at most ${MAX_HEADER_BYTES} bytes of JSON`, `${json.length} bytes`);
  const stored = version === 1 ? json : new Uint8Array(deflateRawSync(json, { level: 9 }));
  const data = tensors.data();
  if (data.length > MAX_DATA_BYTES)
    fail('dataLength', `at most ${MAX_DATA_BYTES} bytes of tensors`, `${data.length} bytes`);

  const dataStart = version === 1 ? alignV1(PREFIX_BYTES + stored.length) : PREFIX_BYTES + stored.length;
  const dataEnd = dataStart + data.length;
  const out = new Uint8Array(dataEnd + CHECKSUM_BYTES + (key ? SIGNATURE_BLOCK_BYTES : 0));
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint16(4, version, true);
  view.setUint16(6, key ? FLAG_SIGNED : 0, true);
  view.setUint32(8, stored.length, true);
  view.setUint32(12, data.length, true);
  out.set(stored, PREFIX_BYTES);
  out.set(data, dataStart);
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
  if (bytes.length < PREFIX_BYTES)
    fail('file.length', `at least ${PREFIX_BYTES} bytes (the fixed prefix)`, `${bytes.length} bytes (truncated)`);
  if (!equalBytes(bytes.subarray(0, 4), MAGIC))
    fail('magic', '"BWSN" (42 57 53 4e)', hex(bytes.subarray(0, 4)).replace(/(..)(?!$)/g, '$1 '));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const formatVersion = view.getUint16(4, true);
  if (formatVersion > FORMAT_VERSION) {
    throw new FormatError(
      `formatVersion: expected at most ${FORMAT_VERSION} (this reader), got ${formatVersion}: the file needs a newer sei-edge runtime`,
      'formatVersion',
    );
  }
  if (formatVersion < 1) fail('formatVersion', `1..${FORMAT_VERSION}`, String(formatVersion));
  const flags = view.getUint16(6, true);
  if ((flags & ~FLAG_SIGNED) !== 0)
    fail('flags', `only bit 0 (signed) set, 0x0000 or 0x0001`, `0x${flags.toString(16).padStart(4, '0')}`);
  const headerLength = view.getUint32(8, true);
  const maxHeader = Math.min(MAX_HEADER_BYTES, bytes.length - PREFIX_BYTES);
  if (headerLength < 2 || headerLength > maxHeader)
    fail('headerLength', `2..${maxHeader} bytes (file of ${bytes.length} bytes)`, String(headerLength));
  const dataLength = view.getUint32(12, true);
  if (formatVersion === 1 && dataLength % ALIGN_V1 !== 0)
    fail('dataLength', `a multiple of ${ALIGN_V1} (format version 1)`, String(dataLength));
  const dataStart = formatVersion === 1 ? alignV1(PREFIX_BYTES + headerLength) : PREFIX_BYTES + headerLength;
  const dataEnd = dataStart + dataLength;
  const signed = (flags & FLAG_SIGNED) !== 0;
  const total = dataEnd + CHECKSUM_BYTES + (signed ? SIGNATURE_BLOCK_BYTES : 0);
  if (bytes.length !== total) {
    const parts = `header ${headerLength}, data ${dataLength}, checksum ${CHECKSUM_BYTES}${signed ? `, signature ${SIGNATURE_BLOCK_BYTES}` : ''}`;
    fail(
      'file.length',
      `${total} bytes (${parts})`,
      `${bytes.length} bytes (${bytes.length < total ? 'truncated' : 'trailing bytes'})`,
    );
  }
  const checksum = bytes.subarray(dataEnd, dataEnd + CHECKSUM_BYTES);
  const actual = sha256(bytes.subarray(0, dataEnd));
  if (!equalBytes(actual, checksum))
    fail(
      'checksum',
      `SHA-256 ${hex(actual)} of the preceding ${dataEnd} bytes`,
      `${hex(checksum)} stored (corrupted or tampered)`,
    );
  let signature: Envelope['signature'] = null;
  if (signed) {
    const at = dataEnd + CHECKSUM_BYTES;
    const tag = bytes.subarray(at, at + SIGNATURE_TAG.length);
    if (!equalBytes(tag, SIGNATURE_TAG))
      fail('signature.algorithm', '"ED25" (Ed25519)', JSON.stringify(Buffer.from(tag).toString('latin1')));
    const k = at + SIGNATURE_TAG.length;
    signature = {
      keyId: copyBytes(bytes, k, k + KEY_ID_BYTES),
      bytes: copyBytes(bytes, k + KEY_ID_BYTES, k + KEY_ID_BYTES + SIGNATURE_BYTES),
    };
  }
  return { formatVersion, headerLength, dataStart, dataLength, checksum: copyBytes(checksum), signature };
}

function checkSignature(env: Envelope, opts: ReadOptions): void {
  const require = opts.requireSignature === true;
  const keys = (opts.trustedKeys ?? []).map((k, i) => publicKey(k, `trustedKeys[${i}]`));
  if (require && keys.length === 0)
    throw new ConfigError(
      'trustedKeys: expected at least one key when requireSignature is set, got none',
      'trustedKeys',
    );
  if (!env.signature) {
    if (require) fail('signature', 'a signed file (requireSignature is set)', 'an unsigned file');
    return;
  }
  // Without trusted keys a signature can be carried but not checked; the checksum still holds.
  if (keys.length === 0) return;
  const id = env.signature.keyId;
  const key = keys.find((k) => equalBytes(keyId(k), id));
  if (!key)
    fail(
      'signature.keyId',
      `one of the trusted keys (${keys.map((k) => hex(keyId(k)).slice(0, 16)).join(', ')})`,
      `${hex(id).slice(0, 16)} (untrusted key)`,
    );
  if (!verifyDigest(env.checksum, env.signature.bytes, key)) {
    fail(
      'signature',
      `a valid Ed25519 signature by key ${hex(id).slice(0, 16)}`,
      'a signature that does not verify (tampered)',
    );
  }
}

/** The header JSON: as stored (version 1, zero padding up to the aligned data area) or raw-deflate compressed (version 2). */
function parseHeaderJson(bytes: Uint8Array, env: Envelope): Record<string, unknown> {
  const end = PREFIX_BYTES + env.headerLength;
  for (let i = end; i < env.dataStart; i++)
    if (bytes[i] !== 0) fail('header.padding', `zero bytes ${end}..${env.dataStart - 1}`, `byte ${i} = ${bytes[i]}`);
  let json = bytes.subarray(PREFIX_BYTES, end);
  if (env.formatVersion >= 2) {
    try {
      json = inflateRawSync(json, { maxOutputLength: MAX_HEADER_BYTES });
    } catch (err) {
      return fail(
        'header',
        `raw-deflate compressed JSON of at most ${MAX_HEADER_BYTES} bytes (format version ${env.formatVersion})`,
        `bytes that do not inflate (${(err as Error).message})`,
      );
    }
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
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

/** Refuses keys the file's format version does not know: any addition to the schema bumps the format version. */
function onlyKeys(obj: Record<string, unknown>, allowed: readonly string[], field: string, version: number): void {
  for (const key of Object.keys(obj))
    if (!allowed.includes(key))
      fail(
        `${field}.${key}`,
        `one of the fields ${allowed.join(', ')} (format version ${version})`,
        'an unknown field',
      );
}

function record(v: unknown, field: string): Record<string, unknown> {
  if (!isRecord(v)) fail(field, 'an object', show(v));
  return v;
}

const TOP_KEYS_V1 = [
  'name',
  'version',
  'T',
  'input',
  'labels',
  'producer',
  'createdAt',
  'meta',
  'first',
  'hidden',
  'head',
];
const TOP_KEYS = [...TOP_KEYS_V1, 'fit'];

/** What reading a header needs besides the header: the tensor reader of the file's version, and that version. */
interface ReadContext {
  readonly t: TensorReader;
  readonly version: number;
}

function checkOp(layer: Record<string, unknown>, field: string, ops: readonly string[], version: number): string {
  if (typeof layer.op !== 'string' || !ops.includes(layer.op)) {
    fail(`${field}.op`, `one of ${ops.join(', ')} (format version ${version})`, `${show(layer.op)} (unknown op)`);
  }
  return layer.op;
}

function lifFrom(v: unknown, field: string, c: ReadContext, channels: () => number): Lif {
  const l = record(v, field);
  onlyKeys(l, ['beta', 'theta'], field, c.version);
  return { beta: l.beta as number, theta: c.t.read(l.theta, `${field}.theta`, 'float', () => [channels()]) };
}

/*
 * The shapes a layer's tensors must have, from the header's own scalars. Each scalar is checked as validateModel
 * checks it (same field, same bounds), since a version-2 reader needs the sizes before the model exists.
 */
const cout = (l: Record<string, unknown>, field: string) => () => checkShape3(l.outShape, `${field}.outShape`)[2];
const cin = (l: Record<string, unknown>, field: string) => checkShape3(l.inShape, `${field}.inShape`)[2];
const kernel = (l: Record<string, unknown>, field: string) =>
  checkInt(l.kernel, `${field}.kernel`, 1, LIMITS.maxKernel);
const features = (
  l: Record<string, unknown>,
  key: 'inFeatures' | 'outFeatures',
  field: string,
  max: number = LIMITS.maxElements,
) => checkInt(l[key], `${field}.${key}`, 1, max);

/**
 * Each hidden op's own header fields (its shapes and its weight tensor; name, affine, shortcut and LIF are common
 * to all): written from a layer, and read back with the layer's channel count. Read scalars pass through
 * (validateModel checks them); expected tensor shapes come from the thunks above.
 */
interface HiddenCodec<L extends HiddenLayer> {
  readonly keys: readonly string[];
  write(layer: L, put: Put): Record<string, unknown>;
  read(
    l: Record<string, unknown>,
    field: string,
    c: ReadContext,
  ): { readonly fields: Record<string, unknown>; readonly channels: () => number };
}

const HIDDEN_CODECS: { readonly [K in HiddenLayer['kind']]: HiddenCodec<Extract<HiddenLayer, { kind: K }>> } = {
  bconv: {
    keys: ['inShape', 'outShape', 'kernel', 'stride', 'pad'],
    write: (l: BinaryConvLayer, put) => ({
      inShape: [...l.inShape],
      outShape: [...l.outShape],
      kernel: l.kernel,
      stride: l.stride,
      pad: l.pad,
      weightBits: put(l.weightBits, 'bits', [l.outShape[2], l.kernel * l.kernel * l.inShape[2]]),
    }),
    read: (l, field, c) => ({
      fields: {
        inShape: l.inShape,
        outShape: l.outShape,
        kernel: l.kernel,
        stride: l.stride,
        pad: l.pad,
        weightBits: c.t.read(l.weightBits, `${field}.weightBits`, 'bits', () => [
          cout(l, field)(),
          kernel(l, field) ** 2 * cin(l, field),
        ]),
      },
      channels: cout(l, field),
    }),
  },
  blinear: {
    keys: ['inFeatures', 'outFeatures'],
    write: (l: BinaryLinearLayer, put) => ({
      inFeatures: l.inFeatures,
      outFeatures: l.outFeatures,
      weightBits: put(l.weightBits, 'bits', [l.outFeatures, l.inFeatures]),
    }),
    read: (l, field, c) => {
      const outF = () => features(l, 'outFeatures', field);
      return {
        fields: {
          inFeatures: l.inFeatures,
          outFeatures: l.outFeatures,
          weightBits: c.t.read(l.weightBits, `${field}.weightBits`, 'bits', () => [
            outF(),
            features(l, 'inFeatures', field),
          ]),
        },
        channels: outF,
      };
    },
  },
};

/**
 * Header JSON + data area → model. Scalars are passed through and checked by validateModel afterwards. Tensors
 * are read in the order the writer puts them (first: weights, scale, bias, theta; each hidden layer: weightBits,
 * scale, bias, theta; head: weight, bias), the order a version-2 data area holds them in.
 */
function modelFromHeader(h: Record<string, unknown>, c: ReadContext): BwsnnModel {
  const { t, version } = c;
  onlyKeys(h, version === 1 ? TOP_KEYS_V1 : TOP_KEYS, 'header', version);
  const field = 'header.first';
  const f = record(h.first, field);
  checkOp(f, field, FIRST_OPS, version);
  onlyKeys(
    f,
    ['op', 'name', 'inShape', 'outShape', 'kernel', 'stride', 'pad', 'weights', 'scale', 'bias', 'lif'],
    field,
    version,
  );
  const first = {
    kind: 'conv_int8',
    name: f.name,
    inShape: f.inShape,
    outShape: f.outShape,
    kernel: f.kernel,
    stride: f.stride,
    pad: f.pad,
    weights: t.read(f.weights, `${field}.weights`, 'int8', () => [
      cout(f, field)(),
      kernel(f, field),
      kernel(f, field),
      cin(f, field),
    ]),
    scale: t.read(f.scale, `${field}.scale`, 'float', () => [cout(f, field)()]),
    bias: t.read(f.bias, `${field}.bias`, 'float', () => [cout(f, field)()]),
    lif: lifFrom(f.lif, `${field}.lif`, c, cout(f, field)),
  } as unknown as ConvInt8Layer;

  if (!Array.isArray(h.hidden) || h.hidden.length > LIMITS.maxHidden)
    fail('header.hidden', `an array of at most ${LIMITS.maxHidden} layers`, show(h.hidden));
  const hidden = h.hidden.map((v: unknown, i: number): HiddenLayer => {
    const field = `header.hidden[${i}]`;
    const l = record(v, field);
    const op = checkOp(l, field, HIDDEN_OPS, version) as HiddenLayer['kind'];
    const codec = HIDDEN_CODECS[op];
    onlyKeys(l, ['op', 'name', 'weightBits', 'scale', 'bias', 'shortcut', 'lif', ...codec.keys], field, version);
    const own = codec.read(l, field, c);
    return {
      kind: op,
      name: l.name,
      ...own.fields,
      scale: t.read(l.scale, `${field}.scale`, 'float', () => [own.channels()]),
      bias: t.read(l.bias, `${field}.bias`, 'float', () => [own.channels()]),
      shortcut: l.shortcut,
      lif: lifFrom(l.lif, `${field}.lif`, c, own.channels),
    } as unknown as HiddenLayer;
  });

  const hd = record(h.head, 'header.head');
  checkOp(hd, 'header.head', HEAD_OPS, version);
  onlyKeys(hd, ['op', 'inFeatures', 'outFeatures', 'weight', 'bias'], 'header.head', version);
  const outF = () => features(hd, 'outFeatures', 'header.head', LIMITS.maxClasses);
  const head = {
    inFeatures: hd.inFeatures,
    outFeatures: hd.outFeatures,
    weight: t.read(hd.weight, 'header.head.weight', 'float', () => [outF(), features(hd, 'inFeatures', 'header.head')]),
    bias: t.read(hd.bias, 'header.head.bias', 'float', () => [outF()]),
  };
  return {
    name: h.name,
    version: h.version,
    T: h.T,
    input: h.input,
    labels: h.labels,
    first,
    hidden,
    head,
    meta: h.meta,
    ...(h.fit !== undefined ? { fit: h.fit } : {}),
  } as unknown as BwsnnModel;
}

/** The tensor reader of a file's version over its data area. */
function tensorReader(bytes: Uint8Array, env: Envelope, decode = true): TensorReader {
  const data = bytes.subarray(env.dataStart, env.dataStart + env.dataLength);
  return env.formatVersion === 1 ? new AlignedReader(data, decode) : new PackedReader(data, decode);
}

function readUnchecked(bytes: Uint8Array, opts: ReadOptions): BwsnnModel {
  const env = parseEnvelope(bytes);
  checkSignature(env, opts);
  const header = parseHeaderJson(bytes, env);
  const version = env.formatVersion;
  // The layers' shapes, and so every tensor's size, are checked before any tensor is materialised: a pass that
  // only measures the tensors (allocating none) builds the model the checks run on. A header cannot make the
  // reader allocate more than LIMITS.maxTensorBytes for tensors.
  checkShapes(modelFromHeader(header, { t: tensorReader(bytes, env, false), version }), 'header.');
  const tensors = tensorReader(bytes, env);
  const model = modelFromHeader(header, { t: tensors, version });
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
    throw new FormatError(
      `path: expected a readable .bwsnn file, got ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      'path',
    );
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
    throw new FormatError(
      `file: expected a readable .bwsnn file, got an unexpected ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} while parsing`,
      'internal',
    );
  }
}

// ---------------------------------------------------------------------------------------------- inspecting

export type { BwsnnSummary, LayerSummary } from './summary.js';

/** Version 1: the lengths the layer's tensor references state. */
function referencedBytes(layer: Record<string, unknown>): number {
  let n = 0;
  for (const v of Object.values(layer)) {
    if (isRecord(v) && typeof v.length === 'number' && typeof v.dtype === 'string') n += v.length;
    else if (isRecord(v)) n += referencedBytes(v);
  }
  return n;
}

/** Bytes of each layer's tensors (by header field prefix): version 2 has to measure them against the geometry. */
function layerBytes(
  bytes: Uint8Array,
  env: Envelope,
  h: Record<string, unknown>,
): (field: string, layer: Record<string, unknown>) => number {
  if (env.formatVersion === 1) return (_, layer) => referencedBytes(layer);
  const t = tensorReader(bytes, env, false);
  modelFromHeader(h, { t, version: env.formatVersion });
  return (field) => {
    let n = 0;
    for (const [f, size] of t.sizes) if (f.startsWith(`${field}.`)) n += size;
    return n;
  };
}

function layerSummary(
  v: unknown,
  field: string,
  ops: readonly string[],
  version: number,
  sized: (field: string, layer: Record<string, unknown>) => number,
): LayerSummary {
  const l = record(v, field);
  const op = checkOp(l, field, ops, version) as Op;
  const shape = (s: unknown, f: string) => {
    if (!Array.isArray(s) || s.length !== 3) fail(f, '[height, width, channels]', show(s));
    return s.map((d, i) => checkInt(d, `${f}[${i}]`, 1, LIMITS.maxElements));
  };
  const conv = OPS[op].shape === 'map';
  return {
    op,
    name: OPS[op].role === 'head' ? 'head' : checkString(l.name, `${field}.name`),
    inShape: conv
      ? shape(l.inShape, `${field}.inShape`)
      : [checkInt(l.inFeatures, `${field}.inFeatures`, 1, LIMITS.maxElements)],
    outShape: conv
      ? shape(l.outShape, `${field}.outShape`)
      : [checkInt(l.outFeatures, `${field}.outFeatures`, 1, LIMITS.maxElements)],
    ...(typeof l.shortcut === 'string' ? { shortcut: l.shortcut } : {}),
    bytes: sized(field, l),
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
    const sized = layerBytes(bytes, env, h);
    const v = env.formatVersion;
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
        layerSummary(h.first, 'header.first', FIRST_OPS, v, sized),
        ...h.hidden.map((l, i) => layerSummary(l, `header.hidden[${i}]`, HIDDEN_OPS, v, sized)),
        layerSummary(h.head, 'header.head', HEAD_OPS, v, sized),
      ],
      sizes: { file: bytes.length, header: env.headerLength, data: env.dataLength },
      signed: env.signature !== null,
      keyId: env.signature ? hex(env.signature.keyId) : null,
      checksum: hex(env.checksum),
    };
  });
}
