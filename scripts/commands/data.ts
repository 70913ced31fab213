/**
 * `sei data inspect DIR`: what an image folder (or IDX folder) holds before anything trains on it — frames per
 * class and split, sizes, channels, imbalance, identical files across splits, every file not read and why — and
 * what `sei train` would refuse. The same report `sei train` prints when it starts.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { ConfigError } from '../../runtime/errors.js';
import { formatReport, inspectData, trainingProblems } from '../../trainer/data/index.js';
import { holdout } from '../options.js';
import { printJson } from '../output.js';

export function register(program: Command): void {
  const data = program.command('data').description('data sets: `sei data inspect DIR`');
  data
    .command('inspect <dir>')
    .description(
      'frames per class and split, sizes and channels, class imbalance, duplicates across splits, unreadable and non-image files',
    )
    .option(
      '--holdout <val,test>',
      'as for sei train: fractions of each class held out for validation and test where the folder has no val/ or test/',
      holdout('--holdout'),
    )
    .option('--json', 'print the report as one JSON object on the last line')
    .action(async (dir: string, f: { holdout?: { val: number; test: number }; json?: boolean }) => {
      // Without this, a mistyped folder would be read as a missing Fashion-MNIST install.
      if (!existsSync(dir))
        throw new ConfigError(
          `<dir>: expected an image folder or an IDX folder, got ${JSON.stringify(dir)} (no such folder)`,
          'dir',
        );
      const report = await inspectData({ dir, ...(f.holdout ? { holdout: f.holdout } : {}) }, '<dir>');
      const problems = trainingProblems(report);
      if (f.json) {
        printJson({ ...report, problems });
        return;
      }
      for (const line of formatReport(report, Infinity)) console.log(line);
      console.log(
        problems.length
          ? `sei train would refuse this folder: ${problems.join('; ')}`
          : 'sei train can use this folder',
      );
    });
}
