/**
 * The device agent, as a composition root: it builds the parts and wires them together — the store and the model
 * registry (registry.ts), the frame path (pipeline.ts: source → bounded queue → loop), metrics and the reports on
 * a clock (reporting.ts), the MQTT link (mqtt/link.ts) and the commands it carries (commands/), remote updates
 * (ota/) and fine-tuning (finetuner.ts). What stays here: the step each frame goes through, the switch to another
 * model or config, and the status. One Agent per device process.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { ConfigError, modelFit } from '../runtime/index.js';
import { EnginePool, WorkerError } from '../runtime/index.js';
import type { Engine, InferResult } from '../runtime/index.js';
import { Capturer } from './capture/index.js';
import { runCommand } from './commands/index.js';
import type { CommandContext, FrameResult } from './commands/index.js';
import { parseConfig, sourceSpecString } from './config.js';
import type { AgentConfig } from './config.js';
import { retentionLimits } from './config-schema.js';
import { FineTuner } from './finetuner.js';
import { MetricsCollector } from './metrics/collector.js';
import type { DeviceStatus, ErrorMessage, MetricsSnapshot } from './messages.js';
import { PrometheusExporter } from './metrics/prometheus.js';
import { errorBody, MqttLink } from './mqtt/link.js';
import type { Json } from './mqtt/link.js';
import { OtaManager } from './ota/manager.js';
import { Pipeline, RecentFrames } from './pipeline.js';
import { ModelRegistry } from './registry.js';
import { Reporter } from './reporting.js';
import { createSource } from './sources/index.js';
import type { FrameSource, SourceFrame } from './sources/index.js';
import { MemoryStore } from './store/memory.js';
import { SqliteStore } from './store/sqlite.js';
import type { ModelRecord, StateStore } from './store/types.js';

export interface AgentFrame extends SourceFrame {
  /** Monotonic frame id of this run (what `label` commands refer to). */
  readonly id: number;
}

/** One inferred frame: the `result` event, which commands (`preview`) take through their context too. */
export type AgentResult = FrameResult;

export interface AgentEvents {
  frame: [frame: AgentFrame];
  result: [result: AgentResult];
  metrics: [snapshot: MetricsSnapshot];
  error: [error: Error];
  /** Connected to the broker (protocol 4 = MQTT 3.1.1, 5 = MQTT 5). */
  online: [protocol: 4 | 5];
  offline: [];
}

export interface AgentOptions {
  /** The config as given (file contents plus flags, the config-file shape); validated here. */
  readonly config: Json;
  /** Default: SQLite at config.store.path (":memory:" gives the in-memory store). */
  readonly store?: StateStore;
  /** Stream for `stdin:` sources. */
  readonly stdin?: Readable;
  /** The engine workers' entry module when engine.threads > 1 (default the runtime's: runtime/pool/worker). */
  readonly workerEntry?: URL;
}

export class Agent extends EventEmitter<AgentEvents> {
  config: AgentConfig;
  private raw: Json;
  readonly store: StateStore;
  private readonly ownsStore: boolean;
  private readonly registry: ModelRegistry;
  readonly metrics: MetricsCollector;
  /** Remote model updates (device-agent/ota). */
  readonly ota: OtaManager;
  private readonly finetuner: FineTuner;
  /** Frames kept to train on (device-agent/capture). */
  readonly capture: Capturer;
  private readonly reporter: Reporter;
  private readonly pipeline: Pipeline;
  private readonly recent: RecentFrames;
  private readonly commands: CommandContext;
  private engine: Engine | null = null;
  /** Throughput mode (engine.threads > 1): the running model on worker threads; the frames go there. */
  private pool: EnginePool | null = null;
  /** The last frame handed to the pool, settled: each result is handled after the one before it. */
  private settled: Promise<void> = Promise.resolve();
  private activeVersion: string | null = null;
  private link: MqttLink | null = null;
  private exporter: PrometheusExporter | null = null;
  private running = false;
  private frameSeq = 0;
  private startedAt = 0;
  private readonly stdin: Readable | undefined;
  private readonly workerEntry: URL | undefined;
  /** Port of the Prometheus endpoint once listening. */
  metricsPort: number | null = null;

  constructor(opts: AgentOptions) {
    super();
    this.config = parseConfig(opts.config);
    this.raw = opts.config;
    const c = this.config.store;
    const limits = retentionLimits(c);
    this.ownsStore = opts.store === undefined;
    this.store = opts.store ?? (c.path === ':memory:' ? new MemoryStore(limits) : new SqliteStore(c.path, limits));
    this.registry = new ModelRegistry(this.store);
    this.metrics = new MetricsCollector(this.config.metrics.latencyWindow);
    this.pipeline = new Pipeline(
      this.config.source.queueSize,
      (frame) => this.onFrame(frame),
      (err) => this.report(err),
      // Throughput mode: every worker has a frame in hand and the next one waiting (EnginePool's depth).
      2 * this.config.engine.threads,
    );
    this.recent = new RecentFrames(c.recentFrames);
    this.stdin = opts.stdin;
    this.workerEntry = opts.workerEntry;
    const report = (err: Error) => this.report(err);
    const active = () => ({ version: this.activeVersion, engine: this.engine });
    this.ota = new OtaManager({
      config: () => this.config,
      dbPath: this.ownsStore ? c.path : ':memory:',
      registry: this.registry,
      publish: (suffix, body, o) => this.link?.publish(suffix, body, o) ?? Promise.resolve(false),
      enqueue: (suffix, body, retain) =>
        this.link
          ? this.link.enqueue(suffix, body, retain)
          : this.store.outboxAdd({
              topic: this.config.topicPrefix + suffix,
              payload: JSON.stringify(body),
              qos: 1,
              retain,
            }),
      active,
      swap: (rec) => this.swap(rec),
      report,
    });
    this.capture = new Capturer(this.ownsStore ? c.path : ':memory:', this.captureDir(), {
      config: () => this.config,
      report,
    });
    this.finetuner = new FineTuner({
      config: () => this.config,
      store: this.store,
      registry: this.registry,
      ota: this.ota,
      active,
      running: () => this.running,
      report,
      publish: (suffix, body, o) => void this.link?.publish(suffix, body, o),
    });
    this.reporter = new Reporter({
      config: () => this.config,
      store: this.store,
      link: () => this.link,
      snapshot: () => this.snapshot(),
      report,
      model: () => ({ version: this.activeVersion, labels: this.engine?.model.labels ?? [] }),
      metrics: (snap) => this.emit('metrics', snap),
    });
    this.commands = {
      config: () => ({ parsed: this.config, raw: this.raw }),
      store: this.store,
      registry: this.registry,
      ota: this.ota,
      finetuner: this.finetuner,
      capture: this.capture,
      active: () => ({ version: this.activeVersion!, engine: this.engine! }),
      status: () => this.statusBody(),
      snapshot: () => this.snapshot(),
      activate: async (version) => {
        const rec = await this.swap(this.registry.get(version)!);
        this.pipeline.clear();
        return rec;
      },
      reconfigure: (raw) => this.reconfigure(raw),
      held: (frame) => this.recent.get(frame),
      results: (listener) => {
        this.on('result', listener);
        return () => this.off('result', listener);
      },
      publish: (suffix, body) => void this.link?.publish(suffix, body, { qos: 0 }),
    };
  }

  /** Folder of the captured frames: capture.dir, else beside the store, per device. */
  private captureDir(): string {
    const cfg = this.config;
    if (cfg.capture.dir) return resolve(cfg.capture.dir);
    // State in memory: a folder of this agent's own, removed when it stops.
    return cfg.store.path === ':memory:'
      ? join(tmpdir(), `sei-captures-${cfg.device}-${randomUUID().slice(0, 8)}`)
      : join(dirname(resolve(cfg.store.path)), 'sei-captures', cfg.device);
  }

  /** The active model's registry key, or null before start. */
  get modelVersion(): string | null {
    return this.activeVersion;
  }

  get activeEngine(): Engine | null {
    return this.engine;
  }

  get connected(): boolean {
    return this.link?.isConnected ?? false;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.startedAt = Date.now();
    await this.activate(this.ota.bootModel(this.registry.boot(this.config.model, (err) => this.report(err))));
    this.running = true;
    try {
      if (this.config.mqtt.url !== null) this.connect();
      if (this.config.metrics.httpPort !== null) {
        this.exporter = new PrometheusExporter(() => this.snapshot(), {
          device: this.config.device,
          fleet: this.config.fleet,
        });
        try {
          this.metricsPort = await this.exporter.listen(this.config.metrics.httpPort, this.config.metrics.httpHost);
        } catch (err) {
          this.report(
            new ConfigError(
              `metrics.httpPort: expected a free port on ${this.config.metrics.httpHost}, got ${this.config.metrics.httpPort} (${(err as Error).message})`,
              'metrics.httpPort',
            ),
          );
          this.exporter = null;
        }
      }
      this.reporter.start();
      this.pipeline.start(this.openSource());
    } catch (err) {
      // A source that cannot open (a missing file or folder) is a start-up error: start rejects and nothing of
      // the agent stays running (device-agent/README.md, Sources).
      await this.stop();
      throw err;
    }
  }

  /** Stops the source, finishes the frame in hand, flushes logs, says goodbye to the broker. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.reporter.stop();
    await this.pipeline.stop();
    await this.pool?.close();
    this.pool = null;
    // A fine-tuning run sees `running` false at its next step and ends; it must not outlive the store.
    await this.finetuner.settled();
    this.reporter.flush();
    this.ota.stop();
    this.capture.close(this.config.store.path === ':memory:' && !this.config.capture.dir);
    await this.link?.stop();
    await this.exporter?.close();
    if (this.ownsStore) this.store.close();
  }

  snapshot(): MetricsSnapshot {
    return this.metrics.snapshot({
      model: this.activeVersion,
      queueDepth: this.pipeline.depth,
      dropped: this.pipeline.dropped,
      outbox: this.store.outboxCount(),
    });
  }

  /** `cmd/finetune` from code (finetuner.ts); resolves to the command's result. */
  finetune(args: Json, progress?: (body: Json) => void): Promise<Json> {
    return this.finetuner.run(args, progress);
  }

  /**
   * A non-fatal error (bad frame, refused command, broker trouble, a failed update step): an `error` event for
   * whoever listens. Without a listener an EventEmitter would throw, and a daemon must not die of a malformed
   * message.
   */
  private report(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private connect(): void {
    const link = new MqttLink({
      mqtt: this.config.mqtt,
      prefix: this.config.topicPrefix,
      store: this.store,
      birth: () => this.statusBody(),
      subscribe: this.ota.topics,
    });
    link.on('online', (protocol) => {
      this.ota.online();
      this.emit('online', protocol);
    });
    link.on('offline', () => this.emit('offline'));
    link.on('error', (err) => this.report(err));
    link.on('command', (cmd, reply, progress) => {
      runCommand(cmd, this.commands, progress).then(
        (result) => reply({ ok: true, result }),
        (error: Error) => {
          reply({ ok: false, error });
          this.report(error);
        },
      );
    });
    link.on('message', (suffix, payload) => this.ota.onMessage(suffix, payload));
    this.link = link;
    link.start();
    this.ota.start();
  }

  /** The configured source for the running model; `frames/in` feeds the `mqtt` source only. */
  private openSource(): FrameSource {
    const s = this.config.source;
    const link = this.link;
    return createSource(s.spec, {
      target: this.engine!.model.input,
      frameRate: s.frameRate,
      loop: s.loop,
      crop: s.crop,
      invert: s.invert,
      fit: modelFit(this.engine!.model),
      ...(this.stdin ? { stdin: this.stdin } : {}),
      ...(link ? { mqtt: { feed: link, badFrame: (err: Error) => this.frameError(err, 'frames/in') } } : {}),
    });
  }

  /**
   * One frame: inferred here, or handed to the pool (throughput mode), whose results are handled in frame order;
   * the promise (pool only) settles once this frame's result is handled, which bounds the frames in flight.
   */
  private onFrame(frame: SourceFrame): Promise<void> | undefined {
    const engine = this.engine!;
    const pool = this.pool;
    const id = ++this.frameSeq;
    this.ota.frame();
    // Event objects are built only for listeners: at a thousand frames/s the garbage shows in RSS.
    if (this.listenerCount('frame') > 0) this.emit('frame', { ...frame, id });
    const model = this.activeVersion!;
    if (pool) {
      const inferred = pool.infer(frame.data);
      this.settled = this.settled
        .then(() =>
          inferred.then(
            (result) => this.inferred(frame, id, model, engine, result),
            (err: Error) => this.poolError(pool, err),
          ),
        )
        // A throw while handling one result must not hold back every later one.
        .catch((err: Error) => this.report(err));
      return this.settled;
    }
    let result: InferResult;
    try {
      result = engine.infer(frame.data);
    } catch (err) {
      this.frameError(err as Error, 'source');
      return;
    }
    this.inferred(frame, id, model, engine, result);
    return undefined;
  }

  /**
   * A frame the pool could not infer. A worker that died took the frame with it: counted and published like a bad
   * frame, with origin `engine`, while the pool starts the worker again. A pool that cannot (a worker that no
   * longer starts) is dropped, and the frames run on the engine in this thread from then on.
   */
  private poolError(pool: EnginePool, err: Error): void {
    this.frameError(err, err instanceof WorkerError ? 'engine' : 'source');
    if (pool.failure && this.pool === pool) {
      this.pool = null;
      void pool.close();
    }
  }

  /** A frame's result: record, report, and tell OTA (its probation watches the running model). */
  private inferred(frame: SourceFrame, id: number, model: string, engine: Engine, result: InferResult): void {
    this.metrics.record(result, frame.label);
    this.recent.hold(id, frame.data);
    this.capture.frame(frame.data, engine.model.input, result, model);
    this.reporter.record({
      frame: id,
      ts: Date.now(),
      model,
      prediction: result.prediction,
      confidence: result.confidence,
      label: frame.label,
      latencyMs: result.latencyMs,
    });
    this.ota.result(model, result);
    if (this.listenerCount('result') > 0) this.emit('result', { frame: id, label: frame.label, model, result });
  }

  private frameError(err: Error, origin: string): void {
    this.metrics.frameErrors++;
    void this.link?.publish('errors', { origin, error: errorBody(err), ts: Date.now() } satisfies ErrorMessage, {
      qos: 0,
    });
    this.report(err);
  }

  /** Loads a registered version (its file checked against the registry) and makes it the running model. */
  private async activate(rec: ModelRecord): Promise<ModelRecord> {
    const e = this.config.engine;
    const engine = await this.registry.load(rec, {
      kernel: this.config.model.kernel,
      ...(e.steps !== null ? { steps: e.steps } : {}),
    });
    const pool =
      e.threads > 1
        ? await EnginePool.start(engine, {
            threads: e.threads,
            ...(this.workerEntry ? { entry: this.workerEntry } : {}),
            // A restart that cost frames is reported through them (poolError); an idle worker's, here.
            onRestart: (err, lost) => lost === 0 && this.report(err),
          })
        : null;
    // The previous model's pool finishes the frames it holds (their results keep their order), then ends.
    void this.pool?.close();
    this.pool = pool;
    this.engine = engine;
    this.activeVersion = rec.version;
    this.metrics.resetModel([engine.model.first.name, ...engine.model.hidden.map((l) => l.name)]);
    return this.registry.activate(rec.version);
  }

  /** activate, between two frames, and say so on `status`. */
  private async swap(rec: ModelRecord): Promise<ModelRecord> {
    const active = await this.activate(rec);
    this.publishStatus();
    return active;
  }

  /** Hot reconfiguration (`config`): new report clocks and a new source at once, without a restart. */
  private async reconfigure(raw: Json): Promise<AgentConfig> {
    const next = parseConfig(raw);
    const before = this.config;
    const previous = this.raw;
    this.raw = raw;
    this.config = next;
    if (JSON.stringify(next.reporting) !== JSON.stringify(before.reporting)) this.reporter.start();
    if (JSON.stringify(next.source) !== JSON.stringify(before.source)) {
      try {
        // The reply waits for an `mqtt` source's subscription: a frame sent after it must not be lost.
        await this.pipeline.replace(() => this.openSource(), next.source.queueSize).ready;
      } catch (err) {
        // A source that cannot open refuses the command; the previous source runs again.
        this.raw = previous;
        this.config = before;
        if (JSON.stringify(next.reporting) !== JSON.stringify(before.reporting)) this.reporter.start();
        this.pipeline.replace(() => this.openSource(), before.source.queueSize);
        throw err;
      }
    }
    this.publishStatus();
    return next;
  }

  private statusBody(): DeviceStatus {
    return {
      state: 'online',
      fleet: this.config.fleet,
      device: this.config.device,
      model: this.activeVersion,
      kernel: this.engine?.kernel ?? null,
      source: sourceSpecString(this.config.source.spec),
      frameRate: this.config.source.frameRate,
      startedAt: this.startedAt,
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      frames: this.metrics.frames,
    };
  }

  private publishStatus(): void {
    void this.link?.publish('status', this.statusBody(), { qos: 1, retain: true });
  }
}
