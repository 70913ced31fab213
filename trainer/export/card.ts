/** The model card written next to a bundled model (`sei export --card`): every number measured at export time. */
import { cpus } from 'node:os';
import type { BwsnnModel } from '../../runtime/format/model.js';

export interface CardFacts {
  readonly file: string;
  readonly bytes: number;
  readonly engineAccuracy: number;
  readonly trainerAccuracy: number;
  readonly agreement: number;
  readonly testFrames: number;
  readonly epochs: number;
  readonly wallSeconds: number;
  readonly trainEngine: string;
  readonly command: string;
  readonly notes?: string;
}

export function modelCard(model: BwsnnModel, f: CardFacts): string {
  const layerRows = [
    `| ${model.first.name} | int8 conv ${model.first.kernel}×${model.first.kernel}/${model.first.stride} on raw uint8 | ${model.first.inShape.join('×')} → ${model.first.outShape.join('×')} | – |`,
    ...model.hidden.map((l) => l.kind === 'bconv'
      ? `| ${l.name} | binary conv ${l.kernel}×${l.kernel}/${l.stride} | ${l.inShape.join('×')} → ${l.outShape.join('×')} | ${l.shortcut} |`
      : `| ${l.name} | binary linear | ${l.inFeatures} → ${l.outFeatures} | ${l.shortcut} |`),
    `| head | float linear on spike rates | ${model.head.inFeatures} → ${model.head.outFeatures} | – |`,
  ];
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  return [
    `# ${model.name}`,
    '',
    `Binary-weight spiking network (1-bit hidden weights, int8 first layer) for Fashion-MNIST, trained with the SEI`,
    `recipe in trainer/ and exported with \`sei export\`.`,
    '',
    '| | |',
    '|---|---|',
    `| test accuracy (10k Fashion-MNIST test set, runtime engine) | **${pct(f.engineAccuracy)}** (n = ${f.testFrames}) |`,
    `| trainer's folded evaluation / per-frame agreement with the engine | ${pct(f.trainerAccuracy)} / ${pct(f.agreement)} |`,
    `| time steps T | ${model.T} (LIF beta ${model.first.lif.beta}, theta 1 before folding) |`,
    `| file | \`${f.file}\`, ${f.bytes} bytes (${(f.bytes / 1024).toFixed(1)} KiB) |`,
    `| training | ${f.epochs.toFixed(2)} epochs, ${(f.wallSeconds / 3600).toFixed(2)} h training wall time, engine ${f.trainEngine} |`,
    `| machine | ${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}, shared with other jobs during training |`,
    '',
    'Measure it: `sei eval --model ' + f.file + ' --json` (last line `{"accuracy": …, "n": 10000, "T": …}`).',
    '',
    '## Architecture',
    '',
    '| layer | op | shape (H×W×C) | shortcut |',
    '|---|---|---|---|',
    ...layerRows,
    '',
    'Every binary conv adds the previous layer\'s LIF input current (identity, or 2×2 average pool + channel repeat',
    'at stride 2) before its LIF; BN, alpha = mean|w|, the /255 input scaling and the int8 step are folded into',
    'per-channel scale/bias. Logits = head(mean spike rate over space and T) = mean of the per-step logits.',
    '',
    '## Training command',
    '',
    '```sh',
    f.command,
    '```',
    '',
    ...(f.notes ? ['## Notes', '', f.notes, ''] : []),
  ].join('\n');
}
