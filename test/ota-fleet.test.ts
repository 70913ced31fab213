/**
 * The operator's session against a fleet of 3 agents on one machine, through the real CLI: `sei keys gen`,
 * `sei sign`, `sei deploy --fleet` in waves (all three updated), then a model that fails probation pushed with
 * an abort threshold of 0%: the first wave rolls back by itself and the rollout stops there.
 * Broker: Mosquitto (MQTT 5) when installed, else the embedded Aedes (MQTT 3.1.1).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import { otaModelFile, otaSection } from './fixtures/ota/models.js';
import { aedes, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';
import { agentConfig } from './helpers/agent.js';

const CLI = fileURLToPath(new URL('../scripts/cli.ts', import.meta.url));
const DEVICES = ['a1', 'a2', 'a3'];

let dir: string;
let broker: TestBroker;
let agents: Agent[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sei-ota-fleet-'));
  broker = mosquittoAvailable ? await mosquitto() : await aedes();
});

after(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

function sei(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function lastJson(stdout: string): any {
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

test(`sei keys gen, sei sign, sei deploy --fleet: all ${DEVICES.length} agents updated, in waves; a failing model stops the rollout at the abort threshold`, async () => {
  const keys = await sei(['keys', 'gen', '--out', join(dir, 'keys'), '--json']);
  assert.equal(keys.code, 0, keys.stderr);
  const {
    private: priv,
    public: pub,
    keyId,
  } = lastJson(keys.stdout) as { private: string; public: string; keyId: string };
  assert.match(keyId, /^[0-9a-f]{64}$/);

  const first = otaModelFile(dir, 1, 1);
  agents = await Promise.all(
    DEVICES.map(async (device) => {
      const agent = new Agent({
        config: agentConfig({
          dir,
          model: first,
          url: broker.url,
          device,
          extra: { fleet: 'f3', ota: otaSection(pub, { dir: join(dir, `${device}-models`) }) },
        }),
      });
      agent.on('error', () => {});
      await agent.start();
      await new Promise<void>((r) => (agent.connected ? r() : agent.once('online', () => r())));
      return agent;
    }),
  );

  const signed = await sei([
    'sign',
    '--model',
    otaModelFile(dir, 2, 2),
    '--key',
    priv,
    '--out',
    join(dir, 'v2'),
    '--json',
  ]);
  assert.equal(signed.code, 0, signed.stderr);
  const s = lastJson(signed.stdout) as { artifact: string; manifest: string; model: string };
  assert.equal(s.model, 'ota-test@2');
  assert.ok(existsSync(s.artifact) && existsSync(s.manifest));

  const run = await sei([
    'deploy',
    '--model',
    s.artifact,
    '--key',
    priv,
    '--fleet',
    'f3',
    '--broker',
    broker.url,
    '--block-size',
    '512',
    '--wave-size',
    '2',
    '--timeout',
    '40',
    '--discover',
    '800',
    '--json',
  ]);
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  const out = lastJson(run.stdout);
  assert.equal(out.ok, true);
  assert.deepEqual(out.devices.map((d: { device: string }) => d.device).sort(), DEVICES);
  assert.ok(out.devices.every((d: { state: string }) => d.state === 'SUCCEEDED'));
  assert.deepEqual(
    out.waves.map((w: { devices: string[] }) => w.devices.length),
    [2, 1],
  );
  assert.match(run.stdout, /wave 1\/2 done: 2 SUCCEEDED/);
  assert.match(run.stdout, /wave 2\/2 done: 1 SUCCEEDED/);
  for (const a of agents) assert.equal(a.modelVersion, 'ota-test@2');

  // A model that passes signature and canaries but whose confidence collapses: the first device rolls back by
  // itself, 100% of wave 1 failed > 0%, so the other two are never touched.
  const bad = await sei([
    'deploy',
    '--model',
    otaModelFile(dir, 3, 3, { bad: true }),
    '--key',
    priv,
    '--fleet',
    'f3',
    '--device',
    DEVICES.join(','),
    '--broker',
    broker.url,
    '--block-size',
    '512',
    '--wave-size',
    '1',
    '--abort-threshold',
    '0',
    '--timeout',
    '40',
    '--json',
  ]);
  assert.equal(bad.code, 1, bad.stderr);
  const o = lastJson(bad.stdout);
  assert.equal(o.aborted, true);
  assert.deepEqual(
    o.devices.map((d: { state: string }) => d.state),
    ['FAILED', 'NOT_STARTED', 'NOT_STARTED'],
  );
  assert.match(o.devices[0].reason, /^probation: mean confidence .* rolled back to ota-test@2/);
  assert.match(bad.stdout, /rollout aborted: 2 device\(s\) not started/);
  for (const a of agents) assert.equal(a.modelVersion, 'ota-test@2');
});
