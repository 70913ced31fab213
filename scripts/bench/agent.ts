/**
 * Agent end-to-end throughput for `sei bench`: frames from the sample source through the engine, results logged
 * to SQLite and published over MQTT to an embedded broker, with a subscriber counting what arrives. Compare it
 * with the bare engine's frames/s on the same model in the same run (`agentBenchFields`), statistic for statistic:
 * the bench keeps each contender's best short round, so the agent's run is cut into windows of the same length and
 * its best window is the figure compared (the mean over the whole run is reported beside it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Agent, startBroker } from '../../device-agent/index.js';
import { writeBwsnn } from '../../runtime/index.js';
import type { BwsnnModel, KernelChoice } from '../../runtime/index.js';

export interface AgentBenchOptions {
  /** Measured seconds after warm-up. Default 5. */
  readonly seconds?: number;
  /** Default 1. */
  readonly warmupSeconds?: number;
  readonly kernel?: KernelChoice;
  /** Length of the windows the measured run is cut into (`bestWindowFps`). Default 0.5 s. */
  readonly windowSeconds?: number;
}

export interface AgentBenchResult {
  /** Frames through the whole agent per second, over the whole measured run. */
  readonly agentFps: number;
  /** The best window's frames/s (the statistic the bench keeps for the bare engine: its best round). */
  readonly bestWindowFps: number;
  readonly frames: number;
  readonly seconds: number;
  /** Predictions the subscriber received during the run (proves the MQTT leg ran). */
  readonly predictionsReceived: number;
  /** Agent process RSS at the end (the bench process, so an upper bound). */
  readonly rssBytes: number;
}

export async function benchAgent(model: BwsnnModel, opts: AgentBenchOptions = {}): Promise<AgentBenchResult> {
  const seconds = opts.seconds ?? 5;
  const warmup = opts.warmupSeconds ?? 1;
  const dir = mkdtempSync(join(tmpdir(), 'sei-bench-agent-'));
  const broker = await startBroker({ port: 0 });
  const sub = await mqtt.connectAsync(broker.url, { protocolVersion: 4, clientId: 'sei-bench-sub' });
  let predictionsReceived = 0;
  sub.on(
    'message',
    (_t, payload) =>
      (predictionsReceived += (JSON.parse(payload.toString()) as { predictions: unknown[] }).predictions.length),
  );
  await sub.subscribeAsync('sei/bench/agent/predictions');
  try {
    const path = join(dir, 'model.bwsnn');
    writeFileSync(path, writeBwsnn(model));
    const agent = new Agent({
      config: {
        fleet: 'bench',
        device: 'agent',
        model: { path, kernel: opts.kernel ?? 'auto' },
        source: { spec: 'samples', frameRate: 0, queueSize: 16 },
        mqtt: { url: broker.url },
        reporting: { metricsInterval: 1, predictionMaxRate: 50 },
        metrics: { httpPort: null },
        store: { path: join(dir, 'state.db') },
      },
    });
    const windowMs = (opts.windowSeconds ?? 0.5) * 1000;
    let frames = 0;
    /** The measured run's start (null during the warm-up), the current window's start and its first frame. */
    let t0: number | null = null;
    let windowStart = 0;
    let windowFrames = 0;
    let bestWindowFps = 0;
    agent.on('result', () => {
      frames++;
      if (t0 === null) return;
      const now = performance.now();
      if (now - windowStart >= windowMs) {
        bestWindowFps = Math.max(bestWindowFps, ((frames - windowFrames) * 1000) / (now - windowStart));
        windowStart = now;
        windowFrames = frames;
      }
    });
    await agent.start();
    await new Promise((r) => setTimeout(r, warmup * 1000));
    const startFrames = frames;
    t0 = windowStart = performance.now();
    windowFrames = frames;
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const counted = frames - startFrames;
    const elapsed = (performance.now() - t0) / 1000;
    const rssBytes = process.memoryUsage.rss();
    await agent.stop();
    return {
      agentFps: counted / elapsed,
      bestWindowFps: Math.max(bestWindowFps, counted / elapsed),
      frames: counted,
      seconds: elapsed,
      predictionsReceived,
      rssBytes,
    };
  } finally {
    await sub.endAsync();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The fields `sei bench --json` reports for the agent: its best window against the engine's best round. */
export function agentBenchFields(
  engineFps: number,
  agent: AgentBenchResult,
): { agent_fps: number; agent_mean_fps: number; agent_vs_engine: number } {
  return {
    agent_fps: Number(agent.bestWindowFps.toFixed(1)),
    agent_mean_fps: Number(agent.agentFps.toFixed(1)),
    agent_vs_engine: Number((agent.bestWindowFps / engineFps).toFixed(3)),
  };
}
