// TLS from the config: Mosquitto serving mqtts with a throwaway CA and requiring client certificates. The agent
// with CA + client certificate gets in; without a certificate, or trusting the wrong CA, it does not.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from '../device-agent/index.js';
import { agentConfig, modelFile, Operator } from './helpers/agent.js';
import { makeCertificates, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';

describe('Mosquitto over TLS with client certificates', { skip: !mosquittoAvailable && 'no mosquitto' }, () => {
  let dir: string;
  let broker: TestBroker;
  let certs: ReturnType<typeof makeCertificates>;
  let model: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sei-tls-'));
    certs = makeCertificates(dir);
    model = modelFile(dir);
    broker = await mosquitto({
      tls: { ca: certs.ca, cert: certs.serverCert, key: certs.serverKey, requireCertificate: true },
    });
  });
  after(async () => {
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const agentWith = (tls: Record<string, unknown>) =>
    new Agent({ config: agentConfig({ dir, model, url: broker.url, extra: { mqtt: { tls } } }) });

  test('CA and client certificate from the config: connected, metrics arrive', async () => {
    assert.match(broker.url, /^mqtts:/);
    const op = await Operator.connect(broker.url, 5, {
      ca: readFileSync(certs.ca),
      cert: readFileSync(certs.clientCert),
      key: readFileSync(certs.clientKey),
    });
    await op.subscribe('sei/test/dev1/metrics');
    const agent = agentWith({ ca: certs.ca, cert: certs.clientCert, key: certs.clientKey });
    agent.on('error', () => {});
    const online = new Promise<4 | 5>((r) => agent.once('online', r));
    await agent.start();
    try {
      assert.equal(await online, 5);
      const m = await op.waitFor((x) => x.topic === 'sei/test/dev1/metrics', 'metrics over TLS');
      assert.equal(m.json.device, 'dev1');
    } finally {
      await agent.stop();
      await op.close();
    }
  });

  for (const [what, tls, expected] of [
    ['without a client certificate', () => ({ ca: certs.ca }), /certificate|handshake|alert|socket|ECONNRESET|closed/i],
    [
      'trusting another CA',
      () => ({ ca: certs.clientCert, cert: certs.clientCert, key: certs.clientKey }),
      /certificate|self.signed|verify|issuer/i,
    ],
  ] as const) {
    test(`${what}: refused, reported, never online`, async () => {
      const agent = agentWith(tls());
      const errors: Error[] = [];
      agent.on('error', (e) => errors.push(e));
      let online = false;
      agent.on('online', () => (online = true));
      await agent.start();
      const deadline = Date.now() + 8000;
      while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      await agent.stop();
      assert.equal(online, false);
      assert.ok(
        errors.some((e) => expected.test(e.message)),
        errors.map((e) => e.message).join('; ') || 'no error reported',
      );
    });
  }
});
