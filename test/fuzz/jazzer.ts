/**
 * The coverage-guided pass: Jazzer.js (libFuzzer with edge coverage of the instrumented project code) on a fuzz
 * target, inside a cached Debian trixie root. Jazzer.js's native addon needs glibc 2.38 and bookworm has 2.36, so
 * the root (scripts/arm/rootfs.sh amd64, suite trixie, its Node from Debian's `nodejs`) hosts it; the repository is
 * bind-mounted at its own path in a private mount namespace (unshare), so the mounts vanish with the process.
 * Jazzer.js itself is installed by npm into .cache/fuzz/jazzer/, outside the project's dependencies.
 * Needs root (debootstrap, mount, chroot) or password-less sudo.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FuzzTarget } from './targets.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const JAZZER_VERSION = '4.0.0';
const JAZZER_DIR = join(ROOT, '.cache/fuzz/jazzer');
const CLI = join(JAZZER_DIR, 'node_modules/@jazzer.js/core/dist/cli.js');
export const CORPUS_DIR = join(ROOT, '.cache/fuzz/corpus');
export const CRASH_DIR = join(ROOT, '.cache/fuzz/crashes');
/** Project code whose edges count (substrings of a file's path); node_modules and tests are not instrumented. */
const INCLUDES = ['runtime/', 'device-agent/', 'trainer/data/'].map((p) => join(ROOT, p));

const asRoot = process.getuid?.() === 0;

/** The root and the Jazzer.js CLI, built or installed the first time; or why they cannot be. */
export function jazzerSetup(): { root: string; cli: string; sudo: string[] } | { unavailable: string } {
  const sudo = asRoot ? [] : ['sudo', '-n'];
  if (!asRoot && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status !== 0)
    return { unavailable: 'needs root or password-less sudo (debootstrap builds the root, chroot enters it)' };
  for (const tool of ['unshare', 'chroot', 'debootstrap']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0)
      return { unavailable: `'${tool}' is missing (apt-get install debootstrap util-linux coreutils)` };
  }
  const built = spawnSync(join(ROOT, 'scripts/arm/rootfs.sh'), ['amd64'], {
    encoding: 'utf8',
    env: { ...process.env, SEI_ARM_SUITE: 'trixie' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (built.status !== 0)
    return { unavailable: `the Debian trixie root could not be built (rootfs.sh exit ${built.status})` };
  const root = built.stdout.trim().split('\n').pop()!;
  if (!existsSync(CLI)) {
    mkdirSync(JAZZER_DIR, { recursive: true });
    if (!existsSync(join(JAZZER_DIR, 'package.json')))
      writeFileSync(
        join(JAZZER_DIR, 'package.json'),
        '{ "private": true, "description": "fuzzing tool, not a dependency" }\n',
      );
    const npm = spawnSync(
      'npm',
      ['install', '--no-audit', '--no-fund', '--no-save', '--prefix', JAZZER_DIR, `@jazzer.js/core@${JAZZER_VERSION}`],
      { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] },
    );
    if (npm.status !== 0 || !existsSync(CLI))
      return {
        unavailable: `npm could not install @jazzer.js/core@${JAZZER_VERSION}: ${npm.stderr.trim().split('\n').pop()}`,
      };
  }
  return { root, cli: CLI, sudo };
}

export interface JazzerResult {
  /** libFuzzer's executions. */
  readonly inputs: number;
  /** Edges covered (libFuzzer's `cov`) and features (`ft`) at the end. */
  readonly edges: number;
  readonly features: number;
  readonly corpus: number;
  /** Path of the crashing input libFuzzer wrote, or null. */
  readonly crash: string | null;
  readonly status: number | null;
  /** The last lines of the fuzzer's output (for a crash: its report). */
  readonly tail: string;
}

/** The seed corpus of a target: its seeds written once under .cache/fuzz/corpus/<target>/. */
function corpus(t: FuzzTarget): string {
  const dir = join(CORPUS_DIR, t.name);
  mkdirSync(dir, { recursive: true });
  if (readdirSync(dir).length === 0) t.seeds().forEach((s, i) => writeFileSync(join(dir, `seed-${i}`), s));
  return dir;
}

/** Fuzzes one target for `seconds` (or `inputs` runs, when given and reached first) inside the root; resolves with libFuzzer's figures. */
export function runJazzer(
  setup: { root: string; cli: string; sudo: string[] },
  t: FuzzTarget,
  seconds: number,
  inputs?: number,
  onLine?: (line: string) => void,
): Promise<JazzerResult> {
  const dir = corpus(t);
  const crashes = join(CRASH_DIR, t.name);
  mkdirSync(crashes, { recursive: true });
  const node = [
    '/usr/bin/node',
    '--import',
    'tsx',
    setup.cli,
    join(ROOT, 'test/fuzz/jazzer-entry'),
    dir,
    ...(t.async ? [] : ['--sync']),
    ...INCLUDES.flatMap((i) => ['-i', i]),
    '-e',
    'node_modules',
    '--timeout',
    '10000',
    '--',
    `-max_total_time=${Math.max(1, Math.round(seconds))}`,
    ...(inputs === undefined ? [] : [`-runs=${inputs}`]),
    `-artifact_prefix=${crashes}/`,
    '-rss_limit_mb=4096',
    '-print_final_stats=1',
  ];
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = [
    `mkdir -p ${quote(setup.root + ROOT)}`,
    `mount --bind ${quote(ROOT)} ${quote(setup.root + ROOT)}`,
    `mount -t proc proc ${quote(`${setup.root}/proc`)}`,
    `cd ${quote(ROOT)}`,
    `exec chroot ${quote(setup.root)} /bin/sh -c ${quote(`cd ${quote(ROOT)} && exec ${node.map(quote).join(' ')}`)}`,
  ].join(' && ');
  return new Promise((resolve) => {
    const child = spawn(
      'nice',
      ['-n', '19', ...setup.sudo, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script],
      {
        cwd: ROOT,
        env: { ...process.env, SEI_FUZZ_TARGET: t.name, NODE_TEST_CONTEXT: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let tail = '';
    let inputs = 0;
    let edges = 0;
    let features = 0;
    let corpusSize = 0;
    let crash: string | null = null;
    let finished = false;
    let pending = '';
    const onData = (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        tail = (tail + line + '\n').slice(-6000);
        onLine?.(line);
        // "#12345	NEW    cov: 1234 ft: 2345 corp: 56/789b ..." and the final "Done 12345 runs in 10 second(s)"
        const m = /^#(\d+)\s.*?cov: (\d+) ft: (\d+)(?: corp: (\d+))?/.exec(line);
        if (m) {
          inputs = Number(m[1]);
          edges = Number(m[2]);
          features = Number(m[3]);
          if (m[4]) corpusSize = Number(m[4]);
        }
        const done = /^Done (\d+) runs/.exec(line) ?? /^stat::number_of_executed_units: (\d+)/.exec(line);
        if (done) inputs = Math.max(inputs, Number(done[1]));
        // The last of the final stats. On a normal end Jazzer.js leaves exiting to the event loop, which a target's
        // running agent (the command target's) keeps alive: the run is over, so the process is stopped.
        if (line.startsWith('stat::peak_rss_mb') && !finished) {
          finished = true;
          setTimeout(() => child.kill('SIGTERM'), 3000).unref();
        }
        const written = /Test unit written to (\S+)/.exec(line);
        if (written) crash = written[1]!;
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (status) => {
      if (pending) onData(Buffer.from('\n'));
      resolve({
        inputs,
        edges,
        features,
        corpus: corpusSize,
        crash,
        status: finished && status === null ? 0 : status,
        tail,
      });
    });
  });
}
