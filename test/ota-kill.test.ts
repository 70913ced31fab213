/**
 * kill -9 of an agent process at random points of an update (download, verification, activation, probation),
 * 20 trials in a row on one device, real broker (embedded Aedes in this process) and the agent's real SQLite
 * file. The download and probation are long enough to be hit from here after a random number of block requests
 * or milliseconds; verification and activation take milliseconds, so there the agent SIGKILLs itself at a
 * chosen point (agent-child.ts). After every restart the agent must run a whole, registered model (the old or
 * the new one, never a partial file), and the job must either resume to SUCCEEDED or end FAILED with a reason.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { MqttClient } from 'mqtt';
import { sha256 } from '../device-agent/index.js';
import { connectOperator, makeJob, prepareArtifact } from '../device-agent/ota/index.js';
import type { Job, JobStatus } from '../device-agent/ota/index.js';
import { readBwsnn } from '../runtime/index.js';
import { rng } from '../runtime/data/random.js';
import { otaModelFile, otaSection, testKeys } from './fixtures/ota/models.js';
import { aedes } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';
import { agentConfig } from './helpers/agent.js';

const TRIALS = 20;
const CHILD = fileURLToPath(new URL('./fixtures/ota/agent-child.ts', import.meta.url));
const PREFIX = 'sei/test/victim/';

let dir: string;
let broker: TestBroker;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sei-ota-kill-'));
  broker = await aedes();
});

after(async () => {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Child {
  readonly proc: ChildProcess;
  /** Version printed on "ready". */
  readonly ready: Promise<string>;
  readonly exited: Promise<void>;
}

function spawnAgent(configPath: string, killAt?: string): Child {
  const env = killAt ? { ...process.env, SEI_TEST_KILL_AT: killAt } : process.env;
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const ready = new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ready (\S+)\n/.exec(out);
      // Ready and connected: the download can only go on with the broker.
      if (m && out.includes('online\n')) resolve(m[1]!);
    });
    proc.once('exit', (code, signal) =>
      reject(new Error(`agent exited (${code ?? signal}) before it was ready: ${err}`)),
    );
  });
  return { proc, ready, exited };
}

/** The active registry entry in the agent's SQLite file: the file must be whole (sha256) and readable. */
function activeModelIsWhole(db: string): string {
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const row = conn
      .prepare<[], { version: string; sha256: string; path: string }>(
        `SELECT version, sha256, path FROM models WHERE state = 'active'`,
      )
      .get();
    assert.ok(row, 'an active model is registered');
    const bytes = new Uint8Array(readFileSync(row.path));
    assert.equal(sha256(bytes), row.sha256, `${row.path} is the registered file`);
    readBwsnn(bytes);
    return row.version;
  } finally {
    conn.close();
  }
}

function jobStep(db: string, jobId: string): string {
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const r = conn
      .prepare<[string], { state: string; step: string | null }>('SELECT state, step FROM ota_jobs WHERE job_id = ?')
      .get(jobId);
    return r ? (r.step ?? r.state) : 'NONE';
  } finally {
    conn.close();
  }
}

test(`kill -9 at random points of ${TRIALS} updates: the agent always restarts on a whole model; jobs resume or fail with a reason`, async () => {
  const keys = testKeys(dir);
  const modelDir = join(dir, 'models');
  const config = agentConfig({
    dir,
    model: otaModelFile(dir, 1, 1),
    url: broker.url,
    device: 'victim',
    extra: {
      ota: otaSection(keys.publicPath, {
        dir: modelDir,
        probation: { frames: 12, seconds: 20, maxLatencyRatio: 1000, minConfidenceRatio: 0.05 },
      }),
    },
  });
  const db = (config.store as { path: string }).path;
  const configPath = join(dir, 'agent.json');
  writeFileSync(configPath, JSON.stringify(config));

  const op: MqttClient = await connectOperator(broker.url);
  const statuses: JobStatus[] = [];
  const requests: Array<{ jobId: string; blocks: number[] }> = [];
  let current: { job: Job; artifact: Uint8Array } | null = null;
  let onEvent: () => void = () => {};
  op.on('message', (topic, payload) => {
    if (payload.length === 0) return;
    const msg = JSON.parse(payload.toString()) as JobStatus & { blocks: number[] };
    if (topic === `${PREFIX}ota/status`) statuses.push(msg);
    else if (topic === `${PREFIX}ota/request` && current && msg.jobId === current.job.jobId) {
      requests.push(msg);
      const { job, artifact } = current;
      for (const i of msg.blocks)
        op.publish(
          `${PREFIX}ota/block/${job.jobId}/${i}`,
          Buffer.from(artifact.subarray(i * job.blockSize, (i + 1) * job.blockSize)),
          { qos: 1 },
        );
    }
    onEvent();
  });
  await op.subscribeAsync([`${PREFIX}ota/status`, `${PREFIX}ota/request`], { qos: 1 });
  const until = (what: string, ok: () => boolean, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      onEvent = () => {
        if (ok()) {
          clearTimeout(t);
          onEvent = () => {};
          resolve();
        }
      };
      onEvent();
    });

  const random = rng(20261126);
  // Where each trial dies: killed from here by timing (download, probation), or by itself at an exact point
  // of the steps that take a few milliseconds (see agent-child.ts).
  const plans = [
    'DOWNLOADING',
    'self:VERIFYING',
    'self:ACTIVATING',
    'self:RENAMED',
    'self:PROBATION',
    'PROBATION',
  ] as const;
  const killedAt: string[] = [];
  const outcomes: string[] = [];
  // VERIFYING is synchronous: only "at once" lands inside it.
  const armFor = (plan: string, job: string) =>
    plan.startsWith('self:')
      ? `${plan.slice(5)}:${plan === 'self:VERIFYING' ? 0 : Math.floor(random() * 3)}:${job}`
      : undefined;
  let child = spawnAgent(configPath, armFor(plans[0], 'kill-0'));
  let running = await child.ready;
  try {
    for (let trial = 0; trial < TRIALS; trial++) {
      const before = running;
      const plan = plans[trial % plans.length]!;
      const p = await prepareArtifact(
        new Uint8Array(readFileSync(otaModelFile(dir, 100 + trial, trial + 2))),
        keys.privateKey,
        { canaries: 2 },
      );
      const job = makeJob(`kill-${trial}`, p.artifact, p.signed, 64);
      current = { job, artifact: p.artifact };
      const mine = () => statuses.filter((s) => s.jobId === job.jobId);
      const fromRequest = requests.length;
      const nthRequest = 1 + Math.floor(random() * 8);
      await op.publishAsync(`${PREFIX}ota/job`, JSON.stringify(job), { qos: 1, retain: true });
      if (plan.startsWith('self:')) {
        await Promise.race([
          child.exited,
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error(`trial ${trial}: the agent did not die at ${plan}`)), 15_000),
          ),
        ]);
      } else {
        if (plan === 'DOWNLOADING')
          await until(
            `request ${nthRequest}`,
            () => requests.length - fromRequest >= nthRequest || mine().some((s) => s.step === 'VERIFYING'),
            15_000,
          );
        else
          await until(
            `step ${plan}`,
            () => mine().some((s) => s.step === plan || s.state === 'SUCCEEDED' || s.state === 'FAILED'),
            15_000,
          );
        await new Promise((r) => setTimeout(r, Math.floor(random() * (plan === 'PROBATION' ? 60 : 8))));
        child.proc.kill('SIGKILL');
        await child.exited;
      }
      killedAt.push(jobStep(db, job.jobId));

      // The restarted agent is armed for the next trial's kill point.
      const next = plans[(trial + 1) % plans.length]!;
      child = spawnAgent(configPath, trial + 1 < TRIALS ? armFor(next, `kill-${trial + 1}`) : undefined);
      running = await child.ready;
      // A resumed job may already have moved on since "ready": old or new, but whole.
      const version = activeModelIsWhole(db);
      for (const v of [running, version])
        assert.ok(
          v === before || v === `ota-test@${trial + 2}`,
          `trial ${trial}: running ${v}, expected ${before} or the new version`,
        );

      await until(
        `job ${job.jobId} to end`,
        () => mine().some((s) => s.state === 'SUCCEEDED' || s.state === 'FAILED' || s.state === 'REJECTED'),
        20_000,
      );
      const end = mine().find((s) => s.state === 'SUCCEEDED' || s.state === 'FAILED' || s.state === 'REJECTED')!;
      outcomes.push(end.state);
      await op.publishAsync(`${PREFIX}ota/job`, '', { qos: 1, retain: true });
      assert.notEqual(end.state, 'REJECTED', `trial ${trial}: ${end.reason}`);
      if (end.state === 'FAILED') {
        assert.match(end.reason ?? '', /^agent restarted during (ACTIVATING|PROBATION); rolled back to ota-test@\d+$/);
        assert.equal(running, before);
      } else {
        // Resumed to the end after the restart: the new version runs now.
        await until(
          'the agent to report the new version',
          () => mine().some((s) => s.state === 'SUCCEEDED' && s.active === `ota-test@${trial + 2}`),
          5000,
        );
        running = `ota-test@${trial + 2}`;
      }
      assert.equal(activeModelIsWhole(db), running);
      assert.deepEqual(
        readdirSync(modelDir).filter((f) => f.endsWith('.part')),
        [],
        'no partial download left behind',
      );
    }
  } finally {
    child.proc.kill('SIGKILL');
    await child.exited;
    await op.endAsync(true);
  }
  // The kills landed in every step, and both outcomes happened.
  for (const step of ['DOWNLOADING', 'VERIFYING', 'ACTIVATING', 'PROBATION'])
    assert.ok(killedAt.includes(step), `${step} in ${killedAt.join(' ')}`);
  assert.ok(outcomes.includes('SUCCEEDED') && outcomes.includes('FAILED'), outcomes.join(' '));
  console.log(`killed at: ${killedAt.join(' ')}\noutcomes: ${outcomes.join(' ')}`);
});
