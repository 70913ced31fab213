/**
 * The agent's configuration: every field has a default, every value is checked at load time, and a bad value
 * is refused with a ConfigError naming the field, the expected and the actual value. Unknown keys are refused
 * too, so that a typo does not silently fall back to a default.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createRequire } from 'node:module';
import { ConfigError, show } from '../runtime/index.js';
import { parseOtaConfig } from './ota/config.js';
import type { OtaConfig } from './ota/config.js';

/** Where frames come from. See `parseSourceSpec` for the string forms. */
export type SourceSpec =
  | { readonly kind: 'idx'; readonly images: string; readonly labels: string | null }
  /** The Fashion-MNIST test set if installed, else the sample frames shipped in models/samples. */
  | { readonly kind: 'fmnist' }
  | { readonly kind: 'samples' }
  | { readonly kind: 'images'; readonly dir: string }
  | { readonly kind: 'stdin'; readonly format: 'grey' | 'yuv420'; readonly width: number; readonly height: number }
  | { readonly kind: 'mqtt' };

export interface Crop {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

export interface AgentConfig {
  /** Fleet name, the second topic level. Default "default". */
  readonly fleet: string;
  /** Device name, the third topic level. Default: the host name. */
  readonly device: string;
  /** Topic prefix, ending in "/". Default `sei/<fleet>/<device>/`. */
  readonly topicPrefix: string;
  readonly model: {
    /** The .bwsnn file to run. Default null: the newest version in `dir`, else the first bundled model. */
    readonly path: string | null;
    /** Folder whose *.bwsnn files are registered as activatable versions. Default null. */
    readonly dir: string | null;
    /** Kernel choice passed to the runtime. Default "auto". */
    readonly kernel: 'auto' | 'wasm' | 'reference';
  };
  readonly source: {
    /** Source spec string, e.g. "fmnist", "idx:imgs.gz:labels.gz", "images:/dir", "stdin:yuv420:640x480", "mqtt". Default "fmnist". */
    readonly spec: SourceSpec;
    /** Frames per second the source delivers; 0 = as fast as the engine takes them (file sources only). Default 10. */
    readonly frameRate: number;
    /** Restart file sources at the end. Default true. */
    readonly loop: boolean;
    /** Region of a camera/image frame to keep before resizing, in source pixels. Default null: a centred square. */
    readonly crop: Crop | null;
    /** Invert grey levels (a dark object on a light background becomes Fashion-MNIST-like). Default false. */
    readonly invert: boolean;
    /** Frames held between source and engine; when full the oldest is dropped and counted. Default 8. */
    readonly queueSize: number;
  };
  readonly mqtt: {
    /** Broker URL (mqtt://, mqtts://). Default null: no MQTT (local metrics only). */
    readonly url: string | null;
    /** "auto" tries MQTT 5 and falls back to 3.1.1 when the broker refuses it. Default "auto". */
    readonly protocol: 'auto' | 5 | 4;
    /** Default `sei-<fleet>-<device>`. */
    readonly clientId: string;
    readonly username: string | null;
    readonly password: string | null;
    /** TLS files (PEM). Paths; read at connect time. Default all null. */
    readonly tls: { readonly ca: string | null; readonly cert: string | null; readonly key: string | null; readonly rejectUnauthorized: boolean };
    /** Keep-alive in seconds. Default 30. */
    readonly keepalive: number;
    /** Reconnect backoff: first delay and cap, milliseconds, doubling in between. Default 500 / 30000. */
    readonly reconnectMinMs: number;
    readonly reconnectMaxMs: number;
  };
  readonly reporting: {
    /** Seconds between `metrics` messages. Default 10. */
    readonly metricsInterval: number;
    /** Publish predictions. Default true. */
    readonly predictions: boolean;
    /** Predictions per message (1 = every frame). Default 1. */
    readonly predictionBatch: number;
    /** At most this many `predictions` messages per second; the rest ride in the next message. Default 20. */
    readonly predictionMaxRate: number;
  };
  readonly metrics: {
    /** Local Prometheus port; 0 picks a free port; null disables. Default 9464. */
    readonly httpPort: number | null;
    /** Default "127.0.0.1". */
    readonly httpHost: string;
    /** Latencies kept for the percentiles. Default 1024. */
    readonly latencyWindow: number;
  };
  readonly store: {
    /** SQLite file; ":memory:" keeps state in memory only. Default "sei-agent.db". */
    readonly path: string;
    /** Metrics snapshots kept. Default 1000. */
    readonly metricsHistory: number;
    /** Prediction log retention: rows and seconds. Default 10000 / 86400. */
    readonly predictionRows: number;
    readonly predictionMaxAge: number;
    /** Recent frames held in memory so that a `label` command can store them. Default 256. */
    readonly recentFrames: number;
    /** Outbox rows kept at most (oldest dropped beyond). Default 100000. */
    readonly outboxMax: number;
  };
  /** Remote model update: trusted keys, limits, probation (device-agent/ota/README.md). */
  readonly ota: OtaConfig;
  readonly finetune: {
    /**
     * Automatic fine-tuning (device-agent/finetune/README.md): a run starts whenever the stored labelled frames
     * reach a multiple of `minLabelled` (N, 2N, ...). Default null: only `cmd/finetune` starts one.
     */
    readonly auto: { readonly minLabelled: number } | null;
  };
}

export type Json = Record<string, unknown>;

// Optional parsers are loaded on first use: every module the agent loads costs resident memory on a small box.
const require = createRequire(import.meta.url);

/** Reads a JSON or YAML config file (by extension; anything but .json parses as YAML, a superset of JSON), unvalidated. */
export function readConfigFile(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config: expected a readable file, got ${JSON.stringify(path)} (${(err as Error).message})`, 'config');
  }
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(text) : (require('yaml') as typeof import('yaml')).parse(text);
  } catch (err) {
    throw new ConfigError(`config: expected valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} in ${path}, got ${(err as Error).message}`, 'config');
  }
  if (raw === null || raw === undefined) return {};
  if (!isPlain(raw)) throw new ConfigError(`config: expected a mapping at the top of ${path}, got ${show(raw)}`, 'config');
  return raw;
}

/** Reads, merges the overrides into, and validates a config file. */
export function loadConfigFile(path: string, overrides: Json = {}): AgentConfig {
  return parseConfig(mergeDeep(readConfigFile(path), overrides));
}

/** Deep-merges plain objects (b wins). Used for CLI flag overrides and for the `config` command. */
export function mergeDeep(a: Json, b: Json): Json {
  const out: Json = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isPlain(v) && isPlain(prev) ? mergeDeep(prev, v) : v;
  }
  return out;
}

function isPlain(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

/** Field readers that check type and range and name the field in every error. */
class Reader {
  private readonly seen = new Set<string>();
  constructor(private readonly obj: Json, private readonly path: string) {
    if (!isPlain(obj)) throw new ConfigError(`${path || 'config'}: expected a mapping, got ${show(obj)}`, path || 'config');
  }
  private field(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }
  private get(key: string): unknown {
    this.seen.add(key);
    return this.obj[key];
  }
  fail(key: string, expected: string, actual: unknown): never {
    const f = this.field(key);
    throw new ConfigError(`${f}: expected ${expected}, got ${show(actual)}`, f);
  }
  str(key: string, def: string): string {
    const v = this.get(key);
    if (v === undefined) return def;
    if (typeof v !== 'string' || v.length === 0) this.fail(key, 'a non-empty string', v);
    return v;
  }
  strOrNull(key: string, def: string | null): string | null {
    const v = this.get(key);
    if (v === undefined) return def;
    if (v === null) return null;
    if (typeof v !== 'string' || v.length === 0) this.fail(key, 'a non-empty string or null', v);
    return v;
  }
  num(key: string, def: number, min: number, max: number, integer = false): number {
    const v = this.get(key);
    if (v === undefined) return def;
    const kind = integer ? 'an integer' : 'a number';
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
      this.fail(key, `${kind} in [${min}, ${max}]`, v);
    }
    return v;
  }
  numOrNull(key: string, def: number | null, min: number, max: number): number | null {
    if (this.obj[key] === null) return this.get(key) as null;
    return this.obj[key] === undefined ? (this.get(key), def) : this.num(key, 0, min, max, true);
  }
  bool(key: string, def: boolean): boolean {
    const v = this.get(key);
    if (v === undefined) return def;
    if (typeof v !== 'boolean') this.fail(key, 'true or false', v);
    return v;
  }
  oneOf<T extends string | number>(key: string, def: T, allowed: readonly T[]): T {
    const v = this.get(key);
    if (v === undefined) return def;
    if (!allowed.includes(v as T)) this.fail(key, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, v);
    return v as T;
  }
  sub(key: string): Reader {
    const v = this.get(key);
    return new Reader(v === undefined ? {} : (v as Json), this.field(key));
  }
  raw(key: string): unknown {
    return this.get(key);
  }
  /** Refuses keys that no reader asked for. */
  done(): void {
    for (const key of Object.keys(this.obj)) {
      if (!this.seen.has(key)) throw new ConfigError(`${this.field(key)}: unknown setting (a typo?), got ${show(this.obj[key])}`, this.field(key));
    }
  }
}

const TOPIC_LEVEL = /^[^/#+\s]+$/;

/** Validates a config object (from a file, flags, or the `config` command) and fills in every default. */
export function parseConfig(raw: unknown = {}): AgentConfig {
  const r = new Reader(raw as Json, '');
  const fleet = r.str('fleet', 'default');
  if (!TOPIC_LEVEL.test(fleet)) r.fail('fleet', 'a topic level without "/", "#", "+" or spaces', fleet);
  const device = r.str('device', hostname().replace(/[^A-Za-z0-9_.-]/g, '-') || 'device');
  if (!TOPIC_LEVEL.test(device)) r.fail('device', 'a topic level without "/", "#", "+" or spaces', device);
  const topicPrefix = r.str('topicPrefix', `sei/${fleet}/${device}/`);
  if (!topicPrefix.endsWith('/') || /[#+]/.test(topicPrefix)) r.fail('topicPrefix', 'a topic prefix ending in "/" without wildcards', topicPrefix);

  const m = r.sub('model');
  const model = {
    path: m.strOrNull('path', null),
    dir: m.strOrNull('dir', null),
    kernel: m.oneOf('kernel', 'auto', ['auto', 'wasm', 'reference'] as const),
  };
  m.done();

  const s = r.sub('source');
  const specRaw = s.raw('spec');
  let spec: SourceSpec;
  if (specRaw === undefined) spec = { kind: 'fmnist' };
  else if (typeof specRaw === 'string') spec = parseSourceSpec(specRaw, 'source.spec');
  else spec = s.fail('spec', 'a source spec string such as "fmnist" or "stdin:yuv420:640x480"', specRaw);
  const cropRaw = s.raw('crop');
  let crop: Crop | null = null;
  if (cropRaw !== undefined && cropRaw !== null) {
    const c = new Reader(cropRaw as Json, 'source.crop');
    crop = { x: c.num('x', 0, 0, 65535, true), y: c.num('y', 0, 0, 65535, true), width: c.num('width', NaN, 1, 65535, true), height: c.num('height', NaN, 1, 65535, true) };
    if (Number.isNaN(crop.width)) c.fail('width', 'an integer in [1, 65535]', undefined);
    if (Number.isNaN(crop.height)) c.fail('height', 'an integer in [1, 65535]', undefined);
    c.done();
  }
  const source = {
    spec,
    frameRate: s.num('frameRate', 10, 0, 100000),
    loop: s.bool('loop', true),
    crop,
    invert: s.bool('invert', false),
    queueSize: s.num('queueSize', 8, 1, 100000, true),
  };
  s.done();

  const q = r.sub('mqtt');
  const url = q.strOrNull('url', null);
  if (url !== null && !/^(mqtts?|wss?|tcp|ssl):\/\//.test(url)) q.fail('url', 'a broker URL such as mqtt://host:1883 or mqtts://host:8883', url);
  const tlsR = q.sub('tls');
  const tls = {
    ca: tlsR.strOrNull('ca', null),
    cert: tlsR.strOrNull('cert', null),
    key: tlsR.strOrNull('key', null),
    rejectUnauthorized: tlsR.bool('rejectUnauthorized', true),
  };
  tlsR.done();
  if ((tls.cert === null) !== (tls.key === null)) tlsR.fail(tls.cert === null ? 'cert' : 'key', 'both mqtt.tls.cert and mqtt.tls.key, or neither', null);
  const mqtt = {
    url,
    protocol: q.oneOf<'auto' | 5 | 4>('protocol', 'auto', ['auto', 5, 4]),
    clientId: q.str('clientId', `sei-${fleet}-${device}`),
    username: q.strOrNull('username', null),
    password: q.strOrNull('password', null),
    tls,
    keepalive: q.num('keepalive', 30, 1, 65535, true),
    reconnectMinMs: q.num('reconnectMinMs', 500, 10, 3600_000, true),
    reconnectMaxMs: q.num('reconnectMaxMs', 30_000, 10, 3600_000, true),
  };
  if (mqtt.reconnectMaxMs < mqtt.reconnectMinMs) q.fail('reconnectMaxMs', `a value >= mqtt.reconnectMinMs (${mqtt.reconnectMinMs})`, mqtt.reconnectMaxMs);
  q.done();

  const p = r.sub('reporting');
  const reporting = {
    metricsInterval: p.num('metricsInterval', 10, 0.05, 86400),
    predictions: p.bool('predictions', true),
    predictionBatch: p.num('predictionBatch', 1, 1, 10000, true),
    predictionMaxRate: p.num('predictionMaxRate', 20, 0.01, 100000),
  };
  p.done();

  const x = r.sub('metrics');
  const metrics = {
    httpPort: x.numOrNull('httpPort', 9464, 0, 65535),
    httpHost: x.str('httpHost', '127.0.0.1'),
    latencyWindow: x.num('latencyWindow', 1024, 16, 1_000_000, true),
  };
  x.done();

  const st = r.sub('store');
  const store = {
    path: st.str('path', 'sei-agent.db'),
    metricsHistory: st.num('metricsHistory', 1000, 1, 10_000_000, true),
    predictionRows: st.num('predictionRows', 10_000, 1, 100_000_000, true),
    predictionMaxAge: st.num('predictionMaxAge', 86_400, 1, 365 * 86_400),
    recentFrames: st.num('recentFrames', 256, 0, 1_000_000, true),
    outboxMax: st.num('outboxMax', 100_000, 1, 100_000_000, true),
  };
  st.done();
  const ota = parseOtaConfig(r.sub('ota'));
  const ft = r.sub('finetune');
  const autoRaw = ft.raw('auto');
  let auto: AgentConfig['finetune']['auto'] = null;
  if (autoRaw !== undefined && autoRaw !== null && autoRaw !== false) {
    if (typeof autoRaw !== 'object' || Array.isArray(autoRaw)) ft.fail('auto', 'null or {minLabelled}', autoRaw);
    const a = ft.sub('auto');
    // The gate refuses fewer than its minFrames (40) anyway.
    auto = { minLabelled: a.num('minLabelled', 300, 40, 10_000_000, true) };
    a.done();
  }
  ft.done();
  r.done();
  return { fleet, device, topicPrefix, model, source, mqtt, reporting, metrics, store, ota, finetune: { auto } };
}

/**
 * Source spec strings:
 * `fmnist` · `samples` · `idx:IMAGES[:LABELS]` · `images:DIR` · `stdin:grey:WxH` · `stdin:yuv420:WxH` · `mqtt`.
 */
export function parseSourceSpec(text: string, field = 'source'): SourceSpec {
  const [kind, ...rest] = text.split(':');
  const bad = (expected: string): never => {
    throw new ConfigError(`${field}: expected ${expected}, got ${show(text)}`, field);
  };
  switch (kind) {
    case 'fmnist':
    case 'samples':
    case 'mqtt':
      if (rest.length > 0) bad(`"${kind}" with nothing after it`);
      return { kind };
    case 'idx': {
      if (rest.length < 1 || rest.length > 2 || !rest[0]) bad('"idx:IMAGES[:LABELS]"');
      return { kind: 'idx', images: rest[0]!, labels: rest[1] || null };
    }
    case 'images':
      if (rest.length !== 1 || !rest[0]) bad('"images:DIR"');
      return { kind: 'images', dir: rest[0]! };
    case 'stdin': {
      const [format, size] = rest;
      if (rest.length !== 2 || (format !== 'grey' && format !== 'yuv420')) bad('"stdin:grey:WxH" or "stdin:yuv420:WxH"');
      const dims = /^(\d+)x(\d+)$/.exec(size!);
      const width = Number(dims?.[1]);
      const height = Number(dims?.[2]);
      if (!dims || width < 1 || height < 1 || width > 16384 || height > 16384) bad('a frame size WxH with 1..16384 each, as in "stdin:yuv420:640x480"');
      if (format === 'yuv420' && (width % 2 !== 0 || height % 2 !== 0)) bad('even width and height for yuv420');
      return { kind: 'stdin', format: format as 'grey' | 'yuv420', width, height };
    }
    default:
      return bad('one of fmnist, samples, idx:IMAGES[:LABELS], images:DIR, stdin:grey|yuv420:WxH, mqtt');
  }
}

/** The string form of a source spec (inverse of parseSourceSpec). */
export function sourceSpecString(spec: SourceSpec): string {
  switch (spec.kind) {
    case 'idx':
      return spec.labels ? `idx:${spec.images}:${spec.labels}` : `idx:${spec.images}`;
    case 'images':
      return `images:${spec.dir}`;
    case 'stdin':
      return `stdin:${spec.format}:${spec.width}x${spec.height}`;
    default:
      return spec.kind;
  }
}

/** The config as plain JSON (source spec as its string), for the `config` command and the status message. */
export function configToJson(config: AgentConfig): Json {
  const { password: _password, ...mqtt } = config.mqtt;
  return { ...config, source: { ...config.source, spec: sourceSpecString(config.source.spec) }, mqtt: { ...mqtt, password: config.mqtt.password === null ? null : '***' } };
}
