/**
 * Power loss, not only kill -9: the order of the durable steps, seen in the system calls. A kill -9 loses nothing
 * the kernel already holds, so test/ota-kill.test.ts cannot tell an fsync from none; a power cut can. Here the
 * calls themselves are recorded with strace (`-f -y`: every thread, with the path behind every fd) and parsed:
 *
 * - store/durable.ts alone, step by step: each primitive's calls in their order (write → fsync(file) → rename →
 *   fsync(folder); a new folder's entry synced in its parent; a removal synced);
 * - a real update (an agent process, the embedded broker, a signed model, `sei deploy`'s engine): the models
 *   folder, the `.part` file, every block and the rename into place are on the disk before SQLite records them,
 *   and SQLite syncs its WAL at every commit (synchronous=FULL) and its database file.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { deploy, prepareArtifact } from '../device-agent/ota/index.js';
import { otaModelFile, otaSection, testKeys } from './fixtures/ota/models.js';
import { aedes } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';
import { agentConfig } from './helpers/agent.js';

const CHILD = fileURLToPath(new URL('./fixtures/ota/agent-child.ts', import.meta.url));
const DURABLE = fileURLToPath(new URL('../device-agent/store/durable.ts', import.meta.url));
// `?`: a name this architecture lacks (aarch64 has no rename or mkdir) is no error.
const TRACE =
  'trace=fsync,fdatasync,?rename,?renameat,?renameat2,openat,write,pwrite64,?mkdir,?mkdirat,?unlink,?unlinkat';
const strace = spawnSync('strace', ['-V'], { encoding: 'utf8' });
const SKIP = strace.error
  ? 'strace is not installed (Debian: apt-get install strace); the durable-write order is not checked'
  : false;

let dir: string;
let broker: TestBroker;

before(async () => {
  // Real paths: strace -y prints what the kernel resolved.
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'sei-ota-durable-')));
  broker = await aedes();
});

after(async () => {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------------- the trace

interface Call {
  readonly name: string;
  /** The fd's path (fsync, write...), the opened file (openat), or the path arguments (rename, mkdir, unlink). */
  readonly paths: readonly string[];
  /** openat with O_CREAT. */
  readonly creates: boolean;
  /** Returned no error (a call whose return strace printed later, `<unfinished ...>`, counts as done). */
  readonly ok: boolean;
  readonly line: string;
}

const FD_FIRST = new Set(['fsync', 'fdatasync', 'write', 'pwrite64']);

function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  for (const line of text.split('\n')) {
    // "<... fsync resumed>" lines, signals and exits carry nothing new.
    const m = /^\d+\s+(\w+)\((.*)$/.exec(line);
    if (!m) continue;
    const name = m[1]!;
    let args = m[2]!;
    let result = '0';
    if (args.endsWith('<unfinished ...>')) args = args.slice(0, -'<unfinished ...>'.length);
    else {
      const end = args.lastIndexOf(') = ');
      if (end < 0) continue;
      result = args.slice(end + 4).trim();
      args = args.slice(0, end);
    }
    const ok = !result.startsWith('-');
    let paths: string[];
    if (FD_FIRST.has(name)) paths = [/^\d+<([^>]*)>/.exec(args)?.[1] ?? ''];
    else if (name === 'openat' && ok) paths = [/^\d+<([^>]*)>/.exec(result)?.[1] ?? ''];
    else paths = [...args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((q) => q[1]!);
    calls.push({ name, paths, creates: name === 'openat' && args.includes('O_CREAT'), ok, line });
  }
  return calls;
}

const isSync = (path: string) => (c: Call) => (c.name === 'fsync' || c.name === 'fdatasync') && c.paths[0] === path;
const isWrite = (path: string) => (c: Call) => (c.name === 'write' || c.name === 'pwrite64') && c.paths[0] === path;
const isRename = (c: Call) => c.name.startsWith('rename') && c.ok;

/** Index of the first call after `from` (exclusive) that matches, or the trace's length. */
function nextIndex(calls: readonly Call[], from: number, match: (c: Call) => boolean): number {
  for (let i = from + 1; i < calls.length; i++) if (match(calls[i]!)) return i;
  return calls.length;
}

function some(calls: readonly Call[], from: number, to: number, match: (c: Call) => boolean): boolean {
  return calls.slice(from + 1, to).some(match);
}

/** The calls around `i`, for a failure message. */
function around(calls: readonly Call[], i: number): string {
  return calls
    .slice(Math.max(0, i - 4), i + 8)
    .map((c, k) => `${k + Math.max(0, i - 4) === i ? '>' : ' '} ${c.line}`)
    .join('\n');
}

interface Traced {
  /** The traced process (strace's child: a signal to strace would only detach it). */
  pid(): number;
  readonly stdout: Readable;
}

/** Runs `argv` under strace; `during` runs meanwhile (and must end the process); returns the parsed trace. */
async function traced(
  argv: readonly string[],
  out: string,
  during: (t: Traced) => Promise<void> = async () => {},
): Promise<Call[]> {
  const proc = spawn('strace', ['-f', '-qq', '-y', '--seccomp-bpf', '-o', out, '-e', TRACE, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const pid = () => Number(readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  await during({ pid, stdout: proc.stdout! }).catch(async (err: Error) => {
    proc.kill('SIGKILL');
    await exited;
    throw new Error(`${err.message}\nstrace/agent stderr:\n${stderr}`);
  });
  const code = await exited;
  assert.equal(code, 0, `traced process exited ${code}: ${stderr}`);
  return parseTrace(readFileSync(out, 'utf8'));
}

// ------------------------------------------------------------------------------------------- the primitives

test('store/durable.ts under strace: each primitive syncs the file before its rename and the folder after', {
  skip: SKIP,
  timeout: 60_000,
}, async () => {
  const d = join(dir, 'prim');
  const mark = (n: number) => join(d, `#mark-${n}`);
  // A failed openat of a marker path separates the steps in the trace.
  const script = `
    import { closeSync, openSync } from 'node:fs';
    import { createFileDurable, mkdirDurable, removeDurable, renameDurable, writeAtDurable, writeFileDurable } from ${JSON.stringify(DURABLE)};
    const d = ${JSON.stringify(d)};
    const mark = (n) => { try { openSync(d + '/#mark-' + n, 'r'); } catch {} };
    mark(0); mkdirDurable(d + '/a/b');
    mark(1); writeFileDurable(d + '/a/b/f', new Uint8Array(100).fill(7));
    mark(2); createFileDurable(d + '/a/b/p', 64);
    mark(3); const fd = openSync(d + '/a/b/p', 'r+'); writeAtDurable(fd, new Uint8Array(16).fill(1), 32); closeSync(fd);
    mark(4); renameDurable(d + '/a/b/p', d + '/a/q');
    mark(5); removeDurable(d + '/a/q');
    mark(6);`;
  const calls = await traced(
    [process.execPath, '--import', 'tsx', '--input-type=module', '-e', script],
    join(dir, 'prim.trace'),
  );
  const step = (n: number) => {
    const from = calls.findIndex((c) => c.name === 'openat' && c.paths[0] === mark(n));
    const to = calls.findIndex((c) => c.name === 'openat' && c.paths[0] === mark(n + 1));
    assert.ok(from >= 0 && to > from, `markers ${n} and ${n + 1} in the trace`);
    return calls.slice(from + 1, to);
  };
  /** Each of `seq` in this order within the step's calls. */
  const inOrder = (n: number, what: string, seq: ReadonlyArray<[string, (c: Call) => boolean]>) => {
    const window = step(n);
    let at = -1;
    for (const [label, match] of seq) {
      const i = nextIndex(window, at, match);
      assert.ok(
        i < window.length,
        `${what}: expected ${label} after ${
          seq
            .map((s) => s[0])
            .slice(
              0,
              seq.findIndex((s) => s[0] === label),
            )
            .join(' → ') || 'the start'
        }, got:\n${window.map((c) => c.line).join('\n')}`,
      );
      at = i;
    }
  };
  const a = join(d, 'a');
  const b = join(a, 'b');
  const tmp = join(b, 'f.tmp');
  inOrder(0, 'mkdirDurable', [
    ['mkdir a', (c) => c.name.startsWith('mkdir') && c.ok && c.paths.includes(a)],
    ['mkdir a/b', (c) => c.name.startsWith('mkdir') && c.ok && c.paths.includes(b)],
    ['fsync(a)', isSync(a)],
    ['fsync(parent of a)', isSync(d)],
  ]);
  inOrder(1, 'writeFileDurable', [
    ['create f.tmp', (c) => c.creates && c.paths[0] === tmp],
    ['write f.tmp', isWrite(tmp)],
    ['fsync(f.tmp)', isSync(tmp)],
    ['rename f.tmp → f', (c) => isRename(c) && c.paths.includes(tmp) && c.paths.includes(join(b, 'f'))],
    ['fsync(a/b)', isSync(b)],
  ]);
  inOrder(2, 'createFileDurable', [
    ['create p', (c) => c.creates && c.paths[0] === join(b, 'p')],
    ['fsync(p)', isSync(join(b, 'p'))],
    ['fsync(a/b)', isSync(b)],
  ]);
  inOrder(3, 'writeAtDurable', [
    ['pwrite64 p', isWrite(join(b, 'p'))],
    ['fdatasync(p)', isSync(join(b, 'p'))],
  ]);
  inOrder(4, 'renameDurable', [
    ['fsync(p)', isSync(join(b, 'p'))],
    ['rename p → a/q', (c) => isRename(c) && c.paths.includes(join(a, 'q'))],
    ['fsync(a)', isSync(a)],
  ]);
  assert.ok(step(4).some(isSync(b)), 'renameDurable across folders: the folder it left is synced too');
  inOrder(5, 'removeDurable', [
    ['unlink a/q', (c) => c.name.startsWith('unlink') && c.ok && c.paths.includes(join(a, 'q'))],
    ['fsync(a)', isSync(a)],
  ]);
  // writeFileDurable's and renameDurable's, and no other.
  assert.equal(calls.filter((c) => c.name.startsWith('rename') && c.paths.some((p) => p.startsWith(d))).length, 2);
});

// ------------------------------------------------------------------------------------------- a real update

test('an update under strace: folder, .part, every block and the rename are on the disk before SQLite records them; SQLite syncs every commit', {
  skip: SKIP,
  timeout: 180_000,
}, async () => {
  const keys = testKeys(dir);
  // Two folders to create: their entries must be synced in their parents.
  const models = join(dir, 'fresh', 'models');
  const config = agentConfig({
    dir,
    model: otaModelFile(dir, 1, 1),
    url: broker.url,
    device: 'durable',
    extra: {
      ota: otaSection(keys.publicPath, {
        dir: models,
        probation: { frames: 12, seconds: 20, maxLatencyRatio: 1000, minConfidenceRatio: 0.05 },
      }),
    },
  });
  const db = (config.store as { path: string }).path;
  const wal = `${db}-wal`;
  const configPath = join(dir, 'durable.json');
  writeFileSync(configPath, JSON.stringify(config));
  const p = await prepareArtifact(new Uint8Array(readFileSync(otaModelFile(dir, 2, 2))), keys.privateKey, {
    canaries: 2,
  });
  let blocks = 0;

  const calls = await traced(
    [process.execPath, '--import', 'tsx', CHILD, configPath],
    join(dir, 'update.trace'),
    async ({ pid, stdout }) => {
      // "ready <version>", then "online" once connected (agent-child.ts).
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('the traced agent did not come online within 60 s')), 60_000);
        let out = '';
        stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (/ready \S+\n/.test(out) && out.includes('online\n')) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      const r = await deploy({
        url: broker.url,
        ...p,
        fleet: 'test',
        devices: ['durable'],
        blockSize: 256,
        timeoutS: 90,
      });
      const o = r.devices[0]!;
      assert.equal(o.state, 'SUCCEEDED', `update: ${o.state} ${o.reason}`);
      assert.equal(o.active, 'ota-test@2');
      blocks = r.blocks;
      // SIGTERM: the agent stops cleanly, closing SQLite (a checkpoint into the database file).
      process.kill(pid(), 'SIGTERM');
    },
  );

  const walWrites = calls.filter(isWrite(wal)).length;
  assert.ok(walWrites > 0, `SQLite's WAL ${wal} is written in the trace`);
  const nextCommit = (i: number) => nextIndex(calls, i, isWrite(wal));

  // The models folder and its parent: created, each entry synced in its parent before anything is recorded.
  for (const folder of [dirname(models), models]) {
    const i = calls.findIndex((c) => c.name.startsWith('mkdir') && c.ok && c.paths.includes(folder));
    assert.ok(i >= 0, `mkdir ${folder} in the trace`);
    assert.ok(
      some(calls, i, nextCommit(i), isSync(dirname(folder))),
      `mkdir ${folder}: its parent is synced before the next commit\n${around(calls, i)}`,
    );
  }

  // The .part file: created at its size, synced, its folder synced, before the job's row names it.
  const created = calls
    .map((c, i) => [c, i] as const)
    .filter(([c]) => c.creates && c.paths[0]!.startsWith(models) && c.paths[0]!.endsWith('.part'));
  assert.equal(created.length, 1, `one .part created: ${created.map(([c]) => c.line).join('\n')}`);
  const [partCall, partAt] = created[0]!;
  const part = partCall.paths[0]!;
  assert.ok(
    some(calls, partAt, nextCommit(partAt), isSync(part)),
    `${part}: synced before the next commit\n${around(calls, partAt)}`,
  );
  assert.ok(
    some(calls, partAt, nextCommit(partAt), isSync(models)),
    `${part}: its folder synced before the next commit\n${around(calls, partAt)}`,
  );

  // Every block: written, then synced before the commit that marks it received, and that commit synced before
  // the next block is written (synchronous=FULL; NORMAL would sync the WAL only at checkpoints).
  const blockWrites = calls
    .map((c, i) => [c, i] as const)
    .filter(([c]) => isWrite(part)(c))
    .map(([, i]) => i);
  assert.equal(blockWrites.length, blocks, `one write per block (${blocks} blocks of 256 bytes)`);
  const rename = calls.findIndex((c) => isRename(c) && c.paths.includes(part));
  assert.ok(
    rename > blockWrites.at(-1)!,
    `the .part is renamed into place after its last block\n${around(calls, blockWrites.at(-1)!)}`,
  );
  for (const [k, i] of blockWrites.entries()) {
    const commit = nextCommit(i);
    assert.ok(
      some(calls, i, commit, isSync(part)),
      `block write ${k}: synced before the bitmap is committed\n${around(calls, i)}`,
    );
    const until = blockWrites[k + 1] ?? rename;
    assert.ok(
      commit < until && some(calls, commit, until, isSync(wal)),
      `block write ${k}: its bitmap committed and the WAL synced before the next block\n${around(calls, i)}`,
    );
  }

  // Every rename into a folder of this test: the file synced after its last write, before the rename; the
  // folder synced after it, before the next commit.
  const renames = calls
    .map((c, i) => [c, i] as const)
    .filter(([c]) => isRename(c) && c.paths.some((q) => q.startsWith(dir)));
  assert.ok(renames.length >= 1, 'the install rename is in the trace');
  for (const [c, i] of renames) {
    const [from, to] = c.paths as [string, string];
    let lastTouch = -1;
    for (let j = i - 1; j >= 0; j--) {
      const cj = calls[j]!;
      if (isWrite(from)(cj) || (cj.creates && cj.paths[0] === from)) {
        lastTouch = j;
        break;
      }
    }
    assert.ok(
      some(calls, lastTouch, i, isSync(from)),
      `rename ${from} → ${to}: the file synced after its last write and before the rename\n${around(calls, i)}`,
    );
    assert.ok(
      some(calls, i, nextCommit(i), isSync(dirname(to))),
      `rename ${from} → ${to}: the folder synced after the rename, before the next commit\n${around(calls, i)}`,
    );
  }
  assert.ok(
    renames.some(([c]) => c.paths[1]!.startsWith(models) && c.paths[1]!.endsWith('.bwsnn')),
    'the artifact was renamed to its installed .bwsnn',
  );

  // Every commit synced: each write to the WAL is followed by a sync of the WAL before the update's next step
  // on the disk (a block, a rename, a file created in the models folder).
  const step = (c: Call) => isWrite(part)(c) || isRename(c) || (c.creates && c.paths[0]!.startsWith(models));
  for (let i = 0; i < calls.length; i++) {
    if (!isWrite(wal)(calls[i]!)) continue;
    const next = nextIndex(calls, i, step);
    if (next < calls.length)
      assert.ok(
        some(calls, i, next, isSync(wal)),
        `a commit before an update step without a WAL sync (synchronous=FULL?)\n${around(calls, i)}`,
      );
  }
  assert.ok(calls.filter(isSync(wal)).length >= blocks, `the WAL synced at least once per block (${blocks})`);
  assert.ok(calls.some(isSync(db)), `the database file ${db} is synced (checkpoint)`);
  assert.deepEqual(
    readdirSync(models).filter((f) => !f.endsWith('.bwsnn')),
    [],
    'only installed versions are left in the models folder',
  );
});
