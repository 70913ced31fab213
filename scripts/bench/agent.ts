/**
 * Agent end-to-end throughput for `sei bench`: frames from the sample source through the engine, results logged
 * to SQLite and published over MQTT to an embedded broker, with a subscriber counting what arrives. Compare it
 * with the bare engine's frames/s on the same model in the same run (`agentBenchFields`).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Agent, startBroker } from '../../device-agent/index.js';
import { createEngine, sampleFrames, writeBwsnn } from '../../runtime/index.js';
import type { BwsnnModel, KernelChoice } from '../../runtime/index.js';

export interface AgentBenchOptions {
  /** Measured seconds after warm-up. Default 5. */
  readonly seconds?: number;
  /** Default 1. */
  readonly warmupSeconds?: number;
  readonly kernel?: KernelChoice;
}

export interface AgentBenchResult {
  /** Frames through the whole agent per second. */
  readonly agentFps: number;
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
    let frames = 0;
    agent.on('result', () => frames++);
    await agent.start();
    await new Promise((r) => setTimeout(r, warmup * 1000));
    const startFrames = frames;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const counted = frames - startFrames;
    const elapsed = (performance.now() - t0) / 1000;
    const rssBytes = process.memoryUsage.rss();
    await agent.stop();
    return { agentFps: counted / elapsed, frames: counted, seconds: elapsed, predictionsReceived, rssBytes };
  } finally {
    await sub.endAsync();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bare engine frames/s on the sample frames (what the agent is compared with when no other figure is at hand). */
export function benchEngineFps(model: BwsnnModel, seconds = 3, kernel: KernelChoice = 'auto'): number {
  const engine = createEngine(model, { kernel });
  const frames = sampleFrames();
  for (let i = 0; i < 50; i++) engine.infer(frames.frame(i));
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) engine.infer(frames.frame(n++ % frames.count));
  return n / ((performance.now() - t0) / 1000);
}

/** The two fields `sei bench --json` reports for the agent. */
export function agentBenchFields(
  engineFps: number,
  agent: AgentBenchResult,
): { agent_fps: number; agent_vs_engine: number } {
  return {
    agent_fps: Number(agent.agentFps.toFixed(1)),
    agent_vs_engine: Number((agent.agentFps / engineFps).toFixed(3)),
  };
}
