/**
 * ONNX twins of a BwsnnModel.
 *
 * - `snnTwinOnnx`: the same spiking network unrolled over T with float ops only. Every node is chosen so that it
 *   rounds exactly like the reference engine (one float32 rounding per mul and per add, in the same order), so
 *   onnxruntime with graph optimisations disabled reproduces every spike bit for bit. Integer parts (the int8
 *   first conv on raw 0..255 values, ±1 convs on 0/1 spikes, spike counts) are exact in float32 whatever order
 *   the runtime sums in.
 * - `annTwinOnnx`: the float ANN a user would deploy instead (same layout, ReLU, T = 1, float weights derived
 *   from the model), the baseline for `sei bench` sizes and speeds.
 *
 * Layout: ONNX is NCHW. The graph input `frame` is [1, C, H, W] float32 holding raw 0..255 values (see
 * `frameToNchw`); exposed spikes are `spikes_<layer>_t<k>` of shape [1, C, H, W] (conv) or [1, F] (linear).
 */
import onnxProto from 'onnx-proto';
import type { BwsnnModel, ConvInt8Layer, HiddenLayer, Shape3, Shortcut } from '../../runtime/format/model.js';
import { rowWords } from '../../runtime/format/model.js';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const OPSET = 13;

export interface SnnTwinOptions {
  /** Make every layer's spikes at every step a graph output `spikes_<layer>_t<k>`. Default false. */
  readonly exposeSpikes?: boolean;
}

/** Name of the graph output holding layer `layer`'s spikes at step `t`. */
export function spikeOutputName(layer: string, t: number): string {
  return `spikes_${layer}_t${t}`;
}

/** Name of the graph input (raw frame, NCHW float32) and output (logits [1, classes]) of both twins. */
export const TWIN_INPUT = 'frame';
export const TWIN_OUTPUT = 'logits';

/** HWC frame (values 0..255) to the NCHW float32 tensor data the twins take. */
export function frameToNchw(frame: ArrayLike<number>, shape: Shape3): Float32Array {
  const [h, w, c] = shape;
  const out = new Float32Array(h * w * c);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) out[(ch * h + y) * w + x] = frame[(y * w + x) * c + ch]!;
  return out;
}

/** Index in an NCHW [1, C, H, W] tensor of HWC neuron `i` of a feature map of shape `shape`. */
export function hwcToNchwIndex(i: number, shape: Shape3): number {
  const [h, w, c] = shape;
  const ch = i % c;
  return ch * h * w + (i - ch) / c;
}

/** Small graph builder over onnx-proto's generated messages (also used by bench/ for single-op graphs). */
export class Graph {
  readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private counter = 0;

  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  floats(hint: string, dims: readonly number[], values: ArrayLike<number>): string {
    const name = this.fresh(hint);
    const data = Float32Array.from(values);
    this.initializers.push(
      onnx.TensorProto.create({ name, dims: [...dims], dataType: FLOAT, rawData: new Uint8Array(data.buffer) }),
    );
    return name;
  }

  int64s(hint: string, values: readonly number[]): string {
    const name = this.fresh(hint);
    this.initializers.push(
      onnx.TensorProto.create({ name, dims: [values.length], dataType: INT64, int64Data: [...values] }),
    );
    return name;
  }

  /** Adds one node; returns its (first) output name. `out` names it, else a fresh name is used. */
  op(
    opType: string,
    inputs: readonly string[],
    attrs: Record<string, number | readonly number[]> = {},
    out?: string,
  ): string {
    const output = out ?? this.fresh(opType.toLowerCase());
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: [...inputs],
        output: [output],
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return output;
  }

  /** A node with several outputs. */
  multi(
    opType: string,
    inputs: readonly string[],
    count: number,
    attrs: Record<string, number | readonly number[]> = {},
  ): string[] {
    const outputs = Array.from({ length: count }, () => this.fresh(opType.toLowerCase()));
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: [...inputs],
        output: outputs,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return outputs;
  }

  output(name: string, dims: readonly number[]): void {
    this.outputs.push(valueInfo(name, dims));
  }

  encode(modelName: string, inputDims: readonly number[], docString: string): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 7,
      producerName: 'sei-edge',
      producerVersion: '0.1.0',
      docString,
      opsetImport: [{ domain: '', version: OPSET }],
      graph: {
        name: modelName,
        node: this.nodes,
        initializer: this.initializers,
        input: [valueInfo(TWIN_INPUT, inputDims)],
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function attribute(name: string, value: number | readonly number[]) {
  // Every attribute these graphs use (axis, keepdims, to, perm, kernel_shape, strides, pads) is an integer.
  const A = onnx.AttributeProto.AttributeType;
  return typeof value === 'number'
    ? onnx.AttributeProto.create({ name, type: A.INT, i: value })
    : onnx.AttributeProto.create({ name, type: A.INTS, ints: [...value] });
}

function valueInfo(name: string, dims: readonly number[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
}

/** The ±1 value of bit `j` of packed row `row`. */
function bit(bits: Uint32Array, words: number, row: number, j: number): number {
  return (bits[row * words + (j >>> 5)]! >>> (j & 31)) & 1 ? 1 : -1;
}

/** int8 [cout][ky][kx][cin] → float [cout][cin][ky][kx], each multiplied by `mul(cout)`. */
function firstWeightsOihw(layer: ConvInt8Layer, mul: (o: number) => number): Float32Array {
  const { kernel: k } = layer;
  const cin = layer.inShape[2];
  const cout = layer.outShape[2];
  const out = new Float32Array(cout * cin * k * k);
  for (let o = 0; o < cout; o++) {
    for (let ky = 0; ky < k; ky++)
      for (let kx = 0; kx < k; kx++)
        for (let c = 0; c < cin; c++) {
          out[((o * cin + c) * k + ky) * k + kx] = layer.weights[((o * k + ky) * k + kx) * cin + c]! * mul(o);
        }
  }
  return out;
}

/** Packed bconv rows (fan-in order (ky, kx, cin)) → float [cout][cin][ky][kx] of ±mul(cout). */
function binaryConvOihw(layer: Extract<HiddenLayer, { kind: 'bconv' }>, mul: (o: number) => number): Float32Array {
  const { kernel: k } = layer;
  const cin = layer.inShape[2];
  const cout = layer.outShape[2];
  const words = rowWords(k * k * cin);
  const out = new Float32Array(cout * cin * k * k);
  for (let o = 0; o < cout; o++) {
    for (let ky = 0; ky < k; ky++)
      for (let kx = 0; kx < k; kx++)
        for (let c = 0; c < cin; c++) {
          out[((o * cin + c) * k + ky) * k + kx] = bit(layer.weightBits, words, o, (ky * k + kx) * cin + c) * mul(o);
        }
  }
  return out;
}

/** Packed blinear rows → float [in][out] (MatMul's B) of ±mul(out). */
function binaryLinearInOut(layer: Extract<HiddenLayer, { kind: 'blinear' }>, mul: (o: number) => number): Float32Array {
  const words = rowWords(layer.inFeatures);
  const out = new Float32Array(layer.inFeatures * layer.outFeatures);
  for (let o = 0; o < layer.outFeatures; o++)
    for (let j = 0; j < layer.inFeatures; j++)
      out[j * layer.outFeatures + o] = bit(layer.weightBits, words, o, j) * mul(o);
  return out;
}

/** What a layer's output looks like in the graph: NCHW map or flat features. */
type Geometry = { readonly kind: 'map'; readonly shape: Shape3 } | { readonly kind: 'flat'; readonly features: number };

function geometryOf(layer: ConvInt8Layer | HiddenLayer): Geometry {
  return layer.kind === 'blinear'
    ? { kind: 'flat', features: layer.outFeatures }
    : { kind: 'map', shape: layer.outShape };
}

/** Per-channel broadcast dims for a tensor of this geometry. */
function channelDims(g: Geometry, channels: number): number[] {
  return g.kind === 'map' ? [1, channels, 1, 1] : [1, channels];
}

/** Flattens an NCHW map [N, C, H, W] to [N, H*W*C] in HWC order (the order blinear fan-ins use). */
function flattenHwc(g: Graph, x: string, features: number): string {
  const t = g.op('Transpose', [x], { perm: [0, 2, 3, 1] });
  return g.op('Reshape', [t, g.int64s('shape', [-1, features])]);
}

/**
 * 2×2 average pool, stride 2, as `(((a + b) + c) + d) * 0.25` with a, b, c, d the top-left, top-right,
 * bottom-left and bottom-right inputs (each op one float32 rounding, as in the engine), then the channels tiled
 * so that output channel c reads input channel c % cin.
 */
function avgpoolRepeat(g: Graph, x: string, inShape: Shape3, cout: number): string {
  const [h, w, cin] = inShape;
  const corner = (dy: number, dx: number) =>
    g.op('Slice', [
      x,
      g.int64s('starts', [dy, dx]),
      g.int64s('ends', [h, w]),
      g.int64s('axes', [2, 3]),
      g.int64s('steps', [2, 2]),
    ]);
  const sum = g.op('Add', [g.op('Add', [g.op('Add', [corner(0, 0), corner(0, 1)]), corner(1, 0)]), corner(1, 1)]);
  return tile(g, g.op('Mul', [sum, g.floats('quarter', [], [0.25])]), cin, cout);
}

/** The shortcut term of `layer` computed from the previous layer's current `src` (geometry `srcGeom`). */
function shortcutTerm(
  g: Graph,
  shortcut: Shortcut,
  src: string,
  srcGeom: Geometry,
  layer: HiddenLayer,
): string | undefined {
  if (shortcut === 'none') return undefined;
  if (shortcut === 'identity')
    return layer.kind === 'blinear' && srcGeom.kind === 'map' ? flattenHwc(g, src, layer.inFeatures) : src;
  if (layer.kind !== 'bconv' || srcGeom.kind !== 'map')
    throw new Error(`layer ${layer.name}: avgpool_repeat needs a conv layer after a conv layer`);
  return avgpoolRepeat(g, src, srcGeom.shape, layer.outShape[2]);
}

/**
 * LIF over T steps on current `current` ([1, ...] when constant over time, else [T, ...]). Returns the spikes
 * as [T, ...] (0/1 floats). `v = beta*v + I; s = v >= theta; v = v - theta*s`, v = 0 before step 0.
 */
function lif(
  g: Graph,
  current: string,
  constant: boolean,
  T: number,
  beta: number,
  theta: Float32Array,
  geom: Geometry,
  name: string,
  expose: boolean,
): string {
  const dims = channelDims(geom, theta.length);
  const betaName = T > 1 ? g.floats(`${name}_beta`, [], [Math.fround(beta)]) : '';
  const thetaName = g.floats(`${name}_theta`, dims, theta);
  const steps =
    constant || T === 1
      ? Array.from({ length: T }, () => current)
      : g.multi('Split', [current, g.int64s('split', Array(T).fill(1))], T, { axis: 0 });
  const spikes: string[] = [];
  const outDims = geom.kind === 'map' ? [1, geom.shape[2], geom.shape[0], geom.shape[1]] : [1, geom.features];
  let v = '';
  for (let t = 0; t < T; t++) {
    // At step 0, beta * 0 + I is exactly I.
    v = t === 0 ? steps[0]! : g.op('Add', [g.op('Mul', [v, betaName]), steps[t]!]);
    const fired = g.op('GreaterOrEqual', [v, thetaName]);
    const s = g.op('Cast', [fired], { to: FLOAT }, expose ? spikeOutputName(name, t) : undefined);
    if (expose) g.output(s, outDims);
    spikes.push(s);
    if (t < T - 1) v = g.op('Sub', [v, g.op('Mul', [thetaName, s])]);
  }
  return T === 1 ? spikes[0]! : g.op('Concat', spikes, { axis: 0 });
}

/** Per-channel affine `scale * x + bias` as two nodes (two roundings, never fused). */
function affine(g: Graph, x: string, scale: Float32Array, bias: Float32Array, geom: Geometry, name: string): string {
  const dims = channelDims(geom, scale.length);
  return g.op('Add', [g.op('Mul', [x, g.floats(`${name}_scale`, dims, scale)]), g.floats(`${name}_bias`, dims, bias)]);
}

export function convAttrs(kernel: number, stride: number, pad: number) {
  return { kernel_shape: [kernel, kernel], strides: [stride, stride], pads: [pad, pad, pad, pad] };
}

/** Builds the unrolled float SNN twin. See the file comment for the layout and rounding contract. */
export function snnTwinOnnx(model: BwsnnModel, opts: SnnTwinOptions = {}): Uint8Array {
  const g = new Graph();
  const expose = opts.exposeSpikes ?? false;
  const { T, first } = model;

  // First layer, once per frame: exact integer conv, then scale and bias as separate roundings.
  const w0 = g.floats(
    `${first.name}_w`,
    [first.outShape[2], first.inShape[2], first.kernel, first.kernel],
    firstWeightsOihw(first, () => 1),
  );
  const acc0 = g.op('Conv', [TWIN_INPUT, w0], convAttrs(first.kernel, first.stride, first.pad));
  let geom = geometryOf(first);
  let current = affine(g, acc0, first.scale, first.bias, geom, first.name);
  let spikes = lif(g, current, true, T, first.lif.beta, first.lif.theta, geom, first.name, expose);

  for (const layer of model.hidden) {
    const layerGeom = geometryOf(layer);
    let dot: string;
    if (layer.kind === 'bconv') {
      const w = g.floats(
        `${layer.name}_w`,
        [layer.outShape[2], layer.inShape[2], layer.kernel, layer.kernel],
        binaryConvOihw(layer, () => 1),
      );
      dot = g.op('Conv', [spikes, w], convAttrs(layer.kernel, layer.stride, layer.pad));
    } else {
      const flat = geom.kind === 'map' ? flattenHwc(g, spikes, layer.inFeatures) : spikes;
      dot = g.op('MatMul', [
        flat,
        g.floats(
          `${layer.name}_w`,
          [layer.inFeatures, layer.outFeatures],
          binaryLinearInOut(layer, () => 1),
        ),
      ]);
    }
    let next = affine(g, dot, layer.scale, layer.bias, layerGeom, layer.name);
    const sc = shortcutTerm(g, layer.shortcut, current, geom, layer);
    if (sc !== undefined) next = g.op('Add', [next, sc]);
    // The first layer's current is [1, ...]; broadcasting it over T in the Add keeps each element's single rounding.
    current = next;
    geom = layerGeom;
    spikes = lif(g, current, false, T, layer.lif.beta, layer.lif.theta, geom, layer.name, expose);
  }

  // Head: spike counts over steps and space (exact integers), one division, then the float linear.
  const units = geom.kind === 'map' ? geom.shape[0] * geom.shape[1] : 1;
  const channels = geom.kind === 'map' ? geom.shape[2] : geom.features;
  const counts = g.op('ReduceSum', [spikes, g.int64s('axes', geom.kind === 'map' ? [0, 2, 3] : [0])], { keepdims: 0 });
  const rates = g.op('Div', [counts, g.floats('steps_units', [], [units * T])]);
  logitsHead(g, g.op('Reshape', [rates, g.int64s('shape', [1, channels])]), model);
  return g.encode(
    `${model.name}-snn-twin`,
    [1, model.input[2], model.input[0], model.input[1]],
    `unrolled float SNN twin of ${model.name}, T=${T}`,
  );
}

function logitsHead(g: Graph, rates: string, model: BwsnnModel): void {
  const { head } = model;
  const wt = new Float32Array(head.inFeatures * head.outFeatures);
  for (let o = 0; o < head.outFeatures; o++)
    for (let i = 0; i < head.inFeatures; i++) wt[i * head.outFeatures + o] = head.weight[o * head.inFeatures + i]!;
  const mm = g.op('MatMul', [rates, g.floats('head_w', [head.inFeatures, head.outFeatures], wt)]);
  g.op('Add', [mm, g.floats('head_b', [1, head.outFeatures], head.bias)], {}, TWIN_OUTPUT);
  g.output(TWIN_OUTPUT, [1, head.outFeatures]);
}

/**
 * The float ANN a user would deploy instead: first conv (int8 weights × scale, bias), each binary conv as a float
 * conv with weights ±scale_c and bias_c, ReLU for every LIF, the same shortcuts on the previous activation,
 * global average pool, linear head. T = 1. Deterministic: derived from the model only.
 */
export function annTwinOnnx(model: BwsnnModel): Uint8Array {
  const g = new Graph();
  const { first } = model;
  const conv = (
    name: string,
    x: string,
    w: Float32Array,
    bias: Float32Array,
    cout: number,
    cin: number,
    k: number,
    s: number,
    p: number,
  ) =>
    g.op(
      'Conv',
      [x, g.floats(`${name}_w`, [cout, cin, k, k], w), g.floats(`${name}_b`, [cout], bias)],
      convAttrs(k, s, p),
    );
  let x = g.op('Relu', [
    conv(
      first.name,
      TWIN_INPUT,
      firstWeightsOihw(first, (o) => first.scale[o]!),
      first.bias,
      first.outShape[2],
      first.inShape[2],
      first.kernel,
      first.stride,
      first.pad,
    ),
  ]);
  let geom = geometryOf(first);
  for (const layer of model.hidden) {
    const layerGeom = geometryOf(layer);
    let y: string;
    if (layer.kind === 'bconv') {
      y = conv(
        layer.name,
        x,
        binaryConvOihw(layer, (o) => layer.scale[o]!),
        layer.bias,
        layer.outShape[2],
        layer.inShape[2],
        layer.kernel,
        layer.stride,
        layer.pad,
      );
    } else {
      const flat = geom.kind === 'map' ? flattenHwc(g, x, layer.inFeatures) : x;
      const w = g.floats(
        `${layer.name}_w`,
        [layer.inFeatures, layer.outFeatures],
        binaryLinearInOut(layer, (o) => layer.scale[o]!),
      );
      y = g.op('Gemm', [flat, w, g.floats(`${layer.name}_b`, [layer.outFeatures], layer.bias)]);
    }
    if (layer.shortcut !== 'none') {
      const sc =
        layer.shortcut === 'avgpool_repeat' && geom.kind === 'map' && layer.kind === 'bconv'
          ? tile(
              g,
              g.op('AveragePool', [x], { kernel_shape: [2, 2], strides: [2, 2] }),
              geom.shape[2],
              layer.outShape[2],
            )
          : layer.kind === 'blinear' && geom.kind === 'map'
            ? flattenHwc(g, x, layer.inFeatures)
            : x;
      y = g.op('Add', [y, sc]);
    }
    x = g.op('Relu', [y]);
    geom = layerGeom;
  }
  const pooled = geom.kind === 'map' ? g.op('Flatten', [g.op('GlobalAveragePool', [x])], { axis: 1 }) : x;
  logitsHead(g, pooled, model);
  return g.encode(
    `${model.name}-ann-twin`,
    [1, model.input[2], model.input[0], model.input[1]],
    `float ANN twin of ${model.name} (ReLU, T=1)`,
  );
}

function tile(g: Graph, x: string, cin: number, cout: number): string {
  return cout === cin
    ? x
    : g.op(
        'Concat',
        Array.from({ length: cout / cin }, () => x),
        { axis: 1 },
      );
}
