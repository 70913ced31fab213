// What the soak and the fleet benchmark measure with (scripts/bench/proc.ts, scripts/bench/report.ts): /proc
// samples of a real child process that allocates memory, burns CPU and opens files; the least-squares slope; the
// systemd unit's node flags; the generated section of a markdown file.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, procSample, slope, unitEnvironment, unitNodeFlags } from '../scripts/bench/proc.js';
import { writeSection } from '../scripts/bench/report.js';
import { sparsityTable } from '../scripts/bench/sparsity.js';
import { FMNIST_BLOCKS, randomModel } from '../runtime/format/random-model.js';
import type { BwsnnModel } from '../runtime/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const linux = process.platform === 'linux';
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sei-bench-tools-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A node child that does `step` (a JS body) each time it reads a line, answering "done". */
function worker() {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('fs'); const keep = []; let n = 0;
       process.stdin.on('data', (d) => { for (const line of d.toString().trim().split('\\n')) {
         if (line === 'alloc') { const b = Buffer.alloc(48 * 2 ** 20, 1); keep.push(b); }
         if (line === 'open') for (let i = 0; i < 5; i++) keep.push(fs.openSync(${JSON.stringify(join(dir, 'f'))} + process.pid + '-' + n++, 'w'));
         if (line === 'burn') { const t = process.cpuUsage(); for (;;) { const u = process.cpuUsage(t); if (u.user + u.system >= 300000) break; } }
         process.stdout.write('done\\n'); } });
       process.stdout.write('done\\n');`,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let waiting: (() => void) | null = null;
  child.stdout!.on('data', () => waiting?.());
  const ready = new Promise<void>((r) => {
    waiting = r;
  });
  return {
    pid: child.pid!,
    ready,
    do(what: string): Promise<void> {
      const p = new Promise<void>((r) => {
        waiting = r;
      });
      child.stdin!.write(`${what}\n`);
      return p;
    },
    async end() {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill();
      await gone;
    },
  };
}

test('procSample follows a real process: RSS after 48 MB written, CPU after a busy loop, five more descriptors', {
  skip: !linux && 'reads /proc',
}, async () => {
  const w = worker();
  try {
    await w.ready;
    const a = procSample(w.pid)!;
    assert.ok(a.rssMb > 5 && a.peakRssMb >= a.rssMb && a.fds >= 3, JSON.stringify(a));
    await w.do('alloc');
    const b = procSample(w.pid)!;
    assert.ok(b.rssMb - a.rssMb >= 40, `RSS ${a.rssMb.toFixed(1)} -> ${b.rssMb.toFixed(1)} MB`);
    await w.do('open');
    assert.equal(procSample(w.pid)!.fds, b.fds + 5);
    const cpu0 = cpuSeconds(w.pid)!;
    await w.do('burn');
    const burnt = cpuSeconds(w.pid)! - cpu0;
    // The child spins until its own clock says 300 ms of CPU (at whatever share of a core it gets).
    assert.ok(burnt >= 0.25 && burnt < 0.6, `busy loop of 0.3 CPU s: /proc says ${burnt}`);
  } finally {
    await w.end();
  }
  assert.equal(procSample(w.pid), null, 'a process that is gone');
  assert.equal(cpuSeconds(w.pid), null);
});

test('slope is the least-squares fit', () => {
  assert.equal(slope([0, 1, 2, 3], [1, 4, 7, 10]), 3);
  assert.ok(Math.abs(slope([0, 1, 2, 3, 4], [2, 2.5, 2, 2.5, 2]) - 0) < 1e-12);
  // Noise around a line: the fit lands on its slope.
  const xs = Array.from({ length: 50 }, (_, i) => i);
  assert.ok(
    Math.abs(
      slope(
        xs,
        xs.map((x) => -0.5 * x + (x % 2 ? 0.3 : -0.3)),
      ) + 0.5,
    ) < 0.01,
  );
  assert.equal(slope([1], [5]), 0);
  assert.equal(slope([2, 2, 2], [1, 2, 3]), 0, 'no spread in x');
});

test("unitNodeFlags and unitEnvironment read the systemd unit's ExecStart flags and Environment lines", () => {
  const flags = unitNodeFlags(ROOT);
  const execStart = readFileSync(join(ROOT, 'packaging/sei-agent.service'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('ExecStart='))!;
  assert.ok(flags.length > 0);
  for (const f of flags) assert.ok(/^--[a-z0-9-]+=\S+$/.test(f) && execStart.includes(` ${f} `), f);
  const other = join(dir, 'root');
  mkdirSync(join(other, 'packaging'), { recursive: true });
  writeFileSync(join(other, 'packaging/sei-agent.service'), '[Service]\nExecStart=/bin/true\n');
  assert.throws(() => unitNodeFlags(other), /no `ExecStart=/);
  writeFileSync(join(other, 'packaging/sei-agent.service'), 'Environment=A=1\n#Environment=B=2\nEnvironment=C=x=y\n');
  assert.deepEqual(unitEnvironment(other), { A: '1', C: 'x=y' });
  const env = unitEnvironment(ROOT);
  const lines = readFileSync(join(ROOT, 'packaging/sei-agent.service'), 'utf8').split('\n');
  assert.ok(Object.keys(env).length > 0);
  for (const [k, v] of Object.entries(env)) assert.ok(lines.includes(`Environment=${k}=${v}`), k);
});

test('writeSection appends a marked section once, then replaces only what is between the markers', () => {
  const md = join(dir, 'r.md');
  writeFileSync(md, '# Results\n\nbefore\n');
  writeSection(md, 'soak', 'first body', 'npm run soak');
  writeSection(md, 'fleet', 'fleet body', 'npm run bench:fleet');
  writeFileSync(md, `${readFileSync(md, 'utf8')}after\n`);
  writeSection(md, 'soak', 'second body\n', 'npm run soak');
  const text = readFileSync(md, 'utf8');
  assert.ok(text.startsWith('# Results\n\nbefore\n\n<!-- soak:begin'), text);
  assert.ok(text.endsWith('fleet body\n<!-- fleet:end -->\nafter\n'), text);
  assert.ok(text.includes('second body\n<!-- soak:end -->') && !text.includes('first body'), text);
  assert.equal(text.split('<!-- soak:begin').length, 2);
  writeSection(join(dir, 'new.md'), 'x', 'body', 'cmd');
  assert.match(readFileSync(join(dir, 'new.md'), 'utf8'), /^<!-- x:begin .*-->\nbody\n<!-- x:end -->\n$/);
});

test('sparsityTable measures each model it is given: raised thresholds show fewer spikes and their own frames/s', async () => {
  const model = randomModel({ seed: 3, blocks: FMNIST_BLOCKS.slice(0, 3) });
  // The same network with every threshold of the hidden layers ×4: it must fire less.
  const quiet: BwsnnModel = {
    ...model,
    hidden: model.hidden.map((l) => ({ ...l, lif: { ...l.lif, theta: l.lif.theta.map((t) => 4 * t) } })),
  };
  const size = model.input[0] * model.input[1] * model.input[2];
  const frames = Array.from({ length: 4 }, (_, i) =>
    Uint8Array.from({ length: size }, (_, j) => (j * 37 + i * 101) % 256),
  );
  const rows = await sparsityTable(
    [
      { model, source: 'models/a.bwsnn' },
      { model: quiet, source: 'b.bwsnn' },
    ],
    frames,
    { rounds: 1, roundSeconds: 0.05, accuracyFrames: 0, testSet: false },
  );
  assert.deepEqual(
    rows.map((r) => r.model),
    ['a', 'b'],
  );
  for (const r of rows) {
    assert.equal(r.accuracy, null);
    assert.equal(r.spike_rates.length, model.hidden.length + 1);
    assert.ok(r.spike_rates.every((x) => x >= 0 && x <= 1));
    assert.ok(r.model_fps > 0 && r.ort_ann_fps > 0);
    assert.equal(r.model_vs_ort_ann, Number((r.model_fps / r.ort_ann_fps).toFixed(3)));
  }
  // The first layer is unchanged; the hidden ones fire less.
  assert.equal(rows[1]!.spike_rates[0], rows[0]!.spike_rates[0]);
  assert.ok(rows[1]!.mean_spike_rate < rows[0]!.mean_spike_rate, JSON.stringify(rows.map((r) => r.spike_rates)));
  await assert.rejects(
    sparsityTable(
      [
        { model, source: 'a' },
        { model: randomModel({ seed: 1, input: [8, 8, 1] }), source: 'c' },
      ],
      frames,
      {
        rounds: 1,
        roundSeconds: 0.05,
        accuracyFrames: 0,
        testSet: false,
      },
    ),
    /--sparsity: c takes 8×8×1 frames, expected/,
  );
});
