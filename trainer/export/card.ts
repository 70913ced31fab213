/** The model card written next to a bundled model (`sei export --card`): every number measured at export time. */
import { cpus } from 'node:os';
import type { BwsnnModel } from '../../runtime/format/model.js';
import type { EpochRecord, SchedulePhase } from '../train.js';

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
  /** The run's training configuration (what the .bwsnn header's meta no longer carries). */
  readonly recipe?: unknown;
  readonly notes?: string;
  /** What it was trained on and what the test frames are; default Fashion-MNIST and its 10k test set. */
  readonly dataset?: { readonly name: string; readonly test: string };
  /** The learning-rate schedule's phases. */
  readonly schedule?: readonly SchedulePhase[];
  /** Per-epoch log of the student (and of the teacher, when it was trained in the run). */
  readonly history?: readonly EpochRecord[];
  readonly teacherHistory?: readonly EpochRecord[];
  /** The folder of the teacher's checkpoint (`RUN/teacher`, or the run `--teacher-from` named). */
  readonly teacherFrom?: string;
  /** The runtime engine's spike rate per layer over the test frames. */
  readonly engineSpikeRates?: readonly number[];
  /** Other networks of the same layout scored on the same test frames (the ANN teacher, an FP-weight twin, …). */
  readonly baselines?: readonly CardBaseline[];
}

/** A network beside the model: what it is, where its run is, its budget and its test accuracy. */
export interface CardBaseline {
  /** E.g. `ANN (ReLU, float weights)`, `FP-weight SNN, T = 2`. */
  readonly name: string;
  readonly dir: string;
  readonly epochs: number;
  readonly batchSize: number;
  readonly testAccuracy: number;
  readonly testFrames: number;
  readonly wallSeconds: number;
  /** Its per-epoch log, shown under the table unless it is the teacher's (shown already). */
  readonly history?: readonly EpochRecord[];
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

function scheduleTable(phases: readonly SchedulePhase[]): string[] {
  return [
    '| phase | epochs | peak lr | warm-up (epochs) | final lr |',
    '|---|---|---|---|---|',
    ...phases.map(
      (p, i) =>
        `| ${i + 1} | ${p.startEpoch}–${p.startEpoch + p.epochs} | ${p.lr} | ${p.warmupEpochs} | ${p.lr * p.lrFinal} |`,
    ),
  ];
}

function historyTable(history: readonly EpochRecord[]): string[] {
  const layers = history.reduce((m, h) => Math.max(m, h.spikeRates?.length ?? 0), 0);
  const flips = history.reduce((m, h) => Math.max(m, h.signFlips?.length ?? 0), 0);
  const rateHead = layers ? ` spike rates per layer (val) |` : '';
  const flipHead = flips ? ` sign flips per binary layer |` : '';
  return [
    `| epoch | loss | train | val | lr at end | img/s |${rateHead}${flipHead}`,
    `|---|---|---|---|---|---|${layers ? '---|' : ''}${flips ? '---|' : ''}`,
    ...history.map(
      (h) =>
        `| ${h.epoch} | ${h.loss.toFixed(4)} | ${pct(h.trainAccuracy)} | ${pct(h.valAccuracy)} | ${h.lr?.toExponential(2) ?? '–'} | ${h.imagesPerSecond.toFixed(1)} |` +
        `${layers ? ` ${h.spikeRates?.map((r) => r.toFixed(3)).join(' / ') ?? '–'} |` : ''}${flips ? ` ${h.signFlips?.map((r) => (100 * r).toFixed(2) + '%').join(' / ') ?? '–'} |` : ''}`,
    ),
  ];
}

function baselineSections(f: CardFacts, baselines: readonly CardBaseline[]): string[] {
  const pt = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(2)} pt`;
  return [
    '## Beside it: the same layout trained otherwise',
    '',
    `Scored on the same ${f.testFrames} test frames (the ANN as trained; an SNN with BN recalibrated as this model was).`,
    '',
    '| network | run | epochs | batch | training time | test accuracy | this model − it |',
    '|---|---|---|---|---|---|---|',
    `| this model (runtime engine) | – | ${f.epochs.toFixed(2)} | – | ${(f.wallSeconds / 3600).toFixed(2)} h | ${pct(f.engineAccuracy)} | – |`,
    ...baselines.map(
      (b) =>
        `| ${b.name} | \`${b.dir}\` | ${b.epochs} | ${b.batchSize} | ${(b.wallSeconds / 3600).toFixed(2)} h | ${pct(b.testAccuracy)} | ${pt(f.engineAccuracy - b.testAccuracy)} |`,
    ),
    '',
    ...baselines.flatMap((b) =>
      b.history?.length && b.dir !== f.teacherFrom
        ? [`### ${b.name}, per epoch`, '', `From \`${b.dir}\`.`, '', ...historyTable(b.history), '']
        : [],
    ),
  ];
}

export function modelCard(model: BwsnnModel, f: CardFacts): string {
  const layerRows = [
    `| ${model.first.name} | int8 conv ${model.first.kernel}×${model.first.kernel}/${model.first.stride} on raw uint8 | ${model.first.inShape.join('×')} → ${model.first.outShape.join('×')} | – |`,
    ...model.hidden.map((l) =>
      l.kind === 'bconv'
        ? `| ${l.name} | binary conv ${l.kernel}×${l.kernel}/${l.stride} | ${l.inShape.join('×')} → ${l.outShape.join('×')} | ${l.shortcut} |`
        : `| ${l.name} | binary linear | ${l.inFeatures} → ${l.outFeatures} | ${l.shortcut} |`,
    ),
    `| head | float linear on spike rates | ${model.head.inFeatures} → ${model.head.outFeatures} | – |`,
  ];
  return [
    `# ${model.name}`,
    '',
    `Binary-weight spiking network (1-bit hidden weights, int8 first layer) for ${f.dataset?.name ?? 'Fashion-MNIST'}, trained with the SEI`,
    `recipe in trainer/ and exported with \`sei export\`.`,
    '',
    '| | |',
    '|---|---|',
    `| test accuracy (${f.dataset?.test ?? '10k Fashion-MNIST test set'}, runtime engine) | **${pct(f.engineAccuracy)}** (n = ${f.testFrames}) |`,
    `| trainer's folded evaluation / per-frame agreement with the engine | ${pct(f.trainerAccuracy)} / ${pct(f.agreement)} |`,
    `| time steps T | ${model.T} (LIF β per layer ${[model.first, ...model.hidden].map((l) => l.lif.beta.toFixed(3)).join(' / ')}; θ per channel, mean ${[model.first, ...model.hidden].map((l) => (l.lif.theta.reduce((a, b) => a + b, 0) / l.lif.theta.length).toFixed(3)).join(' / ')}) |`,
    ...(f.engineSpikeRates
      ? [
          `| spike rate per layer (runtime engine, test frames) | ${f.engineSpikeRates.map((r) => r.toFixed(3)).join(' / ')} |`,
        ]
      : []),
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
    "Every binary conv adds the previous layer's LIF input current (identity, or 2×2 average pool + channel repeat",
    'at stride 2) before its LIF; BN, alpha = mean|w|, the /255 input scaling and the int8 step are folded into',
    'per-channel scale/bias. Logits = head(mean spike rate over space and T) = mean of the per-step logits.',
    '',
    '## Training command',
    '',
    '```sh',
    f.command,
    '```',
    '',
    ...(f.recipe !== undefined ? ['## Recipe', '', '```json', JSON.stringify(f.recipe, null, 2), '```', ''] : []),
    ...(f.schedule ? ['## Schedule', '', ...scheduleTable(f.schedule), ''] : []),
    ...(f.teacherHistory?.length
      ? [
          '## ANN teacher, per epoch',
          '',
          ...(f.teacherFrom ? [`From \`${f.teacherFrom}\` (ReLU, float weights, the same layout).`, ''] : []),
          ...historyTable(f.teacherHistory),
          '',
        ]
      : []),
    ...(f.history?.length
      ? [
          '## Per epoch',
          '',
          'Validation with BN recalibrated as `sei export` ships it.',
          '',
          ...historyTable(f.history),
          '',
        ]
      : []),
    ...(f.baselines?.length ? baselineSections(f, f.baselines) : []),
    ...(f.notes ? ['## Notes', '', f.notes, ''] : []),
  ].join('\n');
}
