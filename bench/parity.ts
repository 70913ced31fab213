/**
 * `npm run bench:parity -- --epochs 3 --width 32 …`: trains the same recipe with the TS trainer (`sei train --json`
 * through scripts/cli.ts) and then with its PyTorch reference (bench/train_torch.py --train, Debian's
 * /usr/bin/python3 with python3-torch), one after the other, never at once, and prints both per-epoch curves and the
 * final test accuracies side by side (issue 11: the TS trainer's test accuracy within 0.5 pt of PyTorch's at the
 * same epochs on the same data). Both start from the same weights and see the same frames in the same order (the
 * reference reproduces the trainer's seeded streams), so a gap is an implementation difference, not luck.
 *
 * Flags: `sei train`'s run options, with their defaults (scripts/commands/train.ts runOptions; --epochs defaults
 * to 3 here), passed to both; --threads is the TS trainer's, --torch-threads PyTorch's (default: every core);
 * --out DIR keeps the TS run folder (default: a temporary one); --ts-run DIR takes the TS side from a finished run
 * trained earlier with the same flags (an ablation row) instead of training it; --markdown FILE writes the table into FILE's
 * "Training parity" section (replacing the subsection of the same command); --json prints a summary line.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, platform, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ConfigError } from '../runtime/errors.js';
import { configFromFlags, runOptions, type TrainFlags } from '../scripts/commands/train.js';
import { int } from '../scripts/options.js';
import { printJson } from '../scripts/output.js';
import { createProgram, runCli } from '../scripts/run-cli.js';
import { initBackend } from '../trainer/backend/index.js';
import { loadData } from '../trainer/data/index.js';
import { disposeParams, netDifference } from '../trainer/model.js';
import { RECALIBRATE_BATCHES } from '../trainer/recalibrate.js';
import { keptScore } from '../trainer/score.js';
import type { EpochRecord, TrainConfig } from '../trainer/train.js';
import { loadParams } from '../trainer/train.js';
import { PYTHON, requireTorch, TORCH_SCRIPT } from '../scripts/bench/torch.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCRIPT = TORCH_SCRIPT;
const SECTION = '## Training parity (`npm run bench:parity`)';

/**
 * How each of `sei train`'s run options reaches the PyTorch reference: `same` (same flag, same value), `ts` (the TS
 * trainer's only), `teacher` (sei train's --teacher switch: the reference takes --teacher-epochs N alone), or
 * `unsupported` (refused when given). An option missing here is refused when given and reported when defaulted.
 */
const PASS: Record<string, 'same' | 'ts' | 'teacher' | 'unsupported'> = {
  data: 'same',
  threads: 'ts',
  epochs: 'same',
  batch: 'same',
  microBatch: 'same',
  lr: 'same',
  latentLr: 'same',
  lrFinal: 'same',
  warmup: 'same',
  width: 'same',
  T: 'same',
  beta: 'same',
  lif: 'same',
  surrogate: 'same',
  thetaInit: 'same',
  initFrom: 'unsupported',
  shortcuts: 'same',
  weights: 'same',
  perStep: 'same',
  labelSmoothing: 'same',
  teacher: 'teacher',
  teacherEpochs: 'teacher',
  teacherOnnx: 'unsupported',
  teacherFrom: 'same',
  kdWeight: 'same',
  kdTemperature: 'same',
  kdPerStep: 'same',
  spikePenalty: 'same',
  spikeTarget: 'same',
  augment: 'same',
  seed: 'same',
  trainLimit: 'same',
  valSize: 'same',
  recalibrate: 'same',
};

type Flags = Omit<TrainFlags, 'out'> & {
  out?: string;
  tsRun?: string;
  torchThreads: number;
  markdown?: string;
};

interface Side {
  readonly epochs: Array<EpochRecord & { role: 'student' | 'teacher' }>;
  readonly testAccuracy: number;
  readonly teacherTestAccuracy?: number;
  readonly wallSeconds: number;
  /** Load average at the start and the end of the run; absent for a run trained earlier (`--ts-run`). */
  readonly load?: [number, number];
  readonly version: string;
}

/** The two argument lists (TS, PyTorch) for the options of `cmd` as parsed into `f`. */
function argumentsFor(cmd: Command, f: Flags): { ts: string[]; torch: string[]; given: string[]; ignored: string[] } {
  const ts: string[] = [],
    torch: string[] = [],
    given: string[] = [],
    ignored: string[] = [];
  const runFlags = runOptions(createProgram('')).options;
  for (const opt of runFlags) {
    const key = opt.attributeName();
    const value = (f as unknown as Record<string, unknown>)[key];
    const fromCli = cmd.getOptionValueSource(key) === 'cli';
    const how = PASS[key];
    if (fromCli) given.push(...flagArgs(opt.long!, value));
    if (how === undefined || how === 'unsupported') {
      if (fromCli)
        throw new ConfigError(
          `${opt.long}: the PyTorch reference (bench/train_torch.py) has no counterpart; run without it`,
          opt.long!,
        );
      if (how === undefined && value !== undefined) ignored.push(opt.long!);
      continue;
    }
    if (value === undefined) continue;
    const args = flagArgs(opt.long!, value);
    ts.push(...args);
    if (how === 'same') torch.push(...args);
  }
  if (f.teacher) torch.push('--teacher-epochs', String(f.teacherEpochs));
  return { ts, torch, given, ignored };
}

/** `--no-augment` is commander's negation of `augment`; everything else is a flag and a value (or a switch). */
function flagArgs(long: string, value: unknown): string[] {
  if (long === '--no-augment') return value === false ? ['--no-augment'] : [];
  if (value === true) return [long];
  if (value === false || value === undefined) return [];
  return [long, String(value)];
}

/** Runs a child to completion: stdout collected, stderr (progress) passed through. */
function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    child.on('error', reject);
    child.on('close', (code, signal) =>
      code === 0
        ? resolve(out)
        : reject(new Error(`${file} ${args.slice(0, 3).join(' ')} … exited with ${signal ?? code}`)),
    );
  });
}

function jsonLines(out: string): Array<Record<string, unknown>> {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function runTs(args: string[], dir: string): Promise<Side> {
  const load0 = loadavg()[0]!;
  const t0 = performance.now();
  const out = await run(process.execPath, [
    '--import',
    'tsx',
    join(ROOT, 'scripts/cli.ts'),
    'train',
    '--out',
    dir,
    '--json',
    ...args,
  ]);
  const summary = jsonLines(out).pop()!;
  return {
    epochs: runHistory(dir),
    testAccuracy: summary['testAccuracy'] as number,
    ...(typeof summary['teacherTestAccuracy'] === 'number'
      ? { teacherTestAccuracy: summary['teacherTestAccuracy'] }
      : {}),
    wallSeconds: (performance.now() - t0) / 1000,
    load: [load0, loadavg()[0]!],
    version: `sei-edge trainer (${String(summary['engine'])}, ${args.includes('--threads') ? args[args.indexOf('--threads') + 1] : '?'} threads)`,
  };
}

/** A run folder's per-epoch records, its teacher's (`teacher/`, when it trained one) first. */
function runHistory(dir: string): Side['epochs'] {
  const history = (sub: string, role: 'student' | 'teacher') => {
    const file = join(dir, sub, 'last.json');
    if (!existsSync(file)) return [];
    return (JSON.parse(readFileSync(file, 'utf8')) as { history: EpochRecord[] }).history.map((r) => ({ ...r, role }));
  };
  return [...history('teacher', 'teacher'), ...history('', 'student')];
}

/**
 * The first field in which two run configs train differently (the network, the schedule, the data, the loss), with
 * both values, or undefined. Unwritten optional fields read as their defaults; without a teacher the KD options do
 * not count.
 */
function runDifference(a: TrainConfig, b: TrainConfig): { field: string; a: string; b: string } | undefined {
  const net = netDifference(a.net, b.net);
  if (net) return net;
  const view = (c: TrainConfig): Record<string, unknown> => ({
    epochs: c.epochs,
    batchSize: c.batchSize,
    microBatch: c.microBatch ?? c.batchSize,
    lr: c.lr,
    latentLr: c.latentLr ?? c.lr,
    lrFinal: c.lrFinal,
    warmupEpochs: c.warmupEpochs,
    seed: c.seed,
    'data.dir': c.data.dir ?? 'Fashion-MNIST',
    'data.valSize': c.data.valSize ?? 5000,
    'data.trainLimit': c.data.trainLimit ?? 'all',
    augment: c.augment ? `flip ${c.augment.flip}, shift ${c.augment.shift}` : 'none',
    perStep: c.loss.perStep,
    labelSmoothing: c.loss.labelSmoothing,
    spikePenalty: c.loss.spikePenalty ?? 0,
    spikeTarget: c.loss.spikePenalty ? (c.loss.spikeTarget ?? 0) : 0,
    teacher: c.teacher ? `${c.teacher.kind}${'epochs' in c.teacher ? `, ${c.teacher.epochs} epochs` : ''}` : 'none',
    ...(c.teacher
      ? { kdWeight: c.loss.kdWeight, kdTemperature: c.loss.kdTemperature, kdPerStep: c.loss.kdPerStep ?? 0 }
      : {}),
    recalibrate: c.valRecalibrate ?? RECALIBRATE_BATCHES,
  });
  const [va, vb] = [view(a), view(b)];
  const key = Object.keys(va).find((k) => va[k] !== vb[k]);
  return key === undefined ? undefined : { field: key, a: String(va[key]), b: String(vb[key]) };
}

/**
 * `--ts-run DIR`: the TS side from a finished run trained earlier (an ablation row, say) instead of training it
 * again. Refused when the run is not finished or was trained otherwise than the flags ask (they also go to PyTorch).
 * Its test accuracy is the unfolded network's with BN recalibrated, what the PyTorch side reports (through the
 * row's kept score when `sei ablate` left one).
 */
async function tsFromRun(dir: string, wanted: TrainConfig): Promise<Side> {
  await initBackend();
  const { params, state } = loadParams(dir, 'last');
  try {
    const cfg = state.config;
    if (state.role !== 'student')
      throw new ConfigError(`--ts-run: expected a student run folder, got the ${state.role} in ${dir}`, '--ts-run');
    if (state.epoch < cfg.epochs)
      throw new ConfigError(
        `--ts-run: ${dir} is not finished (epoch ${state.epoch} of ${cfg.epochs}); finish it first`,
        '--ts-run',
      );
    const data = await loadData(cfg.data, { run: dir, reuse: true });
    const differs = runDifference(cfg, { ...wanted, net: { ...wanted.net, input: data.input } });
    if (differs)
      throw new ConfigError(
        `--ts-run: ${dir} was trained with ${differs.field} ${differs.a}, the flags ask for ${differs.b}; pass the run's own flags`,
        '--ts-run',
      );
    const score = keptScore(dir, cfg, params, 'student', data, { folded: true });
    return {
      epochs: runHistory(dir),
      testAccuracy: score.unfoldedAccuracy,
      wallSeconds: state.wallSeconds,
      version: `sei-edge trainer (${state.engine}, trained earlier in ${dir})`,
    };
  } finally {
    disposeParams(params);
  }
}

async function runTorch(args: string[], threads: number): Promise<Side> {
  const load0 = loadavg()[0]!;
  const t0 = performance.now();
  const lines = jsonLines(await run(PYTHON, [SCRIPT, '--train', '--threads', String(threads), ...args]));
  const summary = lines.pop()!;
  return {
    epochs: lines as unknown as Side['epochs'],
    testAccuracy: summary['testAccuracy'] as number,
    ...(typeof summary['teacherTestAccuracy'] === 'number'
      ? { teacherTestAccuracy: summary['teacherTestAccuracy'] }
      : {}),
    wallSeconds: (performance.now() - t0) / 1000,
    load: [load0, loadavg()[0]!],
    version: `PyTorch ${String(summary['torch'])} (${threads} threads)`,
  };
}

const pct = (v: number | null | undefined) =>
  typeof v === 'number' && Number.isFinite(v) ? `${(100 * v).toFixed(2)} %` : '–';
const rates = (r?: number[]) => (r ? r.map((v) => v.toFixed(3)).join(' / ') : '–');

/** The Markdown subsection: curves, test accuracies, spike rates, machine and command. */
function markdown(command: string, ts: Side, torch: Side): { heading: string; body: string; gap: number } {
  const gap = 100 * (ts.testAccuracy - torch.testAccuracy);
  const rows = ts.epochs.map((a, i) => {
    const b = torch.epochs[i];
    return (
      `| ${a.role} ${a.epoch} | ${a.loss.toFixed(4)} / ${b ? b.loss.toFixed(4) : '–'} | ${pct(a.trainAccuracy)} / ${pct(b?.trainAccuracy)} | ` +
      `${pct(a.valAccuracy)} / ${pct(b?.valAccuracy)} | ${(a.lr ?? NaN).toExponential(2)} | ${a.imagesPerSecond.toFixed(1)} / ${b ? b.imagesPerSecond.toFixed(1) : '–'} |`
    );
  });
  const lastTs = ts.epochs.filter((e) => e.role === 'student').pop();
  const lastTorch = torch.epochs.filter((e) => e.role === 'student').pop();
  const cpu = cpus();
  const body = [
    `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${cpu.length}× ${cpu[0]?.model ?? 'unknown CPU'} (${platform()} ${release()}); ` +
      `load average ${ts.load ? `${ts.load[0].toFixed(1)} → ${ts.load[1].toFixed(1)} during the TS run` : 'not recorded for the TS run (trained earlier)'}, ${torch.load ? `${torch.load[0].toFixed(1)} → ${torch.load[1].toFixed(1)}` : '–'} during PyTorch's. ` +
      `${ts.version}, ${(ts.wallSeconds / 60).toFixed(1)} min; ${torch.version}, ${(torch.wallSeconds / 60).toFixed(1)} min. Command: \`${command}\``,
    '',
    '| epoch | loss (TS / PyTorch) | train accuracy | validation accuracy | lr at the end | images/s |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    '| | TS trainer | PyTorch | TS − PyTorch |',
    '|---|---|---|---|',
    `| test accuracy (10k, BN recalibrated) | ${pct(ts.testAccuracy)} | ${pct(torch.testAccuracy)} | **${gap >= 0 ? '+' : ''}${gap.toFixed(2)} pt** (${Math.abs(gap) <= 0.5 ? 'within' : 'outside'} 0.5 pt) |`,
    ...(ts.teacherTestAccuracy !== undefined || torch.teacherTestAccuracy !== undefined
      ? [
          `| ANN teacher test accuracy | ${pct(ts.teacherTestAccuracy)} | ${pct(torch.teacherTestAccuracy)} | ${ts.teacherTestAccuracy !== undefined && torch.teacherTestAccuracy !== undefined ? `${(100 * (ts.teacherTestAccuracy - torch.teacherTestAccuracy)).toFixed(2)} pt` : '–'} |`,
        ]
      : []),
    `| spike rates per layer (validation, last epoch) | ${rates(lastTs?.spikeRates)} | ${rates(lastTorch?.spikeRates)} | |`,
    '',
  ].join('\n');
  return { heading: `### \`${command}\``, body, gap };
}

/** Writes `heading` + `body` into FILE's parity section, replacing a subsection with the same heading. */
function writeSection(file: string, heading: string, body: string): void {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const lines = text.split('\n');
  const block = [heading, '', ...body.trimEnd().split('\n'), ''];
  let start = lines.indexOf(SECTION);
  if (start < 0) {
    writeFileSync(file, `${text.trimEnd()}\n\n${SECTION}\n\n${block.join('\n')}`);
    return;
  }
  const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  const sectionEnd = end < 0 ? lines.length : end;
  const at = lines.findIndex((l, i) => i > start && i < sectionEnd && l === heading);
  if (at >= 0) {
    const next = lines.findIndex((l, i) => i > at && /^#{1,3} /.test(l));
    lines.splice(at, (next < 0 ? lines.length : next) - at, ...block);
  } else {
    start = sectionEnd;
    lines.splice(start, 0, ...block);
  }
  writeFileSync(file, lines.join('\n'));
}

const program = runOptions(
  createProgram('trains one recipe with the TS trainer, then with its PyTorch reference, and compares them'),
)
  .option('--torch-threads <n>', 'PyTorch intra-op threads', int('--torch-threads', 1, 256), availableParallelism())
  .option('--out <dir>', 'keep the TS run folder here (default: a temporary folder, removed)')
  .option(
    '--ts-run <dir>',
    'take the TS side from this finished run (e.g. an ablation row) instead of training it; the flags must be its own',
  )
  .option('--markdown <file>', 'write the table into the "Training parity" section of FILE (e.g. bench/RESULTS.md)')
  .option('--json', 'print a JSON summary on the last line');
// Commander stores a default when the option is added: change both what --help shows and the value.
program.options.find((o) => o.long === '--epochs')!.default(3);
program.setOptionValueWithSource('epochs', 3, 'default');
program.action(async (f: Flags, cmd: Command) => {
  // The trainer's own cross-flag checks, before either run starts.
  const wanted = configFromFlags({ ...f, out: f.out ?? '', json: true });
  if (f.tsRun && f.out) throw new ConfigError('--ts-run and --out: expected at most one, got both', '--ts-run');
  requireTorch('bench:parity'); // before the TS run, not after it
  const { ts: tsArgs, torch: torchArgs, given, ignored } = argumentsFor(cmd, f);
  const dir = f.out ?? f.tsRun ?? mkdtempSync(join(tmpdir(), 'sei-parity-'));
  if (ignored.length)
    process.stderr.write(`note: ${ignored.join(', ')} (defaulted) not passed to the PyTorch reference\n`);
  if (f.tsRun) given.unshift('--ts-run', f.tsRun);
  const command = ['npm run bench:parity', ...(given.length ? ['--', ...given] : [])].join(' ');
  try {
    let ts: Side;
    if (f.tsRun) {
      process.stderr.write(`TS trainer: the run in ${f.tsRun}\n`);
      ts = await tsFromRun(f.tsRun, wanted);
    } else {
      process.stderr.write(`TS trainer: sei train ${tsArgs.join(' ')}\n`);
      ts = await runTs(tsArgs, dir);
    }
    process.stderr.write(`PyTorch: ${PYTHON} bench/train_torch.py --train ${torchArgs.join(' ')}\n`);
    const torch = await runTorch(torchArgs, f.torchThreads);
    const md = markdown(command, ts, torch);
    process.stdout.write(`${md.heading}\n\n${md.body}\n`);
    if (f.markdown) writeSection(f.markdown, md.heading, md.body);
    if (f.json) printJson({ command, ts, torch, gapPoints: md.gap, within: Math.abs(md.gap) <= 0.5 });
  } finally {
    if (!f.out && !f.tsRun) rmSync(dir, { recursive: true, force: true });
  }
});
await runCli(program);
