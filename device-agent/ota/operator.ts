/**
 * The operator side of an update (`sei deploy`): finds the target devices, hands each a job in waves, serves the
 * artifact's blocks on request, follows every device's `ota/status`, and stops the rollout when a wave fails
 * beyond the abort threshold (the rollout policy of AWS IoT Jobs: a wave size or a rate, and an abort threshold).
 */
import { randomUUID } from 'node:crypto';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { ConfigError } from '../../runtime/index.js';
import { sha256 } from '../models.js';
import type { Manifest, SignedManifest } from './manifest.js';
import { blockCount, isTerminal, TOPIC } from './protocol.js';
import type { Job, JobState, JobStatus } from './protocol.js';

export interface DeployOptions {
  readonly url: string;
  readonly artifact: Uint8Array;
  readonly manifest: Manifest;
  readonly signed: SignedManifest;
  readonly fleet: string;
  /** Devices to update; null: every device of the fleet that has a retained `status`. */
  readonly devices: readonly string[] | null;
  /** First topic level. Default "sei". */
  readonly topicRoot?: string;
  /** Default 16384. */
  readonly blockSize?: number;
  /** Devices per wave; default: all in one wave. */
  readonly waveSize?: number;
  /** Devices started per minute at most (waves of that size, at least a minute apart). */
  readonly ratePerMinute?: number;
  /** Stop the rollout when more than this percentage of a wave does not succeed. Default 50. */
  readonly abortThresholdPct?: number;
  readonly allowDowngrade?: boolean;
  /** Seconds a device may take for its job before it is cancelled as TIMED_OUT. Default 600. */
  readonly timeoutS?: number;
  /** How long to collect retained `status` messages when discovering a fleet, ms. Default 1500. */
  readonly discoverMs?: number;
  readonly jobId?: string;
  readonly username?: string;
  readonly password?: string;
  /** Human-readable progress lines. */
  readonly log?: (line: string) => void;
}

export type DeviceState = JobState | 'NOT_STARTED';

export interface DeviceOutcome {
  readonly device: string;
  wave: number;
  state: DeviceState;
  step: string | null;
  received: number;
  blocks: number;
  reason: string | null;
  active: string | null;
  probation: Record<string, number> | null;
  /** Block requests served. */
  served: number;
}

export interface WaveSummary {
  readonly wave: number;
  readonly devices: readonly string[];
  readonly counts: Readonly<Record<string, number>>;
  readonly failedPct: number;
  readonly aborted: boolean;
}

export interface DeployResult {
  readonly jobId: string;
  readonly model: string;
  readonly sha256: string;
  readonly size: number;
  readonly blocks: number;
  readonly blockSize: number;
  readonly devices: readonly DeviceOutcome[];
  readonly waves: readonly WaveSummary[];
  readonly aborted: boolean;
  /** Every targeted device SUCCEEDED. */
  readonly ok: boolean;
}

/** The job a device receives for an artifact. */
export function makeJob(
  jobId: string,
  artifact: Uint8Array,
  signed: SignedManifest,
  blockSize: number,
  allowDowngrade = false,
): Job {
  const blocks = blockCount(artifact.length, blockSize);
  const blockSha256 = Array.from({ length: blocks }, (_, i) =>
    sha256(artifact.subarray(i * blockSize, (i + 1) * blockSize)),
  );
  return { jobId, manifest: signed, blockSize, blockSha256, allowDowngrade };
}

/** Connects with MQTT 5, falling back to 3.1.1 when the broker refuses it (the embedded Aedes does). */
export async function connectOperator(url: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const base: IClientOptions = {
    clientId: `sei-deploy-${randomUUID().slice(0, 8)}`,
    reconnectPeriod: 300,
    connectTimeout: 10_000,
    ...extra,
  };
  try {
    return await mqtt.connectAsync(url, { ...base, protocolVersion: 5 }, false);
  } catch (err) {
    if (!/protocol/i.test((err as Error).message)) throw err;
    return await mqtt.connectAsync(url, { ...base, protocolVersion: 4 }, false);
  }
}

/** Devices of a fleet, from their retained `status` messages. */
export async function discoverFleet(
  client: MqttClient,
  root: string,
  fleet: string,
  waitMs: number,
): Promise<string[]> {
  const found = new Map<string, string>();
  const filter = `${root}/${fleet}/+/status`;
  const on = (topic: string, payload: Buffer) => {
    const parts = topic.split('/');
    if (parts.length !== 4 || parts[0] !== root || parts[1] !== fleet || parts[3] !== 'status' || payload.length === 0)
      return;
    try {
      found.set(parts[2]!, String((JSON.parse(payload.toString('utf8')) as { state?: unknown }).state));
    } catch {
      // not an agent's status
    }
  };
  client.on('message', on);
  await client.subscribeAsync(filter, { qos: 1 });
  await new Promise((r) => setTimeout(r, waitMs));
  client.off('message', on);
  await client.unsubscribeAsync(filter);
  return [...found]
    .filter(([, state]) => state === 'online')
    .map(([device]) => device)
    .sort();
}

export async function deploy(opts: DeployOptions): Promise<DeployResult> {
  const log = opts.log ?? (() => {});
  const root = opts.topicRoot ?? 'sei';
  const blockSize = opts.blockSize ?? 16384;
  const jobId = opts.jobId ?? `job-${Date.now().toString(36)}-${randomUUID().slice(0, 6)}`;
  const job = makeJob(jobId, opts.artifact, opts.signed, blockSize, opts.allowDowngrade ?? false);
  const blocks = job.blockSha256.length;
  const timeoutMs = (opts.timeoutS ?? 600) * 1000;
  const threshold = opts.abortThresholdPct ?? 50;
  const auth: IClientOptions = {};
  if (opts.username !== undefined) auth.username = opts.username;
  if (opts.password !== undefined) auth.password = opts.password;
  const client = await connectOperator(opts.url, auth);
  try {
    const targets = opts.devices
      ? [...opts.devices]
      : await discoverFleet(client, root, opts.fleet, opts.discoverMs ?? 1500);
    if (targets.length === 0)
      throw new ConfigError(
        `--fleet: expected online devices in fleet ${JSON.stringify(opts.fleet)} (retained ${root}/${opts.fleet}/+/status), got none`,
        'fleet',
      );
    const waveSize = Math.max(
      1,
      opts.ratePerMinute ? Math.ceil(opts.ratePerMinute) : (opts.waveSize ?? targets.length),
    );
    const minWaveMs = opts.ratePerMinute ? 60_000 : 0;
    const prefix = (d: string) => `${root}/${opts.fleet}/${d}/`;
    const outcomes = new Map<string, DeviceOutcome>(
      targets.map((d, i) => [
        d,
        {
          device: d,
          wave: Math.floor(i / waveSize) + 1,
          state: 'NOT_STARTED',
          step: null,
          received: 0,
          blocks,
          reason: null,
          active: null,
          probation: null,
          served: 0,
        },
      ]),
    );
    log(
      `job ${jobId}: ${opts.manifest.model} (${opts.artifact.length} bytes, sha256 ${opts.manifest.sha256.slice(0, 16)}…, ${blocks} blocks of ${blockSize}) to ${targets.length} device(s) of fleet ${opts.fleet}, waves of ${waveSize}`,
    );

    const waiters = new Set<() => void>();
    const changed = () => waiters.forEach((w) => w());
    client.on('message', (topic, payload) => {
      const parts = topic.split('/');
      const device = parts[2];
      const o = device === undefined ? undefined : outcomes.get(device);
      if (!o || topic.slice(0, prefix(device!).length) !== prefix(device!)) return;
      const suffix = topic.slice(prefix(device!).length);
      if (suffix === TOPIC.request) {
        let req: { jobId?: unknown; blocks?: unknown };
        try {
          req = JSON.parse(payload.toString('utf8')) as typeof req;
        } catch {
          return;
        }
        if (req.jobId !== jobId || !Array.isArray(req.blocks)) return;
        o.served++;
        for (const i of req.blocks) {
          if (!Number.isInteger(i) || i < 0 || i >= blocks) continue;
          const bytes = opts.artifact.subarray(i * blockSize, (i + 1) * blockSize);
          client.publish(
            `${prefix(device!)}${TOPIC.block}${jobId}/${i}`,
            Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
            { qos: 1 },
          );
        }
      } else if (suffix === TOPIC.status && payload.length > 0) {
        let s: JobStatus;
        try {
          s = JSON.parse(payload.toString('utf8')) as JobStatus;
        } catch {
          return;
        }
        if (s.jobId !== jobId || isTerminal(o.state)) return;
        const before = `${o.state}/${o.step}`;
        const pct = (n: number) => Math.floor((4 * n) / Math.max(1, blocks));
        const progressed = pct(s.received) > pct(o.received);
        Object.assign(o, {
          state: s.state,
          step: s.step,
          received: Math.max(o.received, s.received),
          reason: s.reason,
          active: s.active,
          probation: s.probation,
        });
        if (`${o.state}/${o.step}` !== before || progressed) log(deviceLine(o));
        changed();
      }
    });

    const waves: WaveSummary[] = [];
    let aborted = false;
    const waveCount = Math.ceil(targets.length / waveSize);
    for (let w = 1; w <= waveCount; w++) {
      const started = Date.now();
      const devices = targets.slice((w - 1) * waveSize, w * waveSize);
      log(`wave ${w}/${waveCount}: ${devices.join(', ')}`);
      for (const d of devices) {
        await client.subscribeAsync([`${prefix(d)}${TOPIC.request}`, `${prefix(d)}${TOPIC.status}`], { qos: 1 });
        outcomes.get(d)!.state = 'QUEUED';
        await client.publishAsync(`${prefix(d)}${TOPIC.job}`, JSON.stringify(job), { qos: 1, retain: true });
      }
      const deadline = started + timeoutMs;
      const finished = new Set<string>();
      while (finished.size < devices.length) {
        for (const d of devices) {
          const o = outcomes.get(d)!;
          if (finished.has(d)) continue;
          if (!isTerminal(o.state) && Date.now() >= deadline) {
            Object.assign(o, {
              state: 'TIMED_OUT',
              reason: `no outcome within ${timeoutMs / 1000} s (last seen ${o.step ?? o.state})`,
            });
            await client.publishAsync(
              `${prefix(d)}${TOPIC.cancel}`,
              JSON.stringify({ jobId, state: 'TIMED_OUT', reason: o.reason }),
              { qos: 1 },
            );
            log(deviceLine(o));
          }
          if (isTerminal(o.state)) {
            finished.add(d);
            // Clear the retained job so that a device coming back later does not see it again.
            await client.publishAsync(`${prefix(d)}${TOPIC.job}`, '', { qos: 1, retain: true });
          }
        }
        if (finished.size < devices.length)
          await waitChange(waiters, Math.max(10, Math.min(1000, deadline - Date.now())));
      }
      const counts: Record<string, number> = {};
      for (const d of devices) counts[outcomes.get(d)!.state] = (counts[outcomes.get(d)!.state] ?? 0) + 1;
      const failedPct = (100 * (devices.length - (counts.SUCCEEDED ?? 0))) / devices.length;
      aborted = failedPct > threshold && w < waveCount;
      waves.push({ wave: w, devices, counts, failedPct, aborted });
      log(
        `wave ${w}/${waveCount} done: ${Object.entries(counts)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ')} (${failedPct.toFixed(0)}% not succeeded, abort threshold ${threshold}%)`,
      );
      if (aborted) {
        log(`rollout aborted: ${targets.length - w * waveSize} device(s) not started`);
        break;
      }
      if (w < waveCount && Date.now() - started < minWaveMs)
        await new Promise((r) => setTimeout(r, minWaveMs - (Date.now() - started)));
    }
    const devices = [...outcomes.values()];
    return {
      jobId,
      model: opts.manifest.model,
      sha256: opts.manifest.sha256,
      size: opts.artifact.length,
      blocks,
      blockSize,
      devices,
      waves,
      aborted,
      ok: !aborted && devices.every((d) => d.state === 'SUCCEEDED'),
    };
  } finally {
    await client.endAsync();
  }
}

function waitChange(waiters: Set<() => void>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      waiters.delete(done);
      resolve();
    };
    const t = setTimeout(done, ms);
    waiters.add(done);
  });
}

/** One progress line for a device. */
export function deviceLine(o: DeviceOutcome): string {
  const where = o.step ? `${o.state}/${o.step}` : o.state;
  const progress = o.step === 'DOWNLOADING' || o.received > 0 ? ` ${o.received}/${o.blocks} blocks` : '';
  const probation = o.probation
    ? ` probation ${o.probation.frames} frames, confidence ${o.probation.confidence}${o.probation.baselineConfidence !== undefined ? ` vs ${o.probation.baselineConfidence}` : ''}`
    : '';
  return `  ${o.device.padEnd(12)} ${where.padEnd(24)}${progress}${o.state === 'SUCCEEDED' ? ` now ${o.active}` : ''}${probation}${o.reason ? ` — ${o.reason}` : ''}`;
}
