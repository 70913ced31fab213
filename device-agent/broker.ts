/** The embedded broker (Aedes, MQTT 3.1.1) for the demo, the bench and a fleet on one box. */
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import type { Aedes } from 'aedes';

export interface EmbeddedBroker {
  readonly aedes: Aedes;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

export interface BrokerOptions {
  /** TCP port; 0 picks a free one. Default 1883. */
  readonly port?: number;
  /** Default "127.0.0.1" (local only); "0.0.0.0" serves the network. */
  readonly host?: string;
}

export async function startBroker(opts: BrokerOptions = {}): Promise<EmbeddedBroker> {
  const host = opts.host ?? '127.0.0.1';
  // Loaded on demand: an agent process that never runs a broker does not pay for it.
  const { Aedes: AedesBroker } = await import('aedes');
  const aedes = await AedesBroker.createBroker();
  const server: Server = createServer(aedes.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 1883, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const connections = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    connections.add(s);
    s.once('close', () => connections.delete(s));
  });
  return {
    aedes,
    port,
    url: `mqtt://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    async close() {
      // Sockets are destroyed first, so that clients see the broker go away (their Last Will fires).
      for (const s of connections) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => aedes.close(() => r()));
    },
  };
}
