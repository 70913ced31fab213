/**
 * `sei console`: the fleet console, a local web page that shows every device live (status, metrics, frames with
 * predictions, firing rates, model card) and drives activations, rollbacks, fine-tuning and rollouts of signed
 * artifacts. The browser talks to the broker itself over MQTT-over-WebSocket; this serves the page (console/).
 */
import type { Command } from 'commander';
import { startConsole } from '../../console/server.js';
import { ConfigError } from '../../runtime/index.js';
import { fromFile, int } from '../options.js';
import { untilSignal } from './agent.js';

interface Opts {
  mqtt: string;
  port: number;
  host: string;
  user?: string;
  password?: string;
  anonymous?: boolean;
  artifacts?: string;
  topicRoot: string;
}

export function register(program: Command): void {
  program
    .command('console')
    .description('serve the fleet console (web page) for the devices on a broker until Ctrl+C')
    .option(
      '--mqtt <url>',
      "the broker's MQTT-over-WebSocket URL (`sei broker --ws-port N`, or a Mosquitto websockets listener)",
      'ws://127.0.0.1:9001',
    )
    .option('--port <n>', 'HTTP port of the page (0 = a free one)', int('--port', 0, 65535), 8090)
    .option('--host <addr>', 'address to serve the page on (0.0.0.0 for the network)', '127.0.0.1')
    .option('--user <u>', 'broker user name the page signs in with (default: the page asks)')
    .option('--password <p>', 'broker password for --user')
    .option('--anonymous', 'sign the page in at once without an account (a broker that allows anonymous clients)')
    .option('--artifacts <dir>', 'folder of `sei sign` outputs a rollout may ship (default: the working directory)')
    .option('--topic-root <root>', 'first topic level', 'sei')
    .action(async (opts: Opts) => {
      if (opts.password !== undefined && opts.user === undefined)
        throw new ConfigError('--password: expected it with --user, got it alone', '--password');
      const server = await fromFile(
        '--host / --port',
        'an address and port free to listen on',
        `${opts.host}:${opts.port}`,
        () =>
          startConsole({
            mqtt: opts.mqtt,
            port: opts.port,
            host: opts.host,
            topicRoot: opts.topicRoot,
            ...(opts.user !== undefined ? { username: opts.user } : {}),
            ...(opts.password !== undefined ? { password: opts.password } : {}),
            ...(opts.artifacts !== undefined ? { artifacts: opts.artifacts } : {}),
            anonymous: opts.anonymous === true,
          }),
      );
      console.log(`fleet console on ${server.url} (broker ${opts.mqtt}); Ctrl+C stops it`);
      await untilSignal();
      await server.close();
    });
}
