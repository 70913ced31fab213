/**
 * The agent's MQTT connection: MQTT 5 where the broker speaks it, 3.1.1 otherwise; reconnect with exponential
 * backoff; a retained `status` (birth on connect, Last Will `offline`); the outbox drained in order; commands on
 * `cmd/<name>` with replies (MQTT 5 response topic + correlation data, or on 3.1.1 `replyTo` + `correlationId`
 * in the JSON payload); `frames/in` for the `mqtt` source (FrameFeed), subscribed only while that source is open.
 *
 * Each connection attempt uses a fresh mqtt.js client with its automatic reconnect off: the outbox in the store
 * is the one source of truth for unacknowledged messages, so nothing is resent twice by two queues and the
 * drain order is the outbox order.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { ConfigError } from '../../runtime/errors.js';
import type { IClientOptions, IClientPublishOptions, IPublishPacket, MqttClient } from 'mqtt';
import type { AgentConfig } from '../config.js';
import type { CommandReply, DeviceStatus, ErrorBody, ReplyOutcome, StatusMessage } from '../messages.js';
import { fromFile, refuseReservedKeys } from '../schema.js';
import type { FrameFeed, FrameProperties } from '../sources/types.js';
import type { StateStore } from '../store/types.js';
import { limitPacketSize } from './packet-size.js';

// mqtt.js is loaded when the first connection is made: an agent without a broker does not pay for it.
const require = createRequire(import.meta.url);

/** Outbox messages handed to the client at once (QoS 1 in flight). */
const OUTBOX_WINDOW = 64;

export type Json = Record<string, unknown>;

/** An error as MQTT payloads carry it (command replies, `errors`, fine-tuning reports). */
export function errorBody(err: Error): ErrorBody {
  return { name: err.name, message: err.message, field: (err as { field?: string }).field ?? null };
}

export interface Command {
  readonly name: string;
  /** The JSON payload without the 3.1.1 reply fields; {} for an empty payload. */
  readonly args: Json;
  /** Set when the payload was not a JSON object: the command must be answered with this error. */
  readonly parseError: Error | null;
}

/**
 * A `cmd/<name>` payload: empty or a JSON object, whose 3.1.1 reply fields (`replyTo`, `correlationId`) are taken
 * out of the command's arguments. Anything else becomes the command's `parseError` (never a throw): a SyntaxError,
 * or the ConfigError of a reserved key (`__proto__`, `constructor`, `prototype`) at any depth, naming it.
 */
export function parseCommand(
  name: string,
  payload: Uint8Array,
): { readonly command: Command; readonly replyTo: unknown; readonly correlationId: unknown } {
  let args: Json = {};
  let parseError: Error | null = null;
  if (payload.length > 0) {
    try {
      const parsed: unknown = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString());
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error(`expected a JSON object, got ${Array.isArray(parsed) ? 'an array' : typeof parsed}`);
      refuseReservedKeys(parsed);
      args = parsed as Json;
    } catch (err) {
      parseError =
        err instanceof ConfigError ? err : new SyntaxError(`cmd/${name}: payload: ${(err as Error).message}`);
    }
  }
  const { replyTo, correlationId, ...rest } = args;
  return { command: { name, args: rest, parseError }, replyTo, correlationId };
}

export interface LinkEvents {
  online: [protocol: 4 | 5];
  offline: [];
  /** `progress` sends an interim `{ok: true, command, correlationId, progress}` to the reply topic (QoS 0) before the one reply. */
  command: [
    command: Command,
    reply: (outcome: { ok: true; result: unknown } | { ok: false; error: Error }) => void,
    progress: (body: unknown) => void,
  ];
  /** A message on one of `subscribe` (topic relative to the prefix). */
  message: [suffix: string, payload: Buffer];
  error: [error: Error];
}

export interface LinkOptions {
  readonly mqtt: AgentConfig['mqtt'];
  /** Topic prefix ending in "/". */
  readonly prefix: string;
  readonly store: StateStore;
  /** Birth message contents (the link adds the protocol version). */
  readonly birth: () => DeviceStatus;
  /** More topic suffixes to subscribe to (e.g. `ota/job`, `ota/block/#`); they arrive as `message` events. */
  readonly subscribe?: readonly string[];
}

export class MqttLink extends EventEmitter<LinkEvents> implements FrameFeed {
  private client: MqttClient | null = null;
  private connected = false;
  private stopping = false;
  private attempts = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Resolved protocol: "auto" starts at 5 and falls to 4 once a broker refuses 5. */
  private protocol: 4 | 5;
  private lastHanded = 0;
  private inflight = 0;
  /** Messages published while offline and not worth keeping (predictions). */
  droppedOffline = 0;
  /** Who takes `frames/in` (the open `mqtt` source), or null: then the topic is not subscribed. */
  private onFrame: ((payload: Buffer, properties: FrameProperties) => void) | null = null;

  constructor(private readonly opts: LinkOptions) {
    super();
    this.protocol = opts.mqtt.protocol === 4 ? 4 : 5;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  get protocolVersion(): 4 | 5 {
    return this.protocol;
  }

  topic(suffix: string): string {
    return this.opts.prefix + suffix;
  }

  start(): void {
    this.stopping = false;
    this.connect();
  }

  private connect(): void {
    const m = this.opts.mqtt;
    const options: IClientOptions = {
      protocolVersion: this.protocol,
      clientId: m.clientId,
      keepalive: m.keepalive,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      // Without this mqtt-packet keeps a 2-byte Buffer for every packet id (65,536 of them, ~6 MB of live heap,
      // which V8 then grows its heap limit from); a packet id is written as two bytes instead.
      writeCache: false,
      will: {
        topic: this.topic('status'),
        payload: Buffer.from(JSON.stringify({ state: 'offline', reason: 'connection lost' } satisfies StatusMessage)),
        qos: 1,
        retain: true,
      },
    };
    if (m.username !== null) options.username = m.username;
    if (m.password !== null) options.password = m.password;
    const pem = (key: 'ca' | 'cert' | 'key', path: string) =>
      fromFile(`mqtt.tls.${key}`, 'a readable PEM file', path, () => readFileSync(path));
    if (m.tls.ca) options.ca = pem('ca', m.tls.ca);
    if (m.tls.cert) options.cert = pem('cert', m.tls.cert);
    if (m.tls.key) options.key = pem('key', m.tls.key);
    options.rejectUnauthorized = m.tls.rejectUnauthorized;
    // MQTT 5 brokers drop a larger message for this client; on any protocol the socket's packet headers are
    // watched, and a larger packet closes the connection before its body is buffered (./packet-size.ts).
    if (this.protocol === 5) options.properties = { maximumPacketSize: m.maxMessageBytes };
    options.manualConnect = true;
    const client = (require('mqtt') as typeof import('mqtt')).connect(m.url!, options);
    // The client builds its socket with the stream builder its constructor took (typed private); with
    // manualConnect it has built none yet, so each socket it builds is watched from its first byte.
    const builder = client as unknown as { streamBuilder: (c: MqttClient) => Duplex };
    const build = builder.streamBuilder;
    builder.streamBuilder = (c) =>
      limitPacketSize(build(c), m.maxMessageBytes, 'mqtt.maxMessageBytes', (err) => {
        if (this.client === client) this.emit('error', err);
      });
    client.connect();
    this.client = client;
    let refusedVersion = false;
    client.on('connect', () => {
      if (this.client !== client) return;
      this.connected = true;
      this.attempts = 0;
      this.lastHanded = 0;
      this.inflight = 0;
      const subs = [
        this.topic('cmd/+'),
        ...(this.onFrame ? [this.topic('frames/in')] : []),
        ...(this.opts.subscribe ?? []).map((s) => this.topic(s)),
      ];
      client.subscribe(subs, { qos: 1 }, (err) => {
        if (err && this.client === client) this.emit('error', err);
      });
      const birth: StatusMessage = Object.assign(
        { state: 'online' as const, protocol: this.protocol },
        this.opts.birth(),
      );
      void this.publish('status', birth, { qos: 1, retain: true });
      this.emit('online', this.protocol);
      this.pump();
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('error', (err) => {
      if (this.client !== client) return;
      // Aedes and other 3.1.1-only brokers answer an MQTT 5 CONNECT with "unacceptable protocol version".
      if (
        this.opts.mqtt.protocol === 'auto' &&
        this.protocol === 5 &&
        /unacceptable protocol version|unsupported protocol version/i.test(err.message)
      ) {
        refusedVersion = true;
        this.protocol = 4;
        return;
      }
      this.emit('error', err);
    });
    client.on('close', () => {
      if (this.client !== client) return;
      this.client = null;
      const was = this.connected;
      this.connected = false;
      client.end(true);
      if (was) this.emit('offline');
      if (!this.stopping) this.schedule(refusedVersion ? 0 : this.backoff());
    });
  }

  /** min * 2^attempts, capped, with ±20% jitter so that a fleet does not reconnect in lockstep. */
  private backoff(): number {
    const { reconnectMinMs: min, reconnectMaxMs: max } = this.opts.mqtt;
    const base = Math.min(max, min * 2 ** Math.min(this.attempts++, 30));
    return Math.round(base * (0.8 + 0.4 * Math.random()));
  }

  private schedule(delay: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopping) this.connect();
    }, delay);
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (topic === this.topic('frames/in')) {
      // One still in flight after the source closed finds no taker and is dropped.
      this.onFrame?.(payload, packet.properties);
      return;
    }
    const cmdPrefix = this.topic('cmd/');
    if (!topic.startsWith(cmdPrefix)) {
      if (topic.startsWith(this.opts.prefix)) this.emit('message', topic.slice(this.opts.prefix.length), payload);
      return;
    }
    const name = topic.slice(cmdPrefix.length);
    const { command, replyTo, correlationId } = parseCommand(name, payload);
    const props = packet.properties;
    const replyTopic =
      props?.responseTopic ??
      (typeof replyTo === 'string' && replyTo.length > 0 ? replyTo : this.topic(`reply/${name}`));
    const correlation = props?.correlationData;
    const echoed = correlationId !== undefined ? correlationId : correlation?.toString('utf8');
    const send = (fields: ReplyOutcome, qos: 0 | 1) => {
      // `ok` first, then `command` and `correlationId`: the order the README's examples show.
      const body: CommandReply = Object.assign(
        { ok: fields.ok, command: name },
        echoed !== undefined ? { correlationId: echoed } : {},
        fields,
      );
      const opts: IClientPublishOptions = { qos };
      if (correlation && this.protocol === 5) opts.properties = { correlationData: correlation };
      void this.publishTopic(replyTopic, body, opts);
    };
    const reply = (outcome: { ok: true; result: unknown } | { ok: false; error: Error }) => {
      if (outcome.ok) send({ ok: true, result: outcome.result }, 1);
      else send({ ok: false, error: errorBody(outcome.error) }, 1);
    };
    this.emit('command', command, reply, (progress) => send({ ok: true, progress }, 0));
  }

  /** FrameFeed: `frames/in` for the `mqtt` source, subscribed from now until `close` (and on every reconnect). */
  frames(on: (payload: Buffer, properties: FrameProperties) => void): { readonly ready: Promise<void>; close(): void } {
    this.onFrame = on;
    const topic = this.topic('frames/in');
    const ready = this.whileConnected((client, done) => client.subscribe(topic, { qos: 1 }, done));
    return {
      ready,
      close: () => {
        if (this.onFrame !== on) return;
        this.onFrame = null;
        void this.whileConnected((client, done) => client.unsubscribe(topic, done));
      },
    };
  }

  /**
   * Runs a request on the current connection; resolves when it is answered (an error is reported), when the
   * connection drops first, or at once when offline (the next connection subscribes from scratch anyway).
   */
  private whileConnected(request: (client: MqttClient, done: (err?: Error | null) => void) => void): Promise<void> {
    const client = this.client;
    if (!client || !this.connected) return Promise.resolve();
    return new Promise((resolve) => {
      const end = () => {
        this.off('offline', end);
        resolve();
      };
      this.once('offline', end);
      request(client, (err) => {
        if (err && this.client === client) this.emit('error', err);
        end();
      });
    });
  }

  /** Publishes now if connected: true once sent (QoS 0) or acknowledged (QoS 1); false if offline or refused. */
  publish(suffix: string, body: unknown, opts: IClientPublishOptions = { qos: 0 }): Promise<boolean> {
    return this.publishTopic(this.topic(suffix), body, opts);
  }

  private publishTopic(topic: string, body: unknown, opts: IClientPublishOptions): Promise<boolean> {
    const client = this.client;
    if (!client || !this.connected) {
      this.droppedOffline++;
      return Promise.resolve(false);
    }
    const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    return new Promise((resolve) => {
      client.publish(topic, payload, opts, (err) => {
        // A refusal (e.g. an ACL's "not authorised" on MQTT 5) is reported, never thrown at the publisher.
        if (err && this.client === client) this.emit('error', new Error(`publish to ${topic} failed: ${err.message}`));
        resolve(!err);
      });
    });
  }

  /** Writes a message that must not be lost to the outbox, then sends it when the broker is reachable. */
  enqueue(suffix: string, body: unknown, retain = false): number {
    const id = this.opts.store.outboxAdd({ topic: this.topic(suffix), payload: JSON.stringify(body), qos: 1, retain });
    this.pump();
    return id;
  }

  /** Hands outbox messages to the client in id order, at most OUTBOX_WINDOW unacknowledged at once. */
  private pump(): void {
    const client = this.client;
    if (!client || !this.connected) return;
    while (this.inflight < OUTBOX_WINDOW) {
      const rows = this.opts.store.outboxPeek(this.lastHanded, OUTBOX_WINDOW - this.inflight);
      if (rows.length === 0) return;
      for (const row of rows) {
        this.lastHanded = row.id;
        this.inflight++;
        client.publish(row.topic, row.payload, { qos: 1, retain: row.retain }, (err) => {
          if (this.client !== client) return;
          this.inflight--;
          const refused = err !== undefined && err !== null && typeof (err as { code?: unknown }).code === 'number';
          if (refused) {
            // The broker answered with an error reason (e.g. not authorised): retrying would block the outbox forever.
            this.emit('error', new Error(`outbox: broker refused ${row.topic}: ${err.message}`));
          }
          // Any other error is a lost connection: the message stays and goes out again on the next one.
          if (!err || refused) this.opts.store.outboxRemove(row.id);
          this.pump();
        });
      }
    }
  }

  /** Publishes the retained offline status and disconnects; stops reconnecting. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const client = this.client;
    if (!client) return;
    if (this.connected) {
      await Promise.race([
        this.publish('status', { state: 'offline', reason: 'stopped' } satisfies StatusMessage, {
          qos: 1,
          retain: true,
        }),
        new Promise((r) => setTimeout(r, 2000)),
      ]);
    }
    this.client = null;
    this.connected = false;
    await new Promise<void>((r) => client.end(false, {}, () => r()));
  }
}
