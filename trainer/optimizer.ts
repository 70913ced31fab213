/**
 * The optimizer and the constraints of the binary recipe.
 * - Two Adam instances: the latent weights of the binary layers get their own peak rate (`latentLr`; a latent
 *   weight only matters through its sign, so a step as large as the others' flips signs faster than the network can
 *   follow), everything else (int8 first layer, BN, LIF θ/β, head) the run's rate. Both follow the run's schedule.
 * - After every step the latent binary weights are clipped to [−1, 1] (where the clipped STE passes gradient: a
 *   weight left outside could never come back), LIF thresholds kept ≥ θ_MIN and leaks in [β_MIN, 1] (the runtime's
 *   domain).
 * - Sign flips per layer over an epoch, for the run's log: how much the binary network still moves.
 */
import * as tf from '@tensorflow/tfjs';
import type { NetConfig, NetParams } from './model.js';
import { namedVariables } from './model.js';

export const THETA_MIN = 0.05;
export const BETA_MIN = 0.05;

/** Indices of the layers whose weights are binarised (the hidden convs of a binary-weight SNN). */
function binaryLayers(net: NetConfig, params: NetParams): number[] {
  if (net.weights !== 'binary' || net.neuron !== 'lif') return [];
  return params.layers.map((_, i) => i).filter((i) => i > 0);
}

export class ParamOptimizer {
  private readonly groups: Array<{ key: string; vars: Set<string>; optimizer: tf.AdamOptimizer; scale: number }>;

  constructor(net: NetConfig, params: NetParams, lr: number, latentLr = lr) {
    const latent = new Set(binaryLayers(net, params).map((i) => params.layers[i]!.w.name));
    const rest = new Set(
      namedVariables(params)
        .filter((v) => v.trainable && !latent.has(v.v.name))
        .map((v) => v.v.name),
    );
    this.groups = [
      { key: 'opt', vars: rest, optimizer: tf.train.adam(lr), scale: 1 },
      ...(latent.size ? [{ key: 'optw', vars: latent, optimizer: tf.train.adam(latentLr), scale: latentLr / lr }] : []),
    ];
  }

  /** The run's rate now; the latent group runs at the same fraction of its own peak. */
  setLearningRate(lr: number): void {
    for (const g of this.groups) (g.optimizer as unknown as { learningRate: number }).learningRate = lr * g.scale;
  }

  applyGradients(grads: Parameters<tf.Optimizer['applyGradients']>[0]): void {
    const named = Array.isArray(grads) ? grads.map((g) => [g.name, g.tensor] as const) : Object.entries(grads);
    for (const g of this.groups) {
      const mine: tf.NamedTensorMap = {};
      for (const [name, t] of named) if (g.vars.has(name)) mine[name] = t;
      // Adam takes tensors, though its declaration says variables.
      if (Object.keys(mine).length)
        g.optimizer.applyGradients(mine as Parameters<tf.AdamOptimizer['applyGradients']>[0]);
    }
  }

  /** Adam's state, named `<group>/<index>` (tfjs keys it by position, not by variable name). */
  async getWeights(): Promise<Array<{ name: string; tensor: tf.Tensor }>> {
    const out: Array<{ name: string; tensor: tf.Tensor }> = [];
    for (const g of this.groups)
      for (const w of await g.optimizer.getWeights()) out.push({ name: `${g.key}/${w.name}`, tensor: w.tensor });
    return out;
  }

  /** Restores what `getWeights` saved, from a checkpoint's tensors (a group absent there starts fresh). */
  async setWeights(tensors: Map<string, tf.Tensor>): Promise<void> {
    for (const g of this.groups) {
      const prefix = `${g.key}/`;
      const mine = [...tensors]
        .filter(([n]) => n.startsWith(prefix))
        .map(([n, tensor]) => ({ name: n.slice(prefix.length), tensor }));
      if (mine.length) await g.optimizer.setWeights(mine);
    }
  }

  dispose(): void {
    for (const g of this.groups) g.optimizer.dispose();
  }
}

/** Keeps the parameters in the recipe's domain after a step (see the file comment). */
export function constrainParams(net: NetConfig, params: NetParams): void {
  tf.tidy(() => {
    for (const i of binaryLayers(net, params)) {
      const w = params.layers[i]!.w;
      w.assign(tf.clipByValue(w, -1, 1));
    }
    for (const l of params.layers) {
      if (l.theta.trainable) l.theta.assign(tf.maximum(l.theta, THETA_MIN));
      if (l.beta.trainable) l.beta.assign(tf.clipByValue(l.beta, BETA_MIN, 1));
    }
  });
}

/** Signs of the latent binary weights (1: w ≥ 0), per binary layer. */
export function signSnapshot(net: NetConfig, params: NetParams): Uint8Array[] {
  return binaryLayers(net, params).map((i) => Uint8Array.from(params.layers[i]!.w.dataSync(), (v) => (v >= 0 ? 1 : 0)));
}

/** Per binary layer: the fraction of weights whose sign differs from `before`. */
export function signFlips(net: NetConfig, params: NetParams, before: Uint8Array[]): number[] {
  return signSnapshot(net, params).map((now, k) => {
    let flips = 0;
    for (let j = 0; j < now.length; j++) if (now[j] !== before[k]![j]) flips++;
    return flips / Math.max(1, now.length);
  });
}
