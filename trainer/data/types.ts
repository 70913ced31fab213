/** The trainer's data types, shared by the IDX and image-folder loaders (trainer/data/index.ts). */
import type { Fit, FrameShape } from '../../runtime/data/fit.js';

export interface Split {
  readonly count: number;
  /** [height, width, channels] of one frame. */
  readonly shape: readonly [number, number, number];
  /** count × h × w × c bytes, HWC. */
  readonly images: Uint8Array;
  readonly labels: Uint8Array;
  /** Image folders: the file each frame was read from (absolute path), for `sei eval --errors`. */
  readonly files?: readonly string[];
}

export interface Dataset {
  readonly train: Split;
  readonly val: Split;
  readonly test: Split;
  readonly labels: readonly string[];
}

/** Fractions of each class held out for validation and for test when a folder has no val/ or test/. */
export interface Holdout {
  readonly val: number;
  readonly test: number;
}

export const DEFAULT_HOLDOUT: Holdout = { val: 0.1, test: 0.1 };

export interface DataOptions {
  /**
   * An IDX folder ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz) or an image folder (one subfolder per class,
   * optionally under train/ val/ test/); told apart by what it holds. Default: Debian's dataset-fashion-mnist.
   */
  readonly dir?: string;
  /** IDX: training frames held out for validation (fixed split, independent of the run seed). Default 5000. */
  readonly valSize?: number;
  /** Use only N training frames (IDX: the first N after the split; image folders: a seeded sample) — for quick tests. */
  readonly trainLimit?: number;
  readonly testLimit?: number;
  /**
   * The frame shape [h, w, c] every picture is fitted to (runtime/data/fit.ts). Absent: the IDX files' own shape;
   * for an image folder 32×32, with 3 channels when any picture has colour, else 1.
   */
  readonly input?: FrameShape;
  /** How a picture of another shape is fitted. Default `crop`. */
  readonly fit?: Fit;
  /** Image folders without val/ or test/: the fractions of each class held out. Default DEFAULT_HOLDOUT. */
  readonly holdout?: Holdout;
}
