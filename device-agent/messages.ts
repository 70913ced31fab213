/**
 * What the agent puts on the wire, declared once: the payloads of `status`, `metrics`, `predictions`, `errors`,
 * `preview` and `ota/status`, the command replies, and the results of the commands other programs read. The agent
 * builds its messages as these types and the fleet console's page (console/page/) reads them as the same types, so
 * a payload change breaks the build of both, never the page at run time.
 *
 * This module imports only other type-only modules and holds no Node API: a browser bundle type-checks against it
 * (console/page/tsconfig.json has no Node types). The payloads are type aliases, not interfaces, so that each is
 * also a plain JSON record (`Json`).
 */
import type { BwsnnSummary, LayerSummary } from '../runtime/format/summary.js';
import type { ModelRecord } from './store/types.js';

export type { ModelRecord } from './store/types.js';

/** An error as MQTT payloads carry it (command replies, `errors`, fine-tuning reports). */
export type ErrorBody = { readonly name: string; readonly message: string; readonly field: string | null };

/** The retained `status` while the agent runs (birth, and again after `config`/`activate`). */
export type DeviceStatus = {
  readonly state: 'online';
  readonly fleet: string;
  readonly device: string;
  readonly model: string | null;
  readonly kernel: string | null;
  readonly source: string;
  readonly frameRate: number;
  /** Epoch milliseconds. */
  readonly startedAt: number;
  readonly uptimeS: number;
  readonly frames: number;
};

/** The Last Will (`connection lost`) or the goodbye of a clean stop. */
export type OfflineStatus = { readonly state: 'offline'; readonly reason: 'connection lost' | 'stopped' };

/** `status`, retained. The birth also names the MQTT version the connection speaks (4 = 3.1.1). */
export type StatusMessage = (DeviceStatus & { readonly protocol?: 4 | 5 }) | OfflineStatus;

/** Running figures of the agent: one snapshot feeds `metrics`, the Prometheus endpoint and the demo's view. */
export type MetricsSnapshot = {
  /** Epoch milliseconds. */
  readonly ts: number;
  readonly model: string | null;
  /** Frames inferred since start. */
  readonly frames: number;
  /** Over the last few seconds. */
  readonly framesPerSecond: number;
  /** Inference latency percentiles over the last `latencyWindow` frames, milliseconds. */
  readonly latencyMs: { readonly p50: number; readonly p90: number; readonly p99: number };
  readonly queueDepth: number;
  /** Frames dropped by the bounded queue since start. */
  readonly dropped: number;
  /** Frames refused (wrong size, undecodable) since start. */
  readonly frameErrors: number;
  /** Fraction of neuron-steps that spiked, per layer, averaged over recent frames. */
  readonly spikeRate: Readonly<Record<string, number>>;
  /** Synaptic operations per frame, averaged over recent frames. */
  readonly synOpsPerFrame: number;
  /** Against the labels that came with frames, since the active model was activated; null if none. */
  readonly accuracy: { readonly labelled: number; readonly correct: number; readonly ratio: number } | null;
  /** null where the OS does not tell (Linux without /proc mounted). */
  readonly rssBytes: number | null;
  /** Null where /sys/class/thermal does not exist. */
  readonly cpuTemperatureC: number | null;
  /** Messages waiting in the outbox. */
  readonly outbox: number;
};

/**
 * `metrics`: a snapshot, the device name, the predictions that could not be sent, and `seq`: 1, 2, 3, … for each
 * `metrics` message since the agent started. A gap in `seq` is a lost message, a repeat is a QoS 1 duplicate, and
 * a restarted agent counts from 1 again.
 */
export type MetricsMessage = MetricsSnapshot & {
  readonly device: string;
  readonly predictionsDropped: number;
  readonly seq: number;
};

export type Prediction = {
  /** The id `label` refers to. */
  readonly frame: number;
  readonly ts: number;
  readonly class: number;
  readonly name: string | null;
  readonly confidence: number;
  /** Ground truth when the source has it. */
  readonly label: number | null;
  readonly latencyMs: number;
};

/** `predictions`: a batch, at most `reporting.predictionMaxRate` messages/s. */
export type PredictionsMessage = { readonly model: string | null; readonly predictions: readonly Prediction[] };

/** `errors`: a frame the agent could not use. */
export type ErrorMessage = { readonly origin: string; readonly error: ErrorBody; readonly ts: number };

/** What follows `command` and `correlationId` in a reply: the result, a progress message, or the refusal. */
export type ReplyOutcome =
  | { readonly ok: true; readonly result: unknown }
  | { readonly ok: true; readonly progress: unknown }
  | { readonly ok: false; readonly error: ErrorBody };

/** A command reply: `correlationId` echoes the request's (3.1.1 payload field, or MQTT 5 correlation data as text). */
export type CommandReply = { readonly command: string; readonly correlationId?: unknown } & ReplyOutcome;

/** `models`: the registry, and which version runs. */
export type ModelsResult = { readonly active: string; readonly models: readonly ModelRecord[] };

/** `activate`: a version by name, or a rollback to the one the last update replaced. */
export type ActivateResult =
  | { readonly active: string; readonly activatedAt: number | null }
  | { readonly active: string; readonly rolledBackFrom: string };

/**
 * `label`: how many frames were stored, which ids the agent no longer holds, and the labelled frames it has now;
 * with `{capture, label}` items, the captured frames labelled and the capture ids not kept.
 */
export type LabelResult = {
  readonly saved: number;
  readonly missing: readonly number[];
  readonly total: number;
  readonly captures?: { readonly labelled: number; readonly missing: readonly number[] };
};

/** The capture store's totals (device-agent/capture/store.ts). */
/** The capture store's totals: frames and bytes kept, and frames dropped to make room, ever. */
export type CaptureStoreStats = { readonly frames: number; readonly bytes: number; readonly dropped: number };

/** `capture`: the ids of the frames taken, their label, whether the time ran out first, the store after. */
export type CaptureResult = {
  readonly ids: readonly number[];
  readonly label: string | null;
  readonly timedOut: boolean;
  readonly store: CaptureStoreStats;
};

/** One captured frame, as the capture store describes it and `captures` lists it. */
export type CaptureItem = {
  readonly id: number;
  readonly ts: number;
  /** Registry key of the model that ran it. */
  readonly model: string;
  /** `command` (cmd/capture) or `auto` (confidence below capture.auto.belowConfidence). */
  readonly reason: 'command' | 'auto';
  readonly prediction: number;
  readonly confidence: number;
  /** Class name, or null while unlabelled. */
  readonly label: string | null;
  /** [height, width, channels]. */
  readonly shape: readonly [number, number, number];
  /** Bytes of the PNG file. */
  readonly size: number;
  readonly sha256: string;
};

/** `captures`: the frames with an id above `after` (at most `limit`), `next` to ask from, the block size. */
export type CapturesResult = {
  readonly frames: readonly CaptureItem[];
  readonly next: number | null;
  readonly blockSize: number;
  readonly store: CaptureStoreStats;
};

/** `capture-read`: blocks of one captured frame's PNG, base64, each with its SHA-256. */
export type CaptureReadResult = {
  readonly id: number;
  readonly size: number;
  readonly sha256: string;
  readonly blocks: ReadonlyArray<{ readonly index: number; readonly data: string; readonly sha256: string }>;
};

/** One layer of a model card: the runtime's summary of it (runtime/format/summary.ts). */
export type ModelCardLayer = LayerSummary;

/** The running model as its file describes it: the header's summary, with its registry key and file digest. */
export type ModelCard = Omit<BwsnnSummary, 'checksum'> & {
  /** Registry key, `<name>@<version>`. */
  readonly key: string;
  readonly sha256: string;
};

/** `preview` arguments: how long and how fast (bounded by the device: see commands/preview.ts). */
export type PreviewArgs = { readonly seconds?: number; readonly fps?: number };

/** `preview`: when the frames stop unless asked again, the rate they come at, and the model they are run through. */
export type PreviewResult = { readonly until: number; readonly fps: number; readonly model: ModelCard };

/** `preview`: one frame the device saw, what it predicted, and how much each layer fired for it. */
export type PreviewMessage = {
  readonly frame: number;
  readonly ts: number;
  readonly model: string;
  /** [height, width, channels] of `data`: the model input. */
  readonly shape: readonly [number, number, number];
  /** The frame's bytes (HWC, uint8) in base64; null once the agent no longer holds it (`store.recentFrames`). */
  readonly data: string | null;
  readonly class: number;
  readonly name: string | null;
  readonly confidence: number;
  readonly label: number | null;
  readonly latencyMs: number;
  /** Softmax over the classes, in label order. */
  readonly probabilities: readonly number[];
  /** Per layer (first, then hidden), the fraction of neuron-steps that spiked for this frame. */
  readonly spikeRate: Readonly<Record<string, number>>;
};

/** The OTA job states a device reports (AWS IoT Jobs' states; Mender-like steps inside IN_PROGRESS). */
export const TERMINAL = ['SUCCEEDED', 'FAILED', 'REJECTED', 'TIMED_OUT'] as const;
export type TerminalState = (typeof TERMINAL)[number];
export type JobState = 'QUEUED' | 'IN_PROGRESS' | TerminalState;
export type JobStep = 'DOWNLOADING' | 'VERIFYING' | 'ACTIVATING' | 'PROBATION';

export function isTerminal(state: string): state is TerminalState {
  return (TERMINAL as readonly string[]).includes(state);
}

/** `ota/status`, retained, through the outbox. */
export type JobStatus = {
  readonly jobId: string;
  readonly device: string;
  readonly state: JobState;
  readonly step: JobStep | null;
  /** Blocks received / total, while downloading (and after). */
  readonly received: number;
  readonly blocks: number;
  /** Registry key of the model the job installs, and of the one it replaces. */
  readonly version: string;
  readonly previous: string | null;
  /** Why the job was refused or failed; null otherwise. */
  readonly reason: string | null;
  /** Model running on the device when the status was sent. */
  readonly active: string | null;
  /** Probation figures once it has run: {frames, errors, confidence, baselineConfidence, latencyMs, baselineLatencyMs}. */
  readonly probation: Record<string, number> | null;
  readonly ts: number;
};
