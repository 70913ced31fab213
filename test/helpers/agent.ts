/**
 * What the agent tests share: seeded model files, an agent config for a test broker, an operator client that
 * sends commands the way a fleet backend does (MQTT 5 response topic + correlation data, or on 3.1.1 the reply
 * topic and correlation id in the payload), and waiting for messages.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { writeBwsnn } from '../../runtime/index.js';
import { FMNIST_BLOCKS, randomModel } from '../../runtime/format/random-model.js';

/** Writes random model `seed` as version `version` to dir; returns its path. */
export function modelFile(dir: string, seed = 1, version = 0): string {
  const model = { ...randomModel({ seed, blocks: FMNIST_BLOCKS, firstChannels: 32 }), version };
  const path = join(dir, `random-${seed}-v${version}.bwsnn`);
  writeFileSync(path, writeBwsnn(model));
  return path;
}

/** A config for a test agent: small intervals, fast reconnects, no Prometheus port unless asked. */
export function agentConfig(o: {
  dir: string;
  model: string;
  url: string | null;
  device?: string;
  protocol?: 'auto' | 4 | 5;
  extra?: Record<string, unknown>;
}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    fleet: 'test',
    device: o.device ?? 'dev1',
    model: { path: o.model },
    source: { spec: 'samples', frameRate: 100, queueSize: 4 },
    mqtt: {
      url: o.url,
      protocol: o.protocol ?? 'auto',
      reconnectMinMs: 100,
      reconnectMaxMs: 400,
      clientId: `sei-test-${randomUUID().slice(0, 8)}`,
    },
    reporting: { metricsInterval: 0.2, predictionMaxRate: 20 },
    metrics: { httpPort: null },
    store: { path: join(o.dir, `${randomUUID()}.db`) },
  };
  for (const [k, v] of Object.entries(o.extra ?? {}))
    base[k] = typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...(base[k] as object), ...v } : v;
  return base;
}

export interface Received {
  readonly topic: string;
  readonly payload: Buffer;
  readonly json: any;
  readonly retain: boolean;
  readonly properties: Record<string, unknown> | undefined;
}

/** A watching/operating client: records every message on its subscriptions. */
export class Operator {
  readonly messages: Received[] = [];
  private waiters: Array<() => void> = [];
  private constructor(
    readonly client: MqttClient,
    readonly protocol: 4 | 5,
  ) {
    client.on('message', (topic, payload, packet) => {
      let json: unknown = null;
      try {
        json = JSON.parse(payload.toString('utf8'));
      } catch {
        // binary payloads stay in .payload
      }
      this.messages.push({
        topic,
        payload,
        json,
        retain: packet.retain,
        properties: packet.properties as Record<string, unknown> | undefined,
      });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async connect(url: string, protocol: 4 | 5, opts: IClientOptions = {}): Promise<Operator> {
    const client = await mqtt.connectAsync(url, {
      protocolVersion: protocol,
      reconnectPeriod: 100,
      clientId: `op-${randomUUID().slice(0, 8)}`,
      ...opts,
    });
    return new Operator(client, protocol);
  }

  async subscribe(topic: string): Promise<void> {
    await this.client.subscribeAsync(topic, { qos: 1 });
  }

  /** Waits for the first recorded message (from `from` on) that matches. */
  async waitFor(match: (m: Received) => boolean, what: string, timeoutMs = 10_000, from = 0): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `timed out waiting for ${what}; got ${this.messages.length} messages: ${this.messages
            .slice(-5)
            .map((m) => m.topic)
            .join(', ')}`,
        );
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /**
   * Sends `cmd/<name>` and waits for the reply: MQTT 5 with response topic + correlation data; 3.1.1 with
   * replyTo + correlationId in the payload. `payload` replaces the JSON body when given (for malformed input).
   */
  async command(prefix: string, name: string, args: Record<string, unknown> = {}, payload?: string): Promise<any> {
    const id = randomUUID();
    const replyTopic = `${prefix}reply/${id.slice(0, 8)}`;
    await this.subscribe(replyTopic);
    const from = this.messages.length;
    if (this.protocol === 5) {
      await this.client.publishAsync(`${prefix}cmd/${name}`, payload ?? JSON.stringify(args), {
        qos: 1,
        properties: { responseTopic: replyTopic, correlationData: Buffer.from(id) },
      });
    } else {
      await this.client.publishAsync(
        `${prefix}cmd/${name}`,
        payload ?? JSON.stringify({ ...args, replyTo: replyTopic, correlationId: id }),
        { qos: 1 },
      );
    }
    const reply = await this.waitFor((m) => m.topic === replyTopic, `reply to cmd/${name}`, 10_000, from);
    const correlation =
      this.protocol === 5
        ? (reply.properties?.correlationData as Buffer | undefined)?.toString()
        : reply.json.correlationId;
    if (payload === undefined && correlation !== id)
      throw new Error(`reply to cmd/${name} carries correlation ${correlation}, expected ${id}`);
    return reply.json;
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
