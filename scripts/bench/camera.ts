/**
 * The camera path for `sei bench`, as a box runs it: ffmpeg's test pattern as 640×480 yuv420p at 30 frames/s on a
 * pipe into the device agent (`agent --source stdin:yuv420:640x480`) in its own process at the systemd unit's V8
 * flags. Measured: the agent process's CPU time per frame (read + convert + infer + report), against the engine's
 * own per-frame time in the same run, and its peak RSS. The compiled agent (dist/, `npm run build`) is what a box
 * runs and what the RSS figure means; without it the agent runs under tsx, whose loader adds tens of MB.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeBwsnn } from '../../runtime/index.js';
import { peakRssBytes } from './proc.js';
import type { BwsnnModel } from '../../runtime/index.js';

/** The unit's V8 flags (packaging/): a small young generation and a 48 MB old one. */
const UNIT_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=48'];
const WIDTH = 640;
const HEIGHT = 480;
const RATE = 30;

export interface CameraBenchResult {
  /** Agent CPU time (user + system, all threads) per frame in steady state (after a warm-up). */
  readonly cpuPerFrameMs: number;
  /** The engine's median per-frame inference time in the long run (the agent's latencyMs.p50). */
  readonly inferMs: number;
  /** Peak resident set of the agent process in the long run. */
  readonly peakRssBytes: number;
  readonly framesPerSecond: number;
  readonly dropped: number;
  /** `dist` (the compiled agent, as on a box) or `tsx` (the sources; RSS includes the loader). */
  readonly entry: 'dist' | 'tsx';
}

/** Seconds of the agent's run before the measured window (start-up, planning the model, the first frames). */
const WARMUP_SECONDS = 3;

/**
 * A data: URL preload for the agent: marks its CPU time (user + system, all threads) once the warm-up is over and
 * again at exit, and prints both with the time between, for the bench to read from stderr.
 */
const USAGE_PROBE =
  'data:text/javascript,' +
  encodeURIComponent(
    `let m;setTimeout(()=>{m={t:performance.now(),u:process.cpuUsage()}},${WARMUP_SECONDS * 1000}).unref();` +
      "process.on('exit',()=>{const u=process.cpuUsage(m&&m.u);" +
      "process.stderr.write('\\nsei-bench-usage '+JSON.stringify({cpuUs:m?u.user+u.system:null,seconds:m?(performance.now()-m.t)/1000:null})+'\\n')})",
  );

/** The agent as this checkout can run it: compiled when dist/ exists (or when this file is compiled), else via tsx. */
function agentEntry(): { args: string[]; entry: 'dist' | 'tsx' } {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith('.js'))
    return { args: [fileURLToPath(new URL('../sei-device.js', import.meta.url))], entry: 'dist' };
  const dist = fileURLToPath(new URL('../../dist/scripts/sei-device.js', import.meta.url));
  if (existsSync(dist)) return { args: [dist], entry: 'dist' };
  // The agent runs in a scratch folder, where `tsx` would not resolve: hand Node the loader's own URL.
  return {
    args: ['--import', import.meta.resolve('tsx'), fileURLToPath(new URL('../sei-device.ts', import.meta.url))],
    entry: 'tsx',
  };
}

/** Why the camera bench cannot run here (no ffmpeg), or undefined. */
export function cameraUnavailable(): string | undefined {
  const r = spawnSync('ffmpeg', ['-version'], { stdio: 'ignore' });
  return r.error || r.status !== 0 ? 'ffmpeg is not installed (the camera bench pipes its test pattern)' : undefined;
}

interface Run {
  readonly cpuUs: number;
  readonly seconds: number;
  readonly peakRssBytes: number;
  readonly fps: number;
  readonly p50: number;
  readonly dropped: number;
}

async function run(modelPath: string, dir: string, seconds: number): Promise<Run> {
  const { args } = agentEntry();
  const config = join(dir, 'agent.json');
  // As the unit runs it but for the broker (none) and the Prometheus port (off: no clash with a running agent).
  writeFileSync(config, JSON.stringify({ metrics: { httpPort: null }, store: { path: join(dir, 'state.db') } }));
  const ffmpeg = spawn(
    'ffmpeg',
    [
      '-loglevel',
      'error',
      '-re',
      '-f',
      'lavfi',
      '-i',
      `testsrc=size=${WIDTH}x${HEIGHT}:rate=${RATE}`,
      '-t',
      String(seconds + 3),
      '-f',
      'rawvideo',
      '-pix_fmt',
      'yuv420p',
      '-',
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const agent = spawn(
    process.execPath,
    [
      ...UNIT_FLAGS,
      '--import',
      USAGE_PROBE,
      ...args,
      'agent',
      '--config',
      config,
      '--model',
      modelPath,
      '--source',
      `stdin:yuv420:${WIDTH}x${HEIGHT}`,
      '--duration',
      String(seconds),
      '--json',
    ],
    { cwd: dir, stdio: [ffmpeg.stdout, 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  agent.stdout.on('data', (b: Buffer) => (out += b.toString()));
  agent.stderr.on('data', (b: Buffer) => (err += b.toString()));
  // The agent's own peak (VmHWM) read while it runs: its getrusage maxrss would start at this process's RSS.
  let peak = 0;
  const watch = setInterval(() => (peak = Math.max(peak, peakRssBytes(agent.pid ?? 0) ?? 0)), 250);
  const code = await new Promise<number | null>((resolve) => agent.once('close', resolve));
  clearInterval(watch);
  // This process holds the pipe's read end too: close it, or ffmpeg blocks on its next write whatever the signal.
  ffmpeg.stdout.destroy();
  ffmpeg.kill('SIGKILL');
  const usage = /sei-bench-usage (\{.*\})/.exec(err);
  const last = out.trim().split('\n').pop() ?? '';
  if (code !== 0 || !usage || !last.startsWith('{'))
    throw new Error(`camera bench: the agent exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`);
  const u = JSON.parse(usage[1]!) as { cpuUs: number | null; seconds: number | null };
  if (u.cpuUs === null || u.seconds === null)
    throw new Error(`camera bench: the agent ran less than the ${WARMUP_SECONDS} s warm-up`);
  const m = JSON.parse(last) as { framesPerSecond: number; dropped: number; latencyMs: { p50: number } };
  return {
    cpuUs: u.cpuUs,
    seconds: u.seconds,
    peakRssBytes: peak,
    fps: m.framesPerSecond,
    p50: m.latencyMs.p50,
    dropped: m.dropped,
  };
}

/**
 * One run of `seconds` (at least 8) on the model. CPU per frame is the CPU time after the warm-up over the frames
 * handled in that time: the source is paced (30 frames/s), so they are the agent's frames/s times the seconds.
 */
export async function benchCamera(model: BwsnnModel, seconds: number): Promise<CameraBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'sei-bench-camera-'));
  try {
    const modelPath = join(dir, 'model.bwsnn');
    writeFileSync(modelPath, writeBwsnn(model));
    const r = await run(modelPath, dir, Math.max(WARMUP_SECONDS + 5, seconds));
    return {
      cpuPerFrameMs: r.cpuUs / 1000 / (r.fps * r.seconds),
      inferMs: r.p50,
      peakRssBytes: r.peakRssBytes,
      framesPerSecond: r.fps,
      dropped: r.dropped,
      entry: agentEntry().entry,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The bench's JSON fields for a camera run. */
export function cameraBenchFields(r: CameraBenchResult) {
  const round = (x: number, d: number) => Number(x.toFixed(d));
  return {
    agent_camera_cpu_per_frame_ms: round(r.cpuPerFrameMs, 3),
    agent_camera_infer_ms: round(r.inferMs, 3),
    agent_camera_vs_infer: round(r.cpuPerFrameMs / r.inferMs, 2),
    agent_camera_rss_mb: round(r.peakRssBytes / 2 ** 20, 1),
    agent_camera_fps: round(r.framesPerSecond, 1),
    agent_camera_entry: r.entry,
  };
}
