/**
 * The `mqtt` source: frames published to the device's `frames/in`. It owns the topic: the link is subscribed to
 * it only while this source is open, so frames sent over MQTT never mix into a file or camera source's frames.
 */
import { ConfigError, FrameError, show } from '../../runtime/index.js';
import { decodePicture, isPicture, toModelFrame } from './image.js';
import { PushSource } from './push.js';
import type { FrameFeed, FrameProperties, FrameSource, SourceFrame, SourceOptions } from './types.js';

/** A live source of `feed`'s frames; a message that is no usable frame goes to `badFrame` and the source goes on. */
export function mqttSource(
  feed: FrameFeed,
  opts: Pick<SourceOptions, 'target' | 'crop' | 'invert' | 'fit'>,
  badFrame: (err: Error) => void,
): FrameSource {
  const live = new PushSource('MQTT frames/in');
  const sub = feed.frames((payload, props) => {
    let frame: SourceFrame;
    try {
      frame = decodeFrame(payload, props, opts);
    } catch (err) {
      badFrame(err as Error);
      return;
    }
    live.push(frame);
  });
  const close = live.close.bind(live);
  return Object.assign(live, {
    ready: sub.ready,
    close: () => {
      sub.close();
      close();
    },
  });
}

/** A `frames/in` payload: raw HWC bytes of the model's input size, a PNG/PGM picture, or JSON {data: base64, label}. */
export function decodeFrame(
  payload: Buffer,
  props: FrameProperties,
  opts: Pick<SourceOptions, 'target' | 'crop' | 'invert' | 'fit'>,
): SourceFrame {
  let bytes: Uint8Array = payload;
  let label: number | null = null;
  const userLabel = props?.userProperties?.label;
  if (userLabel !== undefined)
    label = parseLabel(Array.isArray(userLabel) ? userLabel[0] : userLabel, 'label (user property)');
  const [h, w, c] = opts.target;
  // A raw frame may start with "{" (a first pixel of 123): it is JSON only when it parses as JSON.
  const json = payload[0] === 0x7b ? parseJson(payload, payload.length === h * w * c) : undefined;
  if (json !== undefined) {
    const msg = (typeof json === 'object' && json !== null ? json : {}) as { data?: unknown; label?: unknown };
    if (typeof msg.data !== 'string')
      throw new FrameError(`frames/in: data: expected a base64 string, got ${show(msg.data)}`, 'frames/in.data');
    bytes = Buffer.from(msg.data, 'base64');
    if (msg.label !== undefined && msg.label !== null) label = parseLabel(msg.label, 'frames/in.label');
  }
  if (bytes.length === h * w * c) return { data: Uint8Array.from(bytes), label };
  if (isPicture(bytes))
    return {
      data: toModelFrame(decodePicture(bytes, 'frames/in'), opts.target, opts.crop, opts.invert, opts.fit),
      label,
    };
  throw new FrameError(
    `frames/in: expected ${h * w * c} raw bytes (${h}x${w}x${c}) or a PNG/PGM picture, got ${bytes.length} bytes`,
    'frames/in',
  );
}

/** The JSON of a payload; undefined when it is none and `raw` says it may be a raw frame, else a FrameError. */
function parseJson(payload: Buffer, raw: boolean): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch (err) {
    if (raw) return undefined;
    throw new FrameError(
      `frames/in: expected raw bytes, a PNG/PGM or JSON {data, label}, got broken JSON (${(err as Error).message})`,
      'frames/in',
    );
  }
}

/** A class index from a message (a number, or digits in a string); `classes` bounds it when the model is known. */
export function parseLabel(v: unknown, field: string, classes = 65536): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= classes)
    throw new ConfigError(`${field}: expected a class index 0..${classes - 1}, got ${show(v)}`, field);
  return n;
}
