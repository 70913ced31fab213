/**
 * Oversized input is refused before anything is allocated for it: a 100 MB MQTT message to a running agent (a
 * child process, whose peak RSS is read from /proc) on Aedes (MQTT 3.1.1: the agent's packet-size watch closes
 * the connection after the fixed header) and on Mosquitto (MQTT 5: the broker is told the limit and drops the
 * message for it); a frame of the wrong size, a PNG or PGM whose header claims billions of pixels; a .bwsnn
 * header with a 10^9-element shape. Allocation is measured with process.memoryUsage().arrayBuffers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { FormatError, FrameError, readBwsnn, writeBwsnn } from '../runtime/index.js';
import { randomModel } from '../runtime/format/random-model.js';
import { packetSizeWatch } from '../device-agent/mqtt/packet-size.js';
import { decodePicture } from '../device-agent/sources/image.js';
import { decodeFrame } from '../device-agent/sources/mqtt.js';
import { aedes, mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import { Operator, agentConfig, modelFile } from './helpers/agent.js';
import { SMALL, fixChecksum } from './helpers/format.js';

const ROOT = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'sei-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Bytes of ArrayBuffers (Buffers, typed arrays) allocated by `fn` and still held right after it. */
function allocatedBy(fn: () => void): number {
  globalThis.gc?.();
  const before = process.memoryUsage().arrayBuffers;
  let peak = before;
  try {
    fn();
  } finally {
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  }
  return peak - before;
}

describe('MQTT packets larger than mqtt.maxMessageBytes', () => {
  test('the fixed-header watch finds a packet too large across chunk boundaries, only from its header', () => {
    const header = (type: number, length: number) => {
      const out = [type];
      do {
        let b = length % 128;
        length = Math.floor(length / 128);
        if (length > 0) b |= 0x80;
        out.push(b);
      } while (length > 0);
      return Uint8Array.from(out);
    };
    const small = [...header(0x30, 10), ...new Uint8Array(10)];
    const big = header(0x30, 100 * 2 ** 20);
    const w = packetSizeWatch(1 << 20);
    // Byte by byte: three small packets, then only the first two bytes of the big one's header.
    for (const b of [...small, ...small, ...small, big[0]!, big[1]!]) assert.equal(w.feed(Uint8Array.of(b)), null);
    assert.equal(w.feed(big.subarray(2)), 100 * 2 ** 20 + big.length);
    // A packet of exactly the limit passes.
    const exact = packetSizeWatch(1 + 3 + 70_000);
    assert.equal(exact.feed(header(0x30, 70_000)), null);
    // A fifth length byte is no MQTT packet.
    assert.equal(packetSizeWatch(1 << 20).feed(Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0xff, 0x01)), Infinity);
  });

  const brokers = [
    { name: 'Aedes (MQTT 3.1.1)', start: () => aedes(), protocol: 4 as const, skip: false },
    {
      name: 'Mosquitto (MQTT 5)',
      start: () => mosquitto(),
      protocol: 5 as const,
      skip: mosquittoAvailable ? false : 'needs Mosquitto (apt-get install mosquitto)',
    },
  ];
  for (const b of brokers) {
    test(`a 100 MB command on ${b.name} never reaches the agent's memory; it answers the next command`, {
      skip: b.skip,
      timeout: 180_000,
    }, async () => {
      const broker = await b.start();
      const prefix = `sei/test/big${b.protocol}/`;
      const config = agentConfig({
        dir,
        model: modelFile(dir, 3),
        url: broker.url,
        device: `big${b.protocol}`,
        extra: { source: { spec: 'samples', frameRate: 5 }, mqtt: { maxMessageBytes: 1 << 20 } },
      });
      const configPath = join(dir, `agent-${b.protocol}.json`);
      writeFileSync(configPath, JSON.stringify(config));
      const agent = spawn(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'agent', '--config', configPath], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      agent.stdout.on('data', (c) => (output += c));
      agent.stderr.on('data', (c) => (output += c));
      const peakRss = () =>
        Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))![1]) * 1024;
      const op = await Operator.connect(broker.url, b.protocol);
      try {
        // Online and answering: then its memory has settled into its working size.
        await op.subscribe(`${prefix}status`);
        await op.waitFor((m) => m.json?.state === 'online', 'the agent online', 60_000);
        assert.equal((await op.command(prefix, 'status')).ok, true);
        await new Promise((r) => setTimeout(r, 1000));
        const before = peakRss();
        const sent = op.messages.length;
        const big = join(dir, 'big.bin');
        writeFileSync(big, Buffer.alloc(100 * 2 ** 20, 0x20));
        // Not spawnSync: the Aedes broker runs in this process's event loop.
        const pub = await run('mosquitto_pub', [
          '-h',
          '127.0.0.1',
          '-p',
          String(broker.port),
          '-V',
          b.protocol === 5 ? 'mqttv5' : 'mqttv311',
          '-q',
          '0',
          // A busy machine may take long to move 100 MB through a broker in this process: no keep-alive timeout.
          '-k',
          '600',
          '-t',
          `${prefix}cmd/status`,
          '-f',
          big,
        ]);
        rmSync(big);
        assert.equal(pub.status, 0, pub.stderr);
        if (b.protocol === 4) {
          // The 3.1.1 broker sends it: the agent closes the connection on its header, says why, and reconnects.
          await waitUntil(
            () => /mqtt\.maxMessageBytes: expected MQTT packets of at most 1048576 bytes/.test(output),
            output,
          );
          const down = await op.waitFor((m) => m.json?.state === 'offline', 'the Last Will', 60_000, sent);
          await op.waitFor(
            (m) => m.json?.state === 'online',
            'the agent back online',
            60_000,
            op.messages.indexOf(down) + 1,
          );
        }
        // Reconnected (3.1.1) or never disconnected (5): the next command is answered.
        const reply = await op.command(prefix, 'status', {}, undefined);
        assert.equal(reply.ok, true);
        const grown = peakRss() - before;
        assert.ok(grown < 32 * 2 ** 20, `peak RSS grew by ${(grown / 2 ** 20).toFixed(1)} MB with a 100 MB message`);
      } finally {
        await op.client.endAsync();
        agent.kill('SIGTERM');
        await new Promise((r) => agent.once('close', r));
        await broker.close();
      }
    });
  }
});

/** Runs a command to its end without blocking the event loop; its exit status and stderr. */
function run(cmd: string, args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

async function waitUntil(ok: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out; output:\n${what.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('frames of the wrong size', () => {
  const opts = { target: [28, 28, 1] as const, crop: null, invert: false };

  test('a raw frame one byte off is refused by its size, without a copy', () => {
    const payload = Buffer.alloc(28 * 28 + 1, 1);
    let err: unknown;
    const grown = allocatedBy(() => {
      try {
        decodeFrame(payload, undefined, opts);
      } catch (e) {
        err = e;
      }
    });
    assert.ok(err instanceof FrameError && /expected 784 raw bytes/.test(err.message), String(err));
    assert.ok(grown < 64 * 1024, `${grown} bytes allocated`);
  });

  test('a PNG or PGM claiming 100000x100000 pixels is refused from its header (nothing near 10 GB allocated)', () => {
    // Signature, then an IHDR chunk of 100000x100000 8-bit grey (no pixel data follows).
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(100_000, 0);
    ihdr.writeUInt32BE(100_000, 4);
    ihdr[8] = 8;
    const png = Buffer.concat([
      Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'),
      ihdr,
      Buffer.alloc(4),
      Buffer.from('0000000049454e44ae426082', 'hex'),
    ]);
    const pgm = Buffer.from('P5\n100000 100000\n255\n\0\0\0');
    const ascii = Buffer.from('P2\n60000 60000\n255\n1 2 3\n');
    for (const [what, bytes] of [
      ['PNG', png],
      ['PGM', pgm],
      ['PGM', ascii],
    ] as const) {
      let err: unknown;
      const grown = allocatedBy(() => {
        try {
          decodePicture(bytes, 'frames/in');
        } catch (e) {
          err = e;
        }
      });
      assert.ok(err instanceof FrameError, String(err));
      assert.match(err.message, new RegExp(`a ${what} of at most 16777216 pixels`));
      assert.ok(grown < 64 * 1024, `${what}: ${grown} bytes allocated`);
      // Through the MQTT source too.
      assert.throws(() => decodeFrame(bytes, undefined, opts), FrameError);
    }
  });
});

describe('a .bwsnn header with a 10^9-element shape', () => {
  const file = writeBwsnn(randomModel(SMALL), { createdAt: '2025-01-01T00:00:00.000Z' });
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = view.getUint32(8, true);
  const header = () => JSON.parse(inflateRawSync(file.subarray(16, 16 + headerLength)).toString('utf8'));
  /** The file with another header (the same data area), checksum fixed so the header is what gets refused. */
  const withHeader = (h: unknown) => {
    const stored = deflateRawSync(Buffer.from(JSON.stringify(h)));
    const data = file.subarray(16 + headerLength, file.length - 32);
    const out = new Uint8Array(16 + stored.length + data.length + 32);
    out.set(file.subarray(0, 16));
    new DataView(out.buffer).setUint32(8, stored.length, true);
    out.set(stored, 16);
    out.set(data, 16 + stored.length);
    return fixChecksum(out);
  };

  const cases: Array<[string, (h: any) => void, RegExp]> = [
    ['input', (h) => (h.input = [31623, 31623, 1]), /^header\.(input|first\.inShape)/],
    ['first.outShape', (h) => (h.first.outShape = [1000, 1000, 1000]), /^header\.first\.outShape/],
    ['head.inFeatures', (h) => (h.head.inFeatures = 1e9), /^header\.head\.inFeatures/],
    ['head.outFeatures', (h) => (h.head.outFeatures = 1e9), /^header\.head\.outFeatures/],
    [
      'a linear layer',
      (h) => {
        const l = h.hidden.find((x: any) => x.op === 'blinear');
        l.outFeatures = 1e9;
      },
      /^header\.hidden\[\d+\]\.outFeatures/,
    ],
  ];
  for (const [what, mutate, field] of cases) {
    test(`${what}: refused by field before a tensor is allocated`, () => {
      const h = header();
      mutate(h);
      const bytes = withHeader(h);
      let err: unknown;
      const grown = allocatedBy(() => {
        try {
          readBwsnn(bytes);
        } catch (e) {
          err = e;
        }
      });
      assert.ok(err instanceof FormatError, String(err));
      assert.notEqual(err.field, 'internal', err.message);
      assert.match(err.field ?? '', field, err.message);
      assert.ok(grown < 1 << 20, `${grown} bytes allocated`);
    });
  }
});
