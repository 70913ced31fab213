/**
 * The page's broker connection: MQTT 5 over WebSocket where the broker speaks it (Mosquitto), else 3.1.1 (the
 * embedded Aedes); the fleet's retained status, metrics and update progress folded into one store; commands with
 * their replies. Every payload is read as device-agent/messages.ts declares it.
 */
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import type {
  CommandReply,
  ErrorBody,
  ErrorMessage,
  JobStatus,
  MetricsMessage,
  PredictionsMessage,
  PreviewArgs,
  PreviewMessage,
  PreviewResult,
  StatusMessage,
} from '../../device-agent/messages.js';

/** One point of a device's history, seconds since the epoch first (uPlot's x). */
export interface Point {
  readonly t: number;
  readonly fps: number;
  readonly p50: number;
  readonly p99: number;
  readonly spike: Readonly<Record<string, number>>;
}

export interface Device {
  /** `<fleet>/<device>`. */
  readonly key: string;
  readonly fleet: string;
  readonly device: string;
  /** Topic prefix, `<root>/<fleet>/<device>/`. */
  readonly prefix: string;
  status: StatusMessage | null;
  /** When the page saw the state change to what it is (epoch ms), null if it was so before the page looked. */
  since: number | null;
  metrics: MetricsMessage | null;
  /** Metrics over the last minutes. */
  history: Point[];
  /** Mean confidence per second of predictions, while the device is watched: [second, mean, predictions]. */
  confidence: Array<[number, number, number]>;
  /** Newest first. */
  frames: PreviewMessage[];
  /** The reply of the last `preview` request (the model card), or why there is none. */
  preview: PreviewResult | null;
  previewProblem: string | null;
  /** Update jobs by id: every status seen, in order. */
  jobs: Map<string, JobStatus[]>;
  /** Newest first. */
  errors: ErrorMessage[];
}

/** Why a command did not succeed: the device said no (`error`), the broker refused it, or nothing came back. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly kind: 'error' | 'refused' | 'timeout',
    readonly body: ErrorBody | null = null,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

const HISTORY_S = 10 * 60;
const MAX_POINTS = 1200;
const FRAMES_KEPT = 8;
const ERRORS_KEPT = 5;
/** How often a watched device's preview is renewed, and for how long each request asks. */
const PREVIEW_RENEW_MS = 20_000;
const PREVIEW: PreviewArgs = { seconds: 30, fps: 4 };

export class Fleet {
  readonly devices = new Map<string, Device>();
  private listeners = new Set<() => void>();
  private pending = false;

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Listeners hear of changes at most once per animation frame, however many messages came. */
  changed(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      for (const l of this.listeners) l();
    });
  }

  device(root: string, fleet: string, device: string): Device {
    const key = `${fleet}/${device}`;
    let d = this.devices.get(key);
    if (!d) {
      d = {
        key,
        fleet,
        device,
        prefix: `${root}/${fleet}/${device}/`,
        status: null,
        since: null,
        metrics: null,
        history: [],
        confidence: [],
        frames: [],
        preview: null,
        previewProblem: null,
        jobs: new Map(),
        errors: [],
      };
      this.devices.set(key, d);
    }
    return d;
  }
}

function parse<T>(payload: Uint8Array): T | null {
  if (payload.length === 0) return null;
  try {
    return JSON.parse(new TextDecoder().decode(payload)) as T;
  } catch {
    return null;
  }
}

export interface Identity {
  readonly url: string;
  readonly username: string | null;
  readonly password: string | null;
}

interface Pending {
  resolve(result: unknown): void;
  reject(err: CommandError): void;
  progress?: (body: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
  timeoutMs: number;
}

export class Link {
  readonly fleet = new Fleet();
  /** This page's reply topic level: `<prefix>reply/<me>`. */
  private readonly me = `console-${Math.random().toString(36).slice(2, 10)}`;
  private readonly pending = new Map<string, Pending>();
  private seq = 0;
  online = true;
  /** Why the connection last failed, while reconnecting. */
  lastError: string | null = null;

  private constructor(
    private readonly client: MqttClient,
    readonly identity: Identity,
    readonly protocol: 4 | 5,
    readonly root: string,
  ) {
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('close', () => this.setOnline(false));
    client.on('connect', () => {
      this.lastError = null;
      this.setOnline(true);
    });
    // An EventEmitter throws an 'error' nobody listens to; here it only explains the reconnecting.
    client.on('error', (err) => {
      this.lastError = err.message;
      this.fleet.changed();
    });
  }

  /** Connects (MQTT 5, or 3.1.1 when the broker refuses 5) and subscribes to the fleet; rejects with the broker's reason. */
  static async connect(identity: Identity, root: string): Promise<Link> {
    const attempt = (protocolVersion: 4 | 5) =>
      new Promise<MqttClient>((resolve, reject) => {
        const options: IClientOptions = {
          protocolVersion,
          clientId: `sei-console-${Math.random().toString(36).slice(2, 10)}`,
          reconnectPeriod: 0,
          connectTimeout: 8000,
          clean: true,
        };
        if (identity.username) options.username = identity.username;
        if (identity.password) options.password = identity.password;
        const client = mqtt.connect(identity.url, options);
        const failed = (err: Error) => {
          client.end(true);
          reject(err);
        };
        const closed = () =>
          reject(
            new Error(`the broker at ${identity.url} closed the connection (is it an MQTT-over-WebSocket listener?)`),
          );
        client.once('error', failed);
        client.once('close', closed);
        // Once connected, a later error or close is a reconnect's business, not a failed sign-in.
        client.once('connect', () => {
          client.off('error', failed);
          client.off('close', closed);
          resolve(client);
        });
      });
    let client: MqttClient;
    let protocol: 4 | 5 = 5;
    try {
      client = await attempt(5);
    } catch (err) {
      if (!/protocol version/i.test((err as Error).message)) throw err;
      protocol = 4;
      client = await attempt(4);
    }
    // Reconnect from now on: a broker restart must not sign the operator out.
    client.options.reconnectPeriod = 2000;
    const link = new Link(client, identity, protocol, root);
    await client.subscribeAsync(
      ['status', 'metrics', 'ota/status', 'errors', `reply/${link.me}`].map((s) => `${root}/+/+/${s}`),
      { qos: 1 },
    );
    return link;
  }

  private setOnline(online: boolean): void {
    this.online = online;
    this.fleet.changed();
  }

  close(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.client.end(true);
  }

  private onMessage(topic: string, payload: Uint8Array): void {
    const parts = topic.split('/');
    if (parts.length < 4 || parts[0] !== this.root) return;
    const d = this.fleet.device(this.root, parts[1]!, parts[2]!);
    const suffix = parts.slice(3).join('/');
    if (suffix === 'status') {
      const s = parse<StatusMessage>(payload);
      if (!s) return;
      if (d.status && d.status.state !== s.state) d.since = Date.now();
      d.status = s;
    } else if (suffix === 'metrics') {
      const m = parse<MetricsMessage>(payload);
      if (!m) return;
      d.metrics = m;
      d.history.push({
        t: m.ts / 1000,
        fps: m.framesPerSecond,
        p50: m.latencyMs.p50,
        p99: m.latencyMs.p99,
        spike: m.spikeRate,
      });
      trim(d.history, (p) => p.t, m.ts / 1000);
    } else if (suffix === 'predictions') {
      const p = parse<PredictionsMessage>(payload);
      if (!p || p.predictions.length === 0) return;
      for (const x of p.predictions) {
        // One point per second: a device reporting ten messages a second would draw noise, not a trend.
        const t = Math.floor(x.ts / 1000);
        const last = d.confidence.at(-1);
        if (last && last[0] === t) {
          last[1] += (x.confidence - last[1]) / ++last[2];
        } else d.confidence.push([t, x.confidence, 1]);
      }
      trim(d.confidence, (c) => c[0], d.confidence.at(-1)![0]);
    } else if (suffix === 'preview') {
      const f = parse<PreviewMessage>(payload);
      if (!f) return;
      d.frames.unshift(f);
      d.frames.length = Math.min(d.frames.length, FRAMES_KEPT);
    } else if (suffix === 'ota/status') {
      const s = parse<JobStatus>(payload);
      if (!s) return;
      const seen = d.jobs.get(s.jobId) ?? [];
      const last = seen.at(-1);
      // A retained status arrives again on every new subscription: keep each state once.
      if (!last || last.state !== s.state || last.step !== s.step || last.received !== s.received) seen.push(s);
      d.jobs.set(s.jobId, seen);
    } else if (suffix === 'errors') {
      const e = parse<ErrorMessage>(payload);
      if (!e) return;
      d.errors.unshift(e);
      d.errors.length = Math.min(d.errors.length, ERRORS_KEPT);
    } else if (suffix === `reply/${this.me}`) {
      this.onReply(parse<CommandReply>(payload));
      return;
    } else return;
    this.fleet.changed();
  }

  private onReply(reply: CommandReply | null): void {
    if (!reply || typeof reply.correlationId !== 'string') return;
    const p = this.pending.get(reply.correlationId);
    if (!p) return;
    if (reply.ok && 'progress' in reply) {
      // A long command (finetune) is alive while it reports: its time limit starts again.
      clearTimeout(p.timer);
      p.timer = setTimeout(() => this.expire(reply.correlationId as string), p.timeoutMs);
      p.progress?.(reply.progress);
      return;
    }
    this.pending.delete(reply.correlationId);
    clearTimeout(p.timer);
    if (reply.ok) p.resolve(reply.result);
    else p.reject(new CommandError(reply.error.message, 'error', reply.error));
  }

  private expire(id: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const why =
      this.protocol === 5
        ? 'the device is offline or busy'
        : 'the device is offline or busy, or the broker dropped the request (MQTT 3.1.1 does not tell a client that an ACL refused its message)';
    p.reject(new CommandError(`no reply within ${p.timeoutMs / 1000} s: ${why}`, 'timeout'));
  }

  /**
   * Sends `cmd/<name>` to a device and resolves to the reply's result. The reply topic and correlation id ride
   * in the payload, which the agent honours on both MQTT versions.
   */
  command<R>(
    d: Device,
    name: string,
    args: Record<string, unknown> = {},
    opts: { timeoutMs?: number; progress?: (body: unknown) => void } = {},
  ): Promise<R> {
    const id = `${this.me}-${++this.seq}`;
    const timeoutMs = opts.timeoutMs ?? 15_000;
    return new Promise<R>((resolve, reject) => {
      const p: Pending = {
        resolve: resolve as (r: unknown) => void,
        reject,
        timer: setTimeout(() => this.expire(id), timeoutMs),
        timeoutMs,
      };
      if (opts.progress) p.progress = opts.progress;
      this.pending.set(id, p);
      const topic = `${d.prefix}cmd/${name}`;
      this.client.publish(
        topic,
        JSON.stringify({ ...args, replyTo: `${d.prefix}reply/${this.me}`, correlationId: id }),
        { qos: 1 },
        (err) => {
          if (!err) return;
          this.pending.delete(id);
          clearTimeout(p.timer);
          reject(refused(err, topic, this.identity.username));
        },
      );
    });
  }

  /** Live frames and predictions of one device while its view is open; the returned function ends them. */
  watch(d: Device): () => void {
    const topics = [`${d.prefix}predictions`, `${d.prefix}preview`];
    // After a sign-out the client refuses requests: nothing is left to (un)subscribe then.
    this.client.subscribeAsync(topics, { qos: 0 }).catch(() => {});
    const ask = () =>
      this.command<PreviewResult>(d, 'preview', PREVIEW).then(
        (result) => {
          d.preview = result;
          d.previewProblem = null;
          this.fleet.changed();
        },
        (err: CommandError) => {
          d.previewProblem = err.message;
          this.fleet.changed();
        },
      );
    void ask();
    const timer = setInterval(ask, PREVIEW_RENEW_MS);
    return () => {
      clearInterval(timer);
      this.client.unsubscribeAsync(topics).catch(() => {});
    };
  }
}

function trim<T>(points: T[], t: (p: T) => number, now: number): void {
  let drop = 0;
  while (drop < points.length && (t(points[drop]!) < now - HISTORY_S || points.length - drop > MAX_POINTS)) drop++;
  if (drop > 0) points.splice(0, drop);
}

/** A publish the broker refused (MQTT 5 PUBACK reason code 135), said in terms of the account. */
export function refused(err: Error, topic: string, username: string | null): CommandError {
  const code = (err as { code?: unknown }).code;
  const who = username ? `user "${username}"` : 'this anonymous client';
  if (code === 135)
    return new CommandError(
      `refused by the broker: ${who} may not publish ${topic} (Not authorized); this account can only watch: sign in with an operator account to act`,
      'refused',
    );
  return new CommandError(`${topic}: ${err.message}`, 'refused');
}
