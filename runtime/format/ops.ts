/**
 * The op table: every op of the .bwsnn format (versions 1 and 2), where in a model it may stand, and the per-op geometry
 * the rest of the project asks for instead of branching on op names. The container, the validator, the OTA
 * manifest and both kernel backends read it; per-op code elsewhere sits in tables typed over the op names
 * (`PerOp`), so that a new op the table lists fails to compile until each of them has its entry. The files a
 * new op touches are listed in ARCHITECTURE.md ("Adding an op").
 */
import type { ConvInt8Layer, HiddenLayer, Shape3 } from './model.js';

/** Where an op may stand: the first layer (on the raw frame), a hidden layer (on spikes), the head (on rates). */
export type OpRole = 'first' | 'hidden' | 'head';

interface OpInfo {
  readonly role: OpRole;
  /** How the header states the op's input and output: feature maps ([h, w, c]) or feature counts. */
  readonly shape: 'map' | 'features';
}

export const OPS = {
  conv_int8: { role: 'first', shape: 'map' },
  bconv: { role: 'hidden', shape: 'map' },
  blinear: { role: 'hidden', shape: 'features' },
  rate_linear: { role: 'head', shape: 'features' },
} as const satisfies Record<string, OpInfo>;

export type Op = keyof typeof OPS;
/** Every op, in table order: what the runtime can execute (the OTA manifest admits these and no others). */
export const OP_NAMES = Object.keys(OPS) as readonly Op[];
const opsFor = (role: OpRole) => OP_NAMES.filter((op) => OPS[op].role === role);
export const FIRST_OPS = opsFor('first');
export const HIDDEN_OPS = opsFor('hidden');
export const HEAD_OPS = opsFor('head');

/** A layer with neurons (the first layer or a hidden one); its `kind` is its op. */
export type Layer = ConvInt8Layer | HiddenLayer;

/** One implementation per op of the layers `L`, each typed with its own layer. */
export type PerOp<L extends Layer, A extends unknown[], R> = {
  readonly [K in L['kind']]: (layer: Extract<L, { kind: K }>, ...args: A) => R;
};

/** Calls `layer`'s entry of `table`; undefined for a kind the table has not (a malformed in-memory model). */
export function perOp<L extends Layer, A extends unknown[], R>(
  table: PerOp<L, A, R>,
  layer: L,
  ...args: A
): R | undefined {
  const kind: unknown = (layer as { kind?: unknown }).kind;
  if (typeof kind !== 'string' || !Object.hasOwn(table, kind)) return undefined;
  return (table[kind as L['kind']] as (layer: L, ...args: A) => R)(layer, ...args);
}

const MAP: PerOp<Layer, [], Shape3> = {
  conv_int8: (l) => l.outShape,
  bconv: (l) => l.outShape,
  blinear: (l) => [1, 1, l.outFeatures],
};

/** Output shape of a layer as a feature map (a linear layer is a 1×1 map). */
export function mapShape(layer: Layer): Shape3 {
  return perOp(MAP, layer)!;
}

/** Number of neurons (output units) of a layer. */
export function layerUnits(layer: Layer): number {
  const [h, w, c] = mapShape(layer);
  return h * w * c;
}

/** Output channels of a layer (the length of its scale, bias and theta). */
export function layerChannels(layer: Layer): number {
  return mapShape(layer)[2];
}

const FAN_OUT: PerOp<HiddenLayer, [], number> = {
  bconv: (l) => (l.kernel * l.kernel * l.outShape[2]) / (l.stride * l.stride),
  blinear: (l) => l.outFeatures,
};

/** Synaptic operations one input spike of a binary layer drives: k*k*cout/stride^2 for a conv, outFeatures for a linear. */
export function fanOut(layer: HiddenLayer): number {
  return perOp(FAN_OUT, layer)!;
}
