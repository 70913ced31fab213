/**
 * Frame sources. Each yields frames already shaped for the model ([h, w, c] uint8), with the ground-truth label
 * when the source knows it. File sources are pulled (paced at the configured frame rate, looping); live sources
 * (stdin video here, the MQTT `frames/in` topic in mqtt.ts) push and never wait for the engine.
 */
import { existsSync, fstatSync, readdirSync, readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  FASHION_MNIST_DIR,
  FrameError,
  labelledFrames,
  readIdx,
  readMnistSplit,
  sampleFrames,
} from '../../runtime/index.js';
import type { LabelledFrames } from '../../runtime/index.js';
import type { SourceSpec } from '../config.js';
import { decodePicture, sourceResizer, toModelFrame, yuv420ToRgb } from './image.js';
import { mqttSource } from './mqtt.js';
import { PushSource } from './push.js';
import type { FrameSource, SourceFrame, SourceOptions } from './types.js';

export { PushSource } from './push.js';
export type { FrameFeed, FrameProperties, FrameSource, SourceFrame, SourceOptions } from './types.js';

/** The Fashion-MNIST test set if installed, else the shipped samples. */
export function defaultFrames(): { frames: LabelledFrames; description: string } {
  if (existsSync(join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'))) {
    return {
      frames: readMnistSplit(FASHION_MNIST_DIR, 't10k'),
      description: `Fashion-MNIST test set (${FASHION_MNIST_DIR})`,
    };
  }
  return { frames: sampleFrames(), description: 'Fashion-MNIST samples (models/samples)' };
}

export function createSource(spec: SourceSpec, opts: SourceOptions): FrameSource {
  switch (spec.kind) {
    case 'fmnist': {
      const { frames, description } = defaultFrames();
      return labelledSource(frames, description, opts);
    }
    case 'samples':
      return labelledSource(sampleFrames(), 'Fashion-MNIST samples (models/samples)', opts);
    case 'idx': {
      let frames: LabelledFrames;
      try {
        const images = readIdx(spec.images);
        const labels = spec.labels
          ? readIdx(spec.labels)
          : { shape: [images.shape[0]!], data: new Uint8Array(images.shape[0]!).fill(255) };
        frames = labelledFrames(images, labels);
      } catch (err) {
        // Like a missing folder: a named field, not a stack trace (the agent refuses to start on it).
        throw new FrameError(
          `source: expected readable IDX ${spec.labels ? 'images and labels' : 'images'}, got ${JSON.stringify(spec.labels ? `${spec.images}:${spec.labels}` : spec.images)} (${(err as Error).message})`,
          'source.spec',
        );
      }
      return labelledSource(frames, spec.images, opts, spec.labels !== null);
    }
    case 'images':
      return folderSource(spec.dir, opts);
    case 'stdin':
      return videoSource(opts.stdin, spec.format, spec.width, spec.height, opts);
    case 'mqtt':
      if (!opts.mqtt)
        throw new FrameError('source: the "mqtt" source needs an MQTT connection (mqtt.url)', 'source.spec');
      return mqttSource(opts.mqtt.feed, opts, opts.mqtt.badFrame);
  }
}

/** Sleeps until frame i of a paced stream is due (no sleep at frame rate 0). */
function pacer(frameRate: number): () => Promise<void> {
  if (frameRate <= 0) return async () => {};
  const period = 1000 / frameRate;
  let next = performance.now();
  return () => {
    next += period;
    const now = performance.now();
    // After a long stall, do not burst to catch up: restart the schedule.
    if (next < now - 10 * period) next = now;
    const wait = next - now;
    return wait > 1 ? new Promise((r) => setTimeout(r, wait)) : Promise.resolve();
  };
}

/** A pulled, paced, looping source over an indexable set of pictures. */
function pulledSource(
  count: number,
  get: (i: number) => SourceFrame,
  description: string,
  opts: SourceOptions,
): FrameSource {
  let closed = false;
  return {
    description,
    live: false,
    length: count,
    close: () => {
      closed = true;
    },
    async *[Symbol.asyncIterator]() {
      const pace = pacer(opts.frameRate);
      do {
        for (let i = 0; i < count && !closed; i++) {
          yield get(i);
          await pace();
        }
      } while (opts.loop && !closed && count > 0);
    },
  };
}

function labelledSource(
  frames: LabelledFrames,
  description: string,
  opts: SourceOptions,
  hasLabels = true,
): FrameSource {
  const [h, w, c] = frames.frameShape;
  const same = h === opts.target[0] && w === opts.target[1] && c === opts.target[2] && !opts.invert && !opts.crop;
  const resize = same ? null : sourceResizer(w, h, c as 1 | 3, opts.target, opts.crop, opts.invert, opts.fit);
  const get = (i: number): SourceFrame => {
    const raw = frames.frame(i);
    return { data: resize ? resize.resize(raw) : raw, label: hasLabels ? frames.labels[i]! : null };
  };
  return pulledSource(frames.count, get, description, opts);
}

const PICTURE = /\.(png|pgm)$/i;
/** A leading class number in a file name, as in `3_dress.png` or `7-sneaker.pgm`. */
const LABEL_PREFIX = /^(\d+)[_-]/;

function folderSource(dir: string, opts: SourceOptions): FrameSource {
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => PICTURE.test(n))
      .sort();
  } catch (err) {
    throw new FrameError(
      `source: expected a readable folder of PNG/PGM images, got ${JSON.stringify(dir)} (${(err as Error).message})`,
      'source.spec',
    );
  }
  if (names.length === 0) throw new FrameError(`source: expected PNG or PGM files in ${dir}, got none`, 'source.spec');
  const get = (i: number): SourceFrame => {
    const name = names[i]!;
    const img = decodePicture(readFileSync(join(dir, name)), name);
    const m = LABEL_PREFIX.exec(name);
    return { data: toModelFrame(img, opts.target, opts.crop, opts.invert, opts.fit), label: m ? Number(m[1]) : null };
  };
  return pulledSource(names.length, get, `images in ${dir}`, opts);
}

/**
 * Raw video on a stream: `grey` is W*H bytes per frame, `yuv420` (I420) is W*H luma bytes followed by two
 * quarter-size chroma planes. The frame follows the model: for a gray model only the luma is used (copied, as
 * the bytes arrive, into one reused buffer; the chroma is skipped); for an RGB model a yuv420 frame is kept whole
 * and converted to RGB (BT.601, image.ts `yuv420ToRgb`) into another reused buffer, a grey one repeated. Either
 * is fitted by an AreaResizer planned once (the source's crop, then the model's fit policy): the only
 * allocation per frame is the model frame handed on. Without a stream given, the process's own stdin is read
 * through one reused 64 KiB buffer when it is a pipe or a socket (what a camera pipeline is): a stream's 'data'
 * events would allocate a chunk per read, ten per VGA frame, and their garbage collection cost more CPU than the
 * resize.
 */
function videoSource(
  stream: Readable | undefined,
  format: 'grey' | 'yuv420',
  width: number,
  height: number,
  opts: SourceOptions,
): FrameSource {
  const lumaBytes = width * height;
  const frameBytes = format === 'grey' ? lumaBytes : (lumaBytes * 3) / 2;
  const colour = format === 'yuv420' && opts.target[2] === 3;
  /** Bytes of each frame kept: the luma, or the whole yuv420 frame for an RGB model. */
  const keep = colour ? frameBytes : lumaBytes;
  const resizer = sourceResizer(width, height, colour ? 3 : 1, opts.target, opts.crop, opts.invert, opts.fit);
  const live = new PushSource(`stdin ${format} ${width}x${height}`);
  const kept = new Uint8Array(keep);
  const rgb = colour ? new Uint8Array(lumaBytes * 3) : null;
  /** Bytes of the current frame seen so far. */
  let filled = 0;
  const consume = (chunk: Uint8Array, length = chunk.length) => {
    for (let off = 0; off < length; ) {
      const take = Math.min(frameBytes - filled, length - off);
      if (filled < keep) kept.set(chunk.subarray(off, off + Math.min(take, keep - filled)), filled);
      filled += take;
      off += take;
      if (filled === frameBytes) {
        live.push({ data: resizer.resize(rgb ? yuv420ToRgb(kept, width, height, rgb) : kept), label: null });
        filled = 0;
      }
    }
  };
  const pipe = stream ? null : stdinPipe(consume);
  const input = stream ?? pipe ?? process.stdin;
  // The frames already read still go to the engine; a partial frame at the end is dropped.
  const onEnd = () => live.end();
  if (!pipe) input.on('data', consume);
  input.once('end', onEnd);
  pipe?.once('error', onEnd);
  const close = live.close.bind(live);
  live.close = () => {
    input.off('data', consume);
    input.off('end', onEnd);
    // Never touch process.stdin when fd 0 is read as `pipe`: its getter would open fd 0 a second time.
    if (pipe) pipe.destroy();
    else if (stream && stream !== process.stdin) stream.destroy();
    else input.pause();
    close();
  };
  return live;
}

/** fd 0 as a socket that reads into one reused buffer and hands each read to `consume`; null when fd 0 is no pipe. */
function stdinPipe(consume: (chunk: Uint8Array, length: number) => void): Socket | null {
  let stat: ReturnType<typeof fstatSync>;
  try {
    stat = fstatSync(0);
  } catch {
    return null;
  }
  if (!stat.isFIFO() && !stat.isSocket()) return null;
  const buffer = Buffer.allocUnsafe(64 * 1024);
  // `onread` (Node >= 12) is missing from @types/node's constructor options, not from Node.
  const options = {
    fd: 0,
    readable: true,
    writable: false,
    onread: {
      buffer,
      callback: (n: number) => {
        consume(buffer, n);
        return true;
      },
    },
  };
  return new Socket(options);
}
