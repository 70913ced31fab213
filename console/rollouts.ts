/**
 * Fleet rollouts started from the console page. The page holds no key and no artifact: it names one of the
 * `sei sign` outputs in the artifacts folder, and the server runs the same operator code as `sei deploy --fleet`
 * (device-agent/ota/operator.ts: waves, abort threshold, block serving) with the page's broker credentials, so
 * the broker's ACL decides whether that account may command devices. Each rollout keeps its log for the pages
 * that follow it (server-sent events).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sha256 } from '../device-agent/index.js';
import { deploy } from '../device-agent/ota/index.js';
import type { DeployResult, Manifest, SignedManifest } from '../device-agent/ota/index.js';
import { errorBody } from '../device-agent/mqtt/link.js';
import { ConfigError, show } from '../runtime/index.js';
import type { Artifact, RolloutEvent, RolloutOutcome, RolloutRequest, RolloutStarted } from './api.js';

const MANIFEST_SUFFIX = '.manifest.json';
/** Finished rollouts kept for late readers. */
const KEEP = 20;

interface Rollout {
  readonly started: RolloutStarted;
  readonly events: RolloutEvent[];
  readonly listeners: Set<(e: RolloutEvent) => void>;
  done: boolean;
}

/** A signed manifest file's contents, or why it is not one. */
function readSigned(path: string): { signed: SignedManifest; manifest: Manifest } {
  const signed = JSON.parse(readFileSync(path, 'utf8')) as Partial<SignedManifest>;
  if (typeof signed.manifest !== 'string' || typeof signed.keyId !== 'string' || typeof signed.signature !== 'string') {
    throw new ConfigError(
      `${path}: expected a signed manifest {manifest, keyId, signature} as \`sei sign\` writes it, got keys ${show(Object.keys(signed).join(', '))}`,
      'artifact',
    );
  }
  return { signed: signed as SignedManifest, manifest: JSON.parse(signed.manifest) as Manifest };
}

export class Rollouts {
  private readonly rollouts = new Map<string, Rollout>();
  readonly dir: string;

  constructor(
    dir: string,
    private readonly url: string,
    private readonly topicRoot: string,
  ) {
    this.dir = resolve(dir);
  }

  /** The `sei sign` outputs in the folder, each with what stops it from shipping. */
  list(): Artifact[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir)
      .filter((f) => f.endsWith(MANIFEST_SUFFIX))
      .sort()
      .flatMap((f): Artifact[] => {
        const id = f.slice(0, -MANIFEST_SUFFIX.length);
        try {
          const { signed, manifest } = readSigned(join(this.dir, f));
          return [
            {
              id,
              model: manifest.model,
              size: manifest.size,
              sha256: manifest.sha256,
              keyId: signed.keyId,
              createdAt: manifest.createdAt,
              canaries: manifest.canaries.length,
              problem: this.problem(id, manifest),
            },
          ];
        } catch {
          // Not a manifest of ours (another tool's JSON): not listed.
          return [];
        }
      });
  }

  private problem(id: string, manifest: Manifest): string | null {
    const path = join(this.dir, `${id}.bwsnn`);
    if (!existsSync(path)) return `${id}.bwsnn is missing beside its manifest`;
    const bytes = readFileSync(path);
    if (bytes.length !== manifest.size || sha256(bytes) !== manifest.sha256)
      return `${id}.bwsnn is not the file its manifest describes (size or sha256 differ)`;
    return null;
  }

  /** Checks the request (a ConfigError naming the field), then runs the rollout in the background. */
  start(req: RolloutRequest): RolloutStarted {
    const artifact = this.list().find((a) => a.id === req.artifact);
    if (!artifact)
      throw new ConfigError(
        `artifact: expected one of ${
          this.list()
            .map((a) => a.id)
            .join(', ') || `the signed artifacts in ${this.dir} (none found)`
        }, got ${show(req.artifact)}`,
        'artifact',
      );
    if (artifact.problem)
      throw new ConfigError(
        `artifact: expected a shippable artifact, got ${show(req.artifact)}: ${artifact.problem}`,
        'artifact',
      );
    if (typeof req.fleet !== 'string' || !/^[^/#+\s]+$/.test(req.fleet))
      throw new ConfigError(`fleet: expected a fleet name, got ${show(req.fleet)}`, 'fleet');
    if (
      !Array.isArray(req.devices) ||
      req.devices.length === 0 ||
      !req.devices.every((d) => typeof d === 'string' && /^[^/#+\s]+$/.test(d))
    ) {
      throw new ConfigError(`devices: expected a non-empty list of device names, got ${show(req.devices)}`, 'devices');
    }
    const int = (v: unknown, field: string, min: number, max: number): number | undefined => {
      if (v === undefined) return undefined;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max)
        throw new ConfigError(`${field}: expected a number in [${min}, ${max}], got ${show(v)}`, field);
      return v;
    };
    const waveSize = int(req.waveSize, 'waveSize', 1, 100_000);
    const abortThreshold = int(req.abortThreshold, 'abortThreshold', 0, 100) ?? 50;
    const timeoutS = int(req.timeoutS, 'timeoutS', 1, 86_400) ?? 600;
    const { signed, manifest } = readSigned(join(this.dir, `${artifact.id}${MANIFEST_SUFFIX}`));
    const bytes = new Uint8Array(readFileSync(join(this.dir, `${artifact.id}.bwsnn`)));
    const id = `job-${Date.now().toString(36)}-${randomUUID().slice(0, 6)}`;
    const started: RolloutStarted = { id, model: manifest.model, fleet: req.fleet, devices: [...req.devices] };
    const rollout: Rollout = { started, events: [], listeners: new Set(), done: false };
    this.rollouts.set(id, rollout);
    this.forget();
    const emit = (e: RolloutEvent) => {
      rollout.events.push(e);
      for (const l of rollout.listeners) l(e);
    };
    deploy({
      url: this.url,
      artifact: bytes,
      manifest,
      signed,
      fleet: req.fleet,
      devices: req.devices,
      topicRoot: this.topicRoot,
      jobId: id,
      ...(waveSize !== undefined ? { waveSize } : {}),
      abortThresholdPct: abortThreshold,
      allowDowngrade: req.allowDowngrade === true,
      timeoutS,
      ...(req.username ? { username: req.username } : {}),
      ...(req.password ? { password: req.password } : {}),
      log: (line) => emit({ type: 'log', ts: Date.now(), line }),
    })
      .then(
        (result) => emit({ type: 'done', ts: Date.now(), outcome: outcome(result) }),
        (err: Error) => emit({ type: 'failed', ts: Date.now(), error: errorBody(refusal(err, req.username)) }),
      )
      .finally(() => {
        rollout.done = true;
        rollout.listeners.clear();
      });
    return started;
  }

  /** Replays a rollout's events to `on`, then follows it; returns the unsubscribe, or null for an unknown id. */
  follow(id: string, on: (e: RolloutEvent) => void): (() => void) | null {
    const r = this.rollouts.get(id);
    if (!r) return null;
    r.events.forEach(on);
    if (!r.done) r.listeners.add(on);
    return () => r.listeners.delete(on);
  }

  private forget(): void {
    const finished = [...this.rollouts.values()].filter((r) => r.done);
    for (const r of finished.slice(0, Math.max(0, finished.length - KEEP))) this.rollouts.delete(r.started.id);
  }
}

function outcome(r: DeployResult): RolloutOutcome {
  return {
    ok: r.ok,
    aborted: r.aborted,
    devices: r.devices.map((d) => ({
      device: d.device,
      wave: d.wave,
      state: d.state,
      step: d.step,
      reason: d.reason,
      active: d.active,
    })),
    waves: r.waves.map((w) => ({
      wave: w.wave,
      devices: w.devices,
      counts: w.counts,
      failedPct: w.failedPct,
      aborted: w.aborted,
    })),
  };
}

/**
 * The broker's word for a refused publish (MQTT 5 reason code 135 on the PUBACK), put in terms of the account:
 * a viewer account may subscribe only.
 */
function refusal(err: Error, username: string | undefined): Error {
  const code = (err as { code?: unknown }).code;
  if (code === 135 && err.message.startsWith('Publish error')) {
    const who = username ? `user ${JSON.stringify(username)}` : 'an anonymous client';
    return new ConfigError(
      `rollout refused: the broker does not let ${who} publish device commands (${err.message}); this account can only watch: sign in with an operator account to deploy`,
      'username',
    );
  }
  return err;
}
