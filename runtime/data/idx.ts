import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { FormatError } from '../errors.js';

/** An IDX array (the MNIST / Fashion-MNIST container) of unsigned bytes. */
export interface IdxArray {
  /** Dimension sizes, outermost first (e.g. [10000, 28, 28] for images, [10000] for labels). */
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

const UBYTE = 0x08;

function gunzip(buffer: Uint8Array, what: string): Uint8Array {
  try {
    return new Uint8Array(gunzipSync(buffer));
  } catch (err) {
    throw new FormatError(
      `${what}: expected gzip-compressed IDX data, got a broken gzip stream (${(err as Error).message})`,
      'gzip',
    );
  }
}

/** Parses an IDX buffer (gzip-compressed or not). Only the unsigned-byte element type is accepted. */
export function parseIdx(buffer: Uint8Array, what = 'idx'): IdxArray {
  const raw = buffer[0] === 0x1f && buffer[1] === 0x8b ? gunzip(buffer, what) : buffer;
  if (raw.length < 4)
    throw new FormatError(`${what}: file of ${raw.length} bytes is shorter than the 4-byte IDX magic`, 'magic');
  if (raw[0] !== 0 || raw[1] !== 0)
    throw new FormatError(`${what}: IDX magic must start with two zero bytes, got ${raw[0]}, ${raw[1]}`, 'magic');
  if (raw[2] !== UBYTE)
    throw new FormatError(`${what}: IDX element type must be 0x08 (ubyte), got 0x${raw[2]!.toString(16)}`, 'type');
  const dims = raw[3]!;
  if (dims < 1 || raw.length < 4 + 4 * dims)
    throw new FormatError(`${what}: IDX header with ${dims} dimensions is truncated`, 'dims');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const shape: number[] = [];
  let count = 1;
  for (let i = 0; i < dims; i++) {
    const n = view.getUint32(4 + 4 * i, false);
    shape.push(n);
    count *= n;
  }
  const start = 4 + 4 * dims;
  if (raw.length - start !== count) {
    throw new FormatError(
      `${what}: IDX shape [${shape.join(', ')}] needs ${count} data bytes, file has ${raw.length - start}`,
      'data',
    );
  }
  return { shape, data: raw.subarray(start) };
}

export function readIdx(path: string): IdxArray {
  return parseIdx(readFileSync(path), path);
}

/** Encodes an unsigned-byte IDX array (uncompressed). */
export function encodeIdx(shape: readonly number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * shape.length + data.length);
  out[2] = UBYTE;
  out[3] = shape.length;
  const view = new DataView(out.buffer);
  shape.forEach((n, i) => view.setUint32(4 + 4 * i, n, false));
  out.set(data, 4 + 4 * shape.length);
  return out;
}

/** Labelled frames: images [n, h, w] (or [n, h, w, c]) with one label byte each. */
export interface LabelledFrames {
  readonly count: number;
  /** [height, width, channels] of one frame. */
  readonly frameShape: readonly [number, number, number];
  readonly images: Uint8Array;
  readonly labels: Uint8Array;
  frame(i: number): Uint8Array;
}

export function labelledFrames(images: IdxArray, labels: IdxArray): LabelledFrames {
  const [n, h, w, c = 1] = images.shape as [number, number, number, number?];
  if (images.shape.length < 3)
    throw new FormatError(`images: expected [n, h, w(, c)], got [${images.shape.join(', ')}]`, 'images.shape');
  if (labels.shape.length !== 1 || labels.shape[0] !== n) {
    throw new FormatError(
      `labels: expected shape [${n}] to match the images, got [${labels.shape.join(', ')}]`,
      'labels.shape',
    );
  }
  const size = h * w * c;
  return {
    count: n,
    frameShape: [h, w, c],
    images: images.data,
    labels: labels.data,
    frame: (i: number) => images.data.subarray(i * size, (i + 1) * size),
  };
}

/** Default location of Debian's `dataset-fashion-mnist`. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_LABELS = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;

/** The first 1000 Fashion-MNIST test frames and their labels, shipped in models/samples/ (no download needed). */
export const SAMPLES_DIR = fileURLToPath(new URL('../../models/samples/', import.meta.url));
export const SAMPLE_IMAGES = `${SAMPLES_DIR}fmnist-t10k-first1000-images-idx3-ubyte.gz`;
export const SAMPLE_LABELS = `${SAMPLES_DIR}fmnist-t10k-first1000-labels-idx1-ubyte.gz`;

export function sampleFrames(): LabelledFrames {
  return labelledFrames(readIdx(SAMPLE_IMAGES), readIdx(SAMPLE_LABELS));
}

/** Reads the `train` or `t10k` split of an MNIST-layout folder; a missing folder says how to get it. */
export function readMnistSplit(dir: string, split: 'train' | 't10k'): LabelledFrames {
  const images = `${dir}/${split}-images-idx3-ubyte.gz`;
  const labels = `${dir}/${split}-labels-idx1-ubyte.gz`;
  try {
    return labelledFrames(readIdx(images), readIdx(labels));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FormatError(
        `data set not found: ${images} is missing. Install Fashion-MNIST with ` +
          '`sudo apt-get install dataset-fashion-mnist` (Debian) or point --data at a folder holding ' +
          `${split}-images-idx3-ubyte.gz and ${split}-labels-idx1-ubyte.gz`,
        'data',
      );
    }
    throw err;
  }
}
