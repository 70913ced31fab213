// StateStore: one suite, run on every implementation (SQLite on a real file, in-memory).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { MemoryStore, SqliteStore } from '../device-agent/index.js';
import type { PredictionRecord, RetentionLimits, StateStore } from '../device-agent/index.js';
import { ConfigError } from '../runtime/index.js';

const dir = mkdtempSync(join(tmpdir(), 'sei-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const implementations: Array<[string, (limits?: Partial<RetentionLimits>) => StateStore]> = [
  ['SqliteStore', (limits) => new SqliteStore(join(dir, `s${n++}.db`), limits)],
  ['MemoryStore', (limits) => new MemoryStore(limits)],
];

const pred = (frame: number, ts: number): PredictionRecord => ({
  frame,
  ts,
  model: 'm@1',
  prediction: frame % 10,
  confidence: 0.5,
  label: frame % 3 === 0 ? null : 1,
  latencyMs: 1.25,
});

for (const [name, open] of implementations) {
  describe(name, () => {
    test('model registry: register, activate exactly one, fail, re-register', () => {
      const s = open();
      s.registerModel({ version: 'a@1', sha256: 'aa', path: '/m/a1' });
      s.registerModel({ version: 'a@2', sha256: 'bb', path: '/m/a2' });
      assert.equal(s.getModel('a@1')!.state, 'available');
      s.activateModel('a@1', 1000);
      s.activateModel('a@2', 2000);
      const models = s.listModels();
      assert.deepEqual(
        models.map((m) => [m.version, m.state]),
        [
          ['a@1', 'available'],
          ['a@2', 'active'],
        ],
      );
      assert.equal(s.getModel('a@1')!.activatedAt, 1000);
      assert.equal(s.getModel('a@2')!.activatedAt, 2000);
      // Same bytes registered again: state kept. Different bytes under the same version: back to available.
      assert.equal(s.registerModel({ version: 'a@2', sha256: 'bb', path: '/m/a2' }).state, 'active');
      assert.equal(s.registerModel({ version: 'a@2', sha256: 'cc', path: '/m/a2b' }).state, 'available');
      s.markModelFailed('a@1');
      assert.equal(s.getModel('a@1')!.state, 'failed');
      assert.throws(
        () => s.activateModel('nope@0'),
        (e: Error) => e instanceof ConfigError && /nope@0/.test(e.message),
      );
      assert.equal(s.getModel('nope@0'), undefined);
      s.close();
    });

    test('metrics history is bounded, oldest dropped, order kept', () => {
      const s = open({ metricsHistory: 5 });
      for (let i = 0; i < 12; i++) s.addMetrics(i, { i });
      const recent = s.recentMetrics(100);
      assert.deepEqual(
        recent.map((r) => JSON.parse(r.json).i),
        [7, 8, 9, 10, 11],
      );
      assert.deepEqual(
        s.recentMetrics(2).map((r) => r.ts),
        [10, 11],
      );
      s.close();
    });

    test('prediction log: retention by count and by age', () => {
      const s = open({ predictionRows: 50, predictionMaxAge: 10 });
      const now = 1_000_000;
      s.logPredictions(
        Array.from({ length: 80 }, (_, i) => pred(i + 1, now)),
        now,
      );
      assert.equal(s.predictionCount(), 50);
      assert.deepEqual(
        s.recentPredictions(2).map((p) => p.frame),
        [79, 80],
      );
      assert.deepEqual(s.recentPredictions(1)[0], pred(80, now));
      // 11 s later, everything logged before is older than the 10 s limit.
      s.logPredictions([pred(81, now + 11_000)], now + 11_000);
      assert.deepEqual(
        s.recentPredictions(100).map((p) => p.frame),
        [81],
      );
      s.logPredictions([], now);
      assert.equal(s.predictionCount(), 1);
      s.close();
    });

    test('labelled frames round-trip their pixels; relabelling replaces', () => {
      const s = open();
      const data = Uint8Array.from({ length: 28 * 28 }, (_, i) => i % 256);
      s.saveLabelledFrames([
        { frame: 7, ts: 1, label: 3, shape: [28, 28, 1], data },
        { frame: 2, ts: 1, label: 1, shape: [28, 28, 1], data: data.subarray(0, 784) },
      ]);
      s.saveLabelledFrames([{ frame: 7, ts: 2, label: 4, shape: [28, 28, 1], data }]);
      const frames = s.labelledFrames();
      assert.equal(s.labelledFrameCount(), 2);
      assert.deepEqual(
        frames.map((f) => [f.frame, f.label]),
        [
          [2, 1],
          [7, 4],
        ],
      );
      assert.deepEqual(frames[1]!.data, data);
      assert.deepEqual(frames[1]!.shape, [28, 28, 1]);
      s.close();
    });

    test('feature cache: features round-trip bit for bit per (backbone, frame id); overwrite replaces', () => {
      const s = open();
      const a = Float64Array.from([0, 0.25, 1 / 3, -0, Number.MIN_VALUE, 1e300]);
      assert.equal(s.features.get('b1', 'f1'), undefined);
      s.features.set('b1', 'f1', a);
      s.features.set('b2', 'f1', Float64Array.from([9]));
      const got = s.features.get('b1', 'f1')!;
      assert.ok(got instanceof Float64Array);
      assert.deepEqual(Array.from(got), Array.from(a));
      assert.ok(Object.is(got[3], -0));
      assert.deepEqual(Array.from(s.features.get('b2', 'f1')!), [9]);
      assert.equal(s.features.get('b1', 'f2'), undefined);
      s.features.set('b1', 'f1', Float64Array.from([1, 2]));
      assert.deepEqual(Array.from(s.features.get('b1', 'f1')!), [1, 2]);
      s.close();
    });

    test('outbox: ids increase, peek in order after an id, remove, bound drops the oldest', () => {
      const s = open({ outboxMax: 4 });
      const ids = [1, 2, 3].map((i) =>
        s.outboxAdd({ topic: `t/${i}`, payload: `{"i":${i}}`, qos: 1, retain: i === 2 }),
      );
      assert.ok(ids[0]! < ids[1]! && ids[1]! < ids[2]!);
      assert.deepEqual(
        s.outboxPeek(0, 10).map((m) => m.topic),
        ['t/1', 't/2', 't/3'],
      );
      assert.deepEqual(
        s.outboxPeek(ids[0]!, 1).map((m) => [m.topic, m.retain, m.qos]),
        [['t/2', true, 1]],
      );
      s.outboxRemove(ids[1]!);
      assert.deepEqual(
        s.outboxPeek(0, 10).map((m) => m.payload),
        ['{"i":1}', '{"i":3}'],
      );
      for (let i = 4; i <= 7; i++) s.outboxAdd({ topic: `t/${i}`, payload: '{}', qos: 1, retain: false });
      assert.equal(s.outboxCount(), 4);
      assert.equal(s.outboxDropped, 2);
      assert.deepEqual(
        s.outboxPeek(0, 10).map((m) => m.topic),
        ['t/4', 't/5', 't/6', 't/7'],
      );
      s.close();
    });
  });
}

test('SqliteStore keeps its state across a reopen (WAL file on disk)', () => {
  const path = join(dir, 'reopen.db');
  const a = new SqliteStore(path);
  a.registerModel({ version: 'x@1', sha256: 'ff', path: '/x' });
  a.activateModel('x@1', 5);
  a.outboxAdd({ topic: 'sei/f/d/metrics', payload: '{"n":1}', qos: 1, retain: false });
  a.close();
  const b = new SqliteStore(path);
  assert.equal(b.getModel('x@1')!.state, 'active');
  assert.deepEqual(
    b.outboxPeek(0, 5).map((m) => m.payload),
    ['{"n":1}'],
  );
  b.close();
});

test('SqliteStore refuses an unusable path with a ConfigError naming store.path', () => {
  assert.throws(
    () => new SqliteStore(join(dir, 'no', 'such', 'dir', 'x.db')),
    (e: Error) => e instanceof ConfigError && (e as ConfigError).field === 'store.path',
  );
});
