/**
 * `npm run fuzz -- --seconds N [--inputs M] [--target NAME[,NAME...]] [--engine both|fast-check|jazzer] [--json]`:
 * each fuzz target (./targets.ts) for N seconds (or until M inputs, when that comes first) — the fast-check pass (mutated seeds, random bytes, the properties), then
 * the coverage-guided Jazzer.js pass in the cached Debian trixie root (./jazzer.ts) when it can be built — and
 * one line per target and engine: inputs tried, coverage (libFuzzer's edges and features), crashes. Each crash's
 * input is saved under .cache/fuzz/crashes/<target>/ (a regression test replays the ones committed under
 * test/fixtures/fuzz/<target>/). Exits 1 when anything crashed.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CRASH_DIR, jazzerSetup, runJazzer } from './jazzer.js';
import { fastCheckPass, saveFailure } from './pass.js';
import { TARGETS, closeTargets, prepareTargets, target } from './targets.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    inputs: { type: 'string' },
    target: { type: 'string' },
    engine: { type: 'string', default: 'both' },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

function usage(message: string): never {
  console.error(`fuzz: ${message}`);
  process.exit(2);
}

const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds <= 0) usage(`--seconds: expected a number > 0, got ${values.seconds}`);
const inputs = values.inputs === undefined ? undefined : Number(values.inputs);
if (inputs !== undefined && !(Number.isInteger(inputs) && inputs > 0))
  usage(`--inputs: expected a whole number > 0, got ${values.inputs}`);
if (!['both', 'fast-check', 'jazzer'].includes(values.engine!))
  usage(`--engine: expected both, fast-check or jazzer, got ${values.engine}`);
let targets = TARGETS;
try {
  if (values.target) targets = values.target.split(',').map((n) => target(n));
} catch (err) {
  usage((err as Error).message);
}

interface Row {
  target: string;
  engine: 'fast-check' | 'jazzer';
  inputs: number;
  edges: number | null;
  features: number | null;
  crashes: number;
  saved: string[];
  note?: string;
}

await prepareTargets(targets.map((t) => t.name));
const rows: Row[] = [];
const jazzer = values.engine === 'fast-check' ? { unavailable: '--engine fast-check' } : jazzerSetup();
if ('unavailable' in jazzer && values.engine !== 'fast-check')
  console.error(`fuzz: the coverage-guided pass is skipped: ${jazzer.unavailable}`);
const share = values.engine === 'both' && !('unavailable' in jazzer) ? 0.5 : 1;

for (const t of targets) {
  if (values.engine !== 'jazzer') {
    const started = Date.now();
    const r = await fastCheckPass(t, { ms: seconds * 1000 * share, ...(inputs === undefined ? {} : { runs: inputs }) });
    const saved = r.failures.map((f) => saveFailure(join(CRASH_DIR, t.name), f));
    for (const f of r.failures)
      console.error(`fuzz: ${t.name}: ${f.what} failed on ${f.example.slice(0, 200)}\n${f.error}`);
    rows.push({
      target: t.name,
      engine: 'fast-check',
      inputs: r.inputs,
      edges: null,
      features: null,
      crashes: r.failures.length,
      saved,
    });
    if (values.verbose) console.error(`fuzz: ${t.name}: fast-check ${r.inputs} inputs in ${Date.now() - started} ms`);
  }
  if (!('unavailable' in jazzer)) {
    const before = new Set(safeList(join(CRASH_DIR, t.name)));
    const r = await runJazzer(jazzer, t, seconds * share, inputs, values.verbose ? (l) => console.error(l) : undefined);
    const saved = safeList(join(CRASH_DIR, t.name))
      .filter((f) => !before.has(f) && !f.endsWith('.txt'))
      .map((f) => join(CRASH_DIR, t.name, f));
    if (r.crash || saved.length > 0) console.error(`fuzz: ${t.name}: jazzer found a crash:\n${r.tail}`);
    else if (r.status !== 0) console.error(`fuzz: ${t.name}: jazzer exited ${r.status}:\n${r.tail}`);
    rows.push({
      target: t.name,
      engine: 'jazzer',
      inputs: r.inputs,
      edges: r.edges,
      features: r.features,
      crashes: saved.length,
      saved,
      ...(r.status !== 0 && saved.length === 0 ? { note: `exit ${r.status}` } : {}),
    });
  }
}
await closeTargets();

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const cell = (v: number | null) => (v === null ? '-' : String(v));
console.log(
  `\nfuzz: ${seconds} s${inputs === undefined ? '' : ` or ${inputs} inputs`} per target${share < 1 ? ' (half fast-check, half jazzer)' : ''}`,
);
console.log(
  ['target', 'engine', 'inputs', 'edges', 'features', 'crashes'].map((h, i) => h.padEnd(i < 2 ? 14 : 9)).join(' '),
);
for (const r of rows) {
  console.log(
    [
      r.target.padEnd(14),
      r.engine.padEnd(14),
      cell(r.inputs).padEnd(9),
      cell(r.edges).padEnd(9),
      cell(r.features).padEnd(9),
      String(r.crashes).padEnd(9),
    ].join(' ') +
      (r.note ? ` ${r.note}` : '') +
      (r.saved.length > 0 ? ` saved: ${r.saved.join(', ')}` : ''),
  );
}
if (values.json) console.log(JSON.stringify({ seconds, inputs: inputs ?? null, rows }));
process.exitCode = rows.some((r) => r.crashes > 0 || r.note) ? 1 : 0;
