/**
 * Frame sources. Each yields frames already shaped for the model ([h, w, c] uint8), with the ground-truth label
 * when the source knows it. File sources are pulled (paced at the configured frame rate, looping); live sources
 * (stdin video here, the MQTT `frames/in` topic in mqtt.ts) push and never wait for the engine.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FASHION_MNIST_DIR, FrameError, labelledFrames, readIdx, readMnistSplit, sampleFrames } from '../../runtime/index.js';
import type { LabelledFrames } from '../../runtime/index.js';
import type { SourceSpec } from '../config.js';
import { decodePicture, toModelFrame } from './image.js';
import type { Image } from './image.js';
import { mqttSource } from './mqtt.js';
import { PushSource } from './push.js';
import type { FrameSource, SourceFrame, SourceOptions } from './types.js';

export { PushSource } from './push.js';
export type { FrameFeed, FrameProperties, FrameSource, SourceFrame, SourceOptions } from './types.js';

/** The Fashion-MNIST test set if installed, else the shipped samples. */
export function defaultFrames(): { frames: LabelledFrames; description: string } {
  if (existsSync(join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'))) {
    return { frames: readMnistSplit(FASHION_MNIST_DIR, 't10k'), description: `Fashion-MNIST test set (${FASHION_MNIST_DIR})` };
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
        const labels = spec.labels ? readIdx(spec.labels) : { shape: [images.shape[0]!], data: new Uint8Array(images.shape[0]!).fill(255) };
        frames = labelledFrames(images, labels);
      } catch (err) {
        // Like a missing folder: a named field, not a stack trace (the agent refuses to start on it).
        throw new FrameError(`source: expected readable IDX ${spec.labels ? 'images and labels' : 'images'}, got ${JSON.stringify(spec.labels ? `${spec.images}:${spec.labels}` : spec.images)} (${(err as Error).message})`, 'source.spec');
      }
      return labelledSource(frames, spec.images, opts, spec.labels !== null);
    }
    case 'images':
      return folderSource(spec.dir, opts);
    case 'stdin':
      return videoSource(opts.stdin ?? process.stdin, spec.format, spec.width, spec.height, opts);
    case 'mqtt':
      if (!opts.mqtt) throw new FrameError('source: the "mqtt" source needs an MQTT connection (mqtt.url)', 'source.spec');
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
function pulledSource(count: number, get: (i: number) => SourceFrame, description: string, opts: SourceOptions): FrameSource {
  let closed = false;
  return {
    description,
    live: false,
    length: count,
    close: () => void (closed = true),
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

function labelledSource(frames: LabelledFrames, description: string, opts: SourceOptions, hasLabels = true): FrameSource {
  const [h, w, c] = frames.frameShape;
  const same = h === opts.target[0] && w === opts.target[1] && c === opts.target[2] && !opts.invert && !opts.crop;
  const get = (i: number): SourceFrame => {
    const raw = frames.frame(i);
    const data = same ? raw : toModelFrame({ width: w, height: h, channels: c as 1 | 3, data: raw }, opts.target, opts.crop, opts.invert);
    return { data, label: hasLabels ? frames.labels[i]! : null };
  };
  return pulledSource(frames.count, get, description, opts);
}

const PICTURE = /\.(png|pgm)$/i;
/** A leading class number in a file name, as in `3_dress.png` or `7-sneaker.pgm`. */
const LABEL_PREFIX = /^(\d+)[_-]/;

function folderSource(dir: string, opts: SourceOptions): FrameSource {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => PICTURE.test(n)).sort();
  } catch (err) {
    throw new FrameError(`source: expected a readable folder of PNG/PGM images, got ${JSON.stringify(dir)} (${(err as Error).message})`, 'source.spec');
  }
  if (names.length === 0) throw new FrameError(`source: expected PNG or PGM files in ${dir}, got none`, 'source.spec');
  const get = (i: number): SourceFrame => {
    const name = names[i]!;
    const img = decodePicture(readFileSync(join(dir, name)), name);
    const m = LABEL_PREFIX.exec(name);
    return { data: toModelFrame(img, opts.target, opts.crop, opts.invert), label: m ? Number(m[1]) : null };
  };
  return pulledSource(names.length, get, `images in ${dir}`, opts);
}

/**
 * Raw video on a stream: `grey` is W*H bytes per frame, `yuv420` (I420) is W*H luma bytes followed by two
 * quarter-size chroma planes. Only the luma is used for a grey model; for an RGB model it is replicated.
 */
function videoSource(stream: Readable, format: 'grey' | 'yuv420', width: number, height: number, opts: SourceOptions): FrameSource {
  const frameBytes = format === 'grey' ? width * height : (width * height * 3) / 2;
  const c = opts.crop;
  if (c && (c.x + c.width > width || c.y + c.height > height)) {
    throw new FrameError(`source.crop: expected a box inside the ${width}x${height} frame, got ${c.width}x${c.height} at (${c.x}, ${c.y})`, 'source.crop');
  }
  const live = new PushSource(`stdin ${format} ${width}x${height}`);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const onData = (chunk: Buffer) => {
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes < frameBytes) return;
    const all = Buffer.concat(pending, pendingBytes);
    let off = 0;
    for (; off + frameBytes <= all.length; off += frameBytes) {
      const luma: Image = { width, height, channels: 1, data: all.subarray(off, off + width * height) };
      live.push({ data: toModelFrame(luma, opts.target, opts.crop, opts.invert), label: null });
    }
    pending = off < all.length ? [all.subarray(off)] : [];
    pendingBytes = all.length - off;
  };
  const onEnd = () => live.close();
  stream.on('data', onData);
  stream.once('end', onEnd);
  const close = live.close.bind(live);
  live.close = () => {
    stream.off('data', onData);
    stream.off('end', onEnd);
    if (stream !== process.stdin) stream.destroy();
    else stream.pause();
    close();
  };
  return live;
}
