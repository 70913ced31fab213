/**
 * `npm run bench:parity -- --ts-run DIR` on a tiny budget: the TS side is read from a run trained earlier (its
 * curve, its test accuracy as `sei train` reported it) while PyTorch trains the same flags; a run trained with other
 * flags, or not finished, is refused before PyTorch starts. Skipped when /usr/bin/python3 cannot import torch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { torchMissing } from '../scripts/bench/torch.js';

const skip = torchMissing() ?? false;
const tmp = mkdtempSync(join(tmpdir(), 'sei-bench-parity-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const flags = ['--width', '4', '--train-limit', '256', '--val-size', '64', '--epochs', '1', '--batch', '32'];
const node = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', ...args], { encoding: 'utf8' });
const lastJson = (out: string) => JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;

test('bench:parity --ts-run compares PyTorch with a run trained earlier, and refuses one trained otherwise', {
  skip,
}, () => {
  const run = join(tmp, 'run');
  const trained = lastJson(
    execFileSync(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'train', '--out', run, ...flags, '--json'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const md = join(tmp, 'RESULTS.md');
  writeFileSync(md, '# Results\n');
  const r = node(['bench/parity.ts', '--ts-run', run, ...flags, '--markdown', md, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const summary = lastJson(r.stdout) as {
    command: string;
    ts: { testAccuracy: number; epochs: Array<{ epoch: number; loss: number }> };
    torch: { testAccuracy: number; epochs: unknown[] };
  };
  // The TS side is the stored run: its test accuracy as `sei train` scored it, its per-epoch record.
  assert.equal(summary.ts.testAccuracy, trained['testAccuracy']);
  const stored = JSON.parse(readFileSync(join(run, 'last.json'), 'utf8')) as { history: Array<{ loss: number }> };
  assert.deepEqual(
    summary.ts.epochs.map((e) => e.loss),
    stored.history.map((e) => e.loss),
  );
  assert.equal(summary.torch.epochs.length, 1);
  assert.ok(summary.torch.testAccuracy > 0.1, `PyTorch trained: ${summary.torch.testAccuracy}`);
  assert.match(summary.command, /^npm run bench:parity -- --ts-run /);
  const text = readFileSync(md, 'utf8');
  assert.match(text, /not recorded for the TS run \(trained earlier\)/);
  assert.ok(text.includes(`| ${(100 * summary.ts.testAccuracy).toFixed(2)} % |`), text);

  // Other flags than the run's: refused by the first differing field, before PyTorch trains.
  const other = node(['bench/parity.ts', '--ts-run', run, ...flags.slice(0, -2), '--batch', '64']);
  assert.notEqual(other.status, 0);
  assert.match(other.stderr, /--ts-run: .* was trained with batchSize 32, the flags ask for 64/);
  assert.doesNotMatch(other.stderr, /PyTorch: /);
});
