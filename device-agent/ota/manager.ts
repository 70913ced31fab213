/**
 * The device side of a remote model update. A job arrives on `ota/job`; it is refused at once if its manifest
 * is not signed by a trusted key, is too large for the limit or the disk, needs an architecture or input shape
 * this device cannot run, or is not newer than the running model. Otherwise the artifact is fetched block by
 * block (a bitmap of missing blocks in SQLite, so a restart or a broker drop resumes where it stopped), verified
 * (sha256 of the whole artifact against the signed manifest, the .bwsnn reader's own checks), installed (temp
 * file in the model folder, fsync, rename, fsync of the folder), loaded, checked on the manifest's canary
 * frames, swapped in between two frames, and watched through a probation window. Any failure after the swap
 * swaps the previous version back in. A restart during ACTIVATING or PROBATION boots the previous version.
 */
import type { KeyObject } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, inspectBwsnn, loadModel, OtaError, readBwsnn, show } from '../../runtime/index.js';
import type { Engine } from '../../runtime/index.js';
import type { AgentEvents } from '../agent.js';
import type { AgentConfig } from '../config.js';
import { sha256 } from '../models.js';
import type { ModelRecord, StateStore } from '../store/types.js';
import { freeBytes, fsyncDir, fsyncFile } from './disk.js';
import { architectureProblem, buildManifest, canaryProblem, readPublicKey, verifyManifest } from './manifest.js';
import type { Manifest } from './manifest.js';
import { Probation, RecentResults } from './probation.js';
import { blockCount, DEVICE_TOPICS, isTerminal, TOPIC } from './protocol.js';
import type { Job, JobState, JobStatus } from './protocol.js';
import { isMissing, missingBlocks, OtaStore } from './store.js';
import type { JobRow, JobUpdate } from './store.js';

/** What the manager needs from the agent: narrow on purpose, so that it can be driven by any host. */
export interface OtaHost {
  /** The agent's current (validated) config. */
  config(): AgentConfig;
  /** SQLite file for the OTA tables (the agent's own file, or ":memory:"). */
  readonly dbPath: string;
  /** The model registry. */
  readonly registry: StateStore;
  /** Publishes under the device prefix now; resolves false when offline. */
  publish(suffix: string, body: unknown, opts: { qos: 0 | 1; retain?: boolean }): Promise<boolean>;
  /** Writes a message that must not be lost to the outbox (sent in order once the broker is reachable). */
  enqueue(suffix: string, body: unknown, retain: boolean): void;
  /** The running model. */
  active(): { version: string | null; engine: Engine | null };
  /** Makes a registered version the running model, between two frames. */
  swap(rec: ModelRecord): Promise<ModelRecord>;
  /** `frame`, `result` and `online` events of the agent. */
  readonly events: EventEmitter<AgentEvents>;
}

interface Download {
  readonly row: JobRow;
  readonly manifest: Manifest;
  readonly fd: number;
  readonly missing: Uint8Array;
  received: number;
  readonly outstanding: Set<number>;
  readonly retries: Map<number, number>;
  lastBlockAt: number;
  timer: NodeJS.Timeout;
}

interface InProbation {
  readonly row: JobRow;
  readonly gate: Probation;
  timer: NodeJS.Timeout;
}

export class OtaManager {
  private readonly db: OtaStore;
  private readonly trusted: KeyObject[];
  private readonly recent = new RecentResults();
  private download: Download | null = null;
  private probation: InProbation | null = null;
  /** Serialises job steps: a message arriving mid-step waits for it. */
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly listeners: { frame: () => void; result: (r: { model: string; result: { latencyMs: number; confidence: number } }) => void; online: () => void };

  constructor(private readonly host: OtaHost) {
    const cfg = host.config();
    this.trusted = cfg.ota.trustedKeys.map((k, i) => readPublicKey(k, `ota.trustedKeys[${i}]`));
    this.db = new OtaStore(host.dbPath);
    this.listeners = {
      frame: () => this.probation?.gate.frame(),
      result: (r) => {
        this.recent.push(r.model, r.result);
        const p = this.probation;
        if (p && r.model === p.row.version) {
          p.gate.result(r.result);
          if (p.gate.done()) this.run(() => this.endProbation());
        }
      },
      online: () => {
        if (!this.download) return;
        // Requests in flight on the old connection are gone with it.
        this.download.outstanding.clear();
        this.requestMore();
      },
    };
    host.events.on('frame', this.listeners.frame);
    host.events.on('result', this.listeners.result);
    host.events.on('online', this.listeners.online);
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
    return cfg.store.path === ':memory:' ? join(tmpdir(), `sei-ota-${cfg.device}`) : join(dirname(resolve(cfg.store.path)), 'sei-models', cfg.device);
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
      const prev = row.previous ? reg.getModel(row.previous) : undefined;
      if (reg.getModel(row.version)) reg.markModelFailed(row.version);
      const back = prev && intact(prev) ? prev : chosen;
      this.finish(row, 'FAILED', `agent restarted during ${row.step}; rolled back to ${back.version}`);
      if (prev && intact(prev)) {
        reg.activateModel(prev.version);
        return prev;
      }
    }
    if (!this.db.lastSucceeded()) return chosen;
    const active = reg.listModels().find((m) => m.state === 'active');
    return active && intact(active) ? active : chosen;
  }

  /** Resumes unfinished jobs (after boot); call once the MQTT link exists. */
  start(): void {
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
    this.host.events.off('frame', this.listeners.frame);
    this.host.events.off('result', this.listeners.result);
    this.host.events.off('online', this.listeners.online);
    this.closeDownload();
    if (this.probation) clearInterval(this.probation.timer);
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
      const [jobId, index] = suffix.slice(TOPIC.block.length).split('/');
      this.onBlock(jobId ?? '', Number(index), payload);
    }
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
    if (!row || !row.previous || from !== row.version) {
      throw new ConfigError(`activate: rollback: expected a running version installed by an update, got ${show(from)} (use {"version": ...} to pick one)`, 'rollback');
    }
    const prev = this.host.registry.getModel(row.previous);
    if (!prev) throw new ConfigError(`activate: rollback: expected the previous version ${row.previous} in the registry, got none`, 'rollback');
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
    if (this.host.registry.getModel(m.model)) throw new OtaError(`version ${m.model}: expected a version not yet registered, got a registered one`, 'version');
    const arch = architectureProblem(m, this.host.active().engine?.model.input ?? m.architecture.input);
    if (arch) throw new OtaError(arch, 'job');
    const jobId = `${origin}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const job: Job = { jobId, manifest: { manifest: JSON.stringify(m), keyId: 'local', signature: '' }, blockSize: bytes.length, blockSha256: [sha256(bytes)], allowDowngrade: false };
    this.db.add(job, 1, m.model);
    // Nothing to download: the one block is here.
    this.db.markBlock(jobId, new Uint8Array(1), 1);
    const dir = this.dir;
    mkdirSync(dir, { recursive: true });
    const part = join(dir, `.ota-${jobId}-${this.host.config().device}.part`);
    writeFileSync(part, bytes);
    const row = this.transition(this.db.get(jobId)!, { state: 'IN_PROGRESS', step: 'ACTIVATING', partPath: part, previous: this.host.active().version });
    await this.install(row, m, bytes);
    return this.db.get(jobId)!;
  }

  // ------------------------------------------------------------------------------------------- job steps

  private run(step: () => void | Promise<void>): void {
    this.chain = this.chain.then(step).catch((err: Error) => {
      this.host.events.emit('error', err);
    });
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
    this.host.enqueue(TOPIC.status, this.status(next), true);
    return next;
  }

  private finish(row: JobRow, state: JobState, reason: string | null, probation: Record<string, number> | null = row.probation): JobRow {
    if (this.download?.row.jobId === row.jobId) this.closeDownload();
    if (row.partPath && row.partPath.endsWith('.part') && existsSync(row.partPath)) unlinkQuiet(row.partPath);
    return this.transition(row, { state, step: null, reason, probation });
  }

  private async onJob(payload: Buffer): Promise<void> {
    let job: Job;
    try {
      job = JSON.parse(payload.toString('utf8')) as Job;
    } catch (err) {
      throw new OtaError(`ota/job: expected a JSON job, got ${(err as Error).message}`, 'ota/job');
    }
    if (typeof job !== 'object' || job === null || typeof job.jobId !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(job.jobId)) {
      throw new OtaError(`ota/job: jobId: expected 1-64 of [A-Za-z0-9_.-], got ${show((job as { jobId?: unknown } | null)?.jobId)}`, 'jobId');
    }
    const known = this.db.get(job.jobId);
    if (known) {
      // The retained job comes back on every reconnect: answer with where it stands, run it once.
      if (isTerminal(known.state)) this.host.enqueue(TOPIC.status, this.status(known), true);
      return;
    }
    let version = 'unknown';
    try {
      version = (JSON.parse((job.manifest as { manifest: string }).manifest) as Manifest).model ?? version;
    } catch {
      // reported below by verifyManifest
    }
    const blocks = Array.isArray(job.blockSha256) ? job.blockSha256.length : 0;
    this.db.add(job, blocks, String(version));
    const row = this.transition(this.db.get(job.jobId)!, {});
    await this.admit(row);
  }

  /** The refusals that need no download. */
  private async admit(row: JobRow): Promise<void> {
    const job = row.job;
    let manifest: Manifest;
    try {
      manifest = verifyManifest(job.manifest, this.trusted);
      const problem = this.admissionProblem(job, manifest);
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
    const dir = this.dir;
    mkdirSync(dir, { recursive: true });
    const part = join(dir, `.ota-${row.jobId}-${this.host.config().device}.part`);
    const fd = openSync(part, 'w');
    ftruncateSync(fd, manifest.size);
    closeSync(fd);
    const next = this.transition(row, { state: 'IN_PROGRESS', step: 'DOWNLOADING', partPath: part, previous: this.host.active().version });
    this.startDownload(next, manifest);
  }

  private admissionProblem(job: Job, m: Manifest): string | null {
    const cfg = this.host.config();
    if (!Number.isInteger(job.blockSize) || job.blockSize < 1) return `job.blockSize: expected an integer >= 1, got ${show(job.blockSize)}`;
    const blocks = blockCount(m.size, job.blockSize);
    if (!Array.isArray(job.blockSha256) || job.blockSha256.length !== blocks || !job.blockSha256.every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h))) {
      return `job.blockSha256: expected ${blocks} hex SHA-256 digests (size ${m.size} / block ${job.blockSize}), got ${show(job.blockSha256)}`;
    }
    if (m.size > cfg.ota.maxBytes) return `too large: size ${m.size} bytes > ota.maxBytes ${cfg.ota.maxBytes}`;
    const dir = this.dir;
    mkdirSync(dir, { recursive: true });
    const free = freeBytes(dir);
    if (free !== null && free < m.size + cfg.ota.reserveBytes) return `too large for the free disk: ${m.size} bytes + ota.reserveBytes ${cfg.ota.reserveBytes} > ${free} bytes free in ${dir}`;
    const engine = this.host.active().engine;
    const arch = architectureProblem(m, engine ? engine.model.input : m.architecture.input);
    if (arch) return arch;
    const current = engine?.model.version ?? -1;
    if (m.version <= current && job.allowDowngrade !== true) return `version not newer: expected > ${current} (the running ${this.host.active().version}), got ${m.version} (set allowDowngrade to install it)`;
    // The registry is keyed by name@version: other bytes under the running key would leave no version to roll back to.
    const running = this.host.active().version;
    if (m.model === running) return `version ${m.model}: expected a version other than the running one, got the running one${job.allowDowngrade === true ? ' again (allowDowngrade does not reinstall it)' : ''}`;
    return null;
  }

  // ------------------------------------------------------------------------------------------- transfer

  private startDownload(row: JobRow, manifest: Manifest): void {
    const fd = openSync(row.partPath!, 'r+');
    const timeout = this.host.config().ota.requestTimeoutMs;
    const d: Download = { row, manifest, fd, missing: Uint8Array.from(row.missing), received: row.received, outstanding: new Set(), retries: new Map(), lastBlockAt: Date.now(), timer: setInterval(() => this.onStall(), Math.max(25, timeout / 2)) };
    d.timer.unref?.();
    this.download = d;
    if (d.received === row.blocks) this.run(() => this.afterDownload());
    else this.requestMore();
  }

  private onStall(): void {
    const d = this.download;
    if (!d || Date.now() - d.lastBlockAt < this.host.config().ota.requestTimeoutMs) return;
    d.outstanding.clear();
    d.lastBlockAt = Date.now();
    this.requestMore();
  }

  private requestMore(): void {
    const d = this.download;
    if (!d) return;
    const room = this.host.config().ota.window - d.outstanding.size;
    if (room <= 0) return;
    const wanted: number[] = [];
    for (const i of missingBlocks(d.missing, d.row.blocks)) {
      if (wanted.length >= room) break;
      if (!d.outstanding.has(i)) wanted.push(i);
    }
    if (wanted.length === 0) return;
    for (const i of wanted) d.outstanding.add(i);
    void this.host.publish(TOPIC.request, { jobId: d.row.jobId, blocks: wanted }, { qos: 1 }).then(
      (sent) => {
        // Offline: the next `online` asks again.
        if (!sent) for (const i of wanted) d.outstanding.delete(i);
      },
      () => wanted.forEach((i) => d.outstanding.delete(i)),
    );
  }

  private onBlock(jobId: string, i: number, payload: Buffer): void {
    const d = this.download;
    if (!d || d.row.jobId !== jobId || !Number.isInteger(i) || i < 0 || i >= d.row.blocks) return;
    d.outstanding.delete(i);
    if (!isMissing(d.missing, i)) return;
    const { blockSize } = d.row.job;
    const expected = i === d.row.blocks - 1 ? d.manifest.size - i * blockSize : blockSize;
    let problem: string | null = null;
    if (payload.length !== expected) problem = `truncated block ${i}: expected ${expected} bytes, got ${payload.length}`;
    else {
      const digest = sha256(payload);
      if (digest !== d.row.job.blockSha256[i]) problem = `corrupt block ${i}: expected sha256 ${d.row.job.blockSha256[i]!.slice(0, 16)}…, got ${digest.slice(0, 16)}…`;
    }
    if (problem) {
      const n = (d.retries.get(i) ?? 0) + 1;
      d.retries.set(i, n);
      if (n >= this.host.config().ota.maxBlockRetries) {
        this.closeDownload();
        this.run(() => void this.finish(this.db.get(jobId)!, 'REJECTED', `${problem} (${n} times)`));
      } else this.requestMore();
      return;
    }
    writeSync(d.fd, payload, 0, payload.length, i * blockSize);
    d.missing[i >> 3]! &= ~(1 << (i & 7));
    d.received++;
    d.lastBlockAt = Date.now();
    this.db.markBlock(jobId, d.missing, d.received);
    const step = Math.max(1, Math.floor(d.row.blocks / 10));
    if (d.received % step === 0 && d.received < d.row.blocks) {
      void this.host.publish(TOPIC.status, { ...this.status(d.row), received: d.received }, { qos: 0 });
    }
    if (d.received === d.row.blocks) this.run(() => this.afterDownload());
    else this.requestMore();
  }

  private closeDownload(): void {
    const d = this.download;
    if (!d) return;
    this.download = null;
    clearInterval(d.timer);
    try {
      closeSync(d.fd);
    } catch {
      // already closed
    }
  }

  private async afterDownload(): Promise<void> {
    const d = this.download;
    if (!d) return;
    fsyncSync(d.fd);
    this.closeDownload();
    await this.verify(this.transition(this.db.get(d.row.jobId)!, { step: 'VERIFYING' }));
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

  // ------------------------------------------------------------------------------------------- verify, install

  private async verify(row: JobRow): Promise<void> {
    const reject = (reason: string) => void this.finish(row, 'REJECTED', reason);
    let m: Manifest;
    try {
      // Again, right before activation: the signature is what the sha256 below is trusted through.
      m = verifyManifest(row.job.manifest, this.trusted);
    } catch (err) {
      return reject((err as Error).message);
    }
    const bytes = new Uint8Array(readFileSync(row.partPath!));
    const digest = sha256(bytes);
    if (bytes.length !== m.size) return reject(`size mismatch: expected ${m.size} bytes, got ${bytes.length}`);
    if (digest !== m.sha256) return reject(`sha256 mismatch: expected ${m.sha256.slice(0, 16)}…, got ${digest.slice(0, 16)}… (the artifact is not the one the manifest signs)`);
    try {
      // The container's own checks, and its Ed25519 signature when it carries one.
      readBwsnn(bytes, { trustedKeys: this.trusted });
      const info = inspectBwsnn(bytes);
      if (`${info.name}@${info.version}` !== m.model) return reject(`manifest.model: expected the artifact's ${info.name}@${info.version}, got ${m.model}`);
    } catch (err) {
      return reject(`corrupt artifact: ${(err as Error).message}`);
    }
    await this.install(this.transition(row, { step: 'ACTIVATING' }), m, bytes);
  }

  private async install(row: JobRow, m: Manifest, bytes: Uint8Array): Promise<void> {
    const dir = this.dir;
    const final = join(dir, `${m.model.replace(/[^A-Za-z0-9_.@-]/g, '_')}-${m.sha256.slice(0, 12)}.bwsnn`);
    fsyncFile(row.partPath!);
    renameSync(row.partPath!, final);
    fsyncDir(dir);
    row = this.db.update(row.jobId, { partPath: final });
    let engine: Engine;
    try {
      engine = await loadModel(bytes, { kernel: this.host.config().model.kernel });
    } catch (err) {
      unlinkQuiet(final);
      this.finish(row, 'FAILED', `load: ${(err as Error).message}; kept ${row.previous}`);
      return;
    }
    const canary = canaryProblem(engine, m);
    if (canary) {
      unlinkQuiet(final);
      this.finish(row, 'FAILED', `${canary}; kept ${row.previous}`);
      return;
    }
    const rec = this.host.registry.registerModel({ version: m.model, sha256: m.sha256, path: final });
    const baseline = this.recent.baseline(this.host.active().version);
    row = this.transition(row, { step: 'PROBATION' });
    await this.host.swap(rec);
    const gate = new Probation(this.host.config().ota.probation, baseline);
    const p: InProbation = { row, gate, timer: setInterval(() => gate.done() && this.run(() => this.endProbation()), 100) };
    p.timer.unref?.();
    this.probation = p;
  }

  private async endProbation(): Promise<void> {
    const p = this.probation;
    if (!p || !p.gate.done()) return;
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
    const prev = p.row.previous ? this.host.registry.getModel(p.row.previous) : undefined;
    let back = 'nothing to roll back to';
    if (prev) {
      await this.host.swap(prev);
      back = `rolled back to ${prev.version}`;
    }
    this.host.registry.markModelFailed(p.row.version);
    this.endProbationWith(p, `${problem}; ${back}`);
  }

  private endProbationWith(p: InProbation, failure: string | null): void {
    clearInterval(p.timer);
    if (this.probation !== p) return;
    this.probation = null;
    this.finish(this.db.get(p.row.jobId)!, failure ? 'FAILED' : 'SUCCEEDED', failure, p.gate.figures());
  }
}

/** The registered file exists and still has the registered sha256. */
function intact(rec: ModelRecord): boolean {
  try {
    return sha256(readFileSync(rec.path)) === rec.sha256;
  } catch {
    return false;
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

