/**
 * Fashion-MNIST for training: the runtime's IDX reader (runtime/data/idx.ts) plus a validation split, augmentation
 * (horizontal flip, small random translation = random crop of the zero-padded frame) and batching into float32
 * raw pixel values (0..255, the network divides by 255 itself, as the exported first layer does).
 */
import { FASHION_MNIST_DIR, FASHION_MNIST_LABELS, readMnistSplit } from '../../runtime/data/idx.js';
import { permutation, stream } from './random.js';

export interface Split {
  readonly count: number;
  /** [height, width, channels] of one frame. */
  readonly shape: readonly [number, number, number];
  /** count × h × w × c bytes, HWC. */
  readonly images: Uint8Array;
  readonly labels: Uint8Array;
}

export interface Dataset {
  readonly train: Split;
  readonly val: Split;
  readonly test: Split;
  readonly labels: readonly string[];
}

export interface DataOptions {
  /** Folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz. Default: Debian's dataset-fashion-mnist. */
  readonly dir?: string;
  /** Training frames held out for validation (fixed split, independent of the run seed). Default 5000. */
  readonly valSize?: number;
  /** Use only the first N training frames (after the split) — for quick tests. */
  readonly trainLimit?: number;
  readonly testLimit?: number;
}

function subset(s: Split, idx: ArrayLike<number>): Split {
  const size = s.shape[0] * s.shape[1] * s.shape[2];
  const images = new Uint8Array(idx.length * size);
  const labels = new Uint8Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    const j = idx[i]!;
    images.set(s.images.subarray(j * size, (j + 1) * size), i * size);
    labels[i] = s.labels[j]!;
  }
  return { count: idx.length, shape: s.shape, images, labels };
}

function toSplit(dir: string, which: 'train' | 't10k'): Split {
  const f = readMnistSplit(dir, which);
  return { count: f.count, shape: f.frameShape, images: f.images, labels: f.labels };
}

export function loadDataset(opts: DataOptions = {}): Dataset {
  const dir = opts.dir ?? FASHION_MNIST_DIR;
  const all = toSplit(dir, 'train');
  const valSize = opts.valSize ?? 5000;
  const order = permutation(all.count, stream(0, 'validation-split'));
  const trainIdx = order.subarray(valSize, opts.trainLimit ? Math.min(all.count, valSize + opts.trainLimit) : all.count);
  const test = toSplit(dir, 't10k');
  return {
    train: subset(all, trainIdx),
    val: subset(all, order.subarray(0, valSize)),
    test: opts.testLimit ? subset(test, Array.from({ length: Math.min(test.count, opts.testLimit) }, (_, i) => i)) : test,
    labels: FASHION_MNIST_LABELS,
  };
}

export interface Augment {
  /** Probability of a horizontal flip. */
  readonly flip: number;
  /** Maximum translation in pixels each way (zero fill), i.e. a random crop of the frame padded by `shift`. */
  readonly shift: number;
}

export const DEFAULT_AUGMENT: Augment = { flip: 0.5, shift: 2 };

/** Copies frames `idx` into a float32 batch [n, h, w, c] of raw values, augmenting with `r` when given. */
export function makeBatch(s: Split, idx: ArrayLike<number>, augment?: Augment, r?: () => number): { x: Float32Array; y: Int32Array } {
  const [h, w, c] = s.shape;
  const size = h * w * c;
  const x = new Float32Array(idx.length * size);
  const y = new Int32Array(idx.length);
  for (let b = 0; b < idx.length; b++) {
    const j = idx[b]!;
    y[b] = s.labels[j]!;
    const src = s.images.subarray(j * size, (j + 1) * size);
    const dst = b * size;
    if (!augment || !r) {
      for (let i = 0; i < size; i++) x[dst + i] = src[i]!;
      continue;
    }
    const flip = r() < augment.flip;
    const dy = Math.floor(r() * (2 * augment.shift + 1)) - augment.shift;
    const dx = Math.floor(r() * (2 * augment.shift + 1)) - augment.shift;
    for (let yy = 0; yy < h; yy++) {
      const sy = yy + dy;
      if (sy < 0 || sy >= h) continue;
      for (let xx = 0; xx < w; xx++) {
        let sx = xx + dx;
        if (sx < 0 || sx >= w) continue;
        if (flip) sx = w - 1 - sx;
        for (let ch = 0; ch < c; ch++) x[dst + (yy * w + xx) * c + ch] = src[(sy * w + sx) * c + ch]!;
      }
    }
  }
  return { x, y };
}

/** The batches of one epoch: a seeded shuffle per (seed, epoch); the last partial batch is dropped. */
export function epochOrder(count: number, batchSize: number, seed: number, epoch: number): Uint32Array[] {
  const order = permutation(count, stream(seed, 'shuffle', epoch));
  const out: Uint32Array[] = [];
  for (let i = 0; i + batchSize <= count; i += batchSize) out.push(order.subarray(i, i + batchSize));
  return out;
}
