/** What a command handler gets: its arguments and the parts of the agent a command may use. */
import type { Engine, InferResult } from '../../runtime/index.js';
import type { Capturer } from '../capture/index.js';
import type { AgentConfig } from '../config.js';
import type { FineTuner } from '../finetuner.js';
import type { MetricsSnapshot } from '../messages.js';
import type { Json } from '../mqtt/link.js';
import type { OtaManager } from '../ota/manager.js';
import type { ModelRegistry } from '../registry.js';
import type { StateStore } from '../store/types.js';

export interface CommandContext {
  /** The current config, and the config-file shape it was parsed from. */
  config(): { readonly parsed: AgentConfig; readonly raw: Json };
  readonly store: StateStore;
  readonly registry: ModelRegistry;
  readonly ota: Pick<OtaManager, 'rollback'>;
  readonly finetuner: Pick<FineTuner, 'run' | 'labelled'>;
  /** The capture store and the requests for frames to capture (device-agent/capture). */
  readonly capture: Pick<Capturer, 'request' | 'store'>;
  /** The running model. */
  active(): { readonly version: string; readonly engine: Engine };
  /** The retained `status` message's fields. */
  status(): Json;
  snapshot(): MetricsSnapshot;
  /** Makes a registered version the running model; frames queued for the previous one are dropped. */
  activate(version: string): Promise<{ version: string; activatedAt: number | null }>;
  /** Applies a new config (config-file shape, validated here) at once; resolves when the new source can deliver. */
  reconfigure(raw: Json): Promise<AgentConfig>;
  /** A frame still held in memory, by the id the agent gave it. */
  held(frame: number): { readonly ts: number; readonly data: Uint8Array } | undefined;
  /** Calls `listener` after every inferred frame until the returned function is called. */
  results(listener: (r: FrameResult) => void): () => void;
  /** Publishes under the device prefix now if connected (QoS 0: nothing is kept while offline). */
  publish(suffix: string, body: Json): void;
}

/** One inferred frame (the agent's `result` event). */
export interface FrameResult {
  /** The frame id (what `label` and `held` take). */
  readonly frame: number;
  readonly label: number | null;
  /** Registry key of the model that ran it. */
  readonly model: string;
  readonly result: InferResult;
}

/**
 * One `cmd/<name>`: resolves to the reply's `result`, throws (a SeiError naming the field) for an error reply.
 * `progress` sends interim messages to the same reply topic.
 */
export type CommandHandler = (args: Json, ctx: CommandContext, progress: (body: Json) => void) => unknown;
