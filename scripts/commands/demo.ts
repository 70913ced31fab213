/**
 * `sei demo` (also `npm start`): an embedded broker on a free localhost port, one agent with the bundled model
 * (a seeded random model when none is bundled), the Fashion-MNIST test set (else the shipped samples), and a
 * live terminal view fed by what arrives over MQTT, and the fleet console (a web page: `sei console`) on the same
 * broker over its websocket listener. Ctrl+C stops everything cleanly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import mqtt from 'mqtt';
import { startConsole } from '../../console/server.js';
import type { ConsoleServer } from '../../console/server.js';
import { Agent, parseSourceSpec, startBroker } from '../../device-agent/index.js';
import type { EmbeddedBroker, MetricsSnapshot } from '../../device-agent/index.js';
import { int, positive } from '../options.js';
import { printJson } from '../output.js';
import { fpsOption, metricsLine, modelFileFor, untilSignal } from './agent.js';

interface Prediction {
  frame: number;
  class: number;
  name: string | null;
  confidence: number;
  label: number | null;
}

const LAST = 8;

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'embedded broker + one agent streaming Fashion-MNIST through the model, with a live view (Ctrl+C stops)',
    )
    .option('--model <file>', '.bwsnn model or random:SEED (default: the bundled model, else random:1)')
    .option(
      '--source <spec>',
      'frame source (default fmnist: the test set if installed, else models/samples)',
      'fmnist',
    )
    .option('--fps <n>', 'source frame rate, 0 = as fast as the engine goes', fpsOption, 0)
    .option('--duration <s>', 'stop after this many seconds (default: until Ctrl+C)', positive('--duration'))
    .option(
      '--console-port <n>',
      'port of the fleet console page (taken: a free one)',
      int('--console-port', 0, 65535),
      8090,
    )
    .option('--no-console', 'no fleet console (web page)')
    .option('--json', 'print the final figures as one JSON object on the last line')
    .action(
      async (opts: {
        model?: string;
        source: string;
        fps: number;
        duration?: number;
        consolePort: number;
        console: boolean;
        json?: boolean;
      }) => {
        parseSourceSpec(opts.source, '--source');
        const dir = mkdtempSync(join(tmpdir(), 'sei-demo-'));
        const modelPath = await modelFileFor(opts.model, dir).catch((err: unknown) => {
          rmSync(dir, { recursive: true, force: true });
          throw err;
        });
        const broker = await startBroker({ port: 0, ...(opts.console ? { wsPort: 0 } : {}) });
        const page = opts.console ? await demoConsole(broker, opts.consolePort, dir) : null;
        const agent = new Agent({
          config: {
            fleet: 'demo',
            device: 'demo-1',
            model: { path: modelPath },
            source: { spec: opts.source, frameRate: opts.fps, queueSize: 16 },
            mqtt: { url: broker.url },
            reporting: { metricsInterval: 1, predictionMaxRate: 10 },
            metrics: { httpPort: 0 },
            store: { path: join(dir, 'state.db') },
          },
        });
        const errors: string[] = [];
        agent.on('error', (err) => errors.push(`${err.name}: ${err.message}`));

        // The view shows what a fleet operator would see: it reads the broker, not the agent's memory.
        const watcher = mqtt.connect(broker.url, { clientId: 'sei-demo-view', protocolVersion: 4 });
        const prefix = 'sei/demo/demo-1/';
        let metrics: MetricsSnapshot | null = null;
        let status = 'waiting';
        const last: Prediction[] = [];
        let predictionMessages = 0;
        watcher.on('connect', () => watcher.subscribe(`${prefix}#`));
        watcher.on('message', (topic, payload) => {
          const body = JSON.parse(payload.toString()) as Record<string, unknown>;
          if (topic === `${prefix}metrics`) metrics = body as unknown as MetricsSnapshot;
          else if (topic === `${prefix}status`) status = String(body.state);
          else if (topic === `${prefix}predictions`) {
            predictionMessages++;
            last.unshift(...(body.predictions as Prediction[]).reverse());
            last.length = Math.min(last.length, LAST);
          }
        });

        try {
          await agent.start();
        } catch (err) {
          // A start-up error (a source that cannot open): nothing of the demo may keep the process alive.
          watcher.end(true);
          if (page?.server) await page.server.close();
          await broker.close();
          rmSync(dir, { recursive: true, force: true });
          throw err;
        }
        const engine = agent.activeEngine!;
        const labels = engine.model.labels;
        const header =
          `sei demo: model ${agent.modelVersion} (T=${engine.model.T}, kernel ${engine.kernel}), source ${opts.source}, ` +
          `broker ${broker.url}, Prometheus http://127.0.0.1:${agent.metricsPort}/metrics`;
        const consoleLine = page
          ? `fleet console: ${page.server ? `${page.server.url} (open it in a browser)` : `not started: ${page.problem}`}`
          : null;
        const tty = process.stdout.isTTY === true;
        if (!tty && consoleLine) console.log(consoleLine);
        let drawn = 0;
        const draw = () => {
          const m = metrics;
          const lines = consoleLine ? [header, consoleLine] : [header];
          if (m) {
            const spikes = Object.entries(m.spikeRate)
              .map(([k, v]) => `${k} ${(100 * v).toFixed(1)}%`)
              .join('  ');
            lines.push(
              `frames ${m.frames}   ${m.framesPerSecond.toFixed(0)} frames/s   latency p50 ${m.latencyMs.p50.toFixed(2)} p90 ${m.latencyMs.p90.toFixed(2)} p99 ${m.latencyMs.p99.toFixed(2)} ms   queue ${m.queueDepth}   dropped ${m.dropped}`,
              `running accuracy ${m.accuracy ? `${(100 * m.accuracy.ratio).toFixed(2)}% of ${m.accuracy.labelled}` : 'n/a (no labels)'}   synaptic ops/frame ${(m.synOpsPerFrame / 1e6).toFixed(2)}M   rss ${m.rssBytes === null ? 'n/a' : (m.rssBytes / 2 ** 20).toFixed(0)} MB   outbox ${m.outbox}`,
              `spike rate  ${spikes}`,
            );
          } else lines.push('waiting for the first metrics message...', '', '');
          lines.push(`status ${status}   prediction messages ${predictionMessages}   last predictions (from MQTT):`);
          for (let i = 0; i < LAST; i++) {
            const p = last[i];
            if (!p) lines.push('');
            else {
              const truth =
                p.label === null ? '' : p.label === p.class ? '  ok' : `  (truth: ${labels[p.label] ?? p.label})`;
              lines.push(
                `  #${String(p.frame).padStart(7)}  ${(p.name ?? String(p.class)).padEnd(12)} ${p.confidence.toFixed(2)}${truth}`,
              );
            }
          }
          lines.push(errors.length ? `errors: ${errors.length}, last: ${errors.at(-1)}` : 'Ctrl+C stops');
          if (tty) {
            process.stdout.write((drawn ? `\x1b[${drawn}F\x1b[J` : '') + lines.join('\n') + '\n');
            drawn = lines.length;
          } else if (m) console.log(metricsLine(m));
        };
        const timer = setInterval(draw, tty ? 250 : 1000);
        await (opts.duration
          ? Promise.race([untilSignal(), new Promise((r) => setTimeout(r, opts.duration! * 1000))])
          : untilSignal());
        clearInterval(timer);
        const final = agent.snapshot();
        await agent.stop();
        await new Promise<void>((r) => watcher.end(false, {}, () => r()));
        if (page?.server) await page.server.close();
        await broker.close();
        rmSync(dir, { recursive: true, force: true });
        console.log(
          `\nstopped: ${final.frames} frames, ${final.framesPerSecond.toFixed(0)} frames/s` +
            (final.accuracy ? `, accuracy ${(100 * final.accuracy.ratio).toFixed(2)}%` : ''),
        );
        if (opts.json)
          printJson({
            model: agent.modelVersion,
            frames: final.frames,
            frames_per_second: final.framesPerSecond,
            accuracy: final.accuracy?.ratio ?? null,
            latency_ms: final.latencyMs,
            prediction_messages: predictionMessages,
            errors: errors.length,
            console_url: page?.server?.url ?? null,
          });
      },
    );
}

/**
 * The fleet console on the demo's broker, signed in at once (the embedded broker takes anonymous clients). A taken
 * port gives way to a free one; a page not built leaves the demo without a console, saying why.
 */
async function demoConsole(
  broker: EmbeddedBroker,
  port: number,
  artifacts: string,
): Promise<{ server: ConsoleServer | null; problem: string | null }> {
  const start = (p: number) => startConsole({ mqtt: broker.wsUrl!, port: p, anonymous: true, artifacts });
  try {
    return {
      server: await start(port).catch((err: NodeJS.ErrnoException) =>
        err.code === 'EADDRINUSE' ? start(0) : Promise.reject(err),
      ),
      problem: null,
    };
  } catch (err) {
    return { server: null, problem: (err as Error).message };
  }
}
