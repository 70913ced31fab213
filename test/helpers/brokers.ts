/**
 * Real brokers for the tests: the embedded Aedes (MQTT 3.1.1) and Debian's Mosquitto 2 (MQTT 5), each on a free
 * localhost port. Mosquitto (scripts/bench/mosquitto.ts, shared with the fleet benchmark) gets a generated config,
 * optionally a password file, an ACL and on-disk persistence; it can be stopped and started again on the same port
 * with the same state.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBroker } from '../../device-agent/index.js';
import type { BrokerOptions, EmbeddedBroker } from '../../device-agent/index.js';
import type { LocalBroker } from '../../scripts/bench/mosquitto.js';

export { freePort, MOSQUITTO, mosquitto, mosquittoAvailable } from '../../scripts/bench/mosquitto.js';
export type { MosquittoOptions } from '../../scripts/bench/mosquitto.js';
export type TestBroker = LocalBroker;

/** The embedded Aedes broker (`ws` adds its websocket listener). Its state lives in memory: a restart starts empty. */
export async function aedes(
  o: { readonly ws?: boolean } = {},
): Promise<TestBroker & { readonly broker: () => EmbeddedBroker }> {
  let broker = await startBroker({ port: 0, ...(o.ws ? { wsPort: 0 } : {}) });
  const port = broker.port;
  const listeners: BrokerOptions = { port, ...(broker.wsPort !== null ? { wsPort: broker.wsPort } : {}) };
  let running = true;
  const stop = async () => {
    if (running) await broker.close();
    running = false;
  };
  return {
    name: 'Aedes (MQTT 3.1.1)',
    url: broker.url,
    ...(broker.wsUrl !== null ? { wsUrl: broker.wsUrl } : {}),
    port,
    broker: () => broker,
    stop,
    async start() {
      broker = await startBroker(listeners);
      running = true;
    },
    close: stop,
  };
}

/**
 * A throwaway PKI made with openssl: a CA, a server certificate for 127.0.0.1 and a client certificate, all PEM,
 * in `dir`. Returns the file paths.
 */
export function makeCertificates(dir: string): {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
} {
  const f = (name: string) => join(dir, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=sei-test-ca',
  );
  for (const [who, subject] of [
    ['server', '/CN=127.0.0.1'],
    ['client', '/CN=dev1'],
  ] as const) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`), '-subj', subject);
    writeFileSync(
      f(`${who}.ext`),
      who === 'server' ? 'subjectAltName=IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n',
    );
    ssl(
      'x509',
      '-req',
      '-in',
      f(`${who}.csr`),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f(`${who}.pem`),
      '-days',
      '2',
      '-extfile',
      f(`${who}.ext`),
    );
  }
  return {
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
}
