/**
 * Every field of the agent's config, declared once: its doc line, its default and what it accepts. The
 * `AgentConfig` type, the checks with their messages, the store's retention defaults and the config tables in
 * device-agent/README.md and device-agent/ota/README.md (scripts/config-docs.ts, checked by
 * test/config-docs.test.ts) all come from here. Reading files and merging overrides: config.ts.
 */
import { hostname } from 'node:os';
import { ConfigError, show } from '../runtime/errors.js';
import { LIMITS, MAX_THREADS } from '../runtime/index.js';
import type { KernelChoice } from '../runtime/index.js';
import {
  bool,
  custom,
  defaultsOf,
  fail,
  int,
  intOrNull,
  nullable,
  num,
  oneOf,
  section,
  str,
  strOrNull,
} from './schema.js';
import type { Infer, Json } from './schema.js';

/** Where frames come from. See `parseSourceSpec` for the string forms. */
export type SourceSpec =
  | { readonly kind: 'idx'; readonly images: string; readonly labels: string | null }
  /** The Fashion-MNIST test set if installed, else the sample frames shipped in models/samples. */
  | { readonly kind: 'fmnist' }
  | { readonly kind: 'samples' }
  | { readonly kind: 'images'; readonly dir: string }
  | { readonly kind: 'stdin'; readonly format: 'grey' | 'yuv420'; readonly width: number; readonly height: number }
  | { readonly kind: 'mqtt' };

const SOURCE_FORMS = 'one of fmnist, samples, idx:IMAGES[:LABELS], images:DIR, stdin:grey|yuv420:WxH, mqtt';

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
      if (rest.length !== 2 || (format !== 'grey' && format !== 'yuv420'))
        bad('"stdin:grey:WxH" or "stdin:yuv420:WxH"');
      const dims = /^(\d+)x(\d+)$/.exec(size!);
      const width = Number(dims?.[1]);
      const height = Number(dims?.[2]);
      if (!dims || width < 1 || height < 1 || width > 16384 || height > 16384)
        bad('a frame size WxH with 1..16384 each, as in "stdin:yuv420:640x480"');
      if (format === 'yuv420' && (width % 2 !== 0 || height % 2 !== 0)) bad('even width and height for yuv420');
      return { kind: 'stdin', format: format as 'grey' | 'yuv420', width, height };
    }
    default:
      return bad(SOURCE_FORMS);
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

/** The runtime's kernel choices (`model.kernel`, the CLI's `--kernel`). */
export const KERNEL_CHOICES: readonly KernelChoice[] = ['auto', 'wasm', 'reference'];

/** A name that is one MQTT topic level. */
const topicLevel = {
  test: (v: string) => /^[^/#+\s]+$/.test(v),
  expected: 'a topic level without "/", "#", "+" or spaces',
};
const MiB = 2 ** 20;

const crop = nullable(
  section(
    "region of a camera/image frame kept before the model's fit policy, in source pixels; null: the whole frame",
    {
      x: int({ doc: 'left edge', default: 0, min: 0, max: 65535 }),
      y: int({ doc: 'top edge', default: 0, min: 0, max: 65535 }),
      width: int({ doc: 'box width', min: 1, max: 65535 }),
      height: int({ doc: 'box height', min: 1, max: 65535 }),
    },
  ),
);

const ota = section(
  'remote model updates: trusted keys, limits, probation',
  {
    trustedKeys: custom<readonly string[]>({
      doc: 'Ed25519 public keys (PEM text or PEM file paths) whose signed manifests this device accepts; with none, every job is refused',
      default: [],
      expected: 'an array of PEM public keys or PEM file paths',
      parse: (v, path) => {
        if (v === null) return [];
        return Array.isArray(v) && v.every((k) => typeof k === 'string' && k.length > 0)
          ? (v as string[])
          : fail(path, 'an array of PEM public keys or PEM file paths', v);
      },
    }),
    dir: strOrNull({
      doc: 'folder that receives downloaded versions (the old ones stay there); null: `model.dir`, else `<store folder>/sei-models/<device>`',
    }),
    maxBytes: int({
      doc: 'largest artifact accepted, bytes',
      default: 64 * MiB,
      shown: '67108864 (64 MiB)',
      min: 1,
      max: 2 ** 32,
    }),
    reserveBytes: int({
      doc: 'free disk that must remain once the artifact is on disk, bytes',
      default: 16 * MiB,
      shown: '16777216 (16 MiB)',
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
    }),
    window: int({ doc: 'blocks requested at once', default: 8, min: 1, max: 1024 }),
    requestTimeoutMs: int({
      doc: 'outstanding blocks are requested again after this long without one arriving, ms',
      default: 3000,
      min: 50,
      max: 3_600_000,
    }),
    maxBlockRetries: int({
      doc: 'a block that arrives corrupt or truncated this many times refuses the job',
      default: 3,
      min: 1,
      max: 1000,
    }),
    probation: section(
      'the health gate after a swap',
      {
        frames: intOrNull({
          doc: 'frames the new model must serve before the job succeeds; null: no frame bound',
          default: 100,
          min: 1,
          max: 10_000_000,
        }),
        seconds: intOrNull({
          doc: 'seconds of probation at most; null: no time bound (then frames must be set)',
          default: 60,
          min: 1,
          max: 7 * 86_400,
        }),
        maxErrorRate: num({
          doc: 'largest share of probation frames that may fail to infer',
          default: 0.05,
          min: 0,
          max: 1,
        }),
        maxLatencyRatio: num({
          doc: "median latency may grow to at most this many times the previous model's (plus 1 ms of slack)",
          default: 4,
          min: 1,
          max: 1e6,
        }),
        minConfidenceRatio: num({
          doc: "mean confidence must stay at least this fraction of the previous model's",
          default: 0.5,
          min: 0,
          max: 1,
        }),
      },
      {
        check: (p, refuse) => {
          if (p.frames === null && p.seconds === null)
            refuse('seconds', 'a number when ota.probation.frames is null (probation must end)', null);
        },
      },
    ),
  },
  { documentedIn: 'ota/README.md' },
);

const store = section('state on disk (SQLite) and what it keeps', {
  path: str({ doc: 'SQLite file (WAL); ":memory:" keeps state in memory only', default: 'sei-agent.db' }),
  metricsHistory: int({ doc: 'metrics snapshots kept', default: 1000, min: 1, max: 10_000_000 }),
  predictionRows: int({ doc: 'prediction log: rows kept', default: 10_000, min: 1, max: 100_000_000 }),
  predictionMaxAge: num({ doc: 'prediction log: seconds kept', default: 86_400, min: 1, max: 365 * 86_400 }),
  recentFrames: int({
    doc: 'recent frames held in memory so that a `label` command can store them',
    default: 256,
    min: 0,
    max: 1_000_000,
  }),
  outboxMax: int({
    doc: 'outbox rows kept at most; beyond, the oldest are dropped (and counted)',
    default: 100_000,
    min: 1,
    max: 100_000_000,
  }),
});

const capture = section(
  'frames kept on the box to train on (`cmd/capture`, `sei capture pull`; device-agent/README.md, Capture)',
  {
    dir: strOrNull({
      doc: 'folder of the captured frames (PNG, at the model input); null: `<store folder>/sei-captures/<device>`',
    }),
    maxBytes: int({
      doc: 'disk the captured frames may take, bytes; beyond, the oldest are dropped (and counted)',
      default: 64 * MiB,
      shown: '67108864 (64 MiB)',
      min: 1024,
      max: Number.MAX_SAFE_INTEGER,
    }),
    maxFrames: int({
      doc: 'captured frames kept at most; beyond, the oldest are dropped (and counted)',
      default: 10_000,
      min: 1,
      max: 10_000_000,
    }),
    auto: nullable(
      section(
        "capture by itself a frame whose prediction's confidence is below a threshold; null: only `cmd/capture` captures",
        {
          belowConfidence: num({
            doc: 'a frame is captured when its confidence is below this',
            default: 0.5,
            min: 0,
            max: 1,
          }),
          minIntervalS: num({
            doc: 'seconds between two automatic captures at least',
            default: 10,
            min: 0,
            max: 86_400,
          }),
        },
      ),
    ),
  },
);

/** The agent's config file, field by field, in the order the README lists them. */
export const AGENT_SCHEMA = section('the agent config', {
  fleet: str({ doc: 'fleet name, the second topic level', default: 'default', refine: topicLevel }),
  device: str({
    doc: 'device name, the third topic level',
    default: () => hostname().replace(/[^A-Za-z0-9_.-]/g, '-') || 'device',
    shown: '<host name>',
    refine: topicLevel,
  }),
  topicPrefix: str({
    doc: 'topic prefix of everything the agent publishes and subscribes to',
    default: (root) => `sei/${root.fleet as string}/${root.device as string}/`,
    shown: 'sei/<fleet>/<device>/',
    refine: {
      test: (v) => v.endsWith('/') && !/[#+]/.test(v),
      expected: 'a topic prefix ending in "/" without wildcards',
    },
  }),
  model: section('what runs', {
    path: strOrNull({
      doc: '.bwsnn to run; null: the active version in the registry, else the newest in dir, else the bundled models/*.bwsnn',
    }),
    dir: strOrNull({ doc: 'folder whose *.bwsnn files are registered as versions `activate` can switch to' }),
    kernel: oneOf(KERNEL_CHOICES, {
      doc: 'binary kernel passed to the runtime (auto: wasm when it runs)',
      default: 'auto',
    }),
  }),
  engine: section('how the runtime runs the model', {
    steps: intOrNull({
      doc: "time steps per frame; null: the model's own T (what it was trained for); fewer steps, less work per frame",
      default: null,
      min: 1,
      max: LIMITS.maxT,
    }),
    threads: int({
      doc: "engines on worker threads (one per core they may use), handed frames as they queue up, results kept in frame order; 1: the engine in the agent's thread",
      default: 1,
      min: 1,
      max: MAX_THREADS,
    }),
  }),
  source: section('where frames come from (device-agent/README.md, Sources)', {
    spec: custom<SourceSpec>({
      doc: 'fmnist, samples, idx:IMAGES[:LABELS], images:DIR, stdin:grey|yuv420:WxH or mqtt',
      default: { kind: 'fmnist' },
      shown: 'fmnist',
      expected: 'a source spec string such as "fmnist" or "stdin:yuv420:640x480"',
      parse: (v, path) =>
        typeof v === 'string'
          ? parseSourceSpec(v, path)
          : fail(path, 'a source spec string such as "fmnist" or "stdin:yuv420:640x480"', v),
    }),
    frameRate: num({
      doc: 'frames/s a file source delivers; 0: as fast as the engine takes them',
      default: 10,
      min: 0,
      max: 100_000,
    }),
    loop: bool({ doc: 'file sources start over at the end', default: true }),
    crop,
    invert: bool({
      doc: 'invert grey levels (a dark object on a light background becomes Fashion-MNIST-like)',
      default: false,
    }),
    queueSize: int({
      doc: 'frames held between source and engine; when full the oldest is dropped and counted',
      default: 8,
      min: 1,
      max: 100_000,
    }),
  }),
  mqtt: section(
    'the broker link',
    {
      url: strOrNull({
        doc: 'broker URL (mqtt://host:1883, mqtts://host:8883); null: no MQTT, local metrics only',
        refine: {
          test: (v) => /^(mqtts?|wss?|tcp|ssl):\/\//.test(v),
          expected: 'a broker URL such as mqtt://host:1883 or mqtts://host:8883',
        },
      }),
      protocol: oneOf(['auto', 5, 4], {
        doc: 'MQTT version; auto tries 5 and falls back to 3.1.1 when the broker refuses it',
        default: 'auto',
      }),
      clientId: str({
        doc: 'MQTT client id',
        default: (root) => `sei-${root.fleet as string}-${root.device as string}`,
        shown: 'sei-<fleet>-<device>',
      }),
      username: strOrNull({ doc: 'broker user name' }),
      password: strOrNull({ doc: 'broker password (masked in the `config` reply and the status)' }),
      tls: section(
        'TLS files (PEM paths, read at connect time)',
        {
          ca: strOrNull({ doc: "CA certificate that signed the broker's" }),
          cert: strOrNull({ doc: 'client certificate (with key)' }),
          key: strOrNull({ doc: 'client private key (with cert)' }),
          rejectUnauthorized: bool({ doc: 'refuse a broker certificate the CA did not sign', default: true }),
        },
        {
          check: (t, refuse) => {
            if ((t.cert === null) !== (t.key === null))
              refuse(t.cert === null ? 'cert' : 'key', 'both mqtt.tls.cert and mqtt.tls.key, or neither', null);
          },
        },
      ),
      keepalive: int({ doc: 'keep-alive, seconds', default: 30, min: 1, max: 65535 }),
      maxMessageBytes: int({
        doc: 'largest MQTT packet taken from the broker (a command, a frame, an OTA block); MQTT 5 tells the broker, and a larger packet closes the connection before its body is read',
        default: 8 * MiB,
        min: 64 * 1024,
        max: 256 * MiB - 1,
      }),
      reconnectMinMs: int({
        doc: 'reconnect backoff: first delay, ms (doubling, ±20% jitter)',
        default: 500,
        min: 10,
        max: 3_600_000,
      }),
      reconnectMaxMs: int({
        doc: 'reconnect backoff: longest delay, ms (at least reconnectMinMs)',
        default: 30_000,
        min: 10,
        max: 3_600_000,
      }),
    },
    {
      check: (q, refuse) => {
        if (q.reconnectMaxMs < q.reconnectMinMs)
          refuse('reconnectMaxMs', `a value >= mqtt.reconnectMinMs (${q.reconnectMinMs})`, q.reconnectMaxMs);
      },
    },
  ),
  reporting: section('what goes out over MQTT', {
    metricsInterval: num({ doc: 'seconds between `metrics` messages', default: 10, min: 0.05, max: 86_400 }),
    predictions: bool({ doc: 'publish predictions', default: true }),
    predictionBatch: int({ doc: 'predictions per message at least (1: every frame)', default: 1, min: 1, max: 10_000 }),
    predictionMaxRate: num({
      doc: '`predictions` messages per second at most; what is faster rides in the next message',
      default: 20,
      min: 0.01,
      max: 100_000,
    }),
  }),
  metrics: section('the local Prometheus endpoint', {
    httpPort: intOrNull({
      doc: 'port of `http://<httpHost>:<port>/metrics`; 0: any free port; null: off',
      default: 9464,
      min: 0,
      max: 65535,
    }),
    httpHost: str({ doc: 'address the endpoint listens on', default: '127.0.0.1' }),
    latencyWindow: int({ doc: 'frames in the latency percentiles', default: 1024, min: 16, max: 1_000_000 }),
  }),
  store,
  capture,
  ota,
  finetune: section('fine-tuning on the box (device-agent/finetune/README.md)', {
    auto: nullable(
      section(
        'fine-tune by itself whenever the stored labelled frames reach N, 2N, ...; null: only `cmd/finetune` starts a run',
        {
          // The gate refuses fewer than its minFrames (40) anyway.
          minLabelled: int({ doc: 'N, the labelled frames that start a run', default: 300, min: 40, max: 10_000_000 }),
        },
      ),
    ),
  }),
});

export type AgentConfig = Infer<typeof AGENT_SCHEMA>;
export type Crop = NonNullable<AgentConfig['source']['crop']>;
export type OtaConfig = AgentConfig['ota'];
export type CaptureConfig = AgentConfig['capture'];

/** The store's retention limits: the part of the `store` section the store itself applies. */
export type RetentionLimits = Pick<
  AgentConfig['store'],
  'metricsHistory' | 'predictionRows' | 'predictionMaxAge' | 'outboxMax'
>;

export function retentionLimits(store: AgentConfig['store']): RetentionLimits {
  return {
    metricsHistory: store.metricsHistory,
    predictionRows: store.predictionRows,
    predictionMaxAge: store.predictionMaxAge,
    outboxMax: store.outboxMax,
  };
}

export const DEFAULT_LIMITS: RetentionLimits = retentionLimits(defaultsOf(store, 'store'));

/** Validates a config object (from a file, flags, or the `config` command) and fills in every default. */
export function parseConfig(raw: unknown = {}): AgentConfig {
  return AGENT_SCHEMA.read(raw, '', {});
}

/** Validates the `ota` section alone. */
export function parseOtaConfig(raw: unknown = {}): OtaConfig {
  return ota.read(raw, 'ota', {});
}

export type { Json };
