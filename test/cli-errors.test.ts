// Bad input as a new user types it, on every `sei` command: a missing file, the wrong type, a negative number, an
// unknown choice, an unreadable model, a typo'd option. Each must end the command at once with exit status 2 and
// one stderr line that names the option, never a stack trace and never a process that runs on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

const CLI = fileURLToPath(new URL('../scripts/cli.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sei-cli-errors-'));
  writeFileSync(join(dir, 'broken.bwsnn'), 'not a model');
  writeFileSync(join(dir, 'bad.key'), 'not a key');
  writeFileSync(join(dir, 'agent.json'), JSON.stringify({ store: { path: ':memory:' }, metrics: { httpPort: null } }));
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ source: { queueSize: 0 } }));
  writeFileSync(join(dir, 'broken.yaml'), 'fleet: [plant-3\ndevice: line-2\n');
  writeFileSync(
    join(dir, 'no-model.json'),
    JSON.stringify({ model: { path: 'nope.bwsnn' }, store: { path: ':memory:' }, metrics: { httpPort: null } }),
  );
  mkdirSync(join(dir, 'folder'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `sei ...args` in the scratch folder (relative paths land there, a default state file too). */
function sei(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', TSX, CLI, ...args],
      { cwd: dir, timeout: 60_000 },
      (err, _stdout, stderr) => {
        const e = err as (Error & { code?: number; killed?: boolean }) | null;
        resolve({ code: e ? (e.killed ? null : (e.code ?? null)) : 0, stderr });
      },
    );
  });
}

// [what a user typed, what the one line must name]
const CASES: ReadonlyArray<readonly [string[], RegExp]> = [
  // sei agent: no --duration, so an agent that ran on instead of stopping would time the test out.
  [['agent', '--config', 'agent.json', '--source', 'idx:/nope/images.gz'], /FrameError: source: .*\/nope\/images\.gz/],
  [['agent', '--config', 'agent.json', '--source', 'images:/nope'], /FrameError: source: .*\/nope/],
  [['agent', '--config', 'agent.json', '--source', 'camera'], /ConfigError: --source: expected one of fmnist/],
  [
    ['agent', '--config', 'agent.json', '--fps', 'fast'],
    /ConfigError: --fps: expected a number in \[0, 100000\], got "fast"/,
  ],
  [['agent', '--config', 'agent.json', '--fps', '-1'], /ConfigError: --fps: .* got -1/],
  [['agent', '--config', 'agent.json', '--duration', '-5'], /ConfigError: --duration: expected a number > 0/],
  [['agent', '--config', 'agent.json', '--mqtt', 'localhost:1883'], /ConfigError: --mqtt: expected a broker URL/],
  [
    ['agent', '--config', 'agent.json', '--model', 'broken.bwsnn'],
    /ConfigError: --model: expected a \.bwsnn model, got "broken\.bwsnn"/,
  ],
  [['agent', '--config', 'nope.yaml'], /ConfigError: config: expected a readable file, got "nope\.yaml"/],
  [['agent', '--config', 'bad.json'], /ConfigError: source\.queueSize: expected an integer in \[1, 100000\], got 0/],
  [['agent', '--config', 'broken.yaml'], /ConfigError: config: expected valid YAML in broken\.yaml, got .*line 2/],
  [
    ['agent', '--config', 'no-model.json'],
    /ConfigError: model\.path: expected a readable \.bwsnn file, got "nope\.bwsnn" \(ENOENT\)/,
  ],
  [['demo', '--source', 'images:/nope'], /FrameError: source: .*\/nope/],
  [['demo', '--model', 'folder'], /ConfigError: --model: .*"folder"/],
  [['run', '--model', 'random:1', '--limit', '-3'], /ConfigError: --limit: expected a positive integer, got "-3"/],
  [['run', '--model', 'broken.bwsnn'], /ConfigError: --model: expected a \.bwsnn model/],
  [['run', '--model', 'nope.bwsnn'], /ConfigError: --model: .*"nope\.bwsnn" \(no such file\)/],
  [
    ['run', '--model', 'random:1', '--frames', 'nope.idx'],
    /ConfigError: --frames: expected a readable IDX file, got "nope\.idx" \(ENOENT\)/,
  ],
  [
    ['run', '--model', 'random:1', '--kernel', 'gpu'],
    /ConfigError: --kernel: expected one of auto, wasm, reference, got "gpu"/,
  ],
  [['run', '--model', 'random:1', '--steps', '0'], /ConfigError: --steps: expected an integer in \[1, 16\], got "0"/],
  [
    ['run', '--model', 'random:1', '--threads', 'two'],
    /ConfigError: --threads: expected an integer in \[1, 64\], got "two"/,
  ],
  [
    ['eval', '--model', 'broken.bwsnn', '--compare', '--steps', '1'],
    /ConfigError: --compare: expected without --steps .*got --steps 1/,
  ],
  [['run'], /error: required option '--model/],
  [['run', '--model', 'random:1', '--limt', '3'], /error: unknown option '--limt'/],
  [
    ['verify', '--model', 'random:1', '--frames', 'ten'],
    /ConfigError: --frames: expected a positive integer, got "ten"/,
  ],
  [['bench', '--seconds', '0'], /ConfigError: --seconds: expected a number in \(0, 600\], got "0"/],
  [['bench', '--clock', 'gpu'], /ConfigError: --clock: expected one of wall, cpu, got "gpu"/],
  [
    ['bench', '--sparsity', 'nope.bwsnn'],
    /ConfigError: --sparsity: expected \.bwsnn files, got "nope\.bwsnn" \(no such file\)/,
  ],
  [
    ['bench', '--throughput-threads', '1'],
    /ConfigError: --throughput-threads: expected an integer in \[2, 64\], got "1"/,
  ],
  [['broker', '--port', '70000'], /ConfigError: --port: expected an integer in \[0, 65535\], got "70000"/],
  [
    ['finetune', '--model', 'nope.bwsnn', '--frames', 'x', '--labels', 'y'],
    /ConfigError: --model: expected a readable \.bwsnn file, got "nope\.bwsnn" \(ENOENT\)/,
  ],
  [
    ['finetune', '--model', 'x', '--frames', 'y', '--labels', 'z', '--epochs', '2.5'],
    /ConfigError: --epochs: expected a positive integer, got "2\.5"/,
  ],
  [['finetune-experiment', '--sizes', '100,x'], /ConfigError: --sizes: expected an integer >= 2, got "x"/],
  [['train', '--out', 'run', '--epochs', '0'], /ConfigError: --epochs: expected an integer in \[1, 1000\], got "0"/],
  [
    ['train', '--out', 'run', '--shortcuts', 'many'],
    /ConfigError: --shortcuts: expected one of multi, blocks, downsample, got "many"/,
  ],
  [
    ['train', '--out', 'run', '--input', '32x32'],
    /ConfigError: --input: expected HEIGHTxWIDTHxCHANNELS .* got "32x32"/,
  ],
  [['train', '--out', 'run', '--fit', 'stretch'], /ConfigError: --fit: expected one of crop, letterbox, got "stretch"/],
  [['train', '--out', 'run', '--data', 'folder'], /ConfigError: --data: expected one subfolder per class in folder/],
  [
    ['data', 'inspect', 'nope'],
    /ConfigError: <dir>: expected an image folder or an IDX folder, got "nope" \(no such folder\)/,
  ],
  [['data', 'inspect', 'folder', '--holdout', '1,1'], /ConfigError: --holdout: expected VAL,TEST: two fractions/],
  [['data', 'inspect', 'folder'], /ConfigError: <dir>: expected one subfolder per class in folder/],
  [
    ['eval', '--model', 'broken.bwsnn', '--subset', 'some'],
    /ConfigError: --subset: expected one of test, val, train, all, got "some"/,
  ],
  [
    ['eval', '--model', 'broken.bwsnn', '--limit', 'all'],
    /ConfigError: --limit: expected a positive integer, got "all"/,
  ],
  [
    ['export', '--checkpoint', 'run', '--out', 'm.bwsnn', '--version', 'two'],
    /ConfigError: --version: expected a non-negative integer, got "two"/,
  ],
  [
    ['export', '--checkpoint', 'run', '--out', 'm.bwsnn', '--which', 'first'],
    /ConfigError: --which: expected one of last, best, got "first"/,
  ],
  [['ablate', '--out', 'runs', '--test-limit', 'x'], /ConfigError: --test-limit: expected a positive integer, got "x"/],
  [['ablate', '--out', 'runs', '--steps', '1,32'], /ConfigError: --steps: expected an integer in \[1, 16\], got "32"/],
  [['ablate', '--out', 'runs', '--rows', 'sei@2,ann@2'], /ConfigError: --rows: 'ann@2': expected VARIANT@T/],
  [['ablate', '--out', 'runs', '--rows', 'fast@2'], /ConfigError: --rows: 'fast@2': expected VARIANT@T/],
  [
    ['keys', 'gen', '--out', 'agent.json/keys'],
    /ConfigError: --out: expected a folder it can create and write to, got "agent\.json\/keys" \(ENOTDIR\)/,
  ],
  [['keys', 'id', 'bad.key'], /ConfigError: key: expected a PEM Ed25519 public key/],
  [['sign', '--model', 'folder', '--key', 'bad.key'], /ConfigError: --key: expected a PEM Ed25519 private key/],
  [
    ['sign', '--model', 'random:1', '--key', 'bad.key', '--canaries', '0'],
    /ConfigError: --canaries: expected a positive integer, got "0"/,
  ],
  [
    ['deploy', '--model', 'm', '--key', 'k', '--device', 'd', '--abort-threshold', '150'],
    /ConfigError: --abort-threshold: expected a number in \[0, 100\], got "150"/,
  ],
  [
    ['deploy', '--model', 'm', '--key', 'k', '--device', 'd', '--timeout', 'soon'],
    /ConfigError: --timeout: expected a number > 0, got "soon"/,
  ],
  [
    ['capture', 'pull', '--device', 'd', '--out', 'o', '--block-size', '10'],
    /ConfigError: --block-size: expected an integer in \[256, 65536\], got "10"/,
  ],
  [
    ['capture', 'pull', '--device', 'd', '--out', 'o', '--window', '0'],
    /ConfigError: --window: expected a positive integer, got "0"/,
  ],
  [['capture', 'pull', '--device', 'd'], /error: required option '--out <dir>' not specified/],
  [['doctor', '--state'], /error: unknown option '--state'/],
  [['nonsense'], /error: unknown command 'nonsense'/],
];

describe('sei: bad arguments', () => {
  // Two at a time (the machine has two cores, and most of each case is starting Node): case i waits for case i - 2.
  const runs: Array<Promise<{ code: number | null; stderr: string }>> = [];
  for (const [i, [args]] of CASES.entries()) runs.push((runs[i - 2] ?? Promise.resolve()).then(() => sei(args)));

  for (const [i, [args, names]] of CASES.entries()) {
    test(`sei ${args.join(' ')}`, async () => {
      const r = await runs[i]!;
      assert.notEqual(r.code, null, `still running after 60 s: ${r.stderr}`);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
      assert.match(lines[0]!, /^sei: /);
      assert.match(lines[0]!, names);
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'a stack trace');
    });
  }
});
