/**
 * `sei ablate` end to end on a tiny budget: the rows asked for (`--rows`), each trained and scored, the SNN rows
 * with a spike rate per layer, the markdown table written above the file's marker line with the text below it kept,
 * a file that would lose text refused, and a second call resuming the finished runs with their kept scores.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KEPT_MARKER } from '../trainer/ablate.js';

const tmp = mkdtempSync(join(tmpdir(), 'sei-ablate-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

interface Row {
  variant: string;
  T: number;
  testAccuracy: number;
  epochs: number;
  spikeRates?: number[];
  folded?: boolean;
  unfoldedAccuracy?: number;
}

function ablate(...args: string[]): Row[] {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'ablate', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return (JSON.parse(out.trim().split('\n').pop()!) as { rows: Row[] }).rows;
}

test('sei ablate trains the rows asked for, with per-layer spike rates, and resumes finished runs', () => {
  const md = join(tmp, 'ABLATION.md');
  // A file from an earlier call: the part above the marker is rewritten, the notes below it are kept.
  const notes = '## What this run shows\n\nWritten by hand; kept.\n';
  writeFileSync(md, `# an older table\n\n${KEPT_MARKER}\n\n${notes}`);
  const args = [
    '--out',
    join(tmp, 'runs'),
    '--rows',
    'plain@1,sei@2,ann',
    '--train-limit',
    '256',
    '--val-size',
    '64',
    '--test-limit',
    '200',
    '--epochs',
    '1',
    '--width',
    '4',
    '--batch',
    '32',
    '--markdown',
    md,
    '--json',
  ];
  const rows = ablate(...args);
  assert.deepEqual(
    rows.map((r) => `${r.variant}@${r.T}`),
    ['ann@1', 'plain@1', 'sei@2'],
  );
  // plain is the ResNet-block layout, which the format cannot hold: scored unfolded, and the table says so.
  assert.deepEqual(
    rows.map((r) => r.folded),
    [undefined, false, true],
  );
  assert.equal(rows[1]!.unfoldedAccuracy, rows[1]!.testAccuracy);
  for (const r of rows) {
    assert.ok(r.testAccuracy >= 0 && r.testAccuracy <= 1 && r.epochs === 1, JSON.stringify(r));
    if (r.variant === 'ann') assert.equal(r.spikeRates, undefined);
    else {
      assert.equal(r.spikeRates?.length, 6, `${r.variant}: one rate per layer (conv0 and five binary convs)`);
      assert.ok(r.spikeRates!.every((x) => x >= 0 && x <= 1));
    }
  }
  const table = readFileSync(md, 'utf8');
  assert.match(table, /\| spike rate per layer \(test\) \|/);
  assert.doesNotMatch(table, /an older table/);
  assert.match(table, /\| \d+\.\d\d% ᵘ \|/);
  assert.match(table, /ᵘ the unfolded network's accuracy/);
  assert.ok(table.endsWith(`${KEPT_MARKER}\n\n${notes}`), table);
  assert.match(table, new RegExp(`\\| ${rows[2]!.spikeRates!.map((x) => x.toFixed(3)).join(' / ')} \\|`));
  // Every run is finished: a second call trains nothing and scores the same.
  assert.deepEqual(
    ablate(...args).map((r) => r.testAccuracy),
    rows.map((r) => r.testAccuracy),
  );
  assert.equal(readFileSync(md, 'utf8').split(notes).length, 2, 'the kept notes appear once after a rewrite');
  // Each finished row keeps its score beside its checkpoint; a later call reuses it while nothing it depends on
  // changed (a forged figure under the same digest comes back), and scores again when the test frames change.
  for (const sub of ['ann', 'plain-t1', 'sei-t2']) assert.ok(existsSync(join(tmp, 'runs', sub, 'score.json')), sub);
  const keptFile = join(tmp, 'runs', 'plain-t1', 'score.json');
  const kept = JSON.parse(readFileSync(keptFile, 'utf8')) as { digest: string; score: { accuracy: number } };
  writeFileSync(keptFile, JSON.stringify({ ...kept, score: { ...kept.score, accuracy: 0.123 } }));
  assert.deepEqual(
    ablate(...args).map((r) => r.testAccuracy),
    [rows[0]!.testAccuracy, 0.123, rows[2]!.testAccuracy],
  );
  const fewer = [...args];
  fewer[fewer.indexOf('--test-limit') + 1] = '100';
  const rescored = ablate(...fewer)[1]!.testAccuracy;
  assert.ok(rescored !== 0.123 && rescored >= 0 && rescored <= 1, String(rescored));
  assert.notEqual((JSON.parse(readFileSync(keptFile, 'utf8')) as { digest: string }).digest, kept.digest);
});

test('sei ablate refuses, before it trains, a markdown file whose text has no marker line, and leaves it as it was', () => {
  const md = join(tmp, 'HAND-WRITTEN.md');
  writeFileSync(md, '# notes written by hand\n');
  const runs = join(tmp, 'runs-refused');
  assert.throws(
    () => ablate('--out', runs, '--rows', 'plain@1', '--train-limit', '64', '--epochs', '1', '--markdown', md),
    (err: { status: number; stderr: string }) =>
      err.status === 2 && /--markdown .*no line/.test(err.stderr) && !/\n\s+at /.test(err.stderr),
  );
  assert.equal(readFileSync(md, 'utf8'), '# notes written by hand\n');
  assert.equal(existsSync(runs), false, 'nothing trained');
});

test('sei ablate stops on SIGTERM with the run saved, lists the rows still to train, and the same call finishes them', async () => {
  const md = join(tmp, 'ABLATION-stop.md');
  const runs = join(tmp, 'runs-stop');
  const args = [
    '--out',
    runs,
    '--rows',
    'plain@1,multi@1',
    '--train-limit',
    '256',
    '--val-size',
    '64',
    '--test-limit',
    '100',
    '--epochs',
    '12',
    '--width',
    '4',
    '--batch',
    '32',
    '--threads',
    '1',
    '--save-every',
    '2',
    '--markdown',
    md,
    '--json',
  ];
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'ablate', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let signalled = false;
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
    // Stopped once, in the first row's second epoch, as a scheduler would stop it.
    if (!signalled && /student epoch 1:/.test(err)) signalled = child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  assert.equal(code, 0, err);
  assert.match(err, /stopped: plain@1, multi@1 still to train; the same command resumes/);
  const stopped = JSON.parse(out.trim().split('\n').pop()!) as { rows: Row[]; pending: string[] };
  assert.deepEqual(stopped, { rows: [], pending: ['plain@1', 'multi@1'] });
  assert.match(readFileSync(md, 'utf8'), /Still to train: plain@1, multi@1 \(the same command resumes\)\./);
  const saved = JSON.parse(readFileSync(join(runs, 'plain-t1', 'last.json'), 'utf8')) as {
    epoch: number;
    batchInEpoch: number;
  };
  assert.ok(saved.epoch >= 1 && saved.epoch < 12, `saved part-way: ${JSON.stringify(saved)}`);
  // The same call resumes the saved run and trains the next row: both complete, the table whole.
  const rows = ablate(...args);
  assert.deepEqual(
    rows.map((r) => `${r.variant}@${r.T}:${r.epochs}`),
    ['plain@1:12', 'multi@1:12'],
  );
  assert.doesNotMatch(readFileSync(md, 'utf8'), /Still to train/);
});
