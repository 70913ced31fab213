/**
 * The device agent: source → bounded queue → engine → results (events, prediction log, MQTT), with metrics,
 * state in a StateStore and remote commands. One Agent per device process.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { ConfigError, FrameError, loadModel, OtaError, sampleFrames, show, writeBwsnn } from '../runtime/index.js';
import type { BwsnnModel, Engine, InferResult } from '../runtime/index.js';
import type { AgentConfig } from './config.js';
import { configToJson, mergeDeep, parseConfig, sourceSpecString } from './config.js';
import { fineTuneAsync, GATE_DEFAULTS } from './finetune/index.js';
import type { FineTuneProgress, GateOptions, TrainingFrame } from './finetune/index.js';
import { MetricsCollector } from './metrics/collector.js';
import type { MetricsSnapshot } from './metrics/collector.js';
import { PrometheusExporter } from './metrics/prometheus.js';
import { bundledModel, modelFilesIn, readModelFile, sha256 } from './models.js';
import { MqttLink } from './mqtt/link.js';
import type { Command, Json } from './mqtt/link.js';
import { decodePicture, isPicture, toModelFrame } from './sources/image.js';
import { createSource, PushSource } from './sources/index.js';
import type { FrameSource, SourceFrame } from './sources/index.js';
import { DropOldestQueue } from './sources/queue.js';
import { OtaManager } from './ota/manager.js';
import { MemoryStore } from './store/memory.js';
import { SqliteStore } from './store/sqlite.js';
import type { ModelRecord, PredictionRecord, StateStore } from './store/types.js';

export interface AgentFrame extends SourceFrame {
  /** Monotonic frame id of this run (what `label` commands refer to). */
  readonly id: number;
}

export interface AgentResult {
  readonly frame: number;
  readonly label: number | null;
  readonly model: string;
  readonly result: InferResult;
}

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
}

const COMMANDS = ['status', 'config', 'models', 'activate', 'label', 'finetune'] as const;
/** Predictions held for the next message at most; older ones are dropped (and counted). */
const MAX_PENDING_PREDICTIONS = 5000;
const LOG_FLUSH_MS = 250;
/** Longest stretch of back-to-back inferences before I/O gets a turn. */
const YIELD_MS = 5;

export class Agent extends EventEmitter<AgentEvents> {
  config: AgentConfig;
  private raw: Json;
  readonly store: StateStore;
  private readonly ownsStore: boolean;
  readonly metrics: MetricsCollector;
  private engine: Engine | null = null;
  private activeVersion: string | null = null;
  private queue: DropOldestQueue<SourceFrame>;
  private source: FrameSource | null = null;
  private sourceGeneration = 0;
  private link: MqttLink | null = null;
  private exporter: PrometheusExporter | null = null;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private frameSeq = 0;
  private startedAt = 0;
  private readonly recent: Array<{ id: number; ts: number; data: Uint8Array } | undefined>;
  private pendingPredictions: PredictionRecord[] = [];
  private pendingLog: PredictionRecord[] = [];
  private predictionsDropped = 0;
  private timers: NodeJS.Timeout[] = [];
  private readonly stdin: Readable | undefined;
  /** Remote model updates (device-agent/ota). */
  readonly ota: OtaManager;
  /** The fine-tuning run in progress (one at a time). */
  private finetuning: Promise<Json> | null = null;
  /** The model's shipped reference frames (models/samples/), read on the first fine-tuning run. */
  private reference: TrainingFrame[] | null = null;
  /** Port of the Prometheus endpoint once listening. */
  metricsPort: number | null = null;

  constructor(opts: AgentOptions) {
    super();
    this.config = parseConfig(opts.config);
    this.raw = opts.config;
    const c = this.config.store;
    const limits = { metricsHistory: c.metricsHistory, predictionRows: c.predictionRows, predictionMaxAge: c.predictionMaxAge, outboxMax: c.outboxMax };
    this.ownsStore = opts.store === undefined;
    this.store = opts.store ?? (c.path === ':memory:' ? new MemoryStore(limits) : new SqliteStore(c.path, limits));
    this.metrics = new MetricsCollector(this.config.metrics.latencyWindow);
    this.queue = new DropOldestQueue(this.config.source.queueSize);
    this.recent = new Array(this.config.store.recentFrames);
    this.stdin = opts.stdin;
    this.ota = new OtaManager({
      config: () => this.config,
      dbPath: this.ownsStore ? c.path : ':memory:',
      registry: this.store,
      publish: (suffix, body, o) => this.link?.publish(suffix, body, o) ?? Promise.resolve(false),
      enqueue: (suffix, body, retain) => (this.link ? this.link.enqueue(suffix, body, retain) : this.store.outboxAdd({ topic: this.config.topicPrefix + suffix, payload: JSON.stringify(body), qos: 1, retain })),
      active: () => ({ version: this.activeVersion, engine: this.engine }),
      swap: async (rec) => {
        const active = await this.activate(rec);
        void this.link?.publish('status', this.statusBody(), { qos: 1, retain: true });
        return active;
      },
      events: this,
    });
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
    await this.activate(this.ota.bootModel(this.registerModels()));
    this.running = true;
    if (this.config.mqtt.url !== null) {
      this.link = new MqttLink({ mqtt: this.config.mqtt, prefix: this.config.topicPrefix, store: this.store, birth: () => this.statusBody(), frames: true, subscribe: this.ota.topics });
      this.link.on('online', (p) => this.emit('online', p));
      this.link.on('offline', () => this.emit('offline'));
      this.link.on('error', (err) => this.report(err));
      this.link.on('command', (cmd, reply, progress) => this.onCommand(cmd, reply, progress));
      this.link.on('frame', (payload, props) => this.onMqttFrame(payload, props));
      this.link.on('message', (suffix, payload) => this.ota.onMessage(suffix, payload));
      this.link.start();
      this.ota.start();
    }
    if (this.config.metrics.httpPort !== null) {
      this.exporter = new PrometheusExporter(() => this.snapshot(), { device: this.config.device, fleet: this.config.fleet });
      try {
        this.metricsPort = await this.exporter.listen(this.config.metrics.httpPort, this.config.metrics.httpHost);
      } catch (err) {
        this.report(new ConfigError(`metrics.httpPort: expected a free port on ${this.config.metrics.httpHost}, got ${this.config.metrics.httpPort} (${(err as Error).message})`, 'metrics.httpPort'));
        this.exporter = null;
      }
    }
    this.startTimers();
    this.startSource();
    this.loopDone = this.inferLoop();
  }

  /** Stops the source, finishes the frame in hand, flushes logs, says goodbye to the broker. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.source?.close();
    this.queue.close();
    await this.loopDone;
    // A fine-tuning run sees `running` false at its next step and ends; it must not outlive the store.
    await this.finetuning?.catch(() => undefined);
    this.flushLog();
    this.ota.stop();
    await this.link?.stop();
    await this.exporter?.close();
    if (this.ownsStore) this.store.close();
  }

  /**
   * A non-fatal error (bad frame, refused command, broker trouble): an `error` event for whoever listens. Without
   * a listener an EventEmitter would throw, and a daemon must not die of a malformed message.
   */
  private report(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  snapshot(): MetricsSnapshot {
    return this.metrics.snapshot({ model: this.activeVersion, queueDepth: this.queue.depth, dropped: this.queue.dropped, outbox: this.store.outboxCount() });
  }

  /** Registers config.model.path and the files of config.model.dir; returns the version to run. */
  private registerModels(): ModelRecord {
    const { path, dir } = this.config.model;
    const files = dir ? modelFilesIn(dir) : [];
    let chosen: ModelRecord | undefined;
    const register = (file: string) => this.store.registerModel(readModelFile(file));
    for (const f of files) {
      try {
        register(f);
      } catch (err) {
        this.report(err as Error);
      }
    }
    if (path !== null) chosen = register(path);
    else {
      const known = this.store.listModels();
      chosen = known.find((m) => m.state === 'active' && files.some((f) => fileSha(f) === m.sha256));
      if (!chosen && files.length > 0) chosen = known.filter((m) => files.some((f) => fileSha(f) === m.sha256)).sort(byVersionNumber).at(-1);
      if (!chosen) {
        const bundled = bundledModel();
        if (bundled) chosen = register(bundled);
      }
    }
    if (!chosen) throw new ConfigError('model.path: expected a .bwsnn file (or model.dir with one), got none and no model is bundled in models/', 'model.path');
    return chosen;
  }

  /** Loads a registered version (checking its sha256) and makes it the running model. */
  private async activate(rec: ModelRecord): Promise<ModelRecord> {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFileSync(rec.path));
    } catch (err) {
      this.store.markModelFailed(rec.version);
      throw new ConfigError(`version ${rec.version}: expected its file at ${rec.path}, got ${(err as Error).message}`, 'version');
    }
    const digest = sha256(bytes);
    if (digest !== rec.sha256) {
      this.store.markModelFailed(rec.version);
      throw new ConfigError(`version ${rec.version}: expected sha256 ${rec.sha256.slice(0, 16)}…, got ${digest.slice(0, 16)}… (file changed since it was registered)`, 'version');
    }
    const engine = await loadModel(bytes, { kernel: this.config.model.kernel });
    this.engine = engine;
    this.activeVersion = rec.version;
    this.metrics.resetModel([engine.model.first.name, ...engine.model.hidden.map((l) => l.name)]);
    return this.store.activateModel(rec.version);
  }

  private startSource(): void {
    const generation = ++this.sourceGeneration;
    const s = this.config.source;
    const engine = this.engine!;
    const source = createSource(s.spec, {
      target: engine.model.input,
      frameRate: s.frameRate,
      loop: s.loop,
      crop: s.crop,
      invert: s.invert,
      ...(this.stdin ? { stdin: this.stdin } : {}),
      push: new PushSource('MQTT frames/in'),
    });
    this.source = source;
    void (async () => {
      try {
        for await (const frame of source) {
          if (generation !== this.sourceGeneration || !this.running) break;
          if (!source.live) await this.queue.waitForRoom();
          this.queue.push(frame);
        }
        // A camera pipeline that dies closes stdin: say so, since the agent itself stays up (commands still work).
        if (generation === this.sourceGeneration && this.running && source.live) {
          this.report(new FrameError(`source: expected frames to keep coming, got the end of ${source.description}`, 'source.spec'));
        }
      } catch (err) {
        this.report(err as Error);
      }
    })();
  }

  private async inferLoop(): Promise<void> {
    let lastYield = performance.now();
    for (;;) {
      const frame = await this.queue.take();
      if (frame === undefined) return;
      this.handleFrame(frame);
      // Inference is synchronous: let MQTT, timers and the source run at least every YIELD_MS (a turn of the
      // event loop per frame would cost a measurable share of the throughput on a fast model).
      if (performance.now() - lastYield >= YIELD_MS) {
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
    }
  }

  private handleFrame(frame: SourceFrame): void {
    const engine = this.engine!;
    const id = ++this.frameSeq;
    // Event objects are built only for listeners: at a thousand frames/s the garbage shows in RSS.
    if (this.listenerCount('frame') > 0) this.emit('frame', { ...frame, id });
    let result: InferResult;
    try {
      result = engine.infer(frame.data);
    } catch (err) {
      this.frameError(err as Error, 'source');
      return;
    }
    const model = this.activeVersion!;
    this.metrics.record(result, frame.label);
    if (this.recent.length > 0) this.recent[id % this.recent.length] = { id, ts: Date.now(), data: frame.data };
    const rec: PredictionRecord = { frame: id, ts: Date.now(), model, prediction: result.prediction, confidence: result.confidence, label: frame.label, latencyMs: result.latencyMs };
    this.pendingLog.push(rec);
    if (this.link && this.config.reporting.predictions) {
      this.pendingPredictions.push(rec);
      if (this.pendingPredictions.length > MAX_PENDING_PREDICTIONS) {
        const over = this.pendingPredictions.length - MAX_PENDING_PREDICTIONS;
        this.pendingPredictions.splice(0, over);
        this.predictionsDropped += over;
      }
    }
    if (this.listenerCount('result') > 0) this.emit('result', { frame: id, label: frame.label, model, result });
  }

  private frameError(err: Error, origin: string): void {
    this.metrics.frameErrors++;
    const error = { name: err.name, message: err.message, field: (err as { field?: string }).field ?? null };
    void this.link?.publish('errors', { origin, error, ts: Date.now() }, { qos: 0 });
    this.report(err);
  }

  private startTimers(): void {
    const r = this.config.reporting;
    this.timers.push(setInterval(() => this.publishMetrics(), r.metricsInterval * 1000));
    this.timers.push(setInterval(() => this.publishPredictions(), 1000 / r.predictionMaxRate));
    this.timers.push(setInterval(() => this.flushLog(), LOG_FLUSH_MS));
    for (const t of this.timers) t.unref?.();
  }

  private publishMetrics(): void {
    const snap = this.snapshot();
    try {
      this.store.addMetrics(snap.ts, snap);
      if (this.link) this.link.enqueue('metrics', { device: this.config.device, ...snap, predictionsDropped: this.predictionsDropped + (this.link.droppedOffline ?? 0) });
    } catch (err) {
      this.report(err as Error);
    }
    this.emit('metrics', snap);
  }

  private publishPredictions(): void {
    const link = this.link;
    if (!link || this.pendingPredictions.length < this.config.reporting.predictionBatch) return;
    const batch = this.pendingPredictions;
    this.pendingPredictions = [];
    const labels = this.engine!.model.labels;
    const body = {
      model: this.activeVersion,
      predictions: batch.map((p) => ({ frame: p.frame, ts: p.ts, class: p.prediction, name: labels[p.prediction] ?? null, confidence: round4(p.confidence), label: p.label, latencyMs: round4(p.latencyMs) })),
    };
    void link.publish('predictions', body, { qos: 0 });
  }

  private flushLog(): void {
    if (this.pendingLog.length === 0) return;
    const rows = this.pendingLog;
    this.pendingLog = [];
    try {
      this.store.logPredictions(rows);
    } catch (err) {
      this.report(err as Error);
    }
  }

  private statusBody(): Json {
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

  /** MQTT `frames/in`: raw HWC bytes of the model's input size, a PNG/PGM picture, or JSON {data: base64, label}. */
  private onMqttFrame(payload: Buffer, props: { userProperties?: Record<string, string | string[]> } | undefined): void {
    try {
      let bytes: Uint8Array = payload;
      let label: number | null = null;
      const userLabel = props?.userProperties?.label;
      if (userLabel !== undefined) label = parseLabel(Array.isArray(userLabel) ? userLabel[0] : userLabel, 'label (user property)');
      if (payload[0] === 0x7b) {
        let msg: { data?: unknown; label?: unknown };
        try {
          msg = JSON.parse(payload.toString('utf8')) as typeof msg;
        } catch (err) {
          throw new FrameError(`frames/in: expected raw bytes, a PNG/PGM or JSON {data, label}, got broken JSON (${(err as Error).message})`, 'frames/in');
        }
        if (typeof msg.data !== 'string') throw new FrameError(`frames/in: data: expected a base64 string, got ${show(msg.data)}`, 'frames/in.data');
        bytes = Buffer.from(msg.data, 'base64');
        if (msg.label !== undefined && msg.label !== null) label = parseLabel(msg.label, 'frames/in.label');
      }
      const [h, w, c] = this.engine!.model.input;
      let data: Uint8Array;
      if (bytes.length === h * w * c) data = Uint8Array.from(bytes);
      else if (isPicture(bytes)) data = toModelFrame(decodePicture(bytes, 'frames/in'), this.engine!.model.input, this.config.source.crop, this.config.source.invert);
      else throw new FrameError(`frames/in: expected ${h * w * c} raw bytes (${h}x${w}x${c}) or a PNG/PGM picture, got ${bytes.length} bytes`, 'frames/in');
      this.queue.push({ data, label });
    } catch (err) {
      this.frameError(err as Error, 'frames/in');
    }
  }

  private onCommand(cmd: Command, reply: (o: { ok: true; result: unknown } | { ok: false; error: Error }) => void, progress: (body: unknown) => void): void {
    const run = async (): Promise<unknown> => {
      if (cmd.parseError) throw cmd.parseError;
      switch (cmd.name) {
        case 'status':
          return { ...this.statusBody(), metrics: this.snapshot(), outbox: this.store.outboxCount() };
        case 'config':
          return this.applyConfig(cmd.args);
        case 'models':
          return { active: this.activeVersion, models: this.store.listModels() };
        case 'activate': {
          if (cmd.args.rollback === true) return this.ota.rollback();
          const version = cmd.args.version;
          if (typeof version !== 'string') throw new ConfigError(`activate: version: expected a registered version string, got ${show(version)}`, 'version');
          const rec = this.store.getModel(version);
          if (!rec) throw new ConfigError(`activate: version: expected one of ${this.store.listModels().map((m) => m.version).join(', ')}, got ${show(version)}`, 'version');
          const active = await this.activate(rec);
          this.queue.clear();
          void this.link?.publish('status', this.statusBody(), { qos: 1, retain: true });
          return { active: active.version, activatedAt: active.activatedAt };
        }
        case 'label':
          return this.label(cmd.args);
        case 'finetune':
          return this.finetune(cmd.args, progress);
        default:
          throw new ConfigError(`command: expected one of ${COMMANDS.join(', ')}, got ${show(cmd.name)}`, 'command');
      }
    };
    run().then(
      (result) => reply({ ok: true, result }),
      (error: Error) => {
        reply({ ok: false, error });
        this.report(error);
      },
    );
  }

  /** `config`: {source?: {...}, reporting?: {...}} in the config-file shape; {} returns the current config. */
  private applyConfig(args: Json): Json {
    const allowed = ['source', 'reporting'];
    for (const key of Object.keys(args)) {
      if (!allowed.includes(key)) throw new ConfigError(`config: ${key}: expected one of ${allowed.join(', ')} (the settings a command may change), got ${show(args[key])}`, key);
    }
    if (Object.keys(args).length === 0) return configToJson(this.config);
    const raw = mergeDeep(this.raw, args);
    const next = parseConfig(raw);
    const before = this.config;
    this.raw = raw;
    this.config = next;
    if (JSON.stringify(next.reporting) !== JSON.stringify(before.reporting)) {
      for (const t of this.timers) clearInterval(t);
      this.timers = [];
      this.startTimers();
    }
    if (JSON.stringify(next.source) !== JSON.stringify(before.source)) {
      this.source?.close();
      if (next.source.queueSize !== before.source.queueSize) {
        const old = this.queue;
        this.queue = new DropOldestQueue(next.source.queueSize);
        this.queue.dropped = old.dropped;
        old.close();
        this.loopDone = Promise.all([this.loopDone, this.inferLoop()]).then(() => undefined);
      } else this.queue.clear();
      this.startSource();
    }
    void this.link?.publish('status', this.statusBody(), { qos: 1, retain: true });
    return configToJson(this.config);
  }

  /** `label`: {frame, label} or {labels: [{frame, label}, ...]} for frames still held in memory. */
  private label(args: Json): Json {
    const items = Array.isArray(args.labels) ? (args.labels as unknown[]) : [args];
    const [h, w, c] = this.engine!.model.input;
    const classes = this.engine!.model.labels.length;
    const saved = [];
    const missing: number[] = [];
    for (const [i, item] of items.entries()) {
      const it = item as Json;
      const field = Array.isArray(args.labels) ? `labels[${i}]` : '';
      if (typeof it !== 'object' || it === null) throw new ConfigError(`label: ${field}: expected {frame, label}, got ${show(it)}`, field);
      const frame = it.frame;
      if (typeof frame !== 'number' || !Number.isInteger(frame) || frame < 1) throw new ConfigError(`label: ${field}${field ? '.' : ''}frame: expected a frame id (integer >= 1), got ${show(frame)}`, `${field}frame`);
      const label = parseLabel(it.label, `label: ${field}${field ? '.' : ''}label`, classes);
      const held = this.recent[frame % Math.max(1, this.recent.length)];
      if (!held || held.id !== frame) missing.push(frame);
      else saved.push({ frame, ts: held.ts, label, shape: [h, w, c] as const, data: held.data });
    }
    const before = this.store.labelledFrameCount();
    this.store.saveLabelledFrames(saved);
    const total = this.store.labelledFrameCount();
    const auto = this.config.finetune.auto;
    if (auto && Math.floor(total / auto.minLabelled) > Math.floor(before / auto.minLabelled)) this.autoFinetune(total);
    return { saved: saved.length, missing, total };
  }

  /**
   * `finetune` (device-agent/finetune): retrains the active model's float head on the stored labelled frames,
   * handing the event loop back every few ms so that frames keep flowing; the gate decides; an accepted head
   * becomes the next version of the model (meta.parent names the active one) and is installed by the OTA path
   * (activation, probation, automatic rollback). Progress goes to `progress`; one run at a time, and none while
   * an update is under way.
   */
  finetune(args: Json, progress: (body: Json) => void = () => undefined): Promise<Json> {
    const busy = this.finetuning ? 'a fine-tuning run is in progress' : this.ota.busy();
    if (busy) return Promise.reject(new OtaError(`finetune: busy: ${busy}; try again when it has finished`, 'finetune'));
    const run = this.finetuneNow(args, progress).finally(() => {
      this.finetuning = null;
    });
    this.finetuning = run;
    return run;
  }

  private async finetuneNow(args: Json, progress: (body: Json) => void): Promise<Json> {
    const gate = args.gate ?? {};
    if (typeof gate !== 'object' || gate === null || Array.isArray(gate)) throw new ConfigError(`finetune: gate: expected an object of gate options, got ${show(gate)}`, 'gate');
    for (const [key, value] of Object.entries(gate)) {
      // gateOptions checks the ranges; here only that each is a known option with a number.
      if (!(key in GATE_DEFAULTS) || typeof value !== 'number') {
        throw new ConfigError(`finetune: gate.${key}: expected a number for one of ${Object.keys(GATE_DEFAULTS).join(', ')}, got ${show(value)}`, `gate.${key}`);
      }
    }
    const parent = this.engine!.model;
    const parentVersion = this.activeVersion!;
    const parentRec = this.store.getModel(parentVersion)!;
    const [h, w, c] = parent.input;
    const classes = parent.head.outFeatures;
    const stored = this.store.labelledFrames();
    // Frames labelled under another model (other input shape or classes) cannot train this one.
    const usable = stored.filter((f) => f.shape[0] === h && f.shape[1] === w && f.shape[2] === c && f.label < classes);
    // The cache key names the pixels: frame numbers restart with every run of the agent.
    const frames: TrainingFrame[] = usable.map((f) => ({ id: `sha256:${sha256(f.data)}`, data: f.data, label: f.label }));
    const version = this.nextVersion(parent);
    let lastTenth = -1;
    const onProgress = (p: FineTuneProgress): void => {
      if (!this.running) throw new ConfigError('finetune: expected the agent to keep running, got a stop during the run', 'finetune');
      // About ten reports per phase: enough to follow, not a flood on a slow link.
      const tenth = p.phase === 'features' ? Math.floor((10 * p.done) / p.total) : p.phase === 'train' ? Math.floor((10 * p.epoch) / p.epochs) : 10;
      if (p.phase === 'gate' || tenth !== lastTenth) progress({ ...p, ...(p.phase === 'train' ? { loss: round4(p.loss) } : {}) });
      lastTenth = p.phase === 'gate' ? -1 : tenth;
    };
    const result = await fineTuneAsync({
      parent, parentSha256: parentRec.sha256, frames, reference: this.referenceFrames(parent), cache: this.store.features, gate: gate as GateOptions, version, onProgress,
    });
    const d = result.decision;
    const summary = {
      parent: parentVersion,
      labelled: { stored: stored.length, used: frames.length },
      reasons: d.reasons,
      holdout: { frames: d.holdout.frames, before: round4(d.holdout.before), after: round4(d.holdout.after), fixed: d.holdout.fixed, broken: d.holdout.broken, pValue: d.holdout.pValue },
      reference: { frames: d.reference.frames, before: round4(d.reference.before), after: round4(d.reference.after) },
      timings: Object.fromEntries(Object.entries(result.timings).map(([k, v]) => [k, Math.round(v)])),
    };
    if (!result.model) return { accepted: false, version: null, job: null, ...summary };
    if (this.activeVersion !== parentVersion) {
      throw new ConfigError(`finetune: expected ${parentVersion} to stay active during the run, got ${show(this.activeVersion)}; nothing installed`, 'finetune');
    }
    const key = `${result.model.name}@${result.model.version}`;
    progress({ phase: 'activate', version: key });
    const row = await this.ota.installLocal(writeBwsnn(result.model), 'finetune');
    return { accepted: true, version: key, job: { jobId: row.jobId, state: row.state, step: row.step, reason: row.reason }, active: this.activeVersion, ...summary };
  }

  /** The next free version number of the model's name: a rolled-back fine-tune keeps its number. */
  private nextVersion(model: BwsnnModel): number {
    let v = model.version;
    for (const m of this.store.listModels()) {
      const at = m.version.lastIndexOf('@');
      const n = Number(m.version.slice(at + 1));
      if (m.version.slice(0, at) === model.name && Number.isSafeInteger(n)) v = Math.max(v, n);
    }
    return v + 1;
  }

  private referenceFrames(model: BwsnnModel): TrainingFrame[] {
    if (!this.reference) {
      const samples = sampleFrames();
      const [h, w, c] = model.input;
      const [sh, sw, sc] = samples.frameShape;
      if (sh !== h || sw !== w || sc !== c) {
        throw new ConfigError(`finetune: reference frames: expected the shipped samples (models/samples/) to fit the model's input ${h}x${w}x${c}, got ${sh}x${sw}x${sc}`, 'finetune');
      }
      this.reference = Array.from({ length: samples.count }, (_, i) => ({ id: `reference#${i}`, data: samples.frame(i), label: samples.labels[i]! }));
    }
    return this.reference;
  }

  /** finetune.auto: the same run as `cmd/finetune`, reported on `reply/finetune`. */
  private autoFinetune(labelled: number): void {
    const send = (body: Json) => void this.link?.publish('reply/finetune', { command: 'finetune', trigger: 'auto', labelled, ...body }, { qos: body.progress ? 0 : 1 });
    this.finetune({}, (progress) => send({ ok: true, progress })).then(
      (result) => send({ ok: true, result }),
      (err: Error) => {
        send({ ok: false, error: { name: err.name, message: err.message, field: (err as { field?: string }).field ?? null } });
        this.report(err);
      },
    );
  }
}

function parseLabel(v: unknown, field: string, classes = 65536): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= classes) throw new ConfigError(`${field}: expected a class index 0..${classes - 1}, got ${show(v)}`, field);
  return n;
}

function fileSha(path: string): string | null {
  try {
    return sha256(readFileSync(path));
  } catch {
    return null;
  }
}

function byVersionNumber(a: ModelRecord, b: ModelRecord): number {
  const n = (m: ModelRecord) => Number(m.version.split('@').at(-1));
  return n(a) - n(b);
}

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
