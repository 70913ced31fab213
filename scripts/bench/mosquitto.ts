/**
 * Debian's Mosquitto 2 (MQTT 5) on a free localhost port, for the tests (test/helpers/brokers.ts) and the fleet
 * benchmark (bench/fleet.ts): a generated config, optionally a password file (made with mosquitto_passwd), an ACL,
 * TLS, a websocket listener, and on-disk persistence, so that it can be stopped and started again on the same port
 * with the same sessions, queued messages and retained messages.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const mosquittoAvailable = existsSync(MOSQUITTO);

export interface LocalBroker {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Stops the broker (clients see the connection drop). */
  stop(): Promise<void>;
  /** Starts it again on the same port (Mosquitto: with the persisted sessions and retained messages). */
  start(): Promise<void>;
  /** Stops it and removes its files. */
  close(): Promise<void>;
  /** `ws://127.0.0.1:<port>` of its MQTT-over-WebSocket listener, when it has one. */
  readonly wsUrl?: string;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`broker did not listen on port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface MosquittoOptions {
  /** username → password; when given, anonymous clients are refused. */
  readonly users?: Readonly<Record<string, string>>;
  /** ACL file contents (Mosquitto syntax). */
  readonly acl?: string;
  /** Serve TLS (mqtts) with these PEM files; `requireCertificate` refuses clients without a certificate signed by `ca`. */
  readonly tls?: {
    readonly ca: string;
    readonly cert: string;
    readonly key: string;
    readonly requireCertificate: boolean;
  };
  /**
   * Add an MQTT-over-WebSocket listener (for the console's browser tests). Mosquitto 2.0.11 binds it to every
   * interface whatever address it is given, so pair it with `users`.
   */
  readonly websockets?: boolean;
  /** More lines for the config file, after the listener's (e.g. `max_queued_messages 0`). */
  readonly extra?: readonly string[];
}

export interface MosquittoBroker extends LocalBroker {
  /** The running broker's process id; null while it is stopped. */
  pid(): number | null;
}

/** Mosquitto 2 with a generated config, on a free port, persistence on so that a restart keeps sessions. */
export async function mosquitto(opts: MosquittoOptions = {}): Promise<MosquittoBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'sei-mosquitto-'));
  const port = await freePort();
  const wsPort = opts.websockets ? await freePort() : null;
  const lines = [
    `listener ${port} 127.0.0.1`,
    'persistence true',
    `persistence_location ${dir}/`,
    'log_dest stderr',
    'log_type error',
  ];
  // Started as root, Mosquitto drops to the "mosquitto" user, which cannot read a private temp folder.
  if (process.getuid?.() === 0) lines.push('user root');
  if (opts.users) {
    const pw = join(dir, 'passwd');
    writeFileSync(pw, '');
    for (const [user, password] of Object.entries(opts.users))
      execFileSync('mosquitto_passwd', ['-b', pw, user, password]);
    lines.push('allow_anonymous false', `password_file ${pw}`);
  } else lines.push('allow_anonymous true');
  if (opts.tls) {
    lines.push(
      `cafile ${opts.tls.ca}`,
      `certfile ${opts.tls.cert}`,
      `keyfile ${opts.tls.key}`,
      `require_certificate ${opts.tls.requireCertificate}`,
    );
  }
  if (opts.acl) {
    writeFileSync(join(dir, 'acl'), opts.acl);
    lines.push(`acl_file ${join(dir, 'acl')}`);
  }
  lines.push(...(opts.extra ?? []));
  // A websockets listener only beside the plain one (alone, 2.0.11 refuses to start); options after it are its own.
  if (wsPort !== null) lines.push(`listener ${wsPort} 127.0.0.1`, 'protocol websockets');
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, lines.join('\n') + '\n');
  let proc: ChildProcess | null = null;
  const start = async () => {
    const p = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    proc = p;
    try {
      await waitForPort(port);
      if (wsPort !== null) await waitForPort(wsPort);
    } catch (err) {
      p.kill('SIGKILL');
      throw new Error(`${(err as Error).message}: ${stderr}`);
    }
  };
  const stop = async () => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null) return;
    // SIGTERM: Mosquitto saves its persistence file (sessions, queued messages, retained) on the way out.
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill('SIGTERM');
    });
  };
  await start();
  return {
    name: 'Mosquitto 2 (MQTT 5)',
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    ...(wsPort !== null ? { wsUrl: `ws://127.0.0.1:${wsPort}` } : {}),
    port,
    pid: () => proc?.pid ?? null,
    stop,
    start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
