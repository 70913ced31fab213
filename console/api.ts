/**
 * The console server's HTTP API as the page sees it: the page's settings, the signed artifacts a rollout can ship,
 * and a rollout's events. Types only (the server and the page both import them; the page's type check has no Node
 * types), so a change breaks the build of both.
 */
import type { ErrorBody, JobState } from '../device-agent/messages.js';

/** `GET /config.json`. */
export type ConsoleConfig = {
  /** MQTT-over-WebSocket URL of the broker. */
  readonly mqtt: string;
  /** First topic level of the fleet. */
  readonly topicRoot: string;
  /** Sign in at once (with the credentials below, or anonymously) rather than ask for an account. */
  readonly signIn: 'ask' | 'auto';
  /** Credentials given to `sei console`. */
  readonly username: string | null;
  readonly password: string | null;
  /** Where signed artifacts are looked for. */
  readonly artifactsDir: string;
};

/** One `sei sign` output pair (PREFIX.bwsnn + PREFIX.manifest.json) in the artifacts folder. */
export type Artifact = {
  /** PREFIX, relative to the folder: what a rollout request names. */
  readonly id: string;
  /** Registry key the devices will know it by, `<name>@<version>`. */
  readonly model: string;
  readonly size: number;
  readonly sha256: string;
  /** Who signed the manifest (hex key id; devices check it against their trusted keys). */
  readonly keyId: string;
  readonly createdAt: string;
  readonly canaries: number;
  /** Why it cannot be shipped (a missing or altered .bwsnn), or null. */
  readonly problem: string | null;
};

/** `GET /api/artifacts`. */
export type ArtifactList = { readonly dir: string; readonly artifacts: readonly Artifact[] };

/** `POST /api/rollouts`: what `sei deploy --fleet` takes, minus the key (the artifact is signed already). */
export type RolloutRequest = {
  readonly artifact: string;
  readonly fleet: string;
  readonly devices: readonly string[];
  /** Devices per wave; default all at once. */
  readonly waveSize?: number;
  /** Stop when more than this % of a wave does not succeed. Default 50. */
  readonly abortThreshold?: number;
  readonly allowDowngrade?: boolean;
  /** Seconds a device may take. Default 600. */
  readonly timeoutS?: number;
  /** The page's broker credentials: the rollout publishes as that account, so the broker's ACL decides. */
  readonly username?: string;
  readonly password?: string;
};

/** `POST /api/rollouts` answer: the job id every device's `ota/status` carries. */
export type RolloutStarted = {
  readonly id: string;
  readonly model: string;
  readonly fleet: string;
  readonly devices: readonly string[];
};

export type RolloutDevice = {
  readonly device: string;
  readonly wave: number;
  readonly state: JobState | 'NOT_STARTED';
  readonly step: string | null;
  readonly reason: string | null;
  readonly active: string | null;
};

export type RolloutOutcome = {
  readonly ok: boolean;
  readonly aborted: boolean;
  readonly devices: readonly RolloutDevice[];
  readonly waves: readonly {
    readonly wave: number;
    readonly devices: readonly string[];
    readonly counts: Readonly<Record<string, number>>;
    readonly failedPct: number;
    readonly aborted: boolean;
  }[];
};

/** `GET /api/rollouts/<id>/events` (server-sent events, one JSON each): the log, then the end. */
export type RolloutEvent =
  | { readonly type: 'log'; readonly ts: number; readonly line: string }
  | { readonly type: 'done'; readonly ts: number; readonly outcome: RolloutOutcome }
  | { readonly type: 'failed'; readonly ts: number; readonly error: ErrorBody };

/** Every non-2xx answer. */
export type ApiError = { readonly error: ErrorBody };
