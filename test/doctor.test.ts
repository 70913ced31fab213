/** `sei doctor`: each check passes on a good value and fails, with a fix, on a bad one. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  checkBroker,
  checkClock,
  checkDisk,
  checkNode,
  checkWasmSimd,
  CLOCK_FLOOR,
  runDoctor,
} from '../scripts/commands/doctor.js';

describe('sei doctor', () => {
  it('node: 18 and later pass, 16 fails with a fix', () => {
    assert.equal(checkNode('18.19.0').status, 'ok');
    assert.equal(checkNode('22.1.0').status, 'ok');
    const old = checkNode('16.20.2');
    assert.equal(old.status, 'fail');
    assert.match(old.fix!, /Node 18/);
  });

  it('wasm-simd: runs i8x16.popcnt here', () => {
    assert.equal(checkWasmSimd().status, 'ok');
  });

  it('clock: an unset clock fails, an unsynchronised one warns', () => {
    assert.equal(checkClock(0, true).status, 'fail');
    assert.match(checkClock(0, true).fix!, /NTP/);
    assert.equal(checkClock(CLOCK_FLOOR + 1, false).status, 'warn');
    assert.equal(checkClock(CLOCK_FLOOR + 1, true).status, 'ok');
  });

  it('disk: measures the nearest existing parent of a missing folder', () => {
    const check = checkDisk(join(tmpdir(), 'sei-doctor-missing', 'state'));
    assert.notEqual(check.status, 'fail');
    assert.match(check.detail, /MiB free under/);
  });

  it('broker: a listening port passes, a closed one and a bad URL fail', async () => {
    const server = createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    assert.equal((await checkBroker(`mqtt://127.0.0.1:${port}`)).status, 'ok');
    await new Promise((r) => server.close(r));
    const closed = await checkBroker(`mqtt://127.0.0.1:${port}`);
    assert.equal(closed.status, 'fail');
    assert.match(closed.detail, /ECONNREFUSED/);
    assert.equal((await checkBroker('not a url')).status, 'fail');
    assert.equal((await checkBroker('http://127.0.0.1:80')).status, 'fail');
  });

  it('config: an invalid file fails and names the field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sei-doctor-'));
    const path = join(dir, 'agent.json');
    writeFileSync(path, JSON.stringify({ fleet: 3 }));
    const checks = await runDoctor({ config: path, stateDir: dir });
    const config = checks.find((c) => c.name === 'config')!;
    assert.equal(config.status, 'fail');
    assert.match(config.detail, /fleet/);
    writeFileSync(path, JSON.stringify({ fleet: 'line-3' }));
    assert.equal((await runDoctor({ config: path, stateDir: dir })).find((c) => c.name === 'config')!.status, 'ok');
  });
});
