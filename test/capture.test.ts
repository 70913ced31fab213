// The capture store on a real broker (Aedes) with a real SQLite file: cmd/capture takes the next frames, labelled
// or not; cmd/label labels a captured one; automatic capture below a confidence threshold is rate-limited; the
// quota drops the oldest first; malformed commands and a quota too small for one frame are refused and change
// nothing. `sei capture pull` fetches them block by block into an image folder, resumes a run stopped midway
// without fetching a block twice, files a frame labelled since under its class, and names a device that does not
// answer.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pullCaptures } from '../device-agent/capture/pull.js';
import { Agent, decodePicture } from '../device-agent/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { aedes } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

const CLI = fileURLToPath(new URL('../scripts/cli.ts', import.meta.url));
const PREFIX = 'sei/test/dev1/';

function sei(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('capture store and sei capture pull', () => {
  let dir: string;
  let broker: TestBroker;
  let agent: Agent;
  let op: Operator;
  const errors: Error[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sei-capture-'));
    broker = await aedes();
    op = await Operator.connect(broker.url, 4);
    const model = modelFile(dir, 1, 1);
    agent = new Agent({
      config: agentConfig({
        dir,
        model,
        url: broker.url,
        extra: { source: { spec: 'samples', frameRate: 20 } },
      }),
    });
    agent.on('error', (e) => errors.push(e));
    await op.subscribe(`${PREFIX}status`);
    await agent.start();
    // The birth status follows the agent's subscription to its commands.
    await op.waitFor((m) => m.topic === `${PREFIX}status` && m.json?.state === 'online', 'the birth status', 30_000);
  });

  after(async () => {
    await agent.stop();
    await op.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('cmd/capture takes the next frames, labelled by class index or name; cmd/label labels a captured frame', async () => {
    const labels = agent.activeEngine!.model.labels;
    const a = await op.command(PREFIX, 'capture', { count: 4, label: 2 });
    assert.equal(a.ok, true, JSON.stringify(a));
    assert.equal(a.result.ids.length, 4);
    assert.equal(a.result.label, labels[2]);
    assert.equal(a.result.timedOut, false);
    const b = await op.command(PREFIX, 'capture', { count: 3, label: 'scratch' });
    assert.equal(b.result.label, 'scratch', 'a class the running model does not know yet');
    const c = await op.command(PREFIX, 'capture', { count: 3 });
    assert.equal(c.result.label, null);
    const listed = await op.command(PREFIX, 'captures', {});
    const frames = listed.result.frames as Array<{ id: number; label: string | null; shape: number[]; size: number }>;
    assert.deepEqual(
      frames.map((f) => f.label),
      [...new Array(4).fill(labels[2]), 'scratch', 'scratch', 'scratch', null, null, null],
    );
    assert.deepEqual(listed.result.store.frames, 10);
    // The PNG on disk is the frame the model saw.
    const dirFiles = readdirSync(join(dir, 'sei-captures', 'dev1')).filter((f) => f.endsWith('.png'));
    assert.equal(dirFiles.length, 10);
    const png = decodePicture(readFileSync(join(dir, 'sei-captures', 'dev1', dirFiles[0]!)));
    assert.deepEqual([png.height, png.width, png.channels], [28, 28, 1]);

    const r = await op.command(PREFIX, 'label', {
      labels: [
        { capture: c.result.ids[0], label: 'scratch' },
        { capture: 999_999, label: 1 },
      ],
    });
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.deepEqual(r.result.captures, { labelled: 1, missing: [999_999] });
    assert.equal(agent.capture.store.get(c.result.ids[0])!.label, 'scratch');
  });

  test('malformed capture and label commands are refused by field and change nothing', async () => {
    const before = agent.capture.store.stats().frames;
    for (const [args, field, message] of [
      [{ count: 0 }, 'count', /capture: count: expected an integer in \[1, 1000\], got 0/],
      [{ count: 'ten' }, 'count', /got "ten"/],
      [
        { count: 2, label: 99 },
        'capture: label',
        /expected a class index 0\.\.9 of the running model or a class name, got 99/,
      ],
      [{ label: '_unlabelled' }, 'capture: label', /not starting with "_"/],
      [{ label: 'a/b' }, 'capture: label', /no slash/],
      [{ count: 1, frames: 3 }, 'frames', /capture: frames: expected one of count, label, seconds/],
      [{ seconds: -1 }, 'seconds', /capture: seconds: expected a number in \(0, 3600\]/],
    ] as const) {
      const r = await op.command(PREFIX, 'capture', args);
      assert.equal(r.ok, false, JSON.stringify(args));
      assert.equal(r.error.field, field);
      assert.match(r.error.message, message);
    }
    const bad = await op.command(PREFIX, 'label', {
      labels: [
        { capture: 1, label: 'fine' },
        { capture: 2, label: '_x' },
      ],
    });
    assert.equal(bad.ok, false);
    assert.match(bad.error.message, /labels\[1\]\.label/);
    assert.notEqual(agent.capture.store.get(1)!.label, 'fine', 'a refused command labels nothing');
    for (const [args, message] of [
      [{ id: 0, blocks: [0] }, /capture-read: id: expected a capture id/],
      [{ id: 424242, blocks: [0] }, /expected a frame the store keeps, got 424242/],
      [{ id: 1, blocks: [] }, /capture-read: blocks: expected 1\.\.8 block indices/],
      [{ id: 1, blocks: [0], blockSize: 10 }, /blockSize: expected an integer in \[256, 65536\]/],
    ] as const) {
      const r = await op.command(PREFIX, 'capture-read', args);
      assert.equal(r.ok, false);
      assert.match(r.error.message, message);
    }
    assert.equal(agent.capture.store.stats().frames, before);
  });

  test('sei capture pull: block by block into class folders and _unlabelled/; stopped midway it resumes, never twice', async () => {
    const out = join(dir, 'pulled');
    // Small blocks: every frame takes several, so the run can stop inside one.
    const controller = new AbortController();
    let seen = 0;
    const first = await pullCaptures({
      url: broker.url,
      device: 'dev1',
      out,
      prefix: PREFIX,
      timeoutS: 5,
      blockSize: 256,
      window: 1,
      signal: controller.signal,
      onBlock: () => {
        if (++seen === 7) controller.abort();
      },
    });
    assert.equal(first.interrupted, true);
    assert.ok(first.pulled >= 1 && first.pulled < 10, `pulled ${first.pulled} before the stop`);
    assert.ok(existsSync(join(out, '.sei-capture', 'dev1.part')), 'the frame under way is kept in its .part file');
    const partial = JSON.parse(readFileSync(join(out, '.sei-capture', 'dev1.json'), 'utf8')).partial;
    assert.ok(partial && partial.have.length > 0, 'with the blocks it has');

    const run = await sei([
      'capture',
      'pull',
      '--device',
      'dev1',
      '--fleet',
      'test',
      '--out',
      out,
      '--mqtt',
      broker.url,
      '--block-size',
      '256',
      '--json',
    ]);
    assert.equal(run.code, 0, run.stderr);
    const s = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
    assert.equal(s.pulled + first.pulled, 10);
    assert.equal(s.kept, first.pulled);
    // Every block fetched once across both runs: the resumed frame fetched only what it lacked.
    const blocksNeeded = agent.capture.store.list(0, 100).reduce((n, f) => n + Math.ceil(f.size / 256), 0);
    assert.equal(first.blocks + partial.have.length + s.blocks, blocksNeeded);
    assert.match(run.stdout, /10\/10 frames/);
    const labels = agent.activeEngine!.model.labels;
    assert.deepEqual(s.classes, { [labels[2]!.replace('/', '-')]: 4, scratch: 4, _unlabelled: 2 });
    // Each file is the device's PNG byte for byte.
    for (const f of agent.capture.store.list(0, 100)) {
      const folder = f.label === null ? '_unlabelled' : f.label.replace('/', '-');
      const bytes = readFileSync(join(out, folder, `dev1-${f.id}.png`));
      assert.equal(bytes.length, f.size);
    }

    // Labelled since: the next run moves it; nothing is fetched again, nothing filed twice.
    const unl = agent.capture.store.list(0, 100).find((f) => f.label === null)!;
    await op.command(PREFIX, 'label', { capture: unl.id, label: 'dent' });
    const again = await sei([
      'capture',
      'pull',
      '--device',
      'dev1',
      '--fleet',
      'test',
      '--out',
      out,
      '--mqtt',
      broker.url,
      '--json',
    ]);
    const t = JSON.parse(again.stdout.trim().split('\n').at(-1)!);
    assert.deepEqual([t.pulled, t.moved, t.kept, t.blocks], [0, 1, 9, 0]);
    assert.ok(existsSync(join(out, 'dent', `dev1-${unl.id}.png`)));
    assert.ok(!existsSync(join(out, '_unlabelled', `dev1-${unl.id}.png`)));
    const all = readdirSync(out, { recursive: true }).filter((p) => String(p).endsWith('.png'));
    assert.equal(all.length, 10);
  });

  test('a device that does not answer: one line naming it, exit 2, the folder untouched', async () => {
    const out = join(dir, 'nobody');
    const r = await sei([
      'capture',
      'pull',
      '--device',
      'ghost',
      '--out',
      out,
      '--mqtt',
      broker.url,
      '--timeout',
      '0.5',
    ]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /device ghost: expected a reply to cmd\/captures within 0\.5 s, got none \(its retained status: none/,
    );
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const bad = await sei(['capture', 'pull', '--device', 'a/b', '--out', out]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--device: expected a topic level/);
  });

  test('automatic capture below the confidence threshold, rate-limited; the quota drops the oldest; a frame too big for it is refused', async () => {
    // The capture section is read at each frame: the agent's config object is what the command context sees.
    agent.config = {
      ...agent.config,
      capture: { ...agent.config.capture, maxFrames: 6, auto: { belowConfidence: 1, minIntervalS: 0.3 } },
    };
    const start = agent.capture.store.stats();
    const began = Date.now();
    const autos = () => agent.capture.store.list(0, 100).filter((f) => f.reason === 'auto');
    while (
      (autos().length < 6 || agent.capture.store.stats().dropped < start.dropped + 2) &&
      Date.now() - began < 30_000
    )
      await new Promise((r) => setTimeout(r, 100));
    const elapsed = Date.now() - began;
    const later = agent.capture.store.stats();
    const kept = autos();
    assert.equal(kept.length, 6, 'bounded by maxFrames: only automatic captures are left');
    const made = kept.at(-1)!.id - kept[0]!.id + 1;
    assert.equal(made, 6, 'the newest six: the oldest were dropped first');
    assert.ok(later.dropped >= start.dropped + 2, 'drops counted');
    // One per 0.3 s at most: never two closer in time, never more than the time allows.
    for (let i = 1; i < kept.length; i++) assert.ok(kept[i]!.ts - kept[i - 1]!.ts >= 300);
    assert.ok(later.dropped - start.dropped + 6 - start.frames <= Math.floor(elapsed / 300) + 2, `in ${elapsed} ms`);
    assert.equal(
      readdirSync(join(dir, 'sei-captures', 'dev1')).filter((f) => f.endsWith('.png')).length,
      6,
      'their files went with them',
    );

    agent.config = { ...agent.config, capture: { ...agent.config.capture, maxBytes: 100, auto: null } };
    const before = agent.capture.store.stats();
    const r = await op.command(PREFIX, 'capture', { count: 1 });
    assert.equal(r.ok, false);
    assert.equal(r.error.field, 'capture.maxBytes');
    assert.match(r.error.message, /capture\.maxBytes: expected room for one frame of \d+ bytes \(PNG\), got 100/);
    assert.deepEqual(agent.capture.store.stats(), before, 'nothing dropped for a frame that cannot fit');
    assert.deepEqual(
      errors.filter((e) => (e as { field?: string }).field === 'capture.dir'),
      [],
      'no frame failed to reach the disk',
    );
  });
});
