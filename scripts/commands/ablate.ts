/** `sei ablate`: the SEI ablation at a fixed budget; prints a row per variant and can write models/ABLATION.md. */
import { cpus, loadavg } from 'node:os';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describeBackend, initBackend } from '../../trainer/backend/index.js';
import { formatReport, loadData } from '../../trainer/data/index.js';
import type { AblationCase, AblationResult, AblationRow, Variant } from '../../trainer/ablate.js';
import {
  DEFAULT_VARIANTS,
  KEPT_MARKER,
  VARIANTS,
  ablationCases,
  ablationMarkdown,
  caseLabel,
  keptMarkdown,
  mergeAblationMarkdown,
  parseCases,
  pendingCases,
  runAblation,
} from '../../trainer/ablate.js';
import { ConfigError } from '../../runtime/errors.js';
import { choice, int, list, positiveInt } from '../options.js';
import { printJson } from '../output.js';
import { trainingProgress } from '../progress.js';
import type { TrainFlags } from './train.js';
import { configFromFlags, runOptions, withData } from './train.js';

interface AblateFlags extends TrainFlags {
  steps: number[];
  variants: Variant[];
  rows?: string[];
  testLimit?: number;
  markdown?: string;
  note?: string;
}

export function register(program: Command): void {
  runOptions(
    program
      .command('ablate')
      .description('ablation: ANN, FP-weight SNN, plain BWSNN, + multiple shortcuts, + KD, SEI — same budget and seed'),
  )
    .requiredOption('--out <dir>', 'folder for the runs (each resumable)')
    .option('--steps <list>', 'time steps to test, comma-separated', list('--steps', int('--steps', 1, 16)), [1, 2, 4])
    .option(
      '--variants <list>',
      `comma-separated, from ${VARIANTS.join(',')} (default: all but downsample)`,
      list('--variants', choice('--variants', VARIANTS)),
      [...DEFAULT_VARIANTS],
    )
    .option(
      '--rows <list>',
      'the rows to train instead of every --variants at every --steps: VARIANT@T items, e.g. plain@2,multi@2,kd@2,sei@2,sei@1,sei@4,ann',
      (v: string) => v.split(',').filter(Boolean),
    )
    .option('--test-limit <n>', 'first N test frames only', positiveInt('--test-limit'))
    .option(
      '--markdown <file>',
      'write the table (e.g. models/ABLATION.md); an existing file keeps what follows its marker line',
    )
    .option('--note <text>', 'a paragraph appended to the markdown')
    .option('--json', 'print all rows as JSON on the last line')
    .action(async (f: AblateFlags) => {
      const flags = configFromFlags({ ...f, teacher: false });
      let cases: AblationCase[];
      try {
        cases = f.rows ? parseCases(f.rows) : ablationCases(f.steps, f.variants);
      } catch (err) {
        throw new ConfigError(`--rows: ${(err as Error).message}`, '--rows');
      }
      // A file that would lose text is refused now, not after hours of training.
      const readMarkdown = () => (f.markdown && existsSync(f.markdown) ? readFileSync(f.markdown, 'utf8') : undefined);
      if (keptMarkdown(readMarkdown()) === undefined)
        throw new ConfigError(
          `--markdown ${f.markdown}: it has text but no line "${KEPT_MARKER}"; add that line above the part to keep (the part above it is rewritten) or pick another file`,
          '--markdown',
        );
      const backend = await initBackend();
      process.stderr.write(describeBackend(backend) + '\n');
      const log = (l: string) => process.stderr.write(l + '\n');
      // One split for every variant (an image folder's is recorded in --out, so a resumed ablation sees it again).
      const data = await loadData(
        { ...flags.data, ...(f.testLimit ? { testLimit: f.testLimit } : {}) },
        {
          run: f.out,
          reuse: true,
          write: true,
          trainable: true,
          onInfo: log,
          onReport: (r) => formatReport(r, 10).forEach(log),
        },
      );
      const base = withData(flags, data);
      const command = `sei ${process.argv.slice(process.argv.indexOf('ablate')).join(' ')}`;
      // The table is rewritten after every row, so a run of many sittings shows what it has so far.
      const writeTable = (rows: readonly AblationRow[], pending: readonly AblationCase[]) => {
        if (!f.markdown) return;
        const md = ablationMarkdown(rows, {
          command,
          engine: backend.engine,
          machine: `${cpus().length}× ${cpus()[0]?.model ?? 'cpu'} (load average ${loadavg()[0]!.toFixed(2)} when this table was written)`,
          date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
          frames: data.train.count,
          testFrames: data.test.count,
          width: base.net.width,
          pending,
          ...(f.note ? { note: f.note } : {}),
        });
        // Read again at every write: what was added below the marker while the run trained is kept too.
        writeFileSync(f.markdown, mergeAblationMarkdown(md, readMarkdown()));
      };
      const progress = trainingProgress({ batchSize: base.batchSize });
      let result: AblationResult;
      try {
        result = await runAblation({ ...base, loss: { ...base.loss, kdWeight: f.kdWeight } }, data, f.out, {
          cases,
          engine: backend.engine,
          threads: f.threads,
          ...(f.saveEvery ? { saveEvery: f.saveEvery } : {}),
          hooks: progress.hooks,
          onRow: (r, done) => {
            progress.hooks.onInfo(
              `${caseLabel(r)}: ${(100 * r.testAccuracy).toFixed(2)}% on ${data.test.count} test frames (${r.wallSeconds.toFixed(0)} s of training)`,
            );
            writeTable(done, pendingCases(cases, done));
          },
        });
      } finally {
        progress.close();
      }
      writeTable(result.rows, result.pending);
      if (result.pending.length)
        process.stderr.write(
          `stopped: ${result.pending.map(caseLabel).join(', ')} still to train; the same command resumes\n`,
        );
      if (f.json) printJson({ rows: result.rows, pending: result.pending.map(caseLabel) });
    });
}
