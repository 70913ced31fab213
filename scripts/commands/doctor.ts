/**
 * `sei doctor [--json]`: checks that this box can run the agent, and for every problem says what to fix.
 * Checks: Node version, WebAssembly SIMD (runs an `i8x16.popcnt` and checks the answer) and the compiled kernel,
 * the SQLite addon, free disk under the state folder, the clock, and — given a config (or the default
 * /etc/sei-edge/agent.json when present) — the config's validity and the broker's reachability.
 * Exits 1 when any check fails; warnings (the agent runs, but slower or at risk) exit 0.
 */
import { existsSync, statfsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { wasmUnavailable } from '../../runtime/index.js';
import { printJson } from '../output.js';

/** The agent's default config path on a packaged box (packaging/sei-agent.service). */
export const DEFAULT_CONFIG = '/etc/sei-edge/agent.json';
/** The agent's default state folder on a packaged box (systemd StateDirectory=sei-edge). */
export const DEFAULT_STATE_DIR = '/var/lib/sei-edge';
/** Below this much free space the agent cannot take an OTA download plus its SQLite growth. */
export const DISK_FAIL_BYTES = 64 * 2 ** 20;
export const DISK_WARN_BYTES = 512 * 2 ** 20;
/** A clock before this instant has never been set (a Pi has no RTC; it boots at 1970 or a saved time). */
export const CLOCK_FLOOR = Date.UTC(2025, 0, 1);
const MIN_NODE_MAJOR = 18;
const BROKER_TIMEOUT_MS = 3000;

export type Status = 'ok' | 'warn' | 'fail';

export interface Check {
  readonly name: string;
  readonly status: Status;
  /** What was found. */
  readonly detail: string;
  /** What to do about it (absent when ok). */
  readonly fix?: string;
}

const ok = (name: string, detail: string): Check => ({ name, status: 'ok', detail });
const bad = (name: string, status: 'warn' | 'fail', detail: string, fix: string): Check => ({
  name,
  status,
  detail,
  fix,
});

export function checkNode(version = process.versions.node): Check {
  const major = Number(version.split('.')[0]);
  if (major >= MIN_NODE_MAJOR) return ok('node', `Node ${version} (>= ${MIN_NODE_MAJOR})`);
  return bad(
    'node',
    'fail',
    `Node ${version} is older than ${MIN_NODE_MAJOR}`,
    'install Node 18 or newer (Debian bookworm / Raspberry Pi OS: `sudo apt-get install nodejs`)',
  );
}

// (module (func (export "f") (param i32) (result i32)
//   local.get 0  i8x16.splat  i8x16.popcnt  i8x16.extract_lane_u 0))
// The kernel selection only validates a probe; this one runs, so a wrong SIMD lowering is caught as well.
const POPCNT_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f, 0x03, 0x02, 0x01,
  0x00, 0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, 0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0xfd, 0x0f, 0xfd, 0x62,
  0xfd, 0x16, 0x00, 0x0b,
]);

export function checkWasmSimd(): Check {
  const name = 'wasm-simd';
  const noSimdFix =
    'the runtime falls back to its reference kernel (correct, several times slower). On ARM, WebAssembly SIMD needs ' +
    'NEON: any 64-bit Raspberry Pi OS, or 32-bit on a Pi 2 or newer; a Pi Zero/1 (ARMv6) has none';
  let f: (x: number) => number;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(POPCNT_MODULE), {});
    f = instance.exports['f'] as (x: number) => number;
  } catch (err) {
    return bad(name, 'warn', `an i8x16.popcnt module does not compile: ${(err as Error).message}`, noSimdFix);
  }
  const got = [0x00, 0xb7, 0xff].map(f);
  if (got.join() !== '0,6,8')
    return bad(
      name,
      'fail',
      `i8x16.popcnt of 0x00, 0xb7, 0xff gave ${got.join(', ')}, expected 0, 6, 8`,
      'this JavaScript engine miscomputes WebAssembly SIMD: run the agent with model.kernel "reference" and upgrade Node',
    );
  const missing = wasmUnavailable();
  if (missing !== undefined)
    return bad(
      name,
      'warn',
      `SIMD works, but the kernel cannot load: ${missing}`,
      'rebuild the kernel with `npm run build:wasm` (or reinstall the package); until then the reference kernel runs',
    );
  return ok(name, 'i8x16.popcnt runs correctly; the WASM SIMD kernel is in use');
}

export async function checkSqlite(): Promise<Check> {
  try {
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(':memory:');
    const row = db.prepare('select sqlite_version() as v').get() as { v: string };
    db.close();
    return ok('sqlite', `better-sqlite3 loads (SQLite ${row.v})`);
  } catch (err) {
    return bad(
      'sqlite',
      'fail',
      `better-sqlite3 does not load: ${(err as Error).message
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .join(' ')}`,
      `rebuild the native addon for this machine (${process.arch}, Node ABI ${process.versions.modules}): \`sudo apt-get install build-essential python3 && npm rebuild better-sqlite3\` in the package folder`,
    );
  }
}

/** Free space of the file system holding `dir` (or its nearest existing parent). */
export function checkDisk(dir: string): Check {
  let at = resolve(dir);
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  const s = statfsSync(at);
  const free = Number(s.bavail) * Number(s.bsize);
  const detail = `${(free / 2 ** 20).toFixed(0)} MiB free under ${at}${at === resolve(dir) ? '' : ` (${dir} does not exist yet)`}`;
  const fix = `free space on the file system of ${at}: models, the SQLite state and OTA downloads live in ${dir}`;
  if (free < DISK_FAIL_BYTES) return bad('disk', 'fail', `${detail}, need ${DISK_FAIL_BYTES / 2 ** 20} MiB`, fix);
  if (free < DISK_WARN_BYTES) return bad('disk', 'warn', `${detail}, below ${DISK_WARN_BYTES / 2 ** 20} MiB`, fix);
  return ok('disk', detail);
}

/** `timedatectl`'s view of NTP, or undefined where there is no systemd. */
function ntpSynchronized(): boolean | undefined {
  try {
    const out = execFileSync('timedatectl', ['show', '--property=NTPSynchronized', '--value'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 2000,
    });
    return out.trim() === 'yes';
  } catch {
    return undefined;
  }
}

export function checkClock(now = Date.now(), synced: boolean | undefined = ntpSynchronized()): Check {
  const iso = new Date(now).toISOString();
  if (now < CLOCK_FLOOR) {
    return bad(
      'clock',
      'fail',
      `system time ${iso} is before ${new Date(CLOCK_FLOOR).toISOString().slice(0, 10)}: the clock was never set`,
      'TLS certificates, OTA job times and metrics timestamps need the real time: connect the box to a network with NTP (`sudo timedatectl set-ntp true`) or add an RTC',
    );
  }
  if (synced === false)
    return bad(
      'clock',
      'warn',
      `system time ${iso}, not NTP-synchronised`,
      'enable time synchronisation: `sudo timedatectl set-ntp true` (systemd-timesyncd) and let the box reach an NTP server',
    );
  return ok(
    'clock',
    `system time ${iso}${synced === undefined ? ' (NTP state unknown: no timedatectl)' : ', NTP-synchronised'}`,
  );
}

/** TCP reachability of an MQTT broker URL (mqtt, mqtts, ws, wss); authentication is the agent's own log's business. */
export function checkBroker(url: string, timeoutMs = BROKER_TIMEOUT_MS): Promise<Check> {
  const name = 'broker';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.resolve(
      bad(
        name,
        'fail',
        `broker URL ${JSON.stringify(url)} does not parse`,
        'set mqtt.url to a URL such as mqtt://broker.local:1883 or mqtts://broker.local:8883',
      ),
    );
  }
  const defaults: Record<string, number> = {
    'mqtt:': 1883,
    'tcp:': 1883,
    'mqtts:': 8883,
    'ssl:': 8883,
    'tls:': 8883,
    'ws:': 80,
    'wss:': 443,
  };
  const port = u.port ? Number(u.port) : defaults[u.protocol];
  if (port === undefined)
    return Promise.resolve(
      bad(
        name,
        'fail',
        `broker URL scheme ${u.protocol} is not one of mqtt, mqtts, ws, wss`,
        'set mqtt.url to an mqtt:// or mqtts:// URL',
      ),
    );
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return new Promise((done) => {
    const socket = connect({ host, port });
    const finish = (check: Check) => {
      socket.destroy();
      done(check);
    };
    socket.setTimeout(timeoutMs, () =>
      finish(
        bad(
          name,
          'fail',
          `no answer from ${host}:${port} within ${timeoutMs} ms`,
          `check that the broker runs and that a firewall lets this box reach ${host}:${port}`,
        ),
      ),
    );
    socket.on('connect', () => finish(ok(name, `TCP connection to ${host}:${port} (${url}) succeeded`)));
    socket.on('error', (err: NodeJS.ErrnoException) =>
      finish(
        bad(
          name,
          'fail',
          `cannot reach ${host}:${port}: ${err.code ?? err.message}`,
          `check mqtt.url in the config, that the broker runs, and DNS/network from this box to ${host}:${port}`,
        ),
      ),
    );
  });
}

export interface DoctorOptions {
  /** Agent config file; default /etc/sei-edge/agent.json when it exists. */
  readonly config?: string;
  /** Broker URL to probe; default the config's mqtt.url. */
  readonly broker?: string;
  /** State folder whose disk is checked; default /var/lib/sei-edge. */
  readonly stateDir?: string;
}

export async function runDoctor(opts: DoctorOptions = {}): Promise<Check[]> {
  const checks: Check[] = [
    checkNode(),
    checkWasmSimd(),
    await checkSqlite(),
    checkDisk(opts.stateDir ?? DEFAULT_STATE_DIR),
    checkClock(),
  ];
  const configPath = opts.config ?? (existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : undefined);
  let broker = opts.broker;
  if (configPath === undefined) {
    checks.push(ok('config', `no config given and ${DEFAULT_CONFIG} absent: the agent would run on its defaults`));
  } else {
    try {
      // Loaded on demand so that the checks above still run where the agent's dependencies are broken.
      const { loadConfigFile } = await import('../../device-agent/config.js');
      const config = loadConfigFile(configPath);
      broker ??= config.mqtt.url ?? undefined;
      checks.push(ok('config', `${configPath} is valid (device ${config.device}, fleet ${config.fleet})`));
    } catch (err) {
      checks.push(
        bad(
          'config',
          'fail',
          `${configPath}: ${(err as Error).message}`,
          `edit ${configPath} (fields and defaults: device-agent/README.md), then run \`sei doctor --config ${configPath}\` again`,
        ),
      );
    }
  }
  if (broker !== undefined) checks.push(await checkBroker(broker));
  return checks;
}

const MARK: Record<Status, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      'check that this box can run the agent (Node, WASM SIMD, SQLite, disk, clock, config, broker) and say what to fix',
    )
    .option('--config <file>', `agent config to validate (default ${DEFAULT_CONFIG} when present)`)
    .option('--broker <url>', "broker to probe (default: the config's mqtt.url)")
    .option('--state-dir <dir>', 'state folder whose free disk is checked', DEFAULT_STATE_DIR)
    .option('--json', 'print one JSON object on the last line')
    .action(async (opts: { config?: string; broker?: string; stateDir: string; json?: boolean }) => {
      const checks = await runDoctor({
        stateDir: opts.stateDir,
        ...(opts.config !== undefined ? { config: opts.config } : {}),
        ...(opts.broker !== undefined ? { broker: opts.broker } : {}),
      });
      const failed = checks.filter((c) => c.status === 'fail').length;
      const warned = checks.filter((c) => c.status === 'warn').length;
      for (const c of checks) {
        console.log(`${MARK[c.status]}  ${c.name.padEnd(9)} ${c.detail}`);
        if (c.fix !== undefined) console.log(`      ${' '.repeat(9)} fix: ${c.fix}`);
      }
      console.log(
        failed === 0 ? `ready to run the agent${warned ? ` (${warned} warning(s))` : ''}` : `${failed} check(s) failed`,
      );
      if (opts.json)
        printJson({
          ok: failed === 0,
          failed,
          warnings: warned,
          node: process.versions.node,
          arch: process.arch,
          checks,
        });
      if (failed > 0) process.exitCode = 1;
    });
}
