/**
 * `sei agent --config FILE`: the device daemon. Flags override the file (the file's fields are documented in
 * device-agent/README.md). Runs until SIGINT/SIGTERM, then says goodbye to the broker and flushes its state.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Agent, mergeDeep, modelKey, parseConfig, parseSourceSpec, readConfigFile } from '../../device-agent/index.js';
import type { MetricsSnapshot } from '../../device-agent/index.js';
import { AGENT_SCHEMA } from '../../device-agent/config-schema.js';
import { readBwsnnFile, writeBwsnn } from '../../runtime/index.js';
import { resolveModelArg } from '../model-arg.js';
import { configOption, fromFile, positive } from '../options.js';
import { printJson } from '../output.js';

/** `--fps`: source.frameRate, with its range. */
export const fpsOption = configOption('--fps', AGENT_SCHEMA.fields.source.fields.frameRate);

/** A `--model` value (see resolveModelArg) as a file the agent can register: a random model is written to `dir`. */
export async function modelFileFor(spec: string | undefined, dir: string): Promise<string> {
  const model = await resolveModelArg(spec);
  if (typeof model === 'string') {
    // Read once here so that a broken file is refused naming the flag, before anything starts.
    fromFile('--model', 'a .bwsnn model', model, () => readBwsnnFile(model));
    return model;
  }
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${modelKey(model).replace(/[^A-Za-z0-9_.@-]/g, '_')}.bwsnn`);
  writeFileSync(path, writeBwsnn(model));
  return path;
}

/** One line for a metrics snapshot. */
export function metricsLine(s: MetricsSnapshot): string {
  const acc = s.accuracy ? ` acc ${(100 * s.accuracy.ratio).toFixed(2)}% (${s.accuracy.labelled})` : '';
  const temp = s.cpuTemperatureC === null ? '' : ` ${s.cpuTemperatureC.toFixed(0)}°C`;
  return (
    `${new Date(s.ts).toISOString()} ${s.model} ${s.framesPerSecond.toFixed(1)} frames/s, latency p50 ${s.latencyMs.p50.toFixed(2)} ` +
    `p99 ${s.latencyMs.p99.toFixed(2)} ms, queue ${s.queueDepth}, dropped ${s.dropped}${acc}, rss ${s.rssBytes === null ? 'n/a' : (s.rssBytes / 2 ** 20).toFixed(0)} MB${temp}, outbox ${s.outbox}`
  );
}

/** Resolves on the first SIGINT/SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export function register(program: Command): void {
  program
    .command('agent')
    .description(
      'run the device agent: frames from a source through the model, results and metrics over MQTT, state in SQLite',
    )
    .option('--config <file>', 'agent config, JSON or YAML (see device-agent/README.md); every field has a default')
    .option(
      '--source <spec>',
      'frame source: fmnist | samples | idx:IMAGES[:LABELS] | images:DIR | stdin:grey|yuv420:WxH | mqtt',
    )
    .option('--model <file>', '.bwsnn model to run, or random:SEED (default: the config, else the bundled model)')
    .option(
      '--mqtt <url>',
      'broker URL, e.g. mqtt://localhost:1883 (overrides mqtt.url)',
      configOption('--mqtt', AGENT_SCHEMA.fields.mqtt.fields.url),
    )
    .option('--fps <n>', 'source frame rate, 0 = as fast as the engine goes (overrides source.frameRate)', fpsOption)
    .option(
      '--steps <T>',
      "time steps per frame (overrides engine.steps; default the model's T)",
      configOption('--steps', AGENT_SCHEMA.fields.engine.fields.steps),
    )
    .option(
      '--threads <n>',
      'engines on worker threads, fed frames as they queue up (overrides engine.threads; default 1)',
      configOption('--threads', AGENT_SCHEMA.fields.engine.fields.threads),
    )
    .option('--duration <s>', 'stop after this many seconds (default: run until Ctrl+C)', positive('--duration'))
    .option('--json', 'print the final metrics as one JSON object on the last line')
    .action(
      async (opts: {
        config?: string;
        source?: string;
        model?: string;
        mqtt?: string;
        fps?: number;
        steps?: number;
        threads?: number;
        duration?: number;
        json?: boolean;
      }) => {
        const overrides: Record<string, unknown> = {};
        const set = (section: string, key: string, value: unknown) =>
          (overrides[section] = { ...(overrides[section] as object), [key]: value });
        if (opts.source !== undefined) {
          parseSourceSpec(opts.source, '--source');
          set('source', 'spec', opts.source);
        }
        if (opts.fps !== undefined) set('source', 'frameRate', opts.fps);
        if (opts.mqtt !== undefined) set('mqtt', 'url', opts.mqtt);
        if (opts.steps !== undefined) set('engine', 'steps', opts.steps);
        if (opts.threads !== undefined) set('engine', 'threads', opts.threads);
        let raw = mergeDeep(opts.config ? readConfigFile(opts.config) : {}, overrides);
        const base = parseConfig(raw);
        // The config file may name the model; otherwise --model, the bundled model, or random:1.
        if (opts.model !== undefined || (base.model.path === null && base.model.dir === null)) {
          const dir = join(base.store.path === ':memory:' ? tmpdir() : dirname(resolve(base.store.path)), 'sei-models');
          raw = mergeDeep(raw, { model: { path: await modelFileFor(opts.model, dir) } });
        }
        const agent = new Agent({ config: raw });
        agent.on('error', (err) => process.stderr.write(`sei agent: ${err.name}: ${err.message}\n`));
        agent.on('metrics', (s) => console.log(metricsLine(s)));
        agent.on('online', (p) =>
          console.log(
            `connected to ${agent.config.mqtt.url} (MQTT ${p === 5 ? '5' : '3.1.1'}), topics under ${agent.config.topicPrefix}`,
          ),
        );
        agent.on('offline', () => console.log('broker connection lost; reconnecting (metrics wait in the outbox)'));
        await agent.start();
        console.log(
          `agent ${agent.config.device}: model ${agent.modelVersion} (T=${agent.activeEngine!.steps}${agent.config.engine.threads > 1 ? `, ${agent.config.engine.threads} engine threads` : ''}), source ${opts.source ?? 'from config'}` +
            (agent.metricsPort
              ? `, Prometheus on http://${agent.config.metrics.httpHost}:${agent.metricsPort}/metrics`
              : ''),
        );
        await (opts.duration
          ? Promise.race([untilSignal(), new Promise((r) => setTimeout(r, opts.duration! * 1000))])
          : untilSignal());
        const final = agent.snapshot();
        await agent.stop();
        if (opts.json) printJson({ ...final });
      },
    );
}
