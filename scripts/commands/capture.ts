/**
 * `sei capture pull --device ID --out DIR`: fetches the frames a device captured (`cmd/capture`, or by itself below
 * a confidence threshold) over MQTT into an image folder `sei train --data DIR` reads: labelled frames under their
 * class folder, the rest under `_unlabelled/` (which the trainer skips). Chunked and resumable: a run that stops
 * goes on where it stopped at the next, and a frame is never fetched or filed twice (device-agent/capture/pull.ts).
 */
import type { Command } from 'commander';
import { ConfigError } from '../../runtime/errors.js';
import { BLOCK_RANGE, CAPTURE_BLOCK } from '../../device-agent/capture/index.js';
import { AGENT_SCHEMA } from '../../device-agent/config-schema.js';
import { configOption, int, positive, positiveInt } from '../options.js';
import { printJson } from '../output.js';

interface Opts {
  device: string;
  out: string;
  mqtt: string;
  fleet: string;
  topicRoot: string;
  timeout: number;
  blockSize: number;
  window: number;
  username?: string;
  password?: string;
  json?: boolean;
}

const topicLevel = configOption('--device', AGENT_SCHEMA.fields.device);

export function register(program: Command): void {
  const capture = program.command('capture').description('frames captured on the boxes: `sei capture pull`');
  capture
    .command('pull')
    .description(
      "fetch a device's captured frames over MQTT into an image folder (class folders, _unlabelled/), resumable",
    )
    .requiredOption('--device <id>', 'device id (the third topic level)', topicLevel)
    .requiredOption('--out <dir>', 'image folder to fill (created if missing)')
    .option(
      '--mqtt <url>',
      'broker URL',
      configOption('--mqtt', AGENT_SCHEMA.fields.mqtt.fields.url),
      'mqtt://127.0.0.1:1883',
    )
    .option('--fleet <name>', 'fleet of the device', configOption('--fleet', AGENT_SCHEMA.fields.fleet), 'default')
    .option('--topic-root <root>', 'first topic level', 'sei')
    .option('--timeout <s>', 'seconds the device may take to answer one request', positive('--timeout'), 10)
    .option(
      '--block-size <n>',
      `bytes per block (${BLOCK_RANGE.min}..${BLOCK_RANGE.max})`,
      int('--block-size', BLOCK_RANGE.min, BLOCK_RANGE.max),
      CAPTURE_BLOCK,
    )
    .option('--window <n>', 'block requests in flight at once', positiveInt('--window'), 4)
    .option('--username <u>', 'broker username')
    .option('--password <p>', 'broker password')
    .option('--json', 'print the summary as one JSON object on the last line')
    .action(async (opts: Opts) => {
      if (opts.mqtt === null) throw new ConfigError('--mqtt: expected a broker URL, got null', '--mqtt');
      const { pullCaptures } = await import('../../device-agent/capture/pull.js');
      const summary = await pullCaptures({
        url: opts.mqtt,
        device: opts.device,
        out: opts.out,
        prefix: `${opts.topicRoot}/${opts.fleet}/${opts.device}/`,
        timeoutS: opts.timeout,
        blockSize: opts.blockSize,
        window: opts.window,
        ...(opts.username !== undefined ? { username: opts.username } : {}),
        ...(opts.password !== undefined ? { password: opts.password } : {}),
        log: (line) => console.log(line),
      });
      const classes = Object.entries(summary.classes)
        .map(([c, n]) => `${c} ${n}`)
        .join(', ');
      console.log(
        `${summary.out}: ${summary.pulled} frame(s) fetched (${summary.bytes} bytes), ${summary.moved} moved, ${summary.kept} already here, ${summary.gone} dropped on the device meanwhile; in the folder: ${classes || 'nothing'}`,
      );
      if (opts.json) printJson({ ...summary });
    });
}
