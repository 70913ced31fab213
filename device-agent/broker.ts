/**
 * The embedded broker (Aedes, MQTT 3.1.1) for the demo, the bench and a fleet on one box; optionally with an
 * MQTT-over-WebSocket listener beside the TCP one, for browsers (the fleet console).
 */
import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { Aedes } from 'aedes';

export interface EmbeddedBroker {
  readonly aedes: Aedes;
  readonly port: number;
  readonly url: string;
  /** Port of the websocket listener, null without one. */
  readonly wsPort: number | null;
  /** `ws://host:port` of the websocket listener, null without one. */
  readonly wsUrl: string | null;
  close(): Promise<void>;
}

export interface BrokerOptions {
  /** TCP port; 0 picks a free one. Default 1883. */
  readonly port?: number;
  /** Default "127.0.0.1" (local only); "0.0.0.0" serves the network. Both listeners use it. */
  readonly host?: string;
  /** Port of an MQTT-over-WebSocket listener (0 picks a free one); default none. */
  readonly wsPort?: number;
}

/** Listens; rejects with the server's error (a port in use, an address not on this machine). */
function listen(server: Server | HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export async function startBroker(opts: BrokerOptions = {}): Promise<EmbeddedBroker> {
  const host = opts.host ?? '127.0.0.1';
  // Loaded on demand: an agent process that never runs a broker does not pay for it.
  const { Aedes: AedesBroker } = await import('aedes');
  const aedes = await AedesBroker.createBroker();
  const server: Server = createServer(aedes.handle);
  const connections = new Set<Socket>();
  server.on('connection', (s) => {
    connections.add(s);
    s.once('close', () => connections.delete(s));
  });
  const closeAedes = () => new Promise<void>((r) => aedes.close(() => r()));
  let port: number;
  try {
    port = await listen(server, opts.port ?? 1883, host);
  } catch (err) {
    await closeAedes();
    throw err;
  }
  const ws =
    opts.wsPort === undefined
      ? null
      : await websocketListener(aedes, opts.wsPort, host).catch(async (err: unknown) => {
          await new Promise<void>((r) => server.close(() => r()));
          await closeAedes();
          throw err;
        });
  const local = host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    aedes,
    port,
    url: `mqtt://${local}:${port}`,
    wsPort: ws?.port ?? null,
    wsUrl: ws ? `ws://${local}:${ws.port}` : null,
    async close() {
      // Sockets are destroyed first, so that clients see the broker go away (their Last Will fires).
      for (const s of connections) s.destroy();
      await ws?.close();
      await new Promise<void>((r) => server.close(() => r()));
      await closeAedes();
    },
  };
}

/** MQTT over WebSocket: each websocket becomes a stream Aedes handles like a TCP connection. */
async function websocketListener(
  aedes: Aedes,
  port: number,
  host: string,
): Promise<{ port: number; close(): Promise<void> }> {
  // ws ships with the MQTT client anyway; loaded only when a websocket listener is asked for.
  const { WebSocketServer, createWebSocketStream } = await import('ws');
  const http = createHttpServer((_req, res) => {
    res
      .writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' })
      .end('MQTT over WebSocket: connect with a websocket (subprotocol "mqtt")\n');
  });
  // Browsers' MQTT clients ask for "mqtt" (3.1.1 and 5) or "mqttv3.1"; anything else is still served as MQTT.
  const wss = new WebSocketServer({
    server: http,
    handleProtocols: (asked) => (asked.has('mqtt') ? 'mqtt' : asked.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  wss.on('connection', (socket, req) => {
    const stream = createWebSocketStream(socket);
    // A browser tab closing mid-frame is no broker error: Aedes sees the stream end and fires the Last Will.
    stream.on('error', () => socket.terminate());
    aedes.handle(stream, req);
  });
  const bound = await listen(http, port, host);
  return {
    port: bound,
    async close() {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
      await new Promise<void>((r) => http.close(() => r()));
    },
  };
}
