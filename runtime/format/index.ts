/** The .bwsnn format: in-memory model, container read/write/inspect, validation, bit packing, number encodings, signing keys. */
export type {
  BwsnnModel,
  ConvInt8Layer,
  BinaryConvLayer,
  BinaryLinearLayer,
  HiddenLayer,
  Head,
  Lif,
  Shape3,
  Shortcut,
} from './model.js';
export { rowWords, convOut } from './model.js';
export type { Layer, Op, OpRole, PerOp } from './ops.js';
export {
  OPS,
  OP_NAMES,
  FIRST_OPS,
  HIDDEN_OPS,
  HEAD_OPS,
  fanOut,
  layerChannels,
  layerUnits,
  mapShape,
  perOp,
} from './ops.js';
export type { BwsnnSummary, LayerSummary, ReadOptions, TensorRef, WriteOptions, DType } from './container.js';
export { FORMAT_VERSION, inspectBwsnn, readBwsnn, readBwsnnFile, writeBwsnn } from './container.js';
export { LIMITS, validateModel } from './validate.js';
export { dirtyPadding, packRows, packStream, unpackRows, unpackStream } from './bits.js';
export { compactModel, isFloat16, toFloat16 } from './precision.js';
export { keyFingerprint } from './sign.js';
