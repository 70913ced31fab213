/**
 * The edge-box lanes: the runtime's suites on Debian's Node 18 for arm64 and armhf under qemu user-mode
 * emulation; the agent from the device package on emulated arm64 and armhf (its better-sqlite3 cross-built for
 * bookworm's Node 18, the broker, the bundled model, then the package's `sei doctor`); and the amd64 package's
 * install, reinstall, upgrade and agent start in a throwaway Debian root.
 * They need Debian's qemu-user-static, debootstrap and the aarch64/armhf cross compilers (installed by .ci/run);
 * the root filesystems (debootstrap) and the chroot need root, or sudo without a password: without either the
 * tests that build or enter a root are skipped and say so. SEI_SKIP_ARM=1 skips them all on a development machine
 * without those tools.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const skip = process.env['SEI_SKIP_ARM'] === '1' ? 'SEI_SKIP_ARM=1' : false;
const MINUTE = 60_000;
const asRoot = process.getuid?.() === 0;
const sudo = !asRoot && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
/** Building a root (debootstrap) and entering it (chroot, mount) need root. */
const noRoot =
  skip ||
  (asRoot || sudo
    ? false
    : 'needs root or password-less sudo: debootstrap builds the Debian roots and the install test chroots into one');

/** Runs a command from the repo root with its output passed through; returns its exit status and stdout. */
function run(cmd: string, args: string[]): { status: number | null; stdout: string } {
  const r = spawnSync(cmd, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  process.stdout.write(
    r.stdout
      .split('\n')
      .map((l) => `# ${l}`)
      .join('\n') + '\n',
  );
  return { status: r.status, stdout: r.stdout };
}

test('dist/ builds for Node 18 and the runtime suites pass on arm64, armhf and armhf without NEON', {
  skip,
  timeout: 40 * MINUTE,
}, () => {
  assert.equal(run('node', ['scripts/build.mjs', '--no-typecheck', '--tests']).status, 0, 'npm run build failed');
  const lanes = run('node', ['scripts/arm/test.mjs']);
  for (const lane of ['arm64', 'armhf', 'armhf-nosimd'])
    assert.match(lanes.stdout, new RegExp(`^${lane}: PASS`, 'm'), `${lane} lane`);
  assert.equal(lanes.status, 0);
});

test('the agent runs from the device package on emulated arm64 and armhf (SQLite, broker, model, sei doctor)', {
  skip: noRoot,
  timeout: 40 * MINUTE,
}, () => {
  const smoke = run('node', ['scripts/arm/agent-smoke.mjs']);
  for (const arch of ['arm64', 'armhf'])
    assert.match(smoke.stdout, new RegExp(`^${arch}: PASS`, 'm'), `${arch} agent smoke`);
  assert.equal(smoke.status, 0);
});

test('the device package installs, reinstalls, upgrades and starts its agent in a throwaway root', {
  skip: noRoot,
  timeout: 20 * MINUTE,
}, () => {
  const install = asRoot
    ? run('bash', ['packaging/test-install.sh'])
    : run('sudo', ['-n', 'bash', 'packaging/test-install.sh']);
  assert.match(install.stdout, /^test-install: PASS$/m);
  assert.equal(install.status, 0);
});
