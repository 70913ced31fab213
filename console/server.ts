/**
 * `sei console`'s HTTP server: the built page (console/dist/, made by `npm run build:console` at install), its
 * settings, the signed artifacts and the rollouts (rollouts.ts). Everything live — status, metrics, frames,
 * command replies — goes between the browser and the broker over MQTT-over-WebSocket, not through here.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorBody } from '../device-agent/mqtt/link.js';
import { ConfigError, show } from '../runtime/index.js';
import type { ApiError, ArtifactList, ConsoleConfig, RolloutRequest } from './api.js';
import { Rollouts } from './rollouts.js';

export interface ConsoleOptions {
  /** The broker's MQTT-over-WebSocket URL (ws:// or wss://): the page connects to it and rollouts run through it. */
  readonly mqtt: string;
  /** HTTP port; 0 picks a free one. Default 8090. */
  readonly port?: number;
  /** Default "127.0.0.1": the page hands out the credentials below, so serve the network only on purpose. */
  readonly host?: string;
  /** Broker credentials the page signs in with at once; without them (or `anonymous`) it asks. */
  readonly username?: string;
  readonly password?: string;
  /** Sign in at once without credentials (a broker that takes anonymous clients, such as the embedded one). */
  readonly anonymous?: boolean;
  /** Folder of `sei sign` outputs a rollout may ship. Default: the working directory. */
  readonly artifacts?: string;
  /** First topic level. Default "sei". */
  readonly topicRoot?: string;
}

export interface ConsoleServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
/** The built page: beside this file, or (for the compiled server in dist/console/) in the source tree's console/. */
const PAGE_DIRS = [join(here, 'dist'), join(here, '..', '..', 'console', 'dist')];
const FILES: Readonly<Record<string, readonly [file: string, type: string]>> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/app.css': ['app.css', 'text/css; charset=utf-8'],
};
const MAX_BODY = 64 * 1024;

/** The folder holding the built page, or a ConfigError that says how to build it. */
export function pageDir(): string {
  const dir = PAGE_DIRS.find((d) => existsSync(join(d, 'index.html')) && existsSync(join(d, 'app.js')));
  if (!dir)
    throw new ConfigError(
      `console page: expected the built page in ${PAGE_DIRS[0]}, got none: run \`npm run build:console\``,
      'console',
    );
  return dir;
}

export async function startConsole(opts: ConsoleOptions): Promise<ConsoleServer> {
  if (!/^wss?:\/\/[^/\s]+/.test(opts.mqtt)) {
    throw new ConfigError(
      `--mqtt: expected the broker's MQTT-over-WebSocket URL (ws://host:port or wss://…: \`sei broker --ws-port N\`, or a Mosquitto \`protocol websockets\` listener), got ${show(opts.mqtt)}`,
      '--mqtt',
    );
  }
  const dir = pageDir();
  const topicRoot = opts.topicRoot ?? 'sei';
  const rollouts = new Rollouts(opts.artifacts ?? process.cwd(), opts.mqtt, topicRoot);
  const signIn = opts.username !== undefined || opts.anonymous === true ? 'auto' : 'ask';
  const config: ConsoleConfig = {
    mqtt: opts.mqtt,
    topicRoot,
    signIn,
    username: opts.username ?? null,
    password: opts.password ?? null,
    artifactsDir: rollouts.dir,
  };
  const streams = new Set<ServerResponse>();

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) =>
      send(res, err instanceof ConfigError || err instanceof SyntaxError ? 400 : 500, {
        error: errorBody(err),
      } satisfies ApiError),
    );
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://console').pathname;
    const file = FILES[path];
    if (req.method === 'GET' && file) {
      res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
      res.end(readFileSync(join(dir, file[0])));
    } else if (req.method === 'GET' && path === '/config.json') {
      send(res, 200, config);
    } else if (req.method === 'GET' && path === '/api/artifacts') {
      send(res, 200, { dir: rollouts.dir, artifacts: rollouts.list() } satisfies ArtifactList);
    } else if (req.method === 'POST' && path === '/api/rollouts') {
      crossOrigin(req);
      send(res, 202, rollouts.start((await jsonBody(req)) as RolloutRequest));
    } else if (req.method === 'GET' && /^\/api\/rollouts\/[\w-]+\/events$/.test(path)) {
      const id = path.split('/')[3]!;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      streams.add(res);
      // The end of a rollout ends the stream (the page closes its EventSource on it); a finished one is replayed whole.
      const unfollow = rollouts.follow(id, (e) => {
        res.write(`data: ${JSON.stringify(e)}\n\n`);
        if (e.type !== 'log') res.end();
      });
      if (!unfollow) {
        res.end(
          `data: ${JSON.stringify({ type: 'failed', ts: Date.now(), error: errorBody(new ConfigError(`rollout: expected a rollout this console started, got ${show(id)}`, 'rollout')) })}\n\n`,
        );
        return;
      }
      req.once('close', () => {
        unfollow();
        streams.delete(res);
      });
    } else {
      send(res, 404, {
        error: errorBody(
          new ConfigError(
            `${req.method} ${path}: expected one of GET /, /config.json, /api/artifacts, /api/rollouts/<id>/events or POST /api/rollouts`,
            'path',
          ),
        ),
      } satisfies ApiError);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8090, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host === undefined || opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host;
  return {
    url: `http://${host}:${port}/`,
    port,
    async close() {
      for (const s of streams) s.end();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-cache' });
  res.end(JSON.stringify(body));
}

/**
 * A rollout commands devices: only the console's own page may ask. Browsers send Origin on a cross-site POST, and
 * a JSON content type cannot be sent cross-site without a preflight this server never answers.
 */
function crossOrigin(req: IncomingMessage): void {
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${req.headers.host}`)
    throw new ConfigError(
      `origin: expected this console's page (http://${req.headers.host}), got ${show(origin)}`,
      'origin',
    );
  if (!/^application\/json\b/.test(req.headers['content-type'] ?? ''))
    throw new ConfigError(
      `content-type: expected application/json, got ${show(req.headers['content-type'] ?? null)}`,
      'content-type',
    );
}

async function jsonBody(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new ConfigError(`body: expected at most ${MAX_BODY} bytes of JSON, got more`, 'body');
    chunks.push(chunk);
  }
  const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ConfigError(`body: expected a JSON object, got ${show(body)}`, 'body');
  return body;
}
