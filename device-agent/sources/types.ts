/** What every frame source is and is given (sources/index.ts makes them from a SourceSpec). */
import type { Readable } from 'node:stream';
import type { Fit } from '../../runtime/index.js';
import type { Crop } from '../config.js';
import type { Shape3 } from './image.js';

export interface SourceFrame {
  /** HWC uint8, exactly the model's input shape. */
  readonly data: Uint8Array;
  /** Ground truth class, or null when unknown. */
  readonly label: number | null;
}

export interface FrameSource extends AsyncIterable<SourceFrame> {
  /** Human-readable, for status and logs. */
  readonly description: string;
  /** Live sources drop frames when the engine is behind; pulled sources wait. */
  readonly live: boolean;
  /** Frames in one pass (file sources), else null. */
  readonly length: number | null;
  /** Set when frames can arrive only once something outside is ready (the `mqtt` source: its subscription). */
  readonly ready?: Promise<void>;
  close(): void;
}

/** MQTT 5 properties of a `frames/in` message that the source reads. */
export type FrameProperties = { readonly userProperties?: Record<string, string | string[]> } | undefined;

/** The MQTT link as the `mqtt` source sees it: the `frames/in` topic and nothing else. */
export interface FrameFeed {
  /**
   * Subscribes to `frames/in` (again on every reconnect) and hands each message to `on` until `close`. `ready`
   * resolves once the broker has the subscription, or at once while offline (the next connection makes it).
   */
  frames(on: (payload: Buffer, properties: FrameProperties) => void): { readonly ready: Promise<void>; close(): void };
}

export interface SourceOptions {
  /** Model input shape [h, w, c]. */
  readonly target: Shape3;
  readonly frameRate: number;
  readonly loop: boolean;
  /** Kept of each source frame before the model's fit; null: the whole frame. */
  readonly crop: Crop | null;
  readonly invert: boolean;
  /** The model's fit policy (runtime/data/fit.ts, `modelFit`), how training fitted its pictures; default crop. */
  readonly fit?: Fit;
  /** Stream for `stdin:` sources (default process.stdin). */
  readonly stdin?: Readable;
  /** For the `mqtt` source: the link's `frames/in`, and who hears of a message that is not a usable frame. */
  readonly mqtt?: { readonly feed: FrameFeed; readonly badFrame: (err: Error) => void };
}
