/**
 * What OTA needs from whoever runs it, and what it tells. Narrow on purpose: OTA imports nothing of the agent, so
 * the agent (agent.ts) or a test's fake host (test/ota-manager.test.ts) can drive it alike.
 */
import type { Engine } from '../../runtime/index.js';
import type { AgentConfig } from '../config.js';
import type { ModelRegistry } from '../registry.js';
import type { ModelRecord } from '../store/types.js';
import type { JobStatus } from './protocol.js';

export interface OtaHost {
  /** The current (validated) config: OTA reads its `ota` section, `device`, `store.path`, `model.dir` and `model.kernel`. */
  config(): AgentConfig;
  /** SQLite file for the OTA tables (the agent's own file, or ":memory:"). */
  readonly dbPath: string;
  readonly registry: ModelRegistry;
  /** Publishes under the device prefix now; resolves false when offline. */
  publish(suffix: string, body: unknown, opts: { qos: 0 | 1; retain?: boolean }): Promise<boolean>;
  /** Writes a message that must not be lost to the outbox (sent in order once the broker is reachable). */
  enqueue(suffix: string, body: unknown, retain: boolean): void;
  /** The running model. */
  active(): { version: string | null; engine: Engine | null };
  /** Makes a registered version the running model, between two frames. */
  swap(rec: ModelRecord): Promise<ModelRecord>;
  /** An update step that failed outside its job's own outcome (a malformed message, a disk error): never thrown. */
  report(err: Error): void;
}

/** Events of an OtaManager. */
export interface OtaEvents {
  /** A job's state changed (persisted, and queued for `ota/status`). */
  job: [status: JobStatus];
}
