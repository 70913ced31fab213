/** sei train → sei export → sei eval through the CLI, on a tiny budget: files, JSON last lines, engine/trainer agreement. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const tmp = mkdtempSync(join(tmpdir(), 'sei-trainer-cli-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function sei(...args: string[]): Record<string, unknown> {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
}

test('train, export and eval agree through the CLI', () => {
  const run = join(tmp, 'run');
  const trained = sei(
    'train',
    '--out',
    run,
    '--train-limit',
    '512',
    '--val-size',
    '64',
    '--epochs',
    '1',
    '--width',
    '4',
    '--batch',
    '32',
    '--lr',
    '0.005',
    '--json',
  );
  assert.equal(trained['interrupted'], false);
  assert.equal(trained['epochs'], 1);
  assert.ok(existsSync(join(run, 'last.json')) && existsSync(join(run, 'best.bin')));
  // --resume keeps the run's own settings (--lr 0.005, width 4) unless a flag is given again; its schedule is fixed,
  // --extend adds a phase; --teacher trains the ANN twin first and distils from it for the rest of the run.
  assert.throws(
    () => sei('train', '--out', run, '--resume', '--epochs', '2'),
    (err: { status: number; stderr: string }) =>
      err.status === 2 && /--extend/.test(err.stderr) && !/\n\s+at /.test(err.stderr),
  );
  const resumed = sei(
    'train',
    '--out',
    run,
    '--resume',
    '--extend',
    '1',
    '--teacher',
    '--teacher-epochs',
    '1',
    '--json',
  );
  assert.equal(resumed['epochs'], 2);
  assert.equal(typeof resumed['teacherTestAccuracy'], 'number');
  const stored = JSON.parse(readFileSync(join(run, 'last.json'), 'utf8')) as {
    config: { lr: number; epochs: number; net: { width: number }; loss: { kdWeight: number } };
  };
  assert.deepEqual(
    [stored.config.lr, stored.config.epochs, stored.config.net.width, stored.config.loss.kdWeight],
    [0.005, 2, 4, 0.7],
  );
  assert.ok(existsSync(join(run, 'teacher', 'last.json')));
  // --teacher-from: another run distils from that teacher (recalibrated on the teacher run's batches); a folder
  // whose checkpoint is a student is refused by name.
  const distilled = join(tmp, 'distilled');
  const small = ['--train-limit', '256', '--val-size', '64', '--epochs', '1', '--width', '4', '--batch', '32'];
  const fromTeacher = sei('train', '--out', distilled, ...small, '--teacher-from', run, '--json');
  assert.equal(fromTeacher['interrupted'], false);
  const distilledCfg = JSON.parse(readFileSync(join(distilled, 'last.json'), 'utf8')) as {
    config: { teacher: { kind: string; dir: string }; loss: { kdWeight: number } };
  };
  assert.deepEqual(distilledCfg.config.teacher, { kind: 'run', dir: run });
  assert.ok(distilledCfg.config.loss.kdWeight > 0);
  assert.throws(
    () => sei('train', '--out', join(tmp, 'refused'), ...small, '--teacher-from', distilled),
    (err: { status: number; stderr: string }) => err.status === 2 && /holds a student/.test(err.stderr),
  );
  const model = join(tmp, 'tiny.bwsnn');
  const card = join(tmp, 'tiny.md');
  const exported = sei(
    'export',
    '--checkpoint',
    run,
    '--out',
    model,
    '--onnx',
    join(tmp, 'tiny.onnx'),
    '--card',
    card,
    '--json',
  );
  assert.equal(exported['bytes'], statSync(model).size);
  assert.equal(exported['engineVsTrainerAgreement'], 1);
  const text = readFileSync(card, 'utf8');
  assert.ok(text.includes(`**${(100 * (exported['engineAccuracy'] as number)).toFixed(2)}%**`), text);
  assert.ok(text.includes('sei train --out'), 'the card names the training command');
  assert.ok(
    text.includes('## ANN teacher, per epoch') && text.includes(join(run, 'teacher')),
    'the card reports the teacher',
  );
  // A run that distilled from another run's teacher reports that teacher, and beside the model the networks asked
  // for: its FP-weight twin (the same recipe and budget, float hidden weights), scored as its own run scored it.
  const twin = join(tmp, 'twin');
  const twinRun = sei('train', '--out', twin, ...small, '--teacher-from', run, '--weights', 'float', '--json');
  const distilledCard = join(tmp, 'distilled.md');
  const dexported = sei(
    'export',
    '--checkpoint',
    distilled,
    '--out',
    join(tmp, 'distilled.bwsnn'),
    '--card',
    distilledCard,
    '--baseline',
    twin,
    '--json',
  );
  const dtext = readFileSync(distilledCard, 'utf8');
  assert.ok(dtext.includes('## ANN teacher, per epoch') && dtext.includes(`From \`${join(run, 'teacher')}\``), dtext);
  const baselines = dexported['baselines'] as { name: string; dir: string; testAccuracy: number }[];
  assert.deepEqual(
    baselines.map((b) => [b.dir, b.name]),
    [
      [join(run, 'teacher'), 'ANN (ReLU, float weights, width 4)'],
      [twin, 'FP-weight SNN (width 4, T = 2, multi shortcuts)'],
    ],
  );
  assert.equal(baselines[1]!.testAccuracy, twinRun['testAccuracy'], 'the twin scored as its own run scored it');
  assert.equal(baselines[0]!.testAccuracy, resumed['teacherTestAccuracy'], 'the teacher scored as its run scored it');
  assert.ok(dtext.includes('## Beside it: the same layout trained otherwise'), dtext);
  assert.ok(dtext.includes(`| FP-weight SNN (width 4, T = 2, multi shortcuts) | \`${twin}\` | 1 | 32 |`), dtext);
  assert.ok(dtext.includes('### FP-weight SNN (width 4, T = 2, multi shortcuts), per epoch'), dtext);
  // A bad --baseline fails the export with status 2 and the reason, and writes no model file.
  const refusesBaseline = (baseline: string, reason: RegExp) => {
    const out = join(tmp, 'refused.bwsnn');
    assert.throws(
      () =>
        sei(
          'export',
          '--checkpoint',
          distilled,
          '--out',
          out,
          '--card',
          join(tmp, 'refused.md'),
          '--baseline',
          baseline,
        ),
      (err: { status: number; stderr: string }) => err.status === 2 && reason.test(err.stderr),
    );
    assert.equal(existsSync(out), false, 'no model file is written when a baseline is refused');
  };
  refusesBaseline(tmp, /--baseline: expected a run folder/);
  // A baseline whose test frames are not the model's is refused before the model file is written.
  const other = join(tmp, 'other-input');
  sei('train', '--out', other, ...small, '--weights', 'float', '--input', '14x14x1', '--json');
  refusesBaseline(other, /--baseline: .*other-input was trained on other data \(.*14×14×1/);
  assert.equal(
    exported['foldedVsUnfoldedAgreement'] !== undefined && (exported['foldedVsUnfoldedAgreement'] as number) > 0.99,
    true,
  );
  const evaluated = sei('eval', '--model', model, '--limit', '500', '--compare', '--json');
  assert.equal(evaluated['n'], 500);
  assert.equal(evaluated['T'], 2);
  assert.equal(evaluated['agreement'], 1);
  assert.equal(evaluated['accuracy'], evaluated['trainerAccuracy']);
});

test('a missing data set names the Debian package and --data', () => {
  assert.throws(
    () =>
      execFileSync(
        process.execPath,
        [
          '--import',
          'tsx',
          'scripts/cli.ts',
          'train',
          '--out',
          join(tmp, 'x'),
          '--data',
          join(tmp, 'nowhere'),
          '--epochs',
          '1',
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    (err: { stderr: string }) => /apt-get install dataset-fashion-mnist/.test(err.stderr) && /--data/.test(err.stderr),
  );
});
