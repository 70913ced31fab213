/**
 * `sei broker`: the embedded MQTT broker (Aedes, MQTT 3.1.1) alone, for a fleet of agents on one box; `--ws-port`
 * adds MQTT over WebSocket for browsers (`sei console`).
 */
import type { Command } from 'commander';
import { startBroker } from '../../device-agent/index.js';
import { fromFile, int } from '../options.js';
import { untilSignal } from './agent.js';

export function register(program: Command): void {
  program
    .command('broker')
    .description('run the embedded MQTT broker (Aedes, MQTT 3.1.1) until Ctrl+C')
    .option('--port <n>', 'TCP port (0 = a free one)', int('--port', 0, 65535), 1883)
    .option('--host <addr>', 'address to listen on (0.0.0.0 for the network)', '127.0.0.1')
    .option(
      '--ws-port <n>',
      'also serve MQTT over WebSocket on this port (0 = a free one), for `sei console`',
      int('--ws-port', 0, 65535),
    )
    .action(async (opts: { port: number; host: string; wsPort?: number }) => {
      const ports = `${opts.host}:${opts.port}${opts.wsPort === undefined ? '' : ` and ${opts.host}:${opts.wsPort}`}`;
      const broker = await fromFile(
        '--host / --port / --ws-port',
        'an address and ports free to listen on',
        ports,
        () =>
          startBroker({
            port: opts.port,
            host: opts.host,
            ...(opts.wsPort !== undefined ? { wsPort: opts.wsPort } : {}),
          }),
      );
      broker.aedes.on('client', (c) => console.log(`client ${c.id} connected`));
      broker.aedes.on('clientDisconnect', (c) => console.log(`client ${c.id} disconnected`));
      console.log(
        `broker listening on ${opts.host}:${broker.port} (${broker.url})${broker.wsUrl ? `, websockets on ${opts.host}:${broker.wsPort} (${broker.wsUrl})` : ''}; Ctrl+C stops it`,
      );
      await untilSignal();
      await broker.close();
    });
}
