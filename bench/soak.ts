/**
 * `npm run soak`: the agent over a long run at the systemd unit's node flags. Starts the embedded broker here and
 * one agent as its own process (only the agent command, bench/agent-main.ts) with the box's config
 * (packaging/agent.json: Prometheus on, the unit's defaults) pointed at that broker, a scratch SQLite file and the
 * bundled model, streams the sample frames (as fast as the engine takes them by default) with results published
 * over MQTT, and every --interval seconds records the agent's RSS, peak RSS and CPU time and open file descriptors
 * (/proc/PID), its JS heap in use (its own Prometheus endpoint, nodejs_heap_size_used_bytes) and the size of its
 * SQLite file (with the WAL). At the end it prints, for each series, the least-squares slope per hour over the
 * steady part (the first fifth is warm-up) and whether it is flat (its fitted change over that part below a
 * tolerance), against the goals: RSS <= 80 MB, nothing growing.
 *
 *   npm run soak -- [--minutes 10] [--fps 0] [--interval 10] [--dist | --entry path/to/sei-device.js]
 *                   [--node PATH] [--semi-space MB] [--old-space MB] [--node-flags '--flag ...']
 *                   [--no-prometheus] [--csv FILE] [--markdown FILE [--section NAME]]
 *
 * --dist runs the compiled device CLI (dist/scripts/sei-device.js, `npm run build`), as a box without tsx does;
 * --entry runs another compiled entry. The default runs the TypeScript through tsx, whose loader alone adds about
 * 30 MB. --node runs the agent on another Node binary (a box's Node 18, say; a compiled entry whose native
 * addons were built for that Node: the device package). The node flags are the unit's ExecStart flags
 * (packaging/sei-agent.service); --semi-space and --old-space replace V8's young-generation semi-space and old-space
 * limit (MB; 0 = Node's default); --node-flags adds flags to try before the unit takes them. --csv writes every
 * sample; --markdown writes the summary into that file's `soak` section (or --section NAME). The last line is the
 * summary as JSON.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bundledModel, mergeDeep, startBroker } from '../device-agent/index.js';
import type { Json } from '../device-agent/index.js';
import { writeBwsnn } from '../runtime/index.js';
import { freePort } from '../scripts/bench/mosquitto.js';
import { procSample, slope, unitEnvironment, unitNodeFlags } from '../scripts/bench/proc.js';
import { contextLine, npmCommand, runContext, writeSection } from '../scripts/bench/report.js';
import { printJson } from '../scripts/output.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const argv = process.argv.slice(2);
const { values } = parseArgs({
  args: argv,
  options: {
    minutes: { type: 'string', default: '10' },
    fps: { type: 'string', default: '0' },
    dist: { type: 'boolean', default: false },
    'semi-space': { type: 'string' },
    'old-space': { type: 'string' },
    interval: { type: 'string', default: '10' },
    entry: { type: 'string' },
    'no-prometheus': { type: 'boolean', default: false },
    csv: { type: 'string' },
    markdown: { type: 'string' },
    section: { type: 'string', default: 'soak' },
    'node-flags': { type: 'string' },
    node: { type: 'string' },
  },
});
const num = (flag: string, v: string, min: number): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    console.error(`soak: --${flag}: expected a number >= ${min}, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
};
const minutes = num('minutes', values.minutes, 0.05);
const intervalS = num('interval', values.interval, 0.5);
const fps = num('fps', values.fps, 0);
const LIMIT_MB = 80;
/** The fitted change over the steady part below which a series counts as flat. */
const FLAT = { rss_mb: 1, heap_used_mb: 1, fds: 1, db_mb: 1 } as const;
type Series = keyof typeof FLAT;

/** The node flags: the unit's, with --semi-space / --old-space replacing theirs. */
function nodeFlags(): string[] {
  const flags = new Map(unitNodeFlags(ROOT).map((f) => [f.slice(0, f.indexOf('=')), f] as const));
  for (const [opt, flag] of [
    ['semi-space', '--max-semi-space-size'],
    ['old-space', '--max-old-space-size'],
  ] as const) {
    const v = values[opt];
    if (v === undefined) continue;
    const mb = num(opt, v, 0);
    if (mb > 0) flags.set(flag, `${flag}=${mb}`);
    else flags.delete(flag);
  }
  return [...flags.values(), ...(values['node-flags']?.split(/\s+/).filter(Boolean) ?? [])];
}

/** The first sample of a Prometheus series in an exposition text, or null. */
function promValue(text: string, name: string): number | null {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

async function scrape(port: number | null): Promise<string | null> {
  if (port === null) return null;
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}

const fileMb = (path: string) => (existsSync(path) ? statSync(path).size / 2 ** 20 : 0);

const compiled = values.dist || values.entry !== undefined;
// Default: only the agent command in its own process (bench/agent-main.ts). --dist: the device CLI as packaged.
const entry = values.entry
  ? [values.entry]
  : values.dist
    ? [join(ROOT, 'dist/scripts/sei-device.js')]
    : ['--import', 'tsx', join(ROOT, 'bench/agent-main.ts')];
if (compiled && !existsSync(entry[0]!)) throw new Error(`${entry[0]} is missing; run \`npm run build\` first`);
const nodeBin = values.node ?? process.execPath;
if (values.node !== undefined && !compiled) throw new Error('--node runs a compiled agent: give --dist or --entry too');
const nodeVersion = spawnSync(nodeBin, ['--version'], { encoding: 'utf8' }).stdout?.trim();
if (!nodeVersion) throw new Error(`--node: ${nodeBin} does not run`);
const flags = nodeFlags();
const context = runContext(npmCommand('soak', argv));
const dir = mkdtempSync(join(tmpdir(), 'sei-soak-'));
const broker = await startBroker({ port: 0 });
let modelPath = bundledModel();
if (!modelPath) {
  const { FMNIST_BLOCKS, randomModel } = await import('../runtime/format/random-model.js');
  modelPath = join(dir, 'random-1.bwsnn');
  writeFileSync(modelPath, writeBwsnn(randomModel({ seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 })));
}
const promPort = values['no-prometheus'] ? null : await freePort();
const db = join(dir, 'state.db');
const config = join(dir, 'agent.json');
const box = JSON.parse(readFileSync(join(ROOT, 'packaging/agent.json'), 'utf8')) as Json;
writeFileSync(
  config,
  JSON.stringify(
    mergeDeep(box, {
      fleet: 'soak',
      device: 'agent',
      model: { path: modelPath, dir: null },
      source: { spec: 'samples', frameRate: fps },
      mqtt: { url: broker.url },
      metrics: { httpPort: promPort, httpHost: '127.0.0.1' },
      store: { path: db },
    }),
  ),
);
const unitEnv = unitEnvironment(ROOT);
const child = spawn(nodeBin, [...flags, ...entry, 'agent', '--config', config], {
  cwd: ROOT,
  // The unit's environment too (NODE_ENV, MALLOC_ARENA_MAX), as systemd gives it.
  env: { ...process.env, ...unitEnv },
  stdio: ['ignore', 'pipe', 'inherit'],
});
let lastLine = '';
child.stdout!.on('data', (d: Buffer) => {
  lastLine = d.toString().trim().split('\n').at(-1) ?? lastLine;
});

console.log(
  `soak: ${minutes} min, agent pid ${child.pid} (${compiled ? 'dist' : 'tsx'}${flags.length ? `, ${flags.join(' ')}` : ''}), ` +
    `broker ${broker.url}, Prometheus ${promPort === null ? 'off' : `on :${promPort}`}`,
);
interface Sample {
  readonly t_min: number;
  readonly rss_mb: number;
  readonly peak_rss_mb: number;
  readonly heap_used_mb: number | null;
  readonly fds: number;
  readonly db_mb: number;
  readonly cpu_s: number;
  readonly frames: number | null;
}
const samples: Sample[] = [];
const t0 = Date.now();
while (Date.now() - t0 < minutes * 60_000 && child.exitCode === null) {
  await new Promise((r) => setTimeout(r, intervalS * 1000));
  const text = await scrape(promPort);
  const p = procSample(child.pid!);
  if (p === null) break;
  const heap = text === null ? null : promValue(text, 'nodejs_heap_size_used_bytes');
  const frames = text === null ? null : promValue(text, 'sei_agent_frames_total');
  const s: Sample = {
    t_min: (Date.now() - t0) / 60_000,
    rss_mb: p.rssMb,
    peak_rss_mb: p.peakRssMb,
    heap_used_mb: heap === null ? null : heap / 2 ** 20,
    fds: p.fds,
    db_mb: fileMb(db) + fileMb(`${db}-wal`),
    cpu_s: p.cpuS,
    frames,
  };
  samples.push(s);
  console.log(
    `${s.t_min.toFixed(2)} min  rss ${s.rss_mb.toFixed(1)} MB  heap ${s.heap_used_mb?.toFixed(1) ?? 'n/a'} MB  ` +
      `fds ${s.fds}  db ${s.db_mb.toFixed(2)} MB  | ${lastLine}`,
  );
}
const early = child.exitCode ?? child.signalCode;
if (early === null) {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
await broker.close();
rmSync(dir, { recursive: true, force: true });
context.finish();
if (early !== null) {
  console.error(`soak: the agent exited early (code ${early})`);
  process.exitCode = 1;
}

const round = (x: number, d = 3) => Number(x.toFixed(d));
// Warm-up: the first fifth of the run (at least one sample) is left out of the growth figures.
const steady = samples.slice(Math.max(1, Math.floor(samples.length / 5)));
const steadyH = steady.length >= 2 ? (steady.at(-1)!.t_min - steady[0]!.t_min) / 60 : 0;
const series = Object.fromEntries(
  (Object.keys(FLAT) as Series[]).map((key) => {
    const pts = steady.filter((s) => s[key] !== null);
    const perHour = slope(
      pts.map((s) => s.t_min / 60),
      pts.map((s) => s[key] as number),
    );
    const all = samples.map((s) => s[key]).filter((v): v is number => v !== null);
    return [
      key,
      all.length === 0
        ? null
        : {
            start: round(pts[0]?.[key] ?? all[0]!, 2),
            end: round(all.at(-1)!, 2),
            peak: round(Math.max(...all), 2),
            slope_per_hour: round(perHour),
            flat: pts.length >= 2 && Math.abs(perHour * steadyH) < FLAT[key],
          },
    ];
  }),
) as Record<Series, { start: number; end: number; peak: number; slope_per_hour: number; flat: boolean } | null>;
const last = samples.at(-1);
const spanMin = last ? last.t_min - (samples[0]?.t_min ?? 0) : 0;
const cpuS = last ? last.cpu_s - (samples[0]?.cpu_s ?? 0) : 0;
// Frames from the first scrape that answered to the last.
const counted = samples.filter((s) => s.frames !== null);
const framesSpanS = counted.length >= 2 ? (counted.at(-1)!.t_min - counted[0]!.t_min) * 60 : 0;
const framesPerSecond = framesSpanS > 0 ? (counted.at(-1)!.frames! - counted[0]!.frames!) / framesSpanS : null;
const summary = {
  minutes: round((Date.now() - t0) / 60_000, 2),
  samples: samples.length,
  runner: compiled ? 'dist' : 'tsx',
  agent_node: nodeVersion,
  node_flags: flags.join(' '),
  environment: Object.entries(unitEnv)
    .map(([k, v]) => `${k}=${v}`)
    .join(' '),
  prometheus: promPort !== null,
  frames_per_second: framesPerSecond === null ? null : round(framesPerSecond, 1),
  cpu_percent: spanMin > 0 ? round((100 * cpuS) / (spanMin * 60), 1) : null,
  rss_peak_mb: round(Math.max(0, ...samples.map((s) => s.peak_rss_mb)), 1),
  rss_ok: samples.length > 0 && Math.max(...samples.map((s) => s.peak_rss_mb)) <= LIMIT_MB,
  series,
  flat: steady.length >= 2 && Object.values(series).every((s) => s === null || s.flat),
  load_start: context.loadStart,
  load_end: context.loadEnd,
};
console.log(
  `peak RSS ${summary.rss_peak_mb} MB (goal <= ${LIMIT_MB}); per hour after warm-up: ` +
    (Object.keys(FLAT) as Series[])
      .map((k) => `${k} ${series[k]?.slope_per_hour ?? 'n/a'}${series[k]?.flat === false ? ' (growing)' : ''}`)
      .join(', '),
);
if (values.csv) {
  const cols = Object.keys(samples[0] ?? { t_min: 0 }) as (keyof Sample)[];
  writeFileSync(
    values.csv,
    [cols.join(','), ...samples.map((s) => cols.map((c) => (s[c] === null ? '' : round(s[c] as number, 4))).join(','))]
      .join('\n')
      .concat('\n'),
  );
  console.log(`soak: ${samples.length} samples in ${values.csv}`);
}
if (values.markdown) {
  const row = (k: Series, label: string) => {
    const s = series[k];
    return s
      ? `| ${label} | ${s.start} | ${s.end} | ${s.peak} | ${s.slope_per_hour} | ${s.flat ? 'flat' : '**growing**'} (< ${FLAT[k]} over the steady part) |`
      : `| ${label} | n/a | n/a | n/a | n/a | not measured |`;
  };
  writeSection(
    values.markdown,
    values.section!,
    [
      `Soak: ${summary.minutes} min, ${summary.runner} agent on Node ${summary.agent_node}, \`${[summary.environment, 'node', summary.node_flags].filter(Boolean).join(' ')}\`, Prometheus ${summary.prometheus ? 'on' : 'off'}, ` +
        `${summary.frames_per_second ?? 'n/a'} frames/s, ${summary.cpu_percent ?? 'n/a'} % of a core; ${contextLine(context)}.`,
      '',
      '| series | after warm-up | end | peak | slope per hour | |',
      '|---|---:|---:|---:|---:|---|',
      row('rss_mb', 'RSS (MB)'),
      row('heap_used_mb', 'JS heap used (MB)'),
      row('fds', 'open file descriptors'),
      row('db_mb', 'SQLite file + WAL (MB)'),
    ].join('\n'),
    'npm run soak -- --markdown FILE',
  );
  console.log(`soak: summary written to ${values.markdown}`);
}
printJson(summary);
