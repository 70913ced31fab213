/**
 * Image folders made of real Fashion-MNIST frames (Debian's dataset-fashion-mnist), written at test time:
 * - `png28`: train/ and test/ class folders of 28×28 gray PNGs;
 * - `rgb32`: the same frames resized to 32×32 and stored as 3-channel (RGB) PNGs;
 * - `idx`: the same frames as IDX files, laid out so that the IDX loader (validation hold-out 0) yields them in
 *   the order the folder loader does: the two data sets are the same frames, frame for frame;
 * - `bad`: a folder with everything a user's folder may hold by mistake (a corrupt PNG, a zero-byte file, a text
 *   file, an empty class, a stray file at the top), beside pictures of mixed sizes, gray and colour, PNG and JPEG.
 * Class folders are named `<label index>-<label>`, so their sorted order is the label order.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { encodeIdx, FASHION_MNIST_DIR, FASHION_MNIST_LABELS, readMnistSplit } from '../../runtime/data/idx.js';
import { permutation, stream } from '../../trainer/data/random.js';

export const CLASS_NAMES = FASHION_MNIST_LABELS.map((l, i) => `${i}-${l.replace('/', '-')}`);

export interface FashionFolders {
  readonly png28: string;
  readonly rgb32: string;
  readonly idx: string;
  readonly bad: string;
  /** Frames per split, in the folders' order. */
  readonly counts: { readonly train: number; readonly test: number };
}

async function png(pixels: Uint8Array, width: number, height: number, channels: 1 | 3): Promise<Buffer> {
  const img = sharp(Buffer.from(pixels), { raw: { width, height, channels } });
  return (channels === 1 ? img.toColourspace('b-w') : img).png().toBuffer();
}

/** The first `perClass` frames of each class of a split, by class then index. */
function pick(split: 'train' | 't10k', perClass: number): Array<{ index: number; label: number; data: Uint8Array }> {
  const set = readMnistSplit(FASHION_MNIST_DIR, split);
  const out: Array<{ index: number; label: number; data: Uint8Array }> = [];
  for (let c = 0; c < 10; c++) {
    for (let i = 0, n = 0; i < set.count && n < perClass; i++) {
      if (set.labels[i] === c) {
        out.push({ index: i, label: c, data: set.frame(i) });
        n++;
      }
    }
  }
  return out;
}

export async function makeFashionFolders(root: string, perClass = { train: 100, test: 30 }): Promise<FashionFolders> {
  const train = pick('train', perClass.train);
  const test = pick('t10k', perClass.test);
  const png28 = join(root, 'fmnist-png28'),
    rgb32 = join(root, 'fmnist-rgb32'),
    idx = join(root, 'fmnist-idx'),
    bad = join(root, 'bad');
  for (const [split, frames] of [
    ['train', train],
    ['test', test],
  ] as const) {
    for (const f of frames) {
      const name = `${String(f.index).padStart(5, '0')}.png`;
      for (const dir of [png28, rgb32]) mkdirSync(join(dir, split, CLASS_NAMES[f.label]!), { recursive: true });
      writeFileSync(join(png28, split, CLASS_NAMES[f.label]!, name), await png(f.data, 28, 28, 1));
      const resized = await sharp(Buffer.from(f.data), { raw: { width: 28, height: 28, channels: 1 } })
        .resize(32, 32)
        .toColourspace('srgb')
        .raw()
        .toBuffer();
      writeFileSync(join(rgb32, split, CLASS_NAMES[f.label]!, name), await png(new Uint8Array(resized), 32, 32, 3));
    }
  }
  // The IDX loader's training split is the training file read through its fixed validation permutation: placing
  // frame k at order[k] makes that split the folder's frames in the folder's order.
  mkdirSync(idx, { recursive: true });
  const order = permutation(train.length, stream(0, 'validation-split'));
  const images = new Uint8Array(train.length * 784),
    labels = new Uint8Array(train.length);
  train.forEach((f, k) => {
    images.set(f.data, order[k]! * 784);
    labels[order[k]!] = f.label;
  });
  const { gzipSync } = await import('node:zlib');
  writeFileSync(join(idx, 'train-images-idx3-ubyte.gz'), gzipSync(encodeIdx([train.length, 28, 28], images)));
  writeFileSync(join(idx, 'train-labels-idx1-ubyte.gz'), gzipSync(encodeIdx([train.length], labels)));
  const testImages = new Uint8Array(test.length * 784);
  test.forEach((f, k) => testImages.set(f.data, k * 784));
  writeFileSync(join(idx, 't10k-images-idx3-ubyte.gz'), gzipSync(encodeIdx([test.length, 28, 28], testImages)));
  writeFileSync(
    join(idx, 't10k-labels-idx1-ubyte.gz'),
    gzipSync(
      encodeIdx(
        [test.length],
        Uint8Array.from(test, (f) => f.label),
      ),
    ),
  );
  await makeBadFolder(bad, train);
  return { png28, rgb32, idx, bad, counts: { train: train.length, test: test.length } };
}

/** What `bad` holds, for the tests to check against. */
export const BAD = {
  classes: ['bag', 'empty', 'shoe'],
  readable: { bag: 4, shoe: 3 },
  skipped: ['bag/corrupt.png', 'bag/notes.txt', 'shoe/zero.png', 'README.txt'],
} as const;

/** Real frames at other sizes and in colour, and every kind of bad file. */
async function makeBadFolder(dir: string, frames: ReadonlyArray<{ data: Uint8Array }>): Promise<void> {
  for (const c of ['bag', 'shoe', 'empty']) mkdirSync(join(dir, c), { recursive: true });
  const gray = (i: number) => sharp(Buffer.from(frames[i]!.data), { raw: { width: 28, height: 28, channels: 1 } });
  // bag: a 28×28 gray PNG, a 40×60 gray PNG, a 50×30 colour PNG (the frame tinted), a 64×64 colour JPEG.
  writeFileSync(join(dir, 'bag', 'a.png'), await gray(0).toColourspace('b-w').png().toBuffer());
  writeFileSync(
    join(dir, 'bag', 'b.png'),
    await gray(1).resize(60, 40, { fit: 'fill' }).toColourspace('b-w').png().toBuffer(),
  );
  const tinted = Buffer.alloc(28 * 28 * 3);
  frames[2]!.data.forEach((v, i) => {
    tinted[3 * i] = v;
    tinted[3 * i + 1] = v >> 1;
    tinted[3 * i + 2] = 255 - v;
  });
  writeFileSync(
    join(dir, 'bag', 'c.png'),
    await sharp(tinted, { raw: { width: 28, height: 28, channels: 3 } })
      .resize(30, 50, { fit: 'fill' })
      .png()
      .toBuffer(),
  );
  writeFileSync(
    join(dir, 'bag', 'd.jpg'),
    await sharp(tinted, { raw: { width: 28, height: 28, channels: 3 } })
      .resize(64, 64)
      .jpeg()
      .toBuffer(),
  );
  const good = await gray(3).toColourspace('b-w').png().toBuffer();
  writeFileSync(join(dir, 'bag', 'corrupt.png'), good.subarray(0, Math.floor(good.length / 2)));
  writeFileSync(join(dir, 'bag', 'notes.txt'), 'photos taken on line 3, Tuesday\n');
  // shoe: gray JPEG, a colour PNG, a PNG with transparency, and an empty file.
  writeFileSync(join(dir, 'shoe', 'a.jpg'), await gray(4).toColourspace('b-w').jpeg().toBuffer());
  writeFileSync(
    join(dir, 'shoe', 'b.png'),
    await sharp(tinted, { raw: { width: 28, height: 28, channels: 3 } })
      .png()
      .toBuffer(),
  );
  const rgba = Buffer.alloc(28 * 28 * 4);
  frames[5]!.data.forEach((v, i) => {
    rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = v;
    rgba[4 * i + 3] = v ? 255 : 0;
  });
  writeFileSync(
    join(dir, 'shoe', 'c.png'),
    await sharp(rgba, { raw: { width: 28, height: 28, channels: 4 } })
      .png()
      .toBuffer(),
  );
  writeFileSync(join(dir, 'shoe', 'zero.png'), new Uint8Array(0));
  writeFileSync(join(dir, 'README.txt'), 'class folders below\n');
}
