/**
 * Folds a trained network into the runtime's model (runtime/format/model.ts):
 * - first layer: int8 weights `round(w / s_c)` (the same tf ops as training) and
 *   `scale_c = gamma_c * s_c / (255 * sd_c)`, `bias_c = beta_c - gamma_c * mean_c / sd_c`, sd = sqrt(var + eps):
 *   the /255 input scaling, the int8 step and the BN running statistics in one affine on the integer accumulator;
 * - binary convs: bit = (w >= 0), `scale_c = gamma_c * alpha_c / sd_c` (alpha = mean|w_c|), bias as above;
 * - LIF beta and theta as trained, head transposed to [out][in].
 * Folding happens in float64 and is rounded once to float32, then to what a .bwsnn file stores compactly
 * (runtime/format/precision.ts compactModel: float16 per-channel vectors, q8 head): the model returned is exactly
 * what the file holds, so the evaluation, the ONNX twin and the engine all compute with the stored values.
 */
import * as tf from '@tensorflow/tfjs';
import type { BinaryConvLayer, BwsnnModel, ConvInt8Layer, Lif } from '../../runtime/format/model.js';
import { packRows } from '../../runtime/format/bits.js';
import { compactModel } from '../../runtime/format/precision.js';
import { ConfigError } from '../../runtime/errors.js';
import { BN_EPSILON } from '../layers/batchnorm.js';
import { binaryScale, int8Parts } from '../layers/binary.js';
import type { NetConfig, NetParams } from '../model.js';
import { exportable, plan, shortcutLayout } from '../model.js';

function bnFold(
  p: NetParams['layers'][number],
  perChannel: Float32Array | Float64Array,
): { scale: Float32Array; bias: Float32Array } {
  const gamma = p.bn.gamma.dataSync(),
    beta = p.bn.beta.dataSync(),
    mean = p.bn.mean.dataSync(),
    variance = p.bn.variance.dataSync();
  const c = gamma.length;
  const scale = new Float32Array(c),
    bias = new Float32Array(c);
  for (let i = 0; i < c; i++) {
    const sd = Math.sqrt(variance[i]! + BN_EPSILON);
    scale[i] = (gamma[i]! * perChannel[i]!) / sd;
    bias[i] = beta[i]! - (gamma[i]! * mean[i]!) / sd;
  }
  return { scale, bias };
}

/** [k, k, cin, cout] weights as rows [cout][ky][kx][cin]. */
function rows(w: tf.Tensor): Float32Array {
  return tf.tidy(() => tf.transpose(w, [3, 0, 1, 2]).dataSync() as Float32Array);
}

/**
 * `precision: 'float32'` stops after the float32 rounding (the fold's own arithmetic, what `sei export` checks the
 * fold against the unfolded network with); the default is the compact model a file stores.
 */
export function foldModel(
  net: NetConfig,
  params: NetParams,
  info: { name: string; labels: readonly string[]; version?: number; meta?: Record<string, unknown> },
  precision: 'compact' | 'float32' = 'compact',
): BwsnnModel {
  if (net.neuron !== 'lif' || net.weights !== 'binary') {
    throw new ConfigError(
      `export: only binary-weight SNNs have a .bwsnn form; this network is neuron=${net.neuron}, weights=${net.weights}`,
      'weights',
    );
  }
  if (!exportable(net)) {
    throw new ConfigError(
      `export: the .bwsnn format's shortcuts span one conv; this network's '${shortcutLayout(net)}' layout has shortcuts around blocks of two (it trains and scores in the trainer only)`,
      'shortcuts',
    );
  }
  const layers = plan(net);
  // θ and β are variables (constants of the config unless learned): what the network trained with is what ships.
  const lif = (i: number): Lif => ({
    beta: Math.fround(params.layers[i]!.beta.dataSync()[0]!),
    theta: Float32Array.from(params.layers[i]!.theta.dataSync()),
  });
  const l0 = layers[0]!;
  const p0 = params.layers[0]!;
  const [stepT, intsT] = tf.tidy(() => {
    const parts = int8Parts(p0.w);
    return [parts.step, tf.transpose(parts.ints, [3, 0, 1, 2])];
  });
  const step = Float64Array.from(stepT.dataSync(), (s) => s / 255);
  const ints = intsT.dataSync();
  stepT.dispose();
  intsT.dispose();
  const first: ConvInt8Layer = {
    kind: 'conv_int8',
    name: l0.name,
    inShape: net.input,
    outShape: [l0.outSize[0], l0.outSize[1], l0.cout],
    kernel: l0.kernel,
    stride: l0.stride,
    pad: l0.pad,
    weights: Int8Array.from(ints),
    ...bnFold(p0, step),
    lif: lif(0),
  };
  const hidden: BinaryConvLayer[] = layers.slice(1).map((l, k) => {
    const p = params.layers[k + 1]!;
    const alpha = tf.tidy(() => binaryScale(p.w).dataSync() as Float32Array);
    return {
      kind: 'bconv',
      name: l.name,
      inShape: [l.inSize[0], l.inSize[1], l.cin],
      outShape: [l.outSize[0], l.outSize[1], l.cout],
      kernel: l.kernel,
      stride: l.stride,
      pad: l.pad,
      weightBits: packRows(rows(p.w), l.cout, l.kernel * l.kernel * l.cin),
      ...bnFold(p, alpha),
      shortcut: l.shortcut,
      lif: lif(k + 1),
    };
  });
  const [inF, outF] = params.headW.shape as [number, number];
  const hw = params.headW.dataSync();
  const weight = new Float32Array(inF * outF);
  for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) weight[o * inF + i] = hw[i * outF + o]!;
  const model: BwsnnModel = {
    name: info.name,
    version: info.version ?? 0,
    T: net.T,
    input: net.input,
    labels: info.labels,
    first,
    hidden,
    head: { inFeatures: inF, outFeatures: outF, weight, bias: Float32Array.from(params.headB.dataSync()) },
    meta: info.meta ?? {},
  };
  return precision === 'compact' ? compactModel(model) : model;
}
