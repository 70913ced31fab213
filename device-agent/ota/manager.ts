/**
 * The device side of a remote model update: each job moves through its steps (ota/README.md "On the device") —
 * admission (admission.ts), DOWNLOADING (transfer.ts), VERIFYING and ACTIVATING (install.ts), the swap, PROBATION
 * (probation.ts) — to SUCCEEDED, or to FAILED with the previous version swapped back in. This file holds the
 * order of the steps: they run one at a time in one chain, every state change is one SQLite transaction reported
 * on `ota/status`, and a restart during ACTIVATING or PROBATION boots the previous version. It knows its host
 * only through OtaHost (host.ts).
 */
import type { KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, OtaError, show } from '../../runtime/index.js';
import { sha256 } from '../models.js';
import { createFileDurable, mkdirDurable, removeDurable, writeFileDurable } from '../store/durable.js';
import type { ModelRecord } from '../store/types.js';
import { admissionProblem, claimedVersion, parseJob } from './admission.js';
import type { OtaEvents, OtaHost } from './host.js';
import { installedPath, partPath, placeArtifact, trialRun, verifyArtifact } from './install.js';
import { architectureProblem, buildManifest, readPublicKey, verifyManifest } from './manifest.js';
import type { Manifest } from './manifest.js';
import { OnProbation, RecentResults } from './probation.js';
import type { Outcome } from './probation.js';
import { blockTopic, DEVICE_TOPICS, isTerminal, TOPIC } from './protocol.js';
import type { Job, JobState, JobStatus } from './protocol.js';
import { OtaStore } from './store.js';
import type { JobRow, JobUpdate } from './store.js';
import { Transfer } from './transfer.js';

export class OtaManager extends EventEmitter<OtaEvents> {
  private readonly db: OtaStore;
  private readonly trusted: KeyObject[];
  private readonly recent = new RecentResults();
  private download: Transfer | null = null;
  private probation: OnProbation | null = null;
  /** Serialises job steps: a message arriving mid-step waits for it. */
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly host: OtaHost) {
    super();
    this.trusted = host.config().ota.trustedKeys.map((k, i) => readPublicKey(k, `ota.trustedKeys[${i}]`));
    this.db = new OtaStore(host.dbPath);
  }

  /** Topic suffixes the MQTT link must subscribe to and hand to onMessage. */
  get topics(): readonly string[] {
    return DEVICE_TOPICS;
  }

  /** Folder that receives downloaded versions. */
  get dir(): string {
    const cfg = this.host.config();
    if (cfg.ota.dir) return resolve(cfg.ota.dir);
    if (cfg.model.dir) return resolve(cfg.model.dir);
    // Per device: several agents of a fleet on one box may share the store's folder.
    return cfg.store.path === ':memory:'
      ? join(tmpdir(), `sei-ota-${cfg.device}`)
      : join(dirname(resolve(cfg.store.path)), 'sei-models', cfg.device);
  }

  /** Recent jobs, newest first. */
  jobs(limit = 20): JobRow[] {
    return this.db.list(limit);
  }

  /**
   * Which version to boot, given the one the agent's config chose. An activation or probation cut short by a
   * restart is failed and rolled back; once an update has succeeded, the registry's active version (the
   * update's, or the one a rollback chose since) wins over the config, if its file is intact.
   */
  bootModel(chosen: ModelRecord): ModelRecord {
    const reg = this.host.registry;
    for (const row of this.db.open()) {
      if (row.step !== 'ACTIVATING' && row.step !== 'PROBATION') continue;
      const prev = row.previous ? reg.get(row.previous) : undefined;
      if (reg.get(row.version)) reg.markFailed(row.version);
      const back = prev && reg.intact(prev) ? prev : chosen;
      this.finish(row, 'FAILED', `agent restarted during ${row.step}; rolled back to ${back.version}`);
      if (prev && back === prev) return reg.activate(prev.version);
    }
    if (!this.db.lastSucceeded()) return chosen;
    const active = reg.list().find((m) => m.state === 'active');
    return active && reg.intact(active) ? active : chosen;
  }

  /** Resumes unfinished jobs (after boot); call once the MQTT link exists. */
  start(): void {
    this.sweepParts();
    for (const row of this.db.open()) {
      this.run(async () => {
        if (row.state === 'QUEUED') return this.admit(row);
        if (row.step === 'VERIFYING') return this.verify(row);
        if (row.step !== 'DOWNLOADING') return;
        let manifest: Manifest;
        try {
          // The trusted keys may have changed since the job was admitted.
          manifest = verifyManifest(row.job.manifest, this.trusted);
        } catch (err) {
          this.finish(row, 'REJECTED', (err as Error).message);
          return;
        }
        this.startDownload(row, manifest);
      });
    }
  }

  stop(): void {
    this.stopped = true;
    this.closeDownload();
    this.probation?.stop();
    this.probation = null;
    this.db.close();
  }

  /** A message on one of `topics` (topic relative to the device prefix). */
  onMessage(suffix: string, payload: Buffer): void {
    if (this.stopped) return;
    if (suffix === TOPIC.job) {
      if (payload.length > 0) this.run(() => this.onJob(payload));
    } else if (suffix === TOPIC.cancel) this.run(() => this.onCancel(payload));
    else if (suffix.startsWith(TOPIC.block)) {
      const b = blockTopic(suffix);
      if (b) this.download?.block(b.jobId, b.index, payload);
    }
  }

  /** A frame was handed to the running model (whether or not it produced a result). */
  frame(): void {
    this.probation?.gate.frame();
  }

  /** The running model's result on a frame: the baseline the next update is judged against, or probation evidence. */
  result(model: string, outcome: Outcome): void {
    this.recent.push(model, outcome);
    const p = this.probation;
    if (p && model === p.row.version) {
      p.gate.result(outcome);
      if (p.gate.done()) this.run(() => this.endProbation());
    }
  }

  /** Connected (again) to the broker. */
  online(): void {
    this.download?.online();
  }

  /** `cmd/activate {rollback: true}`: back to the version the last update replaced. */
  rollback(): Promise<{ active: string; rolledBackFrom: string }> {
    // In line with the job steps, so that it never races a probation that is ending.
    return new Promise((resolve, reject) => this.run(() => this.rollbackNow().then(resolve, reject)));
  }

  private async rollbackNow(): Promise<{ active: string; rolledBackFrom: string }> {
    const p = this.probation;
    const row = p?.row ?? this.db.lastSucceeded();
    const from = this.host.active().version;
    if (!row?.previous || from !== row.version) {
      throw new ConfigError(
        `activate: rollback: expected a running version installed by an update, got ${show(from)} (use {"version": ...} to pick one)`,
        'rollback',
      );
    }
    const prev = this.host.registry.get(row.previous);
    if (!prev)
      throw new ConfigError(
        `activate: rollback: expected the previous version ${row.previous} in the registry, got none`,
        'rollback',
      );
    const rec = await this.host.swap(prev);
    if (p) this.endProbationWith(p, `rolled back by hand (cmd/activate) during probation to ${rec.version}`);
    return { active: rec.version, rolledBackFrom: row.version };
  }

  /** Why no other activation may start now (a job under way or a version in probation), or null. */
  busy(): string | null {
    if (this.probation) return `job ${this.probation.row.jobId} is in PROBATION`;
    const open = this.db.open().find((r) => r.state === 'IN_PROGRESS');
    return open ? `job ${open.jobId} is ${open.step ?? open.state}` : null;
  }

  /**
   * Installs a version made on this device (a fine-tuned head) through the steps a downloaded one takes from
   * ACTIVATING on: atomic write into `dir`, load, canaries, registration, swap, probation, automatic rollback.
   * It is a job like the others (its id starts with `origin`; reported on `ota/status`; `cmd/activate
   * {rollback: true}` and a restart treat it alike). The manifest is built here and unsigned: the bytes never
   * left the box. Resolves once the version runs in probation; refuses with "busy" while another job is open.
   */
  installLocal(bytes: Uint8Array, origin: string): Promise<JobRow> {
    return new Promise((resolve, reject) => this.run(() => this.installLocalNow(bytes, origin).then(resolve, reject)));
  }

  private async installLocalNow(bytes: Uint8Array, origin: string): Promise<JobRow> {
    const busy = this.busy();
    if (busy) throw new OtaError(`busy: ${busy}`, 'job');
    const m = await buildManifest(bytes);
    if (this.host.registry.get(m.model))
      throw new OtaError(`version ${m.model}: expected a version not yet registered, got a registered one`, 'version');
    const arch = architectureProblem(m, this.host.active().engine?.model.input ?? m.architecture.input);
    if (arch) throw new OtaError(arch, 'job');
    const jobId = `${origin}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const job: Job = {
      jobId,
      manifest: { manifest: JSON.stringify(m), keyId: 'local', signature: '' },
      blockSize: bytes.length,
      blockSha256: [sha256(bytes)],
      allowDowngrade: false,
    };
    this.db.add(job, 1, m.model);
    // Nothing to download: the one block is here.
    this.db.markBlock(jobId, new Uint8Array(1), 1);
    // Verified here already (the bytes never left the box): straight to its installed path, durably.
    const final = installedPath(this.ensureDir(), m);
    writeFileDurable(final, bytes);
    const row = this.transition(this.db.get(jobId)!, {
      state: 'IN_PROGRESS',
      step: 'ACTIVATING',
      partPath: final,
      previous: this.host.active().version,
    });
    await this.install(row, m, bytes);
    return this.db.get(jobId)!;
  }

  // ------------------------------------------------------------------------------------------- the job table

  private run(step: () => void | Promise<void>): void {
    // Through the host's report, never an `error` event: nobody may be listening, and a daemon must not die of it.
    this.chain = this.chain.then(step).catch((err: Error) => this.host.report(err));
  }

  private status(row: JobRow): JobStatus {
    return {
      jobId: row.jobId,
      device: this.host.config().device,
      state: row.state,
      step: row.step,
      received: row.received,
      blocks: row.blocks,
      version: row.version,
      previous: row.previous,
      reason: row.reason,
      active: this.host.active().version,
      probation: row.probation,
      ts: Date.now(),
    };
  }

  /** Persists a state change (one transaction) and reports it through the outbox. */
  private transition(row: JobRow, u: JobUpdate): JobRow {
    const next = this.db.update(row.jobId, u);
    const status = this.status(next);
    this.host.enqueue(TOPIC.status, status, true);
    this.emit('job', status);
    return next;
  }

  private finish(
    row: JobRow,
    state: JobState,
    reason: string | null,
    probation: Record<string, number> | null = row.probation,
  ): JobRow {
    if (this.download?.jobId === row.jobId) this.closeDownload();
    // The outcome first, then the clean-up: the other order, cut in between, leaves an open job without its file.
    const done = this.transition(row, { state, step: null, reason, probation });
    // A QUEUED row names no part yet, but admission may have created it before a restart.
    removeDurable(
      row.partPath?.endsWith('.part') ? row.partPath : partPath(this.dir, row.jobId, this.host.config().device),
    );
    return done;
  }

  /**
   * Removes the `.part` files of this device's finished jobs: a cut (or a kill) between a job's outcome and the
   * removal of its file leaves one. A part of an unknown job may be another device's (a shared `ota.dir`): kept.
   */
  private sweepParts(): void {
    const dir = this.dir;
    const device = this.host.config().device;
    const suffix = `-${device}.part`;
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      if (!name.startsWith('.ota-') || !name.endsWith(suffix)) continue;
      const jobId = name.slice('.ota-'.length, -suffix.length);
      const row = this.db.get(jobId);
      if (row && isTerminal(row.state)) removeDurable(join(dir, name));
    }
  }

  private ensureDir(): string {
    const dir = this.dir;
    mkdirDurable(dir);
    return dir;
  }

  // ------------------------------------------------------------------------------------------- admission

  private async onJob(payload: Buffer): Promise<void> {
    const job = parseJob(payload);
    const known = this.db.get(job.jobId);
    if (known) {
      // The retained job comes back on every reconnect: answer with where it stands, run it once.
      if (isTerminal(known.state)) this.host.enqueue(TOPIC.status, this.status(known), true);
      return;
    }
    this.db.add(job, Array.isArray(job.blockSha256) ? job.blockSha256.length : 0, claimedVersion(job));
    await this.admit(this.transition(this.db.get(job.jobId)!, {}));
  }

  private async admit(row: JobRow): Promise<void> {
    let manifest: Manifest;
    const active = this.host.active();
    try {
      manifest = verifyManifest(row.job.manifest, this.trusted);
      const problem = admissionProblem(row.job, manifest, {
        ota: this.host.config().ota,
        dir: this.ensureDir(),
        engine: active.engine,
        running: active.version,
      });
      if (problem) throw new OtaError(problem, 'job');
    } catch (err) {
      if (!(err instanceof OtaError)) throw err;
      this.finish(row, 'REJECTED', err.message);
      return;
    }
    const busy = this.db.open().find((r) => r.jobId !== row.jobId && r.state === 'IN_PROGRESS');
    if (busy) {
      this.finish(row, 'REJECTED', `busy: job ${busy.jobId} is ${busy.step ?? busy.state}`);
      return;
    }
    const part = partPath(this.ensureDir(), row.jobId, this.host.config().device);
    // Durable before the row names it: a resumed download opens this file.
    createFileDurable(part, manifest.size);
    this.startDownload(
      this.transition(row, { state: 'IN_PROGRESS', step: 'DOWNLOADING', partPath: part, previous: active.version }),
      manifest,
    );
  }

  private async onCancel(payload: Buffer): Promise<void> {
    let msg: { jobId?: unknown; state?: unknown; reason?: unknown };
    try {
      msg = JSON.parse(payload.toString('utf8')) as typeof msg;
    } catch {
      return;
    }
    const row = typeof msg.jobId === 'string' ? this.db.get(msg.jobId) : undefined;
    // Once verified, a job finishes on its own (and rolls back by itself if it must).
    if (!row || !(row.state === 'QUEUED' || row.step === 'DOWNLOADING')) return;
    const state: JobState = msg.state === 'TIMED_OUT' ? 'TIMED_OUT' : 'FAILED';
    this.finish(row, state, typeof msg.reason === 'string' ? msg.reason : 'cancelled by the operator');
  }

  // ------------------------------------------------------------------------------------------- transfer

  private startDownload(row: JobRow, manifest: Manifest): void {
    const t: Transfer = new Transfer(row, manifest, {
      config: () => this.host.config().ota,
      request: (blocks) => this.host.publish(TOPIC.request, { jobId: row.jobId, blocks }, { qos: 1 }),
      saved: (missing, received) => this.db.markBlock(row.jobId, missing, received),
      progress: (received) => void this.host.publish(TOPIC.status, { ...this.status(row), received }, { qos: 0 }),
      complete: () => this.run(() => this.afterDownload(t)),
      refuse: (reason) => this.run(() => void this.finish(this.db.get(row.jobId)!, 'REJECTED', reason)),
    });
    this.download = t;
    t.start();
  }

  private closeDownload(): void {
    this.download?.close();
    this.download = null;
  }

  private async afterDownload(t: Transfer): Promise<void> {
    // Cancelled or refused meanwhile.
    if (this.download !== t) return;
    this.download = null;
    await this.verify(this.transition(this.db.get(t.jobId)!, { step: 'VERIFYING' }));
  }

  // ------------------------------------------------------------------------------------------- verify, install

  private async verify(row: JobRow): Promise<void> {
    const reject = (reason: string) => void this.finish(row, 'REJECTED', reason);
    let m: Manifest;
    try {
      // Again, right before activation: the signature is what the artifact's sha256 is trusted through.
      m = verifyManifest(row.job.manifest, this.trusted);
    } catch (err) {
      return reject((err as Error).message);
    }
    const checked = verifyArtifact(row.partPath!, m, this.trusted);
    if ('problem' in checked) return reject(checked.problem);
    await this.install(this.transition(row, { step: 'ACTIVATING' }), m, checked.bytes);
  }

  private async install(row: JobRow, m: Manifest, bytes: Uint8Array): Promise<void> {
    // A download is moved into place now; a version made on the box was written there (installLocal).
    if (row.partPath!.endsWith('.part'))
      row = this.db.update(row.jobId, { partPath: placeArtifact(row.partPath!, this.dir, m) });
    const final = row.partPath!;
    const problem = await trialRun(final, bytes, m, this.host.config().model.kernel);
    if (problem) {
      this.finish(row, 'FAILED', `${problem}; kept ${row.previous}`);
      return;
    }
    const rec = this.host.registry.register({ version: m.model, sha256: m.sha256, path: final });
    const baseline = this.recent.baseline(this.host.active().version);
    row = this.transition(row, { step: 'PROBATION' });
    await this.host.swap(rec);
    this.probation = new OnProbation(row, this.host.config().ota.probation, baseline, () =>
      this.run(() => this.endProbation()),
    );
  }

  // ------------------------------------------------------------------------------------------- probation

  private async endProbation(): Promise<void> {
    const p = this.probation;
    if (!p?.gate.done()) return;
    const running = this.host.active().version;
    if (running !== p.row.version) {
      // Someone picked another version (cmd/activate) during probation: the new one was not proven.
      this.endProbationWith(p, `probation: ended by an activation of ${running} by hand`);
      return;
    }
    const problem = p.gate.verdict();
    if (!problem) {
      this.endProbationWith(p, null);
      return;
    }
    const prev = p.row.previous ? this.host.registry.get(p.row.previous) : undefined;
    let back = 'nothing to roll back to';
    if (prev) {
      await this.host.swap(prev);
      back = `rolled back to ${prev.version}`;
    }
    this.host.registry.markFailed(p.row.version);
    this.endProbationWith(p, `${problem}; ${back}`);
  }

  private endProbationWith(p: OnProbation, failure: string | null): void {
    p.stop();
    if (this.probation !== p) return;
    this.probation = null;
    this.finish(this.db.get(p.row.jobId)!, failure ? 'FAILED' : 'SUCCEEDED', failure, p.gate.figures());
  }
}
