/**
 * Remote model update against a real broker (the embedded Aedes; Mosquitto too for the outage) and real SQLite:
 * signing, a full update, every refusal with its reason, canary and probation failures that roll back by
 * themselves, a manual rollback that survives a restart, and a broker stopped mid-transfer whose download
 * resumes from the bitmap.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { Agent } from '../device-agent/index.js';
import {
  buildManifest,
  connectOperator,
  deploy,
  makeJob,
  missingBlocks,
  OtaStore,
  prepareArtifact,
  readPrivateKey,
  signManifest,
  verifyManifest,
  readPublicKey,
} from '../device-agent/ota/index.js';
import type { DeployOptions, Job, JobStatus, Manifest, SignedManifest } from '../device-agent/ota/index.js';
import { inspectBwsnn, OtaError, readBwsnn, writeBwsnn } from '../runtime/index.js';
import { otaModel, otaModelFile, otaSection, testKeys } from './fixtures/ota/models.js';
import type { TestKeys } from './fixtures/ota/models.js';
import { aedes, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';
import { agentConfig, Operator } from './helpers/agent.js';

let dir: string;
let keys: TestKeys;
let other: TestKeys;
let broker: TestBroker;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sei-ota-'));
  keys = testKeys(dir);
  other = testKeys(dir, 'other');
  broker = await aedes();
});

after(async () => {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startAgent(
  device: string,
  model: string,
  ota: Record<string, unknown> = {},
  store?: string,
  url = broker.url,
): Promise<Agent> {
  const config = agentConfig({
    dir,
    model,
    url,
    device,
    extra: { ota: { ...otaSection(keys.publicPath), dir: join(dir, `${device}-models`), ...ota } },
  });
  if (store) (config.store as Record<string, unknown>).path = store;
  const agent = new Agent({ config });
  agent.on('error', () => {});
  await agent.start();
  await new Promise<void>((resolve) => (agent.connected ? resolve() : agent.once('online', () => resolve())));
  return agent;
}

/** Signs and pushes a model file to one test agent with `sei deploy`'s engine. */
async function push(device: string, modelPath: string, o: Partial<DeployOptions> & { key?: TestKeys } = {}) {
  const { artifact, manifest, signed } = await prepareArtifact(
    new Uint8Array(readFileSync(modelPath)),
    (o.key ?? keys).privateKey,
  );
  return deploy({
    url: broker.url,
    artifact,
    manifest,
    signed,
    fleet: 'test',
    devices: [device],
    blockSize: 256,
    timeoutS: 30,
    ...o,
  });
}

function outcome(r: Awaited<ReturnType<typeof deploy>>) {
  assert.equal(r.devices.length, 1);
  return r.devices[0]!;
}

test('sign: manifest with canaries verifies with the trusted key; tampering and unknown keys are refused by name', async () => {
  const bytes = readFileSync(otaModelFile(dir, 11, 3));
  const { artifact, manifest, signed } = await prepareArtifact(new Uint8Array(bytes), keys.privateKey, { canaries: 5 });
  assert.equal(manifest.model, 'ota-test@3');
  assert.equal(manifest.canaries.length, 5);
  assert.deepEqual(manifest.architecture.input, [28, 28, 1]);
  // The container carries its own signature by the same key.
  assert.equal(inspectBwsnn(artifact).keyId, signed.keyId);
  readBwsnn(artifact, { trustedKeys: [readPublicKey(keys.publicPath)], requireSignature: true });
  assert.deepEqual(verifyManifest(signed, [readPublicKey(keys.publicPath)]), manifest);
  assert.throws(
    () => verifyManifest(signed, [readPublicKey(other.publicPath)]),
    (e: Error) => e instanceof OtaError && /^unknown key/.test(e.message),
  );
  const tampered: SignedManifest = { ...signed, manifest: signed.manifest.replace('"version":3', '"version":4') };
  assert.throws(
    () => verifyManifest(tampered, [readPublicKey(keys.publicPath)]),
    (e: Error) => e instanceof OtaError && /^bad signature/.test(e.message),
  );
  // The key file round trip (`sei keys gen` writes this format).
  assert.equal(signManifest(manifest, readPrivateKey(keys.privatePath)).keyId, signed.keyId);
});

test('deploy to one agent: every step reported and persisted, new model running, previous kept on disk', async () => {
  const old = otaModelFile(dir, 1, 1);
  const agent = await startAgent('one', old);
  try {
    const watch = await connectOperator(broker.url);
    const seen: JobStatus[] = [];
    watch.on('message', (_t, p) => p.length > 0 && seen.push(JSON.parse(p.toString()) as JobStatus));
    await watch.subscribeAsync('sei/test/one/ota/status', { qos: 1 });
    const results: Array<{ frame: number; model: string }> = [];
    agent.on('result', (x) => results.push({ frame: x.frame, model: x.model }));
    const dropped = agent.snapshot().dropped;
    const r = await push('one', otaModelFile(dir, 2, 2));
    await watch.endAsync();
    const o = outcome(r);
    assert.equal(o.state, 'SUCCEEDED', o.reason ?? '');
    assert.ok(r.ok);
    assert.equal(agent.modelVersion, 'ota-test@2');
    const steps: string[] = seen.filter((s) => s.jobId === r.jobId).map((s) => s.step ?? s.state);
    for (const s of ['DOWNLOADING', 'VERIFYING', 'ACTIVATING', 'PROBATION', 'SUCCEEDED'])
      assert.ok(steps.includes(s), `${s} in ${steps.join(',')}`);
    assert.ok(
      steps.indexOf('VERIFYING') < steps.indexOf('ACTIVATING') &&
        steps.indexOf('PROBATION') < steps.indexOf('SUCCEEDED'),
    );
    assert.ok(o.probation && o.probation.frames >= 12 && o.probation.baselineConfidence! > 0);
    const job = agent.ota.jobs(1)[0]!;
    assert.equal(job.state, 'SUCCEEDED');
    assert.equal(job.previous, 'ota-test@1');
    assert.deepEqual(missingBlocks(job.missing, job.blocks), []);
    assert.ok(existsSync(old), 'previous version kept');
    assert.ok(existsSync(job.partPath!) && job.partPath!.endsWith('.bwsnn'));
    assert.equal(agent.store.listModels().find((m) => m.state === 'active')?.version, 'ota-test@2');
    // The swap happened between two frames: consecutive frames, one per model, nothing dropped around it.
    const k = results.findIndex((x) => x.model === 'ota-test@2');
    assert.ok(k > 0, 'frames ran on the old model before the swap');
    assert.deepEqual([results[k - 1]!.model, results[k]!.frame - results[k - 1]!.frame], ['ota-test@1', 1]);
    assert.ok(results.slice(k).every((x) => x.model === 'ota-test@2'));
    assert.equal(agent.snapshot().dropped, dropped);
  } finally {
    await agent.stop();
  }
});

test('refusals: unknown key, bad signature, sha256 mismatch, input shape, not newer (unless allowDowngrade), the running version again, too large, free disk', async () => {
  const agent = await startAgent('ref', otaModelFile(dir, 1, 5));
  const small = await startAgent('small', otaModelFile(dir, 1, 5), { maxBytes: 1000 });
  const full = await startAgent('full', otaModelFile(dir, 1, 5), { reserveBytes: 2 ** 52 });
  try {
    const reason = async (p: Promise<Awaited<ReturnType<typeof deploy>>>, state = 'REJECTED') => {
      const o = outcome(await p);
      assert.equal(o.state, state, `${o.state}: ${o.reason}`);
      return o.reason ?? '';
    };
    const v6 = otaModelFile(dir, 2, 6);
    assert.match(await reason(push('ref', v6, { key: other })), /^unknown key: manifest\.keyId/);

    const prepared = await prepareArtifact(new Uint8Array(readFileSync(v6)), keys.privateKey);
    const forged = { ...prepared.signed, manifest: prepared.signed.manifest.replace('"version":6', '"version":7') };
    assert.match(
      await reason(
        deploy({
          url: broker.url,
          ...prepared,
          signed: forged,
          fleet: 'test',
          devices: ['ref'],
          blockSize: 256,
          timeoutS: 30,
        }),
      ),
      /^bad signature/,
    );

    // Artifact of another model of the same size under a valid manifest: every block checks, the whole does not.
    const imposter = await prepareArtifact(new Uint8Array(readFileSync(otaModelFile(dir, 3, 6))), keys.privateKey);
    assert.equal(imposter.artifact.length, prepared.artifact.length);
    assert.match(
      await reason(
        deploy({
          url: broker.url,
          ...prepared,
          artifact: imposter.artifact,
          fleet: 'test',
          devices: ['ref'],
          blockSize: 256,
          timeoutS: 30,
        }),
      ),
      /^sha256 mismatch/,
    );

    assert.match(
      await reason(push('ref', otaModelFile(dir, 4, 6, { input: [32, 32, 1] }))),
      /^input shape: expected 28x28x1 .*got 32x32x1/,
    );
    assert.match(await reason(push('ref', otaModelFile(dir, 2, 5))), /^version not newer: expected > 5/);
    assert.match(await reason(push('ref', otaModelFile(dir, 2, 4))), /^version not newer/);
    assert.equal(outcome(await push('ref', otaModelFile(dir, 2, 4), { allowDowngrade: true })).state, 'SUCCEEDED');
    assert.equal(agent.modelVersion, 'ota-test@4');
    assert.match(
      await reason(push('ref', otaModelFile(dir, 3, 4), { allowDowngrade: true })),
      /^version ota-test@4: expected a version other than the running one/,
    );

    assert.match(await reason(push('small', v6)), /^too large: size \d+ bytes > ota\.maxBytes 1000/);
    assert.match(await reason(push('full', v6)), /^too large for the free disk/);
    // Every refusal is kept in the device's SQLite with its reason.
    const kept = agent.ota.jobs(20).filter((j) => j.state === 'REJECTED');
    assert.equal(kept.length, 7);
    assert.ok(kept.every((j) => j.reason && j.reason.length > 10));
    assert.equal(small.modelVersion, 'ota-test@5');
    assert.equal(full.modelVersion, 'ota-test@5');
  } finally {
    await Promise.all([agent.stop(), small.stop(), full.stop()]);
  }
});

/** A hand-driven operator: publishes a job and serves blocks through `serve` (which may alter or withhold them). */
class ManualOperator {
  readonly requests: number[][] = [];
  serve: (i: number, bytes: Uint8Array) => Uint8Array | null = (_i, b) => b;
  private constructor(
    readonly client: MqttClient,
    readonly prefix: string,
    readonly job: Job,
    readonly artifact: Uint8Array,
  ) {}
  static async start(prefix: string, job: Job, artifact: Uint8Array, url = broker.url): Promise<ManualOperator> {
    const op = new ManualOperator(await connectOperator(url), prefix, job, artifact);
    op.client.on('message', (topic, payload) => {
      if (topic !== `${prefix}ota/request`) return;
      const req = JSON.parse(payload.toString()) as { jobId: string; blocks: number[] };
      op.requests.push(req.blocks);
      for (const i of req.blocks) {
        const bytes = op.serve(i, artifact.subarray(i * job.blockSize, (i + 1) * job.blockSize));
        if (bytes) op.client.publish(`${prefix}ota/block/${job.jobId}/${i}`, Buffer.from(bytes), { qos: 1 });
      }
    });
    await op.client.subscribeAsync(`${prefix}ota/request`, { qos: 1 });
    await op.client.publishAsync(`${prefix}ota/job`, JSON.stringify(job), { qos: 1, retain: true });
    return op;
  }
  async close(): Promise<void> {
    await this.client.publishAsync(`${this.prefix}ota/job`, '', { qos: 1, retain: true }).catch(() => {});
    await this.client.endAsync(true);
  }
}

async function until<T>(what: string, fn: () => T | undefined | null | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a corrupt or truncated block is re-requested, and refuses the job when it keeps coming back wrong', async () => {
  const agent = await startAgent('blk', otaModelFile(dir, 1, 1), { maxBlockRetries: 3 });
  try {
    const p = await prepareArtifact(new Uint8Array(readFileSync(otaModelFile(dir, 2, 2))), keys.privateKey);
    // Block 3 arrives corrupt once, then right: the job goes through.
    let flips = 0;
    const op1 = await ManualOperator.start('sei/test/blk/', makeJob('once', p.artifact, p.signed, 128), p.artifact);
    op1.serve = (i, b) => (i === 3 && flips++ === 0 ? b.map((x, j) => (j === 5 ? x ^ 1 : x)) : b);
    const ok = await until('job "once" done', () =>
      agent.ota.jobs(5).find((j) => j.jobId === 'once' && j.state !== 'IN_PROGRESS' && j.state !== 'QUEUED'),
    );
    await op1.close();
    assert.equal(ok.state, 'SUCCEEDED', ok.reason ?? '');
    assert.ok(op1.requests.filter((r) => r.includes(3)).length >= 2, 'block 3 requested again');

    const p3 = await prepareArtifact(new Uint8Array(readFileSync(otaModelFile(dir, 3, 3))), keys.privateKey);
    const op2 = await ManualOperator.start(
      'sei/test/blk/',
      makeJob('truncated', p3.artifact, p3.signed, 128),
      p3.artifact,
    );
    op2.serve = (i, b) => (i === 4 ? b.subarray(0, 100) : b);
    const bad = await until('job "truncated" done', () =>
      agent.ota.jobs(5).find((j) => j.jobId === 'truncated' && j.state === 'REJECTED'),
    );
    await op2.close();
    assert.match(bad.reason!, /^truncated block 4: expected 128 bytes, got 100 \(3 times\)/);
    assert.equal(agent.modelVersion, 'ota-test@2');
    assert.ok(!existsSync(bad.partPath!), 'partial download removed');
  } finally {
    await agent.stop();
  }
});

test('timeouts: a device that never answers, and a download the operator gives up on, end TIMED_OUT', async () => {
  const p = await prepareArtifact(new Uint8Array(readFileSync(otaModelFile(dir, 2, 2))), keys.privateKey);
  const ghost = outcome(
    await deploy({ url: broker.url, ...p, fleet: 'test', devices: ['ghost'], blockSize: 256, timeoutS: 0.5 }),
  );
  assert.equal(ghost.state, 'TIMED_OUT');
  assert.match(ghost.reason!, /^no outcome within 0\.5 s \(last seen QUEUED\)/);

  const agent = await startAgent('slow', otaModelFile(dir, 1, 1));
  try {
    const job = makeJob('slow', p.artifact, p.signed, 256);
    const op = await ManualOperator.start('sei/test/slow/', job, p.artifact);
    op.serve = (i, b) => (i < 3 ? b : null);
    await until('3 blocks stored', () => (agent.ota.jobs(1)[0]?.received ?? 0) >= 3);
    await op.client.publishAsync(
      'sei/test/slow/ota/cancel',
      JSON.stringify({ jobId: 'slow', state: 'TIMED_OUT', reason: 'no progress for 600 s' }),
      { qos: 1 },
    );
    const row = await until('job "slow" TIMED_OUT', () => agent.ota.jobs(1).find((j) => j.state === 'TIMED_OUT'));
    await op.close();
    assert.equal(row.reason, 'no progress for 600 s');
    assert.ok(!existsSync(row.partPath!), 'partial download removed');
    assert.equal(agent.modelVersion, 'ota-test@1');
  } finally {
    await agent.stop();
  }
});

test('a signed model that fails its canaries is never swapped in; one that fails probation rolls back by itself', async () => {
  const agent = await startAgent('gate', otaModelFile(dir, 1, 1));
  try {
    // Valid signature, canary expectations that this artifact does not meet.
    const bytes = new Uint8Array(readFileSync(otaModelFile(dir, 2, 2)));
    const p = await prepareArtifact(bytes, keys.privateKey);
    const wrong: Manifest = {
      ...p.manifest,
      canaries: p.manifest.canaries.map((c) => ({ ...c, prediction: (c.prediction + 1) % 10 })),
    };
    const o1 = outcome(
      await deploy({
        url: broker.url,
        artifact: p.artifact,
        manifest: wrong,
        signed: signManifest(wrong, keys.privateKey),
        fleet: 'test',
        devices: ['gate'],
        blockSize: 256,
        timeoutS: 30,
      }),
    );
    assert.equal(o1.state, 'FAILED');
    assert.match(o1.reason!, /^canary 0: expected class \d, got \d; kept ota-test@1/);
    assert.equal(agent.modelVersion, 'ota-test@1');

    // Valid signature and canaries, but the head is zeroed: confidence collapses to 0.1 under probation.
    const o2 = outcome(await push('gate', otaModelFile(dir, 3, 3, { bad: true })));
    assert.equal(o2.state, 'FAILED');
    assert.match(
      o2.reason!,
      /^probation: mean confidence 0\.1 < 0\.5 × [\d.]+ of the previous model; rolled back to ota-test@1/,
    );
    assert.equal(agent.modelVersion, 'ota-test@1');
    assert.equal(agent.store.getModel('ota-test@3')?.state, 'failed');
    assert.equal(agent.store.listModels().find((m) => m.state === 'active')?.version, 'ota-test@1');
  } finally {
    await agent.stop();
  }
});

test('cmd/activate {rollback: true} goes back to the previous version, and a restart keeps it', async () => {
  const store = join(dir, 'rollback.db');
  const first = otaModelFile(dir, 1, 1);
  let agent = await startAgent('rb', first, {}, store);
  try {
    assert.equal(outcome(await push('rb', otaModelFile(dir, 2, 2))).state, 'SUCCEEDED');
    // A restart boots the updated version, not the one the config names.
    await agent.stop();
    agent = await startAgent('rb', first, {}, store);
    assert.equal(agent.modelVersion, 'ota-test@2');
    const op = await connectOperator(broker.url);
    await op.subscribeAsync('sei/test/rb/reply/x', { qos: 1 });
    const reply = new Promise<{ ok: boolean; result: { active: string; rolledBackFrom: string } }>((r) =>
      op.once('message', (_t, p) => r(JSON.parse(p.toString()))),
    );
    await op.publishAsync(
      'sei/test/rb/cmd/activate',
      JSON.stringify({ rollback: true, replyTo: 'sei/test/rb/reply/x', correlationId: 'x' }),
      { qos: 1 },
    );
    const rep = await reply;
    await op.endAsync();
    assert.ok(rep.ok);
    assert.deepEqual(rep.result, { active: 'ota-test@1', rolledBackFrom: 'ota-test@2' });
    assert.equal(agent.modelVersion, 'ota-test@1');
    await agent.stop();
    agent = await startAgent('rb', first, {}, store);
    assert.equal(agent.modelVersion, 'ota-test@1');
  } finally {
    await agent.stop();
  }
});

for (const [name, make] of [
  ['Aedes', aedes],
  ['Mosquitto', mosquittoAvailable ? mosquitto : null],
] as const) {
  test(`broker (${name}) stopped mid-transfer and restarted: the download resumes from the bitmap, not from zero`, {
    skip: make === null && 'mosquitto not installed',
  }, async () => {
    const b = await make!();
    const agent = await startAgent('drop', otaModelFile(dir, 1, 1), { window: 2 }, undefined, b.url);
    try {
      const p = await prepareArtifact(new Uint8Array(readFileSync(otaModelFile(dir, 2, 2))), keys.privateKey);
      const job = makeJob('drop', p.artifact, p.signed, 64);
      const blocks = job.blockSha256.length;
      assert.ok(blocks >= 30);
      let served = 0;
      const op = await ManualOperator.start('sei/test/drop/', job, p.artifact, b.url);
      // Serve a dozen blocks, then go quiet, as if the link died.
      op.serve = (_i, b) => (served++ < 12 ? b : null);
      await until('12 blocks stored', () => (agent.ota.jobs(1)[0]?.received ?? 0) >= 12);
      await b.stop();
      // What the device has durably, read from its SQLite file by a second connection.
      const db = new OtaStore(agent.config.store.path);
      const row = db.get('drop')!;
      db.close();
      const have = new Set(
        Array.from({ length: blocks }, (_, i) => i).filter((i) => !missingBlocks(row.missing, blocks).includes(i)),
      );
      assert.equal(have.size, row.received);
      assert.ok(have.size >= 12 && have.size < blocks);
      await b.start();
      await op.client.endAsync(true);
      // A fresh operator after the outage (Aedes lost the retained job on restart; the device did not).
      const op2 = await ManualOperator.start('sei/test/drop/', job, p.artifact, b.url);
      const done = await until(
        'job "drop" done',
        () => agent.ota.jobs(1).find((j) => j.jobId === 'drop' && j.state === 'SUCCEEDED'),
        20_000,
      );
      await op2.close();
      const after = op2.requests.flat();
      assert.ok(after.length > 0);
      assert.deepEqual(
        after.filter((i) => have.has(i)),
        [],
        'no block the device already had was requested again',
      );
      assert.equal(new Set(after).size, blocks - have.size);
      assert.equal(done.received, blocks);
      assert.equal(agent.modelVersion, 'ota-test@2');
    } finally {
      await agent.stop();
      await b.close();
    }
  });
}

test('an agent without an error listener survives failed update steps (a malformed job, a model folder it cannot create)', async () => {
  // In a process of its own: an unhandled rejection would end that process, not this one.
  const blocked = join(dir, 'not-a-folder');
  writeFileSync(blocked, 'a file where the OTA folder should be');
  const config = agentConfig({
    dir,
    model: otaModelFile(dir, 1, 1),
    url: broker.url,
    device: 'quiet',
    extra: { ota: { ...otaSection(keys.publicPath), dir: join(blocked, 'models') } },
  });
  const configPath = join(dir, 'quiet.json');
  writeFileSync(configPath, JSON.stringify(config));
  const child = fileURLToPath(new URL('./fixtures/ota/agent-child.ts', import.meta.url));
  const proc = spawn(process.execPath, ['--import', 'tsx', child, configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SEI_TEST_NO_ERROR_LISTENER: '1' },
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const op = await Operator.connect(broker.url, 4);
  try {
    await op.subscribe('sei/test/quiet/#');
    await until(
      'the agent online',
      () =>
        /ready \S+\n/.test(out) &&
        out.includes('online\n') &&
        op.messages.some((m) => m.topic === 'sei/test/quiet/status' && m.json?.state === 'online'),
      30_000,
    );
    await op.client.publishAsync('sei/test/quiet/ota/job', '{not json', { qos: 1 });
    const p = await prepareArtifact(new Uint8Array(readFileSync(otaModelFile(dir, 2, 2))), keys.privateKey);
    await op.client.publishAsync(
      'sei/test/quiet/ota/job',
      JSON.stringify(makeJob('blocked', p.artifact, p.signed, 256)),
      { qos: 1 },
    );
    // Recorded, then its admission fails creating the folder.
    await op.waitFor((m) => m.topic === 'sei/test/quiet/ota/status' && m.json?.jobId === 'blocked', 'the job recorded');
    await new Promise((r) => setTimeout(r, 300));
    const reply = await op.command('sei/test/quiet/', 'status');
    assert.equal(reply.ok, true);
    assert.equal(reply.result.model, 'ota-test@1');
    assert.equal(proc.exitCode, null, `agent exited: ${err}`);
    proc.kill('SIGTERM');
    assert.equal(await exited, 0, err);
    assert.equal(err, '');
  } finally {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    await op.close();
  }
});

describe('manifest', () => {
  test('buildManifest is reproducible and its canaries come from the reference engine', async () => {
    const bytes = writeBwsnn(otaModel(5, 1), { createdAt: '2026-01-01T00:00:00Z' });
    const a = await buildManifest(bytes, { createdAt: 'x' });
    const b = await buildManifest(bytes, { createdAt: 'x' });
    assert.deepEqual(a, b);
    assert.equal(a.size, bytes.length);
    assert.ok(a.canaries.every((c) => c.logits.length === 10));
  });
});
