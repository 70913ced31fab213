/**
 * `npm run bench:fleet`: a fleet of simulated boxes on this machine. Each box is a real agent in its own process
 * (only the agent command, bench/agent-main.ts, at the systemd unit's node flags) with the box's config
 * (packaging/agent.json), its own copy of the bundled model and its own SQLite file, taking the sample frames at
 * --fps (10) and publishing a `metrics` message every --metrics-interval (1 s) and its predictions to one Mosquitto
 * here (scripts/bench/mosquitto.ts, persistence on). An independent MQTT client (MQTT 5, a persistent session)
 * subscribes to every box's topics and a `$SYS` counter of the broker.
 *
 * The fleet grows step by step (--agents 1,2,4,...: the boxes of a step keep running into the next). After a
 * warm-up, each step is measured for --seconds: frames/s and metrics messages/s of every box (the `frames` and
 * `seq` its metrics carry, and the messages received), PUBLISH messages/s through the broker (its
 * $SYS/broker/publish/messages/received and /sent), the p99 latency from a metrics snapshot (its `ts`) to its
 * receipt (the agent writes it to its SQLite outbox, publishes it at QoS 1; the broker forwards it), CPU and RSS
 * of every agent and of the broker (/proc). A step holds when every box kept >= 95 % of --fps and of its metrics
 * rate; the ramp stops at the first step that does not. Then, with the boxes still running, the broker is stopped
 * (SIGTERM: it saves its sessions) for --down seconds and started again; every box's QoS 1 metrics must arrive
 * without a gap in `seq` from 1 to its last (duplicates are counted: QoS 1 is at least once).
 *
 *   npm run bench:fleet -- [--agents 1,2,4,8,16,32] [--fps 10] [--metrics-interval 1] [--warmup 10]
 *                          [--seconds 30] [--down 5] [--no-restart] [--dist | --entry FILE] [--json] [--markdown FILE]
 *
 * The default runs the TypeScript through tsx (its loader adds about 30 MB to each agent's RSS); --dist runs the
 * compiled device CLI (`npm run build`), as a box does. The harness, the broker and the agents share this machine's
 * cores, so the N found is that of one machine hosting the whole fleet, not that of a box.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { bundledModel, mergeDeep, quantile } from '../device-agent/index.js';
import type { Json } from '../device-agent/index.js';
import type { MetricsMessage } from '../device-agent/messages.js';
import { writeBwsnn } from '../runtime/index.js';
import { mosquitto, mosquittoAvailable } from '../scripts/bench/mosquitto.js';
import { procSample, unitEnvironment, unitNodeFlags } from '../scripts/bench/proc.js';
import { contextLine, npmCommand, runContext, writeSection } from '../scripts/bench/report.js';
import { printJson } from '../scripts/output.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FLEET = 'fleet';
const HOLD = 0.95;
const argv = process.argv.slice(2);
const { values } = parseArgs({
  args: argv,
  options: {
    agents: { type: 'string', default: '1,2,4,8,16,32' },
    fps: { type: 'string', default: '10' },
    'metrics-interval': { type: 'string', default: '1' },
    warmup: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '30' },
    down: { type: 'string', default: '5' },
    'no-restart': { type: 'boolean', default: false },
    dist: { type: 'boolean', default: false },
    entry: { type: 'string' },
    json: { type: 'boolean', default: false },
    markdown: { type: 'string' },
  },
});

function fail(message: string): never {
  console.error(`bench:fleet: ${message}`);
  process.exit(2);
}
const num = (flag: string, min: number): number => {
  const v = values[flag as keyof typeof values] as string;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) fail(`--${flag}: expected a number >= ${min}, got ${JSON.stringify(v)}`);
  return n;
};
const fps = num('fps', 0.1);
const metricsInterval = num('metrics-interval', 0.05);
const warmupS = num('warmup', 0);
const windowS = num('seconds', 2);
const downS = num('down', 0);
const steps = values.agents.split(',').map((s) => Number(s));
if (steps.some((n, i) => !Number.isInteger(n) || n < 1 || (i > 0 && n <= steps[i - 1]!)))
  fail(`--agents: expected increasing counts such as 1,2,4,8, got ${JSON.stringify(values.agents)}`);
if (!mosquittoAvailable) fail('needs Mosquitto (Debian: apt-get install mosquitto)');
const entry = values.entry
  ? [values.entry]
  : values.dist
    ? [join(ROOT, 'dist/scripts/sei-device.js')]
    : ['--import', 'tsx', join(ROOT, 'bench/agent-main.ts')];
if ((values.dist || values.entry) && !existsSync(entry[0]!))
  fail(`${entry[0]} is missing; run \`npm run build\` first`);
const runner = values.entry ? 'entry' : values.dist ? 'dist' : 'tsx';
const flags = unitNodeFlags(ROOT);
const unitEnv = unitEnvironment(ROOT);

const context = runContext(npmCommand('bench:fleet', argv));
const dir = mkdtempSync(join(tmpdir(), 'sei-fleet-'));
let model = bundledModel();
if (!model) {
  const { FMNIST_BLOCKS, randomModel } = await import('../runtime/format/random-model.js');
  model = join(dir, 'random-1.bwsnn');
  writeFileSync(model, writeBwsnn(randomModel({ seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 })));
}
// The broker reports its counters every second; it queues without a limit for the monitor's session, so that a
// message lost is the fleet's and not the monitor's queue overflowing while the drain after the restart runs.
const broker = await mosquitto({ extra: ['sys_interval 1', 'max_queued_messages 0'] });
const box = JSON.parse(readFileSync(join(ROOT, 'packaging/agent.json'), 'utf8')) as Json;

/** What the monitor has seen of one box. */
interface BoxSeen {
  seqs: Map<number, number>;
  /** [receipt time, frames, snapshot ts] of each metrics message, in arrival order. */
  metrics: Array<{ at: number; frames: number; ts: number; seq: number; outbox: number }>;
  predictions: number;
}
const seen = new Map<string, BoxSeen>();
const boxSeen = (name: string): BoxSeen => {
  let b = seen.get(name);
  if (!b) {
    b = { seqs: new Map(), metrics: [], predictions: 0 };
    seen.set(name, b);
  }
  return b;
};
const latencies: Array<{ at: number; ms: number }> = [];
const sys = { received: [] as Array<[number, number]>, sent: [] as Array<[number, number]> };
let received = 0;

const monitor = await mqtt.connectAsync(broker.url, {
  protocolVersion: 5,
  clientId: 'fleet-monitor',
  clean: false,
  properties: { sessionExpiryInterval: 3600 },
  reconnectPeriod: 200,
});
monitor.on('error', () => {});
monitor.on('message', (topic, payload) => {
  const at = Date.now();
  if (topic.startsWith('$SYS/')) {
    const v = Number(payload.toString());
    (topic.endsWith('/received') ? sys.received : sys.sent).push([at, v]);
    return;
  }
  received++;
  const [, , device, kind] = topic.split('/');
  if (!device) return;
  if (kind === 'metrics') {
    const m = JSON.parse(payload.toString()) as MetricsMessage;
    const b = boxSeen(device);
    b.seqs.set(m.seq, (b.seqs.get(m.seq) ?? 0) + 1);
    b.metrics.push({ at, frames: m.frames, ts: m.ts, seq: m.seq, outbox: m.outbox });
    latencies.push({ at, ms: at - m.ts });
  } else if (kind === 'predictions') boxSeen(device).predictions++;
});
await monitor.subscribeAsync(
  {
    [`sei/${FLEET}/+/metrics`]: { qos: 1 },
    [`sei/${FLEET}/+/predictions`]: { qos: 0 },
    [`sei/${FLEET}/+/status`]: { qos: 1 },
    '$SYS/broker/publish/messages/received': { qos: 0 },
    '$SYS/broker/publish/messages/sent': { qos: 0 },
  },
  {},
);

interface Agent {
  readonly name: string;
  readonly child: ChildProcess;
  stderr: string;
}
const agents: Agent[] = [];

function startAgent(i: number): Agent {
  const name = `box-${String(i).padStart(3, '0')}`;
  const home = join(dir, name);
  mkdirSync(home);
  const ownModel = join(home, basename(model!));
  copyFileSync(model!, ownModel);
  const config = join(home, 'agent.json');
  writeFileSync(
    config,
    JSON.stringify(
      mergeDeep(box, {
        fleet: FLEET,
        device: name,
        model: { path: ownModel, dir: null },
        source: { spec: 'samples', frameRate: fps },
        mqtt: { url: broker.url },
        reporting: { metricsInterval },
        metrics: { httpPort: null },
        store: { path: join(home, 'state.db') },
      }),
    ),
  );
  const child = spawn(process.execPath, [...flags, ...entry, 'agent', '--config', config], {
    cwd: ROOT,
    // The unit's environment too (NODE_ENV, MALLOC_ARENA_MAX), as systemd gives it.
    env: { ...process.env, ...unitEnv },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const agent: Agent = { name, child, stderr: '' };
  // The last few KB of what it says (reconnect errors while the broker is away), for an agent that dies.
  child.stderr!.on('data', (d: Buffer) => {
    agent.stderr = (agent.stderr + d.toString()).slice(-4000);
  });
  return agent;
}

/** The line of an agent's stderr that says why it stopped: the last error line, else the last line. */
function lastError(stderr: string): string {
  const lines = stderr.trim().split('\n');
  return [...lines].reverse().find((l) => /error/i.test(l)) ?? lines.at(-1) ?? '';
}

const agentsLabel = (n: number) => `${n} agent${n === 1 ? '' : 's'}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}
const deadAgents = () => agents.filter((a) => a.child.exitCode !== null || a.child.signalCode !== null);
const round = (x: number, d = 1) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** The rate of a cumulative counter between two times, from its samples. */
function counterRate(series: Array<[number, number]>, from: number, to: number): number | null {
  const inside = series.filter(([t]) => t >= from && t <= to);
  if (inside.length < 2) return null;
  const [t0, v0] = inside[0]!;
  const [t1, v1] = inside.at(-1)!;
  return t1 > t0 ? ((v1 - v0) * 1000) / (t1 - t0) : null;
}

interface StepResult {
  agents: number;
  held: boolean;
  why: string | null;
  fps_min: number | null;
  fps_mean: number | null;
  metrics_per_s_min: number | null;
  broker_publish_in_per_s: number | null;
  broker_publish_out_per_s: number | null;
  monitor_messages_per_s: number | null;
  metrics_latency_ms_p50: number | null;
  metrics_latency_ms_p99: number | null;
  agent_cpu_percent_mean: number | null;
  agent_cpu_percent_max: number | null;
  agent_rss_mb_mean: number | null;
  agent_rss_mb_max: number | null;
  broker_cpu_percent: number | null;
  broker_rss_mb: number | null;
  harness_cpu_percent: number | null;
}

async function measureStep(n: number): Promise<StepResult> {
  const started = Date.now();
  while (agents.length < n) agents.push(startAgent(agents.length + 1));
  const online = await until(
    () => agents.every((a) => (seen.get(a.name)?.metrics.length ?? 0) > 0) || deadAgents().length > 0,
    60_000 + 2000 * n,
  );
  const dead = deadAgents();
  if (dead.length > 0 || !online) {
    const why = dead.length
      ? `${dead[0]!.name} exited (${dead[0]!.child.exitCode ?? dead[0]!.child.signalCode}): ${lastError(dead[0]!.stderr)}`
      : 'not every agent sent metrics within the start-up time';
    return { ...emptyStep(n), why };
  }
  console.log(`  ${agentsLabel(n)} online after ${((Date.now() - started) / 1000).toFixed(1)} s; warm-up ${warmupS} s`);
  await sleep(warmupS * 1000);
  const pids = agents.map((a) => a.child.pid!);
  const brokerPid = broker.pid();
  const before = pids.map((p) => procSample(p));
  const brokerBefore = brokerPid === null ? null : procSample(brokerPid);
  const harnessBefore = process.cpuUsage();
  const from = Date.now();
  const receivedBefore = received;
  await sleep(windowS * 1000);
  const to = Date.now();
  const receivedAfter = received;
  const after = pids.map((p) => procSample(p));
  const brokerAfter = brokerPid === null ? null : procSample(brokerPid);
  const harness = process.cpuUsage(harnessBefore);
  const spanS = (to - from) / 1000;

  const perBox = agents.map((a) => {
    const ms = (seen.get(a.name)?.metrics ?? []).filter((m) => m.at >= from && m.at <= to);
    const first = ms[0];
    const last = ms.at(-1);
    const boxFps =
      first && last && last.ts > first.ts ? ((last.frames - first.frames) * 1000) / (last.ts - first.ts) : 0;
    return { fps: boxFps, metricsPerS: ms.length / spanS };
  });
  const cpu = pids.map((_, i) =>
    before[i] && after[i] ? (100 * (after[i]!.cpuS - before[i]!.cpuS)) / spanS : Number.NaN,
  );
  const rss = after.map((s) => s?.rssMb ?? Number.NaN);
  const lat = Float64Array.from(latencies.filter((l) => l.at >= from && l.at <= to).map((l) => l.ms)).sort();
  const fpsMin = Math.min(...perBox.map((b) => b.fps));
  const metricsMin = Math.min(...perBox.map((b) => b.metricsPerS));
  const slow = [
    ...(fpsMin < HOLD * fps ? [`a box at ${fpsMin.toFixed(2)} frames/s`] : []),
    ...(metricsMin < (HOLD * 1) / metricsInterval ? [`a box at ${metricsMin.toFixed(2)} metrics/s`] : []),
    ...(deadAgents().length ? [`${deadAgents().length} agent(s) exited`] : []),
  ];
  return {
    agents: n,
    held: slow.length === 0,
    why: slow.length ? slow.join(', ') : null,
    fps_min: round(fpsMin, 2),
    fps_mean: round(mean(perBox.map((b) => b.fps)), 2),
    metrics_per_s_min: round(metricsMin, 2),
    broker_publish_in_per_s: round(counterRate(sys.received, from, to) ?? Number.NaN),
    broker_publish_out_per_s: round(counterRate(sys.sent, from, to) ?? Number.NaN),
    monitor_messages_per_s: round((receivedAfter - receivedBefore) / spanS),
    metrics_latency_ms_p50: lat.length ? round(quantile(lat, 0.5), 1) : null,
    metrics_latency_ms_p99: lat.length ? round(quantile(lat, 0.99), 1) : null,
    agent_cpu_percent_mean: round(mean(cpu)),
    agent_cpu_percent_max: round(Math.max(...cpu)),
    agent_rss_mb_mean: round(mean(rss)),
    agent_rss_mb_max: round(Math.max(...rss)),
    broker_cpu_percent:
      brokerBefore && brokerAfter ? round((100 * (brokerAfter.cpuS - brokerBefore.cpuS)) / spanS) : null,
    broker_rss_mb: brokerAfter ? round(brokerAfter.rssMb) : null,
    harness_cpu_percent: round((100 * (harness.user + harness.system)) / 1e6 / spanS),
  };
}

function emptyStep(n: number): StepResult {
  return {
    agents: n,
    held: false,
    why: null,
    fps_min: null,
    fps_mean: null,
    metrics_per_s_min: null,
    broker_publish_in_per_s: null,
    broker_publish_out_per_s: null,
    monitor_messages_per_s: null,
    metrics_latency_ms_p50: null,
    metrics_latency_ms_p99: null,
    agent_cpu_percent_mean: null,
    agent_cpu_percent_max: null,
    agent_rss_mb_mean: null,
    agent_rss_mb_max: null,
    broker_cpu_percent: null,
    broker_rss_mb: null,
    harness_cpu_percent: null,
  };
}

/** Every box's metrics from seq 1 to its last: missing numbers and duplicates. */
function lossCheck() {
  let lost = 0;
  let duplicates = 0;
  let messages = 0;
  const gaps: string[] = [];
  for (const a of agents) {
    const seqs = seen.get(a.name)?.seqs ?? new Map<number, number>();
    const last = Math.max(0, ...seqs.keys());
    for (let s = 1; s <= last; s++) {
      const c = seqs.get(s) ?? 0;
      if (c === 0) {
        lost++;
        if (gaps.length < 5) gaps.push(`${a.name} seq ${s}`);
      } else duplicates += c - 1;
    }
    messages += last;
  }
  return { messages, lost, duplicates, first_gaps: gaps };
}

/** Stops the broker for --down s with the fleet running, starts it again, waits for every outbox to drain. */
async function restartCheck() {
  const atStop = new Map(agents.map((a) => [a.name, Math.max(0, ...(seen.get(a.name)?.seqs.keys() ?? []))]));
  const stopAt = Date.now();
  await broker.stop();
  await sleep(downS * 1000);
  await broker.start();
  const upAt = Date.now();
  // Drained: every box has sent metrics written after the broker came back, and the last says its outbox holds
  // nothing but itself.
  const drained = await until(
    () =>
      agents.every((a) => {
        const ms = seen.get(a.name)?.metrics ?? [];
        const last = ms.at(-1);
        return last !== undefined && last.ts > upAt && last.outbox <= 1 && last.seq > atStop.get(a.name)!;
      }),
    60_000 + 500 * agents.length,
  );
  const back = Date.now();
  // The last metrics messages written before each agent's outbox emptied may still be on their way.
  await sleep(Math.max(2000, 3000 * metricsInterval));
  const behind = (() => {
    const firstAfter = agents.map((a) => {
      const m = (seen.get(a.name)?.metrics ?? []).find((x) => x.at > upAt);
      return m ? m.at - upAt : Number.NaN;
    });
    return Math.max(...firstAfter);
  })();
  // Messages the boxes wrote while the broker was away: what went through their outboxes.
  const duringOutage = agents.reduce(
    (n, a) => n + (seen.get(a.name)?.metrics ?? []).filter((m) => m.ts > stopAt && m.ts < upAt).length,
    0,
  );
  return {
    agents: agents.length,
    down_s: downS,
    written_during_outage: duringOutage,
    drained,
    seconds_until_drained: round((back - upAt) / 1000),
    seconds_until_every_box_reported: round(behind / 1000),
    outage_s: round((upAt - stopAt) / 1000),
    ...lossCheck(),
  };
}

async function shutdown(): Promise<void> {
  await Promise.all(
    agents.map(
      (a) =>
        new Promise<void>((r) => {
          if (a.child.exitCode !== null || a.child.signalCode !== null) return r();
          const t = setTimeout(() => a.child.kill('SIGKILL'), 20_000);
          a.child.once('exit', () => {
            clearTimeout(t);
            r();
          });
          a.child.kill('SIGTERM');
        }),
    ),
  );
  await monitor.endAsync(true).catch(() => {});
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
}
let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
});

console.log(
  `bench:fleet: ${runner} agents at ${flags.join(' ') || "Node's defaults"}, ${fps} frames/s and a metrics message every ${metricsInterval} s each, ` +
    `steps ${steps.join(', ')}, ${warmupS} s warm-up + ${windowS} s per step; Mosquitto ${broker.url}; load average ${context.loadStart.join(' ')}`,
);
const results: StepResult[] = [];
let restart: Awaited<ReturnType<typeof restartCheck>> | null = null;
try {
  for (const n of steps) {
    if (interrupted) break;
    const r = await measureStep(n);
    results.push(r);
    console.log(
      `  ${agentsLabel(n)}: ${r.held ? 'held' : `did not hold (${r.why})`}; frames/s min ${r.fps_min}, metrics/s min ${r.metrics_per_s_min}, ` +
        `broker ${r.broker_publish_in_per_s} PUBLISH/s in, ${r.broker_publish_out_per_s} out, latency p99 ${r.metrics_latency_ms_p99} ms, ` +
        `agent CPU ${r.agent_cpu_percent_mean} % (max ${r.agent_cpu_percent_max}), RSS ${r.agent_rss_mb_mean} MB (max ${r.agent_rss_mb_max})`,
    );
    if (!r.held) break;
  }
  if (!values['no-restart'] && !interrupted && deadAgents().length === 0 && agents.length > 0) {
    console.log(`  broker restart with ${agentsLabel(agents.length)} running: down for ${downS} s`);
    restart = await restartCheck();
    console.log(
      `  restart: ${restart.lost} of ${restart.messages} metrics messages lost, ${restart.duplicates} duplicates, ` +
        `${restart.written_during_outage} written during the outage, every box reporting again after ` +
        `${restart.seconds_until_every_box_reported} s, outboxes drained after ${restart.seconds_until_drained} s`,
    );
  }
} finally {
  await shutdown();
  context.finish();
}

const held = results.filter((r) => r.held).map((r) => r.agents);
const summary = {
  runner,
  node_flags: flags.join(' '),
  environment: Object.entries(unitEnv)
    .map(([k, v]) => `${k}=${v}`)
    .join(' '),
  fps_per_box: fps,
  metrics_interval_s: metricsInterval,
  warmup_s: warmupS,
  seconds_per_step: windowS,
  largest_n_held: held.length ? Math.max(...held) : 0,
  ramp_ended:
    results.at(-1)?.held === false ? 'a step did not hold' : 'every step held: the largest N is at least this',
  steps: results,
  restart,
  context,
};
if (values.markdown) {
  const cols: Array<[keyof StepResult, string]> = [
    ['agents', 'N'],
    ['held', 'held'],
    ['fps_min', 'frames/s min'],
    ['metrics_per_s_min', 'metrics/s min'],
    ['broker_publish_in_per_s', 'broker PUBLISH in/s'],
    ['broker_publish_out_per_s', 'out/s'],
    ['metrics_latency_ms_p50', 'latency p50 ms'],
    ['metrics_latency_ms_p99', 'p99 ms'],
    ['agent_cpu_percent_mean', 'agent CPU %'],
    ['agent_rss_mb_mean', 'agent RSS MB'],
    ['agent_rss_mb_max', 'max'],
    ['broker_cpu_percent', 'broker CPU %'],
  ];
  const cell = (v: unknown) => (v === null ? 'n/a' : v === true ? 'yes' : v === false ? '**no**' : String(v));
  writeSection(
    values.markdown,
    'fleet',
    [
      `${contextLine(context)}. ${runner} agents at \`${summary.node_flags}\`, ${fps} frames/s and a metrics message every ` +
        `${metricsInterval} s per box, ${warmupS} s warm-up + ${windowS} s per step. Largest N that held: ` +
        `**${summary.largest_n_held}** (${summary.ramp_ended}).`,
      '',
      `| ${cols.map(([, h]) => h).join(' | ')} |`,
      `|${cols.map(() => '---:').join('|')}|`,
      ...results.map((r) => `| ${cols.map(([k]) => cell(r[k])).join(' | ')} |`),
      '',
      restart
        ? `Broker restart (${restart.down_s} s down, ${agentsLabel(restart.agents)} running): ${restart.lost} of ${restart.messages} ` +
          `QoS 1 metrics messages lost (${restart.written_during_outage} of them written during the outage), ` +
          `${restart.duplicates} duplicates; every box reporting again after ` +
          `${restart.seconds_until_every_box_reported} s, outboxes drained after ${restart.seconds_until_drained} s.`
        : 'Broker restart: not run.',
    ].join('\n'),
    'npm run bench:fleet -- --markdown FILE',
  );
  console.log(`bench:fleet: table written to ${values.markdown}`);
}
if (values.json) printJson(summary);
else
  console.log(
    `largest N that held: ${summary.largest_n_held} (${summary.ramp_ended})` +
      (restart ? `; broker restart: ${restart.lost} lost, ${restart.duplicates} duplicates` : ''),
  );
if (restart && restart.lost > 0) process.exitCode = 1;
