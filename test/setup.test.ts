/**
 * `npm run setup` (scripts/setup.sh): what it reports for a machine that has every package, some, or none, run as
 * an unprivileged user (nobody, through setpriv when this runs as root). The package database is a real dpkg
 * status file in a temporary folder (DPKG_ADMINDIR), so the test does not depend on what this machine has
 * installed and never installs anything. The script runs from a copy in a world-readable folder, since nobody
 * may not be able to read a checkout under /root.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'setup.sh');
const NOBODY = 65534;
/** The exit status the script gives when packages are missing and it cannot become root. */
const CANNOT_INSTALL = 3;

const asRoot = process.getuid?.() === 0;
const hasDpkg = spawnSync('dpkg-query', ['--version'], { stdio: 'ignore' }).status === 0;
const sudo = !asRoot && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
/** How to run the script without root or sudo: as nobody when we are root, as ourselves when we have neither. */
const unprivileged = asRoot ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'] : [];
const skip = !hasDpkg
  ? 'needs dpkg-query (Debian)'
  : sudo
    ? 'this user has password-less sudo and is not root: there is no unprivileged user to run the script as'
    : false;

/** A temporary folder that nobody (the user) can read. */
function readableTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sei-setup-'));
  chmodSync(dir, 0o755);
  return dir;
}

/** A dpkg database listing `installed` as installed. */
function dpkgDatabase(installed: readonly string[]): string {
  const dir = readableTempDir();
  const stanza = (name: string) =>
    `Package: ${name}\nStatus: install ok installed\nVersion: 1\nArchitecture: all\nMaintainer: sei-edge tests <tests@invalid>\nDescription: stand-in\n`;
  writeFileSync(join(dir, 'status'), installed.map(stanza).join('\n'), { mode: 0o644 });
  return dir;
}

interface SetupRun {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

let copy = '';
function setup(installed: readonly string[], env: Record<string, string> = {}, args: string[] = []): SetupRun {
  if (copy === '') {
    const dir = readableTempDir();
    copy = join(dir, 'setup.sh');
    copyFileSync(script, copy);
    chmodSync(copy, 0o755);
  }
  const [cmd, ...rest] = [...unprivileged, 'bash', copy, ...args];
  const { SEI_SKIP_ARM: _, ...inherited } = process.env;
  const started = performance.now();
  const r = spawnSync(cmd!, rest, {
    cwd: dirname(copy),
    encoding: 'utf8',
    env: { ...inherited, DPKG_ADMINDIR: dpkgDatabase(installed), ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - started };
}

/** The packages named on the `apt-get install` line the script prints for the missing ones. */
function toInstall(run: SetupRun): string[] {
  const line = /^setup: {3}apt-get update && apt-get install -y (.+)$/m.exec(run.stderr);
  assert.ok(line, `no apt-get install line in:\n${run.stderr}`);
  return line[1]!.split(' ');
}

describe('npm run setup', { skip }, () => {
  let everything: string[] = [];
  before(() => {
    everything = toInstall(setup([]));
  });
  const arm = ['qemu-user-static', 'debootstrap'];

  it('with nothing installed and no way to root: names every package with its reason, the command, exit 3', () => {
    const run = setup([]);
    assert.equal(run.status, CANNOT_INSTALL, run.stderr);
    for (const name of ['dataset-fashion-mnist', 'mosquitto', 'ffmpeg', 'strace', ...arm]) {
      assert.ok(everything.includes(name), `${name} missing from ${everything.join(' ')}`);
      assert.match(
        run.stderr,
        new RegExp(`^setup: {3}${name.replace(/\+/g, '\\+')}: \\S`, 'm'),
        `${name} has no reason`,
      );
    }
    assert.match(run.stderr, /needs root or password-less sudo/);
    assert.equal(run.stdout, '');
  });

  it('with some installed: the command names exactly the missing ones', () => {
    const missing = ['strace', 'debootstrap'];
    const run = setup(everything.filter((p) => !missing.includes(p)));
    assert.equal(run.status, CANNOT_INSTALL, run.stderr);
    assert.deepEqual(toInstall(run), missing);
    assert.match(run.stderr, /^setup: 2 Debian packages the tests use are missing:$/m);
  });

  it("SEI_SKIP_ARM=1 leaves out the ARM lanes' packages", () => {
    const run = setup([], { SEI_SKIP_ARM: '1' });
    assert.equal(run.status, CANNOT_INSTALL, run.stderr);
    const wanted = toInstall(run);
    for (const name of arm) assert.ok(!wanted.includes(name), `${name} wanted with SEI_SKIP_ARM=1`);
    assert.ok(wanted.includes('mosquitto'));
    assert.equal(
      setup(
        everything.filter((p) => !arm.includes(p)),
        { SEI_SKIP_ARM: '1' },
      ).status,
      0,
    );
  });

  it('with everything installed: exit 0 at once, without root and without apt', () => {
    const run = setup(everything);
    assert.equal(run.status, 0, run.stderr);
    assert.match(
      run.stdout,
      new RegExp(`^setup: all ${everything.length} Debian packages the tests use are installed$`, 'm'),
    );
    assert.equal(run.stderr, '');
    assert.ok(run.ms < 3000, `took ${run.ms.toFixed(0)} ms`);
  });

  it('an unknown argument is refused with exit 2', () => {
    const run = setup(everything, {}, ['--frobnicate']);
    assert.equal(run.status, 2);
    assert.match(run.stderr, /unknown argument '--frobnicate'/);
  });
});
