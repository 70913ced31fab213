import { existsSync } from 'node:fs';
import { bundledModel } from '../device-agent/models.js';
import { ConfigError } from '../runtime/errors.js';
import type { BwsnnModel } from '../runtime/format/model.js';
import { loadModel } from '../runtime/index.js';
import type { Engine, LoadOptions } from '../runtime/index.js';
import { fromFile } from './options.js';

/**
 * A `--model` value: a .bwsnn path as is, or `random:SEED` — a seeded random model of the Fashion-MNIST layout
 * (32 first channels, T = 2), for trying things without a trained model. No value: the bundled model, else random:1.
 * The random generator (runtime/format/random-model.ts) is imported only when asked for.
 */
export async function resolveModelArg(spec: string | undefined): Promise<BwsnnModel | string> {
  const chosen = spec ?? bundledModel() ?? 'random:1';
  const m = /^random:(\d+)$/.exec(chosen);
  if (m) {
    const { randomModel, FMNIST_BLOCKS } = await import('../runtime/format/random-model.js');
    return randomModel({ seed: Number(m[1]), blocks: FMNIST_BLOCKS, firstChannels: 32 });
  }
  if (chosen.startsWith('random:'))
    throw new ConfigError(
      `--model: expected random:<non-negative integer seed>, got ${JSON.stringify(chosen)}`,
      'model',
    );
  if (!existsSync(chosen))
    throw new ConfigError(
      `--model: expected a .bwsnn file or random:SEED, got ${JSON.stringify(chosen)} (no such file)`,
      'model',
    );
  return chosen;
}

/** A `--model` value as a running engine: a file that cannot be read or is not a valid .bwsnn is a ConfigError naming --model. */
export async function loadModelArg(spec: string | undefined, options: LoadOptions = {}): Promise<Engine> {
  const model = await resolveModelArg(spec);
  return fromFile('--model', 'a .bwsnn model', typeof model === 'string' ? model : (spec ?? 'random:1'), () =>
    loadModel(model, options),
  );
}
