/**
 * OtaManager on its own, driven through its host interface (OtaHost) by a fake host that plays the agent and the
 * operator: it keeps the running model, and answers `ota/request` with the artifact's blocks (altered or withheld
 * where a test says so). Everything else is real: the OTA tables in SQLite, the registry over a MemoryStore,
 * signed manifests, the runtime loading and running each version. Admission and its refusals, a transfer with a
 * bad block, a refused checksum, install and its canaries, probation passed and failed, rollback by hand, and a
 * restart during probation.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MemoryStore, ModelRegistry, parseConfig, readModelFile } from '../device-agent/index.js';
import type { AgentConfig, ModelRecord } from '../device-agent/index.js';
import { makeJob, OtaManager, prepareArtifact, signManifest } from '../device-agent/ota/index.js';
import type { Job, JobRow, JobStatus, Manifest, OtaHost } from '../device-agent/ota/index.js';
import { ConfigError, OtaError, writeBwsnn } from '../runtime/index.js';
import type { Engine } from '../runtime/index.js';
import { otaModel, otaModelFile, otaSection, testKeys } from './fixtures/ota/models.js';
import type { TestKeys } from './fixtures/ota/models.js';

const BLOCK = 256;
let dir: string;
let keys: TestKeys;
let other: TestKeys;
let v1: string;
let n = 0;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sei-ota-manager-'));
  keys = testKeys(dir);
  other = testKeys(dir, 'other');
  v1 = otaModelFile(dir, 1, 1);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** The agent and the operator, as far as OtaManager can tell. */
class FakeHost implements OtaHost {
  cfg: AgentConfig;
  readonly registry: ModelRegistry;
  readonly requests: Array<{ jobId: string; blocks: number[] }> = [];
  readonly enqueued: JobStatus[] = [];
  readonly reported: Error[] = [];
  readonly swaps: string[] = [];
  /** What the operator sends for block i (null: nothing). */
  serve: (i: number, bytes: Uint8Array) => Uint8Array | null = (_i, b) => b;
  readonly artifacts = new Map<string, { job: Job; artifact: Uint8Array }>();
  manager!: OtaManager;
  private version: string | null = null;
  private engine: Engine | null = null;

  constructor(
    readonly dbPath: string,
    readonly device: string,
    ota: Record<string, unknown> = {},
    registry = new ModelRegistry(new MemoryStore()),
  ) {
    this.registry = registry;
    this.cfg = this.configWith(ota);
  }

  configWith(ota: Record<string, unknown>): AgentConfig {
    return parseConfig({
      device: this.device,
      fleet: 'test',
      model: { kernel: 'reference' },
      store: { path: join(dir, `${this.device}.db`) },
      ota: { ...otaSection(keys.publicPath), dir: join(dir, `${this.device}-models`), ...ota },
    });
  }

  config(): AgentConfig {
    return this.cfg;
  }

  publish(suffix: string, body: unknown): Promise<boolean> {
    if (suffix === 'ota/request') {
      const req = body as { jobId: string; blocks: number[] };
      this.requests.push(req);
      // Blocks arrive later, as from a broker.
      setImmediate(() => {
        const a = this.artifacts.get(req.jobId);
        if (!a) return;
        for (const i of req.blocks) {
          const bytes = this.serve(i, a.artifact.subarray(i * a.job.blockSize, (i + 1) * a.job.blockSize));
          if (bytes) this.manager.onMessage(`ota/block/${req.jobId}/${i}`, Buffer.from(bytes));
        }
      });
    }
    return Promise.resolve(true);
  }

  enqueue(suffix: string, body: unknown): void {
    assert.equal(suffix, 'ota/status');
    this.enqueued.push(body as JobStatus);
  }

  active(): { version: string | null; engine: Engine | null } {
    return { version: this.version, engine: this.engine };
  }

  async swap(rec: ModelRecord): Promise<ModelRecord> {
    this.engine = await this.registry.load(rec, { kernel: 'reference' });
    this.version = rec.version;
    this.swaps.push(rec.version);
    return this.registry.activate(rec.version);
  }

  report(err: Error): void {
    this.reported.push(err);
  }

  /** The running model serves `frames` frames at `confidence` (what probation and its baseline see). */
  serveFrames(frames: number, confidence: number): void {
    for (let i = 0; i < frames; i++) {
      this.manager.frame();
      this.manager.result(this.version!, { latencyMs: 1, confidence });
    }
  }
}

/** A manager on a fresh device running ota-test@1, with a baseline of confident frames. */
async function device(ota: Record<string, unknown> = {}): Promise<FakeHost> {
  const host = new FakeHost(join(dir, `ota-${++n}.db`), `unit-${n}`, ota);
  await host.swap(host.registry.register(readModelFile(v1)));
  host.manager = new OtaManager(host);
  host.serveFrames(20, 0.9);
  return host;
}

/** Signs a model file into a job and hands it to the device on `ota/job`. */
async function deliver(
  host: FakeHost,
  jobId: string,
  modelPath: string,
  o: { key?: TestKeys; edit?: (m: Manifest) => Manifest; artifact?: Uint8Array } = {},
): Promise<Job> {
  const p = await prepareArtifact(new Uint8Array(readFileSync(modelPath)), (o.key ?? keys).privateKey);
  const signed = o.edit ? signManifest(o.edit(p.manifest), (o.key ?? keys).privateKey) : p.signed;
  const artifact = o.artifact ?? p.artifact;
  const job = makeJob(jobId, artifact, signed, BLOCK);
  host.artifacts.set(jobId, { job, artifact });
  host.manager.onMessage('ota/job', Buffer.from(JSON.stringify(job)));
  return job;
}

async function until<T>(what: string, fn: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function row(host: FakeHost, jobId: string): JobRow | undefined {
  return host.manager.jobs(50).find((j) => j.jobId === jobId);
}

function ended(host: FakeHost, jobId: string): Promise<JobRow> {
  return until(`job ${jobId} to end`, () => {
    const r = row(host, jobId);
    return r && r.state !== 'QUEUED' && r.state !== 'IN_PROGRESS' ? r : undefined;
  });
}

/** Swapped in and watched: the frames served from now on are the probation's. */
function onProbation(host: FakeHost, jobId: string): Promise<true> {
  return until(`job ${jobId} on probation`, () => host.manager.busy() === `job ${jobId} is in PROBATION`);
}

function atStep(host: FakeHost, jobId: string, step: string): Promise<JobRow> {
  return until(`job ${jobId} at ${step}`, () => {
    const r = row(host, jobId);
    return r?.step === step ? r : undefined;
  });
}

describe('OtaManager', () => {
  test('admission: a malformed job is reported to the host, never thrown; unknown key, too large, not newer and busy are refused with their reason', async () => {
    const host = await device();
    try {
      host.manager.onMessage('ota/job', Buffer.from('{not json'));
      host.manager.onMessage('ota/job', Buffer.from('{"jobId": "../etc"}'));
      await until('two reports', () => host.reported.length === 2);
      assert.ok(host.reported.every((e) => e instanceof OtaError));
      assert.match(host.reported[0]!.message, /^ota\/job: expected a JSON job/);
      assert.match(host.reported[1]!.message, /^ota\/job: jobId: expected 1-64 of \[A-Za-z0-9_.-\], got "\.\.\/etc"/);
      assert.deepEqual(host.manager.jobs(), []);

      await deliver(host, 'stranger', otaModelFile(dir, 2, 2), { key: other });
      assert.match((await ended(host, 'stranger')).reason!, /^unknown key: manifest\.keyId/);
      await deliver(host, 'old', otaModelFile(dir, 2, 1));
      assert.match(
        (await ended(host, 'old')).reason!,
        /^version not newer: expected > 1 \(the running ota-test@1\), got 1/,
      );
      host.cfg = host.configWith({ maxBytes: 1000 });
      await deliver(host, 'big', otaModelFile(dir, 2, 2));
      assert.match((await ended(host, 'big')).reason!, /^too large: size \d+ bytes > ota\.maxBytes 1000/);
      host.cfg = host.configWith({});

      // A job whose blocks never come holds the device: a second one is refused as busy, until the first is cancelled.
      host.serve = () => null;
      await deliver(host, 'slow', otaModelFile(dir, 2, 2));
      const slow = await atStep(host, 'slow', 'DOWNLOADING');
      assert.ok(existsSync(slow.partPath!));
      await deliver(host, 'second', otaModelFile(dir, 3, 3));
      assert.equal((await ended(host, 'second')).reason, 'busy: job slow is DOWNLOADING');
      host.manager.onMessage(
        'ota/cancel',
        Buffer.from(JSON.stringify({ jobId: 'slow', state: 'TIMED_OUT', reason: 'no progress' })),
      );
      const cancelled = await ended(host, 'slow');
      assert.deepEqual([cancelled.state, cancelled.reason], ['TIMED_OUT', 'no progress']);
      assert.ok(!existsSync(slow.partPath!), 'partial download removed');
      // Every state change went to the outbox; a job id runs once.
      assert.deepEqual(
        host.enqueued.filter((s) => s.jobId === 'stranger').map((s) => s.state),
        ['QUEUED', 'REJECTED'],
      );
      host.manager.onMessage('ota/job', Buffer.from(JSON.stringify(host.artifacts.get('stranger')!.job)));
      await until('the outcome reported again', () => host.enqueued.filter((s) => s.jobId === 'stranger').length === 3);
      assert.equal(host.manager.jobs(50).filter((j) => j.jobId === 'stranger').length, 1);
      assert.deepEqual(host.swaps, ['ota-test@1']);
    } finally {
      host.manager.stop();
    }
  });

  test('a transfer: a window of blocks at a time, a corrupt block asked for again; then verified, installed, on probation, kept when it passes', async () => {
    const host = await device();
    const steps: string[] = [];
    host.manager.on('job', (s) => steps.push(s.step ?? s.state));
    let corrupted = 0;
    host.serve = (i, b) => (i === 2 && corrupted++ === 0 ? b.map((x, j) => (j === 0 ? x ^ 1 : x)) : b);
    try {
      const job = await deliver(host, 'up', otaModelFile(dir, 2, 2));
      const blocks = job.blockSha256.length;
      assert.ok(blocks > 8);
      await onProbation(host, 'up');
      const probation = row(host, 'up')!;
      assert.equal(host.active().version, 'ota-test@2');
      assert.ok(
        host.requests.every((r) => r.blocks.length >= 1 && r.blocks.length <= 4),
        'ota.window 4',
      );
      assert.ok(host.requests.filter((r) => r.blocks.includes(2)).length >= 2, 'block 2 asked for again');
      assert.equal(probation.received, blocks);
      assert.equal(probation.step, 'PROBATION');
      assert.ok(probation.partPath!.endsWith('.bwsnn') && existsSync(probation.partPath!));

      host.serveFrames(12, 0.9);
      const done = await ended(host, 'up');
      assert.equal(done.state, 'SUCCEEDED', done.reason ?? '');
      assert.equal(done.previous, 'ota-test@1');
      assert.equal(done.probation!.frames, 12);
      assert.equal(done.probation!.baselineConfidence, 0.9);
      assert.deepEqual(steps, ['QUEUED', 'DOWNLOADING', 'VERIFYING', 'ACTIVATING', 'PROBATION', 'SUCCEEDED']);
      assert.deepEqual(host.swaps, ['ota-test@1', 'ota-test@2']);
      assert.equal(host.registry.list().find((m) => m.state === 'active')?.version, 'ota-test@2');
      assert.equal(host.manager.busy(), null);
    } finally {
      host.manager.stop();
    }
  });

  test('a refused checksum: a block that keeps coming back corrupt, and an artifact the manifest does not sign, are REJECTED; the running model is untouched', async () => {
    const host = await device({ maxBlockRetries: 3 });
    try {
      host.serve = (i, b) => (i === 1 ? b.map((x) => x ^ 0xff) : b);
      await deliver(host, 'flipped', otaModelFile(dir, 2, 2));
      const flipped = await ended(host, 'flipped');
      assert.equal(flipped.state, 'REJECTED');
      assert.match(flipped.reason!, /^corrupt block 1: expected sha256 [0-9a-f]{16}…, got [0-9a-f]{16}… \(3 times\)$/);
      assert.ok(!existsSync(flipped.partPath!), 'partial download removed');

      // Another model of the same size under a valid manifest: every block checks out, the whole does not.
      host.serve = (_i, b) => b;
      const imposter = await prepareArtifact(new Uint8Array(readFileSync(otaModelFile(dir, 3, 2))), keys.privateKey);
      await deliver(host, 'imposter', otaModelFile(dir, 2, 2), { artifact: imposter.artifact });
      const r = await ended(host, 'imposter');
      assert.equal(r.state, 'REJECTED');
      assert.match(
        r.reason!,
        /^sha256 mismatch: expected [0-9a-f]{16}…, got [0-9a-f]{16}… \(the artifact is not the one the manifest signs\)$/,
      );
      assert.deepEqual(host.swaps, ['ota-test@1']);
      assert.equal(host.registry.get('ota-test@2'), undefined, 'nothing registered');
    } finally {
      host.manager.stop();
    }
  });

  test('install: an artifact that fails its canaries is never swapped in; installLocal takes a version made on the box through probation', async () => {
    const host = await device();
    try {
      const wrong = (m: Manifest): Manifest => ({
        ...m,
        canaries: m.canaries.map((c) => ({ ...c, prediction: (c.prediction + 1) % 10 })),
      });
      await deliver(host, 'canary', otaModelFile(dir, 2, 2), { edit: wrong });
      const r = await ended(host, 'canary');
      assert.equal(r.state, 'FAILED');
      assert.match(r.reason!, /^canary 0: expected class \d, got \d; kept ota-test@1$/);
      assert.ok(r.partPath!.endsWith('.bwsnn') && !existsSync(r.partPath!), 'the installed file is removed again');
      assert.deepEqual(host.swaps, ['ota-test@1']);

      const local = await host.manager.installLocal(writeBwsnn(otaModel(4, 3)), 'finetune');
      assert.match(local.jobId, /^finetune-/);
      assert.deepEqual([local.state, local.step, local.previous], ['IN_PROGRESS', 'PROBATION', 'ota-test@1']);
      assert.equal(host.active().version, 'ota-test@3');
      await assert.rejects(
        host.manager.installLocal(writeBwsnn(otaModel(5, 4)), 'finetune'),
        (e: Error) => e instanceof OtaError && e.message === `busy: job ${local.jobId} is in PROBATION`,
      );
      host.serveFrames(12, 0.9);
      assert.equal((await ended(host, local.jobId)).state, 'SUCCEEDED');
    } finally {
      host.manager.stop();
    }
  });

  test('probation: a version whose confidence collapses is rolled back by itself and marked failed', async () => {
    const host = await device();
    try {
      await deliver(host, 'weak', otaModelFile(dir, 2, 2));
      await onProbation(host, 'weak');
      host.serveFrames(12, 0.1);
      const r = await ended(host, 'weak');
      assert.equal(r.state, 'FAILED');
      assert.equal(
        r.reason,
        'probation: mean confidence 0.1 < 0.5 × 0.9 of the previous model; rolled back to ota-test@1',
      );
      assert.deepEqual(r.probation, {
        frames: 12,
        errors: 0,
        confidence: 0.1,
        latencyMs: 1,
        baselineConfidence: 0.9,
        baselineLatencyMs: 1,
        baselineFrames: 20,
      });
      assert.deepEqual(host.swaps, ['ota-test@1', 'ota-test@2', 'ota-test@1']);
      assert.equal(host.registry.get('ota-test@2')!.state, 'failed');
      assert.equal(host.registry.get('ota-test@1')!.state, 'active');
    } finally {
      host.manager.stop();
    }
  });

  test('rollback: back to the version an update replaced, once; a restart during probation boots the previous version', async () => {
    const host = await device();
    try {
      await assert.rejects(
        host.manager.rollback(),
        (e: Error) =>
          e instanceof ConfigError &&
          /^activate: rollback: expected a running version installed by an update, got "ota-test@1"/.test(e.message),
      );
      await deliver(host, 'up', otaModelFile(dir, 2, 2));
      await onProbation(host, 'up');
      host.serveFrames(12, 0.9);
      assert.equal((await ended(host, 'up')).state, 'SUCCEEDED');
      assert.deepEqual(await host.manager.rollback(), { active: 'ota-test@1', rolledBackFrom: 'ota-test@2' });
      assert.equal(host.active().version, 'ota-test@1');
      await assert.rejects(host.manager.rollback(), ConfigError);

      // Killed during probation: the next manager on the same file fails the job and boots the version before it.
      await deliver(host, 'cut', otaModelFile(dir, 3, 3));
      await onProbation(host, 'cut');
      host.manager.stop();
      const restarted = new FakeHost(host.dbPath, host.device, {}, host.registry);
      restarted.manager = new OtaManager(restarted);
      const booted = restarted.manager.bootModel(host.registry.get('ota-test@3')!);
      assert.equal(booted.version, 'ota-test@1');
      const cut = row(restarted, 'cut')!;
      assert.equal(cut.state, 'FAILED');
      assert.equal(cut.reason, 'agent restarted during PROBATION; rolled back to ota-test@1');
      assert.equal(host.registry.get('ota-test@3')!.state, 'failed');
      assert.equal(host.registry.get('ota-test@1')!.state, 'active');
      restarted.manager.stop();
    } finally {
      host.manager.stop();
    }
  });
});
