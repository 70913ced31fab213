/**
 * The data area of a .bwsnn file, per format version (./README.md, "Header JSON" and "Tensor layouts"):
 * - version 1: each tensor a 16-byte aligned section the header references ({offset, length, dtype, shape});
 *   binary rows padded to 128 bits, floats float32.
 * - version 2: the tensors back to back in header order, each header entry only the tensor's encoding (its size
 *   follows from the layer's geometry) or, for a float tensor whose elements are all equal, that value; binary
 *   rows as one unpadded bit stream; floats in the narrowest encoding that holds them exactly (float16, q8 or
 *   float32; ./precision.ts).
 * Writers and readers of one version are here side by side; container.ts picks them by the file's version.
 */
import { show } from '../errors.js';
import { packStream, unpackStream } from './bits.js';
import { rowWords } from './model.js';
import { Q8_MAX, float16Bits, float16Value, isFloat16, q8Scale } from './precision.js';
import { LIMITS, checkElements, checkInt, fail, isRecord } from './validate.js';

export type DType = 'int8' | 'float32' | 'bits' | 'float16' | 'q8';
const V1_DTYPES: readonly DType[] = ['int8', 'float32', 'bits'];
const FLOAT_DTYPES: readonly DType[] = ['float32', 'float16', 'q8'];

/** What a layer's tensor holds, whatever its encoding: int8 weights, binary rows, or floats. */
export type TensorKind = 'int8' | 'bits' | 'float';
type ArrayOf<K extends TensorKind> = K extends 'int8' ? Int8Array : K extends 'bits' ? Uint32Array : Float32Array;

/** A version-1 tensor section, as the header references it. Offsets are relative to the start of the data area. */
export interface TensorRef {
  readonly offset: number;
  readonly length: number;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

const ALIGN_V1 = 16;
const alignV1 = (n: number) => Math.ceil(n / ALIGN_V1) * ALIGN_V1;
const LITTLE_ENDIAN_HOST = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** A copy with its own ArrayBuffer: `Buffer#slice` is a view into a shared pool, so never rely on `.slice`. */
export function copyBytes(b: Uint8Array, start = 0, end = b.length): Uint8Array {
  const out = new Uint8Array(end - start);
  out.set(b.subarray(start, end));
  return out;
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

/** Collects a model's tensors into a data area; `put` returns each tensor's header entry. */
export interface TensorWriter {
  /** `dims`: the tensor's shape; [rows, bitsPerRow] for binary rows; a float tensor's q8 rows are dims[0] of a 2-D shape. */
  put(array: Int8Array | Uint32Array | Float32Array, kind: TensorKind, dims: readonly number[]): unknown;
  /** The data area. */
  data(): Uint8Array;
}

const V1_DTYPE: Record<TensorKind, DType> = { int8: 'int8', bits: 'bits', float: 'float32' };

export class AlignedWriter implements TensorWriter {
  private readonly sections: { offset: number; bytes: Uint8Array }[] = [];
  private length = 0;

  put(array: Int8Array | Uint32Array | Float32Array, kind: TensorKind, dims: readonly number[]): TensorRef {
    const bytes = littleEndianBytes(array);
    const offset = this.length;
    this.sections.push({ offset, bytes });
    this.length = alignV1(offset + bytes.length);
    return { offset, length: bytes.length, dtype: V1_DTYPE[kind], shape: [...dims] };
  }

  data(): Uint8Array {
    const out = new Uint8Array(this.length);
    for (const s of this.sections) out.set(s.bytes, s.offset);
    return out;
  }
}

/** q8 rows of a float tensor: dims[0] rows of a 2-D tensor (the head's weights, per output), else one row. */
const q8Rows = (dims: readonly number[]) => (dims.length === 2 ? dims[0]! : 1);

/** One encoded float tensor: its header entry and its bytes. */
function encodeFloats(v: Float32Array, rows: number): { entry: DType | number; bytes: Uint8Array } {
  // A JSON number cannot be -0, so a tensor of -0s takes a section.
  if (v.length > 0 && !Object.is(v[0], -0) && v.every((x) => Object.is(x, v[0])))
    return { entry: v[0]!, bytes: new Uint8Array(0) };
  const cols = v.length / rows;
  const scales: number[] = [];
  for (let r = 0; r < rows && scales.length === r; r++) {
    const s = q8Scale(v.subarray(r * cols, (r + 1) * cols));
    if (s !== undefined) scales.push(s);
  }
  if (scales.length === rows && rows * 2 + v.length < 2 * v.length) {
    const bytes = new Uint8Array(rows * 2 + v.length);
    const view = new DataView(bytes.buffer);
    scales.forEach((s, r) => view.setUint16(2 * r, float16Bits(s), true));
    for (let i = 0; i < v.length; i++) {
      const s = scales[Math.floor(i / cols)]!;
      view.setInt8(rows * 2 + i, Math.round(v[i]! / s));
    }
    return { entry: 'q8', bytes };
  }
  const half = v.every(isFloat16);
  const bytes = new Uint8Array(v.length * (half ? 2 : 4));
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < v.length; i++) {
    if (half) view.setUint16(2 * i, float16Bits(v[i]!), true);
    else view.setFloat32(4 * i, v[i]!, true);
  }
  return { entry: half ? 'float16' : 'float32', bytes };
}

export class PackedWriter implements TensorWriter {
  private readonly sections: Uint8Array[] = [];

  put(array: Int8Array | Uint32Array | Float32Array, kind: TensorKind, dims: readonly number[]): DType | number {
    if (kind === 'int8') {
      this.sections.push(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
      return 'int8';
    }
    if (kind === 'bits') {
      this.sections.push(packStream(array as Uint32Array, dims[0]!, dims[1]!));
      return 'bits';
    }
    const { entry, bytes } = encodeFloats(array as Float32Array, q8Rows(dims));
    this.sections.push(bytes);
    return entry;
  }

  data(): Uint8Array {
    const out = new Uint8Array(this.sections.reduce((n, s) => n + s.length, 0));
    let at = 0;
    for (const s of this.sections) {
      out.set(s, at);
      at += s.length;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------- reading

/**
 * Resolves header tensor entries into typed arrays. `dims` gives the shape the layer implies ([rows, bitsPerRow]
 * for binary rows); it checks the header scalars it reads, so it may be called before validateModel.
 */
export interface TensorReader {
  read<K extends TensorKind>(entry: unknown, field: string, kind: K, dims: () => number[]): ArrayOf<K>;
  /** After the model validated: whatever the version still requires of the data area as a whole. */
  finish(): void;
  /** Bytes each tensor took in the data area, by field. */
  readonly sizes: ReadonlyMap<string, number>;
}

function record(v: unknown, field: string): Record<string, unknown> {
  if (!isRecord(v)) fail(field, 'an object', show(v));
  return v;
}

const BYTES_PER_V1: Partial<Record<DType, number>> = { int8: 1, float32: 4, bits: 4 };

/**
 * Version 1: header references {offset, length, dtype, shape}, checked for bounds, alignment, dtype, length and
 * overlap. `decode: false` only checks and measures them and hands back empty arrays; decoding, each shape must
 * be the one its layer implies before its section is copied (the reader checked the layers' shapes first), so that
 * what is copied is what the model needs.
 */
export class AlignedReader implements TensorReader {
  private readonly regions: { start: number; end: number; field: string }[] = [];
  private readonly shapes: { field: string; shape: readonly number[]; expected: () => number[] }[] = [];
  readonly sizes = new Map<string, number>();
  constructor(
    private readonly data: Uint8Array,
    private readonly decode = true,
  ) {}

  read<K extends TensorKind>(ref: unknown, field: string, kind: K, expected: () => number[]): ArrayOf<K> {
    const dtype = V1_DTYPE[kind];
    const r = record(ref, field);
    for (const key of Object.keys(r))
      if (!['offset', 'length', 'dtype', 'shape'].includes(key))
        fail(
          `${field}.${key}`,
          'one of the fields offset, length, dtype, shape (format version 1)',
          'an unknown field',
        );
    if (typeof r.dtype !== 'string' || !V1_DTYPES.includes(r.dtype as DType))
      fail(`${field}.dtype`, `one of ${V1_DTYPES.join(', ')}`, show(r.dtype));
    if (r.dtype !== dtype) fail(`${field}.dtype`, JSON.stringify(dtype), show(r.dtype));
    const shape = r.shape;
    const rank = dtype === 'bits' ? '2' : '1..4';
    if (!Array.isArray(shape) || shape.length < 1 || shape.length > 4 || (dtype === 'bits' && shape.length !== 2))
      fail(`${field}.shape`, `an array of ${rank} dims`, show(shape));
    shape.forEach((d, i) => checkInt(d, `${field}.shape[${i}]`, 1, LIMITS.maxElements));
    const dims = shape as number[];
    const elements =
      dtype === 'bits'
        ? checkElements([dims[0]!, rowWords(dims[1]!)], `${field}.shape`)
        : checkElements(dims, `${field}.shape`);
    const length = elements * BYTES_PER_V1[dtype]!;
    const what = dtype === 'bits' ? `${dims[0]} rows of ${rowWords(dims[1]!)} u32 words` : `${elements} × ${dtype}`;
    checkInt(r.length, `${field}.length`, 0, Number.MAX_SAFE_INTEGER);
    if (r.length !== length)
      fail(`${field}.length`, `${length} bytes (${what} for shape [${dims.join(', ')}])`, String(r.length));
    const offset = checkInt(r.offset, `${field}.offset`, 0, Number.MAX_SAFE_INTEGER);
    if (offset % ALIGN_V1 !== 0) fail(`${field}.offset`, `a multiple of ${ALIGN_V1} (aligned)`, String(offset));
    if (offset + length > this.data.length)
      fail(
        `${field}.offset`,
        `offset + length <= ${this.data.length} (the data area)`,
        `${offset} + ${length} (out of bounds)`,
      );
    this.regions.push({ start: offset, end: offset + length, field });
    const shaped = { field: `${field}.shape`, shape: dims, expected };
    this.shapes.push(shaped);
    this.sizes.set(field, length);
    if (!this.decode)
      return (
        dtype === 'int8' ? new Int8Array(0) : dtype === 'bits' ? new Uint32Array(0) : new Float32Array(0)
      ) as ArrayOf<K>;
    checkShape(shaped);
    const bytes = copyBytes(this.data, offset, offset + length);
    if (!LITTLE_ENDIAN_HOST && dtype !== 'int8') swap32(bytes);
    if (dtype === 'int8') return new Int8Array(bytes.buffer) as ArrayOf<K>;
    return (dtype === 'bits' ? new Uint32Array(bytes.buffer) : new Float32Array(bytes.buffer)) as ArrayOf<K>;
  }

  /** Sections must not overlap, the rest of the data area is zero, shapes match the layers. */
  finish(): void {
    const sorted = [...this.regions].sort((a, b) => a.start - b.start);
    let covered = 0;
    sorted.forEach((r, i) => {
      const prev = sorted[i - 1];
      if (prev && r.start < prev.end)
        fail(
          `${r.field}.offset`,
          `>= ${prev.end} (the end of ${prev.field}): sections must not overlap`,
          String(r.start),
        );
      for (let i = covered; i < r.start; i++)
        if (this.data[i] !== 0)
          fail('data', `zero bytes between tensor sections`, `byte ${i} of the data area = ${this.data[i]}`);
      covered = r.end;
    });
    for (let i = covered; i < this.data.length; i++)
      if (this.data[i] !== 0)
        fail('data', `zero bytes after the last tensor section`, `byte ${i} of the data area = ${this.data[i]}`);
    for (const s of this.shapes) checkShape(s);
  }
}

function checkShape(s: { field: string; shape: readonly number[]; expected: () => number[] }): void {
  const want = s.expected();
  if (want.length !== s.shape.length || want.some((d, i) => d !== s.shape[i]))
    fail(s.field, `[${want.join(', ')}]`, `[${s.shape.join(', ')}]`);
}

/**
 * Version 2: the tensors back to back in the order they are read (the header's order), sizes from the layers'
 * geometry. `decode: false` only measures them (inspectBwsnn) and hands back empty arrays.
 */
export class PackedReader implements TensorReader {
  private at = 0;
  readonly sizes = new Map<string, number>();
  constructor(
    private readonly data: Uint8Array,
    private readonly decode = true,
  ) {}

  private take(field: string, bytes: number): Uint8Array {
    const left = this.data.length - this.at;
    if (bytes > left)
      fail(
        field,
        `${bytes} bytes at offset ${this.at} of the ${this.data.length}-byte data area`,
        `${left} bytes left (truncated data area, or a header that does not match it)`,
      );
    const out = this.data.subarray(this.at, this.at + bytes);
    this.at += bytes;
    this.sizes.set(field, bytes);
    return out;
  }

  read<K extends TensorKind>(entry: unknown, field: string, kind: K, dims: () => number[]): ArrayOf<K> {
    const shape = dims();
    if (kind === 'int8') {
      if (entry !== 'int8') fail(field, '"int8"', show(entry));
      const bytes = this.take(field, checkElements(shape, field));
      return (this.decode ? new Int8Array(copyBytes(bytes).buffer) : new Int8Array(0)) as ArrayOf<K>;
    }
    if (kind === 'bits') {
      if (entry !== 'bits') fail(field, '"bits"', show(entry));
      const [rows, bits] = shape as [number, number];
      const n = checkElements([rows, bits], field);
      const bytes = this.take(field, Math.ceil(n / 8));
      const tail = n & 7 ? bytes[bytes.length - 1]! >>> (n & 7) : 0;
      if (tail !== 0)
        fail(
          field,
          `zero bits after bit ${n} of the stream (${rows} rows of ${bits} bits)`,
          `last byte 0x${bytes[bytes.length - 1]!.toString(16)}`,
        );
      return (this.decode ? unpackStream(bytes, rows, bits) : new Uint32Array(0)) as ArrayOf<K>;
    }
    const n = checkElements(shape, field);
    if (typeof entry === 'number') {
      if (Math.fround(entry) !== entry)
        fail(field, `a float32 value for a constant tensor (Math.fround = ${Math.fround(entry)})`, String(entry));
      this.sizes.set(field, 0);
      return new Float32Array(this.decode ? n : 0).fill(entry) as ArrayOf<K>;
    }
    if (typeof entry !== 'string' || !FLOAT_DTYPES.includes(entry as DType))
      fail(
        field,
        `one of ${FLOAT_DTYPES.map((d) => JSON.stringify(d)).join(', ')} or a number (every element)`,
        show(entry),
      );
    const rows = q8Rows(shape);
    const bytes = this.take(field, entry === 'float32' ? 4 * n : entry === 'float16' ? 2 * n : 2 * rows + n);
    const out = new Float32Array(this.decode ? n : 0);
    if (!this.decode) return out as ArrayOf<K>;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (entry === 'float32') for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
    else if (entry === 'float16') for (let i = 0; i < n; i++) out[i] = float16Value(view.getUint16(2 * i, true));
    else {
      const cols = n / rows;
      for (let i = 0; i < n; i++) {
        const q = view.getInt8(2 * rows + i);
        if (q < -Q8_MAX) fail(`${field}[${i}]`, `a q8 value in -${Q8_MAX}..${Q8_MAX}`, String(q));
        // Exact in float32: an 8-bit integer times a float16 (a non-finite scale is refused by validateModel).
        out[i] = q * float16Value(view.getUint16(2 * Math.floor(i / cols), true));
      }
    }
    return out as ArrayOf<K>;
  }

  /** The tensors must fill the data area exactly. */
  finish(): void {
    if (this.at !== this.data.length)
      fail('dataLength', `${this.at} bytes (the tensors the header describes)`, `${this.data.length} (trailing bytes)`);
  }
}
