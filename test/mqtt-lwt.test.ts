// Last Will: a `sei agent` process killed with SIGKILL (no goodbye possible) leaves a retained status "offline"
// that the broker publishes for it, on Aedes and on Mosquitto.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { aedes, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PREFIX = 'sei/test/dev1/';
let dir: string;
let model: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sei-lwt-'));
  model = modelFile(dir);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const setups: Array<[string, () => Promise<TestBroker>, 4 | 5]> = [
  ['Aedes', aedes, 4],
  ...(mosquittoAvailable ? [['Mosquitto', () => mosquitto(), 5] as [string, () => Promise<TestBroker>, 5]] : []),
];

for (const [name, start, protocol] of setups) {
  test(`${name}: birth "online", then after SIGKILL the Last Will "offline", retained`, async () => {
    const broker = await start();
    const op = await Operator.connect(broker.url, protocol);
    try {
      await op.subscribe(`${PREFIX}status`);
      const cfg = join(dir, `${name}.json`);
      writeFileSync(cfg, JSON.stringify(agentConfig({ dir, model, url: broker.url })));
      const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'agent', '--config', cfg], {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_code, signal) => r(signal)));
      try {
        const birth = await op.waitFor((m) => m.json?.state === 'online', 'birth', 30_000);
        assert.equal(birth.json.model, 'random-1@0');
        const from = op.messages.length;
        child.kill('SIGKILL');
        assert.equal(await exited, 'SIGKILL');
        const will = await op.waitFor((m) => m.json?.state === 'offline', 'the Last Will', 10_000, from);
        assert.equal(will.json.reason, 'connection lost');
      } finally {
        child.kill('SIGKILL');
      }
      const late = await Operator.connect(broker.url, protocol);
      await late.subscribe(`${PREFIX}status`);
      const retained = await late.waitFor(() => true, 'retained status');
      await late.close();
      assert.equal(retained.retain, true);
      assert.equal(retained.json.state, 'offline');
    } finally {
      await op.close();
      await broker.close();
    }
  });
}
