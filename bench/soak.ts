/**
 * `npm run soak`: the agent's resident memory over a long run. Starts the embedded broker here and one agent as
 * its own process (only the agent command, bench/agent-main.ts), streams the sample frames as fast as the engine
 * takes them with results published over MQTT, and samples the agent's RSS from /proc. Reports the peak and the
 * growth after warm-up (least-squares slope), against the goals: RSS <= 80 MB, no growth.
 *
 *   npm run soak -- [--minutes 10] [--fps 0] [--dist | --entry path/to/sei-device.js] [--semi-space MB]
 *
 * --dist runs the compiled device CLI (dist/scripts/sei-device.js, `npm run build`), as a box without tsx does;
 * --entry runs another compiled entry (e.g. a compiled bench/agent-main.js). The default runs the TypeScript
 * through tsx, whose loader alone adds about 30 MB. --semi-space and --old-space set V8's young-generation
 * semi-space and old-space limit (MB; default 1 and 24, the settings recommended for boxes in device-agent/README.md;
 * 0 = Node's default). The agent retains ~10 MB of JS heap; without a limit V8 lets dead objects pile up for a while.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startBroker } from '../device-agent/index.js';
import { writeBwsnn } from '../runtime/index.js';
import { printJson } from '../scripts/output.js';
import { bundledModel } from '../device-agent/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    fps: { type: 'string', default: '0' },
    dist: { type: 'boolean', default: false },
    'semi-space': { type: 'string', default: '1' },
    'old-space': { type: 'string', default: '24' },
    interval: { type: 'string', default: '10' },
    entry: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
const intervalS = Number(values.interval);
const semiSpace = Number(values['semi-space']);
const LIMIT_MB = 80;

function rssMb(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const dir = mkdtempSync(join(tmpdir(), 'sei-soak-'));
const broker = await startBroker({ port: 0 });
let modelPath = bundledModel();
if (!modelPath) {
  const { FMNIST_BLOCKS, randomModel } = await import('../runtime/format/random-model.js');
  modelPath = join(dir, 'random-1.bwsnn');
  writeFileSync(modelPath, writeBwsnn(randomModel({ seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 })));
}
const config = join(dir, 'agent.json');
writeFileSync(
  config,
  JSON.stringify({
    fleet: 'soak',
    device: 'agent',
    model: { path: modelPath },
    source: { spec: 'samples', frameRate: Number(values.fps) },
    mqtt: { url: broker.url },
    reporting: { metricsInterval: 5 },
    metrics: { httpPort: null },
    store: { path: join(dir, 'state.db') },
  }),
);
const compiled = values.dist || values.entry !== undefined;
// Default: only the agent command in its own process (bench/agent-main.ts). --dist: the device CLI as packaged.
const entry = values.entry
  ? [values.entry]
  : values.dist
    ? [join(ROOT, 'dist/scripts/sei-device.js')]
    : ['--import', 'tsx', join(ROOT, 'bench/agent-main.ts')];
if (compiled && !existsSync(entry[0]!)) throw new Error(`${entry[0]} is missing; run \`npm run build\` first`);
const oldSpace = Number(values['old-space']);
const flags = [
  ...(semiSpace > 0 ? [`--max-semi-space-size=${semiSpace}`] : []),
  ...(oldSpace > 0 ? [`--max-old-space-size=${oldSpace}`] : []),
];
const child = spawn(process.execPath, [...flags, ...entry, 'agent', '--config', config], {
  cwd: ROOT,
  stdio: ['ignore', 'pipe', 'inherit'],
});
let lastLine = '';
child.stdout!.on('data', (d: Buffer) => (lastLine = d.toString().trim().split('\n').at(-1) ?? lastLine));

console.log(
  `soak: ${minutes} min, agent pid ${child.pid} (${compiled ? 'dist' : 'tsx'}${flags.length ? ', ' + flags.join(' ') : ''}), broker ${broker.url}`,
);
const samples: Array<{ t: number; mb: number }> = [];
const t0 = Date.now();
while (Date.now() - t0 < minutes * 60_000 && child.exitCode === null) {
  await new Promise((r) => setTimeout(r, intervalS * 1000));
  const mb = rssMb(child.pid!);
  if (mb === null) break;
  const t = (Date.now() - t0) / 60_000;
  samples.push({ t, mb });
  console.log(`${t.toFixed(2)} min  rss ${mb.toFixed(1)} MB  | ${lastLine}`);
}
const exited = new Promise((r) => child.once('exit', r));
child.kill('SIGTERM');
await exited;
await broker.close();
rmSync(dir, { recursive: true, force: true });

// Warm-up: the first fifth of the run (at least one sample) is left out of the growth figure.
const steady = samples.slice(Math.max(1, Math.floor(samples.length / 5)));
const peak = Math.max(...samples.map((s) => s.mb));
const growthPerMin =
  steady.length >= 2
    ? slope(
        steady.map((s) => s.t),
        steady.map((s) => s.mb),
      )
    : 0;
const summary = {
  minutes: Number(((Date.now() - t0) / 60_000).toFixed(2)),
  runner: compiled ? 'dist' : 'tsx',
  node_flags: flags.join(' '),
  rss_start_mb: Number((steady[0]?.mb ?? 0).toFixed(1)),
  rss_end_mb: Number((samples.at(-1)?.mb ?? 0).toFixed(1)),
  rss_peak_mb: Number(peak.toFixed(1)),
  rss_growth_mb_per_min: Number(growthPerMin.toFixed(3)),
  rss_ok: peak <= LIMIT_MB,
  // "No growth": less than 1 MB over the steady part of the run.
  no_growth: growthPerMin * Math.max(1e-9, (steady.at(-1)?.t ?? 0) - (steady[0]?.t ?? 0)) < 1,
};
console.log(
  `peak ${summary.rss_peak_mb} MB (goal <= ${LIMIT_MB}), growth ${summary.rss_growth_mb_per_min} MB/min after warm-up`,
);
printJson(summary);
