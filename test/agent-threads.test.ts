/**
 * The agent in throughput mode (engine.threads > 1, runtime/pool): the same results as one thread, frame for frame
 * and in order; at engine.steps = 1 the engine runs one step; a worker that dies costs the frame it held — an
 * `error` event and an `errors` count with origin `engine` — and the agent goes on with the worker started again;
 * stop ends the workers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import type { AgentResult } from '../device-agent/index.js';
import { bundledModel } from '../device-agent/models.js';
import { encodeIdx, readIdx, SAMPLE_IMAGES, SAMPLE_LABELS, WorkerError } from '../runtime/index.js';
import { agentConfig, modelFile } from './helpers/agent.js';

const dir = mkdtempSync(join(tmpdir(), 'sei-agent-threads-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = bundledModel() ?? modelFile(dir);
const N = 48;
const CRASHING = new URL('./fixtures/pool/crashing-worker.mjs', import.meta.url);

/** N sample frames as an IDX pair; frame `boom` (if any) starts with the bytes that make the test worker exit. */
function frames(name: string, boom?: number): string {
  const images = readIdx(SAMPLE_IMAGES).data.slice(0, N * 784);
  if (boom !== undefined) images.set([66, 79, 79, 77], boom * 784);
  const [img, lab] = [join(dir, `${name}-images.idx`), join(dir, `${name}-labels.idx`)];
  writeFileSync(img, encodeIdx([N, 28, 28], images));
  writeFileSync(lab, encodeIdx([N], readIdx(SAMPLE_LABELS).data.slice(0, N)));
  return `idx:${img}:${lab}`;
}

const hex = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

/** Runs the agent over the frames of `spec` once; every result (as comparable values) and every error. */
async function run(spec: string, engine: Record<string, unknown>, workerEntry?: URL) {
  const agent = new Agent({
    config: agentConfig({
      dir,
      model,
      url: null,
      extra: { source: { spec, frameRate: 0, loop: false }, engine, store: { path: ':memory:' } },
    }),
    ...(workerEntry ? { workerEntry } : {}),
  });
  const results: Array<Record<string, unknown>> = [];
  const errors: Error[] = [];
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const count = () => results.length + agent.metrics.frameErrors === N && done();
  agent.on('result', (r: AgentResult) => {
    const { prediction, confidence, logits, spikeRates, synOps } = r.result;
    results.push({
      frame: r.frame,
      label: r.label,
      prediction,
      confidence,
      logits: hex(logits),
      rates: hex(spikeRates),
      synOps,
    });
    count();
  });
  agent.on('error', (err) => {
    errors.push(err);
    queueMicrotask(count);
  });
  await agent.start();
  const steps = agent.activeEngine!.steps;
  await all;
  const snapshot = agent.snapshot();
  await agent.stop();
  return { results, errors, steps, snapshot };
}

test('engine.threads 2 gives the results of engine.threads 1, frame for frame and in order; engine.steps 1 runs one step', async () => {
  const spec = frames('plain');
  const one = await run(spec, { threads: 1 });
  const two = await run(spec, { threads: 2 });
  assert.equal(one.results.length, N);
  assert.deepEqual(two.results, one.results);
  assert.deepEqual(
    two.results.map((r) => r.frame),
    Array.from({ length: N }, (_, i) => i + 1),
  );
  assert.deepEqual([one.errors, two.errors], [[], []]);
  assert.equal(two.snapshot.frames, N);
  const t1 = await run(spec, { threads: 2, steps: 1 });
  assert.equal(t1.steps, 1);
  assert.equal(one.steps, 2);
  assert.notDeepEqual(
    t1.results.map((r) => r.rates),
    one.results.map((r) => r.rates),
  );
  const single = await run(spec, { threads: 1, steps: 1 });
  assert.deepEqual(t1.results, single.results);
});

test('a worker that dies costs the frame it held (an error naming it, origin engine); the agent goes on', async () => {
  const spec = frames('boom', 10);
  const reference = await run(frames('plain-again'), { threads: 1 });
  const r = await run(spec, { threads: 2 }, CRASHING);
  // The frames that worker held are lost (the marked one and at most one more); every other one is as one thread has it.
  const lost = new Set(
    Array.from({ length: N }, (_, i) => i + 1).filter((id) => !r.results.some((x) => x.frame === id)),
  );
  assert.ok(lost.has(11), `frame 11 (the marked one) lost: ${[...lost]}`);
  assert.ok(lost.size <= 2, `lost ${[...lost]}`);
  assert.equal(r.errors.length, lost.size, r.errors.map(String).join('\n'));
  assert.equal(r.snapshot.frameErrors, lost.size);
  for (const err of r.errors) {
    assert.ok(err instanceof WorkerError, String(err));
    assert.match(err.message, /engine worker \d: expected it to keep running, got an exit with code 7 with frames? #/);
  }
  assert.deepEqual(
    r.results,
    reference.results.filter((x) => !lost.has(x.frame as number)),
  );
  assert.ok(
    r.results.some((x) => (x.frame as number) > 20),
    'frames after the crash were inferred',
  );
});
