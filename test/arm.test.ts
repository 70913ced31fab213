/**
 * The edge-box lanes: the runtime's suites on Debian's Node 18 for arm64 and armhf under qemu user-mode
 * emulation. The agent smoke test on emulated ARM (scripts/arm/agent-smoke.mjs) and the install test
 * (packaging/test-install.sh) are run by hand: on a cold cache their cross-built better-sqlite3 does not load yet.
 * They need Debian's qemu-user-static, debootstrap and the aarch64/armhf cross compilers (installed by .ci/run)
 * and root for the chroot. SEI_SKIP_ARM=1 skips them on a development machine without those.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const skip = process.env['SEI_SKIP_ARM'] === '1' ? 'SEI_SKIP_ARM=1' : false;
const MINUTE = 60_000;

/** Runs a command from the repo root with its output passed through; returns its exit status and stdout. */
function run(cmd: string, args: string[]): { status: number | null; stdout: string } {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  process.stdout.write(r.stdout.split('\n').map((l) => `# ${l}`).join('\n') + '\n');
  return { status: r.status, stdout: r.stdout };
}

test('dist/ builds for Node 18 and the runtime suites pass on arm64, armhf and armhf without NEON', { skip, timeout: 40 * MINUTE }, () => {
  assert.equal(run('node', ['scripts/build.mjs', '--no-typecheck']).status, 0, 'npm run build failed');
  const lanes = run('node', ['scripts/arm/test.mjs']);
  for (const lane of ['arm64', 'armhf', 'armhf-nosimd']) assert.match(lanes.stdout, new RegExp(`^${lane}: PASS`, 'm'), `${lane} lane`);
  assert.equal(lanes.status, 0);
});
