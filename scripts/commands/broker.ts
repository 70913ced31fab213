/** `sei broker`: the embedded MQTT broker (Aedes, MQTT 3.1.1) alone, for a fleet of agents on one box. */
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
    .action(async (opts: { port: number; host: string }) => {
      const broker = await fromFile('--host / --port', 'an address and port free to listen on', `${opts.host}:${opts.port}`, () => startBroker({ port: opts.port, host: opts.host }));
      broker.aedes.on('client', (c) => console.log(`client ${c.id} connected`));
      broker.aedes.on('clientDisconnect', (c) => console.log(`client ${c.id} disconnected`));
      console.log(`broker listening on ${opts.host}:${broker.port} (${broker.url}); Ctrl+C stops it`);
      await untilSignal();
      await broker.close();
    });
}
