/**
 * The fuzz targets: every parser that takes outside input, each as one function from bytes that returns (or
 * resolves) when the parser accepted the input or refused it with its module's own typed error, and throws
 * anything else — a TypeError, a RangeError, an unexpected error class, a FormatError from the reader's
 * catch-all (`field: 'internal'`, an escaped bug). The same function is what the coverage-guided fuzzer calls
 * (./jazzer-entry.ts), what the fast-check pass feeds mutated seeds to (./run.ts, test/fuzz.test.ts), and what
 * replays every saved crash (test/fixtures/fuzz/<target>/). Each target also has fast-check properties over
 * structured input: the round trips where one exists.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { deflateRawSync, gzipSync, inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { PNG } from 'pngjs';
import YAML from 'yaml';
import {
  ConfigError,
  FormatError,
  FrameError,
  OtaError,
  SeiError,
  encodeIdx,
  inspectBwsnn,
  parseIdx,
  readBwsnn,
  writeBwsnn,
} from '../../runtime/index.js';
import { randomModel } from '../../runtime/format/random-model.js';
import { parseConfig, parseConfigText } from '../../device-agent/config.js';
import { parseCommand } from '../../device-agent/mqtt/link.js';
import { blockTopic } from '../../device-agent/ota/protocol.js';
import type { Job } from '../../device-agent/ota/protocol.js';
import { parseJob, claimedVersion } from '../../device-agent/ota/admission.js';
import { architectureProblem, buildManifest, signManifest, verifyManifest } from '../../device-agent/ota/manifest.js';
import type { Manifest } from '../../device-agent/ota/manifest.js';
import { Transfer } from '../../device-agent/ota/transfer.js';
import { fullBitmap } from '../../device-agent/ota/store.js';
import type { JobRow } from '../../device-agent/ota/store.js';
import { parseOtaConfig } from '../../device-agent/config-schema.js';
import { RESERVED_KEYS } from '../../device-agent/schema.js';
import { sha256 } from '../../device-agent/models.js';
import { decodeFrame } from '../../device-agent/sources/mqtt.js';
import { decodePicture, toModelFrame } from '../../device-agent/sources/image.js';
import { createSource } from '../../device-agent/sources/index.js';
import type { CommandContext } from '../../device-agent/commands/index.js';
import { SMALL, arbModel, fixChecksum } from '../helpers/format.js';

export interface FuzzProperty {
  readonly name: string;
  /** A fast-check property (sync or async); `runs` scales how many inputs a pass gives it. */
  readonly property: () => fc.IRawProperty<any, boolean>;
}

export interface FuzzTarget {
  readonly name: string;
  /** The parser(s) it drives, for the report. */
  readonly parses: string;
  /** Async targets run in the coverage-guided fuzzer's async mode (slower per input). */
  readonly async: boolean;
  /** One input: returns when accepted or refused as designed; throws (rejects) on anything else. */
  run(data: Uint8Array): void | Promise<void>;
  /** Valid inputs to start from (the fuzzer's seed corpus, the fast-check pass's mutation bases). */
  seeds(): Uint8Array[];
  readonly properties: readonly FuzzProperty[];
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** Rethrows `err` unless it is one of `allowed` (and not the .bwsnn reader's catch-all for an escaped bug). */
export function expected(err: unknown, ...allowed: ErrorClass[]): void {
  if (err instanceof FormatError && err.field === 'internal') throw err;
  if (allowed.some((c) => err instanceof c)) return;
  throw err;
}

const text = (s: string) => new TextEncoder().encode(s);
const utf8 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString('utf8');
const once = <T>(make: () => T): (() => T) => {
  let v: { value: T } | null = null;
  return () => {
    v ??= { value: make() };
    return v.value;
  };
};

// ------------------------------------------------------------------------------------------------ .bwsnn

const seedFiles = once(() => {
  const model = randomModel(SMALL);
  const key = generateKeyPairSync('ed25519').privateKey;
  return [
    writeBwsnn(model, { createdAt: '2025-01-01T00:00:00.000Z' }),
    writeBwsnn(model, { createdAt: '2025-01-01T00:00:00.000Z', formatVersion: 1 }),
    writeBwsnn(model, { createdAt: '2025-01-01T00:00:00.000Z', signingKey: key }),
  ];
});

/** A file's bytes through the reader and the inspector: refused with a FormatError naming a field, or read. */
function readFile(bytes: Uint8Array): void {
  for (const parse of [() => readBwsnn(bytes), () => inspectBwsnn(bytes)]) {
    try {
      parse();
    } catch (err) {
      expected(err, FormatError);
    }
  }
}

/** The version-2 seed's data area under another header (deflated), with its checksum recomputed. */
function withHeader(json: Uint8Array): Uint8Array {
  const seed = seedFiles()[0]!;
  const view = new DataView(seed.buffer, seed.byteOffset, seed.byteLength);
  const headerLength = view.getUint32(8, true);
  const data = seed.subarray(16 + headerLength, seed.length - 32);
  const header = deflateRawSync(json);
  const out = new Uint8Array(16 + header.length + data.length + 32);
  out.set(seed.subarray(0, 8));
  const v = new DataView(out.buffer);
  v.setUint16(6, 0, true);
  v.setUint32(8, header.length, true);
  v.setUint32(12, data.length, true);
  out.set(header, 16);
  out.set(data, 16 + header.length);
  return fixChecksum(out);
}

const bwsnn: FuzzTarget = {
  name: 'bwsnn',
  parses: 'readBwsnn, inspectBwsnn (runtime/format/container.ts), any bytes, checksum recomputed',
  async: false,
  run(data) {
    // Unsigned files get a valid checksum, so that what lies behind it is parsed rather than refused at once.
    const bytes = Uint8Array.from(data);
    if (bytes.length >= 48 && (bytes[6]! & 1) === 0) fixChecksum(bytes);
    readFile(bytes);
  },
  seeds: () => seedFiles(),
  properties: [
    {
      name: 'write → read returns the model (format versions 1 and 2)',
      property: () =>
        fc.property(arbModel, fc.constantFrom(1 as const, 2 as const), (m, formatVersion) => {
          assert.deepEqual(readBwsnn(writeBwsnn(m, { formatVersion })), m);
        }),
    },
  ],
};

const bwsnnHeader: FuzzTarget = {
  name: 'bwsnn-header',
  parses: 'the .bwsnn header JSON and its validation (runtime/format/container.ts, validate.ts)',
  async: false,
  run(data) {
    readFile(withHeader(data));
  },
  seeds: () => {
    const seed = seedFiles()[0]!;
    return [text(JSON.stringify(JSON.parse(new TextDecoder().decode(headerJson(seed)))))];
  },
  properties: [
    {
      name: 'a header with one value replaced is read or refused by field',
      property: () =>
        fc.property(
          fc.nat(),
          fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(1e9, -1, 0, 2 ** 31, [1e9, 1, 1], [1, 1e9, 1e9])),
          (which, value) => {
            const h = JSON.parse(new TextDecoder().decode(headerJson(seedFiles()[0]!)));
            const paths = leafPaths(h);
            const path = paths[which % paths.length]!;
            let parent: any = h;
            for (const k of path.slice(0, -1)) parent = parent[k];
            parent[path[path.length - 1]!] = value;
            readFile(withHeader(text(JSON.stringify(h))));
          },
        ),
    },
  ],
};

function headerJson(file: Uint8Array): Uint8Array {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = view.getUint32(8, true);
  return new Uint8Array(inflateRawSync(file.subarray(16, 16 + headerLength)));
}

function leafPaths(v: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (typeof v !== 'object' || v === null) return [path];
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
  return [path.length > 0 ? path : [], ...entries.flatMap(([k, x]) => leafPaths(x, [...path, k]))].filter(
    (p) => p.length > 0,
  );
}

// ------------------------------------------------------------------------------------------------ OTA

const otaKeys = once(() => generateKeyPairSync('ed25519'));
const otaSeed = once(async () => {
  const bytes = seedFiles()[0]!;
  return buildManifest(bytes, { canaries: 2, createdAt: '2025-01-01T00:00:00.000Z' });
});
/** The manifest target's seeds are computed once (buildManifest runs the engine): kept for the sync seeds(). */
let manifestSeed: Manifest | null = null;
/** What targets need before their first input: the manifest seed; the command target's agent (it takes seconds to start). */
export async function prepareTargets(names: readonly string[] = TARGETS.map((t) => t.name)): Promise<void> {
  manifestSeed ??= await otaSeed();
  if (names.includes('command')) await commandContext();
}

/** A manifest text signed by the trusted key, verified and checked against the device as admission does. */
function verifySigned(manifestText: string): void {
  const { privateKey, publicKey } = otaKeys();
  const signed = signManifest({} as Manifest, privateKey);
  const s = { ...signed, manifest: manifestText };
  s.signature = sign(null, Buffer.from(manifestText, 'utf8'), privateKey).toString('base64');
  let m: Manifest;
  try {
    m = verifyManifest(s, [publicKey]);
  } catch (err) {
    expected(err, OtaError);
    return;
  }
  architectureProblem(m, [6, 6, 1]);
}

const otaManifest: FuzzTarget = {
  name: 'ota-manifest',
  parses: 'verifyManifest, architectureProblem (device-agent/ota/manifest.ts) on a manifest signed by a trusted key',
  async: false,
  run(data) {
    verifySigned(utf8(data));
  },
  seeds: () => (manifestSeed ? [text(JSON.stringify(manifestSeed))] : [text('{"schema":1}')]),
  properties: [
    {
      name: 'sign → verify returns the manifest; any other signature or key is refused',
      property: () =>
        fc.property(fc.string({ maxLength: 40 }), fc.nat(), fc.integer({ min: 1, max: 1e6 }), (name, version, size) => {
          const { privateKey, publicKey } = otaKeys();
          const base = manifestSeed!;
          const m: Manifest = { ...base, name: name || 'm', version, model: `${name || 'm'}@${version}`, size };
          const signed = signManifest(m, privateKey);
          assert.deepEqual(verifyManifest(signed, [publicKey]), JSON.parse(JSON.stringify(m)));
          const other = generateKeyPairSync('ed25519').publicKey;
          assert.throws(() => verifyManifest(signed, [other]), OtaError);
          assert.throws(() => verifyManifest({ ...signed, manifest: `${signed.manifest} ` }, [publicKey]), OtaError);
        }),
    },
  ],
};

const otaJob: FuzzTarget = {
  name: 'ota-job',
  parses: 'parseJob, claimedVersion (device-agent/ota/admission.ts), verifyManifest of its unsigned manifest',
  async: false,
  run(data) {
    let job: Job;
    try {
      job = parseJob(Buffer.from(data));
    } catch (err) {
      expected(err, OtaError);
      return;
    }
    claimedVersion(job);
    try {
      verifyManifest(job.manifest, [otaKeys().publicKey]);
    } catch (err) {
      expected(err, OtaError);
    }
  },
  seeds: () => [
    text(
      JSON.stringify({
        jobId: 'job-1',
        manifest: { manifest: JSON.stringify(manifestSeed ?? { schema: 1 }), keyId: 'ab', signature: '' },
        blockSize: 16384,
        blockSha256: ['0'.repeat(64)],
        allowDowngrade: false,
      }),
    ),
  ],
  properties: [
    {
      name: 'a job id of 1-64 [A-Za-z0-9_.-] is taken, any other is refused',
      property: () =>
        fc.property(fc.string({ maxLength: 70 }), (jobId) => {
          const payload = Buffer.from(JSON.stringify({ jobId }));
          if (/^[A-Za-z0-9_.-]{1,64}$/.test(jobId)) assert.equal(parseJob(payload).jobId, jobId);
          else assert.throws(() => parseJob(payload), OtaError);
        }),
    },
  ],
};

/** A 3-block artifact in transfer: blocks arrive as `ota/block/<job>/<i>` messages. */
const ARTIFACT = once(() => {
  const bytes = new Uint8Array(2 * 4096 + 1000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  const blockSize = 4096;
  const blocks = [0, 1, 2].map((i) => bytes.subarray(i * blockSize, (i + 1) * blockSize));
  return { bytes, blockSize, blocks, dir: mkdtempSync(join(tmpdir(), 'sei-fuzz-ota-')) };
});

/** Runs one transfer over `messages` (topic suffix after `ota/block/`, payload); returns the file and outcome. */
function transfer(messages: ReadonlyArray<readonly [string, Uint8Array]>): {
  complete: boolean;
  refused: string | null;
  file: Uint8Array;
} {
  const a = ARTIFACT();
  const part = join(a.dir, 'fuzz.part');
  closeSync(openSync(part, 'w'));
  const job: Job = {
    jobId: 'fuzz',
    manifest: { manifest: '{}', keyId: '', signature: '' },
    blockSize: a.blockSize,
    blockSha256: a.blocks.map((b) => sha256(b)),
    allowDowngrade: false,
  };
  const row = {
    jobId: 'fuzz',
    state: 'IN_PROGRESS',
    step: 'DOWNLOADING',
    job,
    blocks: 3,
    missing: fullBitmap(3),
    received: 0,
    partPath: part,
  } as unknown as JobRow;
  const outcome = { complete: false, refused: null as string | null };
  const config = parseOtaConfig({ requestTimeoutMs: 60_000 });
  const t = new Transfer(row, { size: a.bytes.length } as Manifest, {
    config: () => config,
    request: async () => true,
    saved: () => {},
    progress: () => {},
    complete: () => {
      outcome.complete = true;
    },
    refuse: (reason) => {
      outcome.refused = reason;
    },
  });
  try {
    t.start();
    for (const [topic, payload] of messages) {
      const b = blockTopic(`ota/block/${topic}`);
      if (b) t.block(b.jobId, b.index, Buffer.from(payload));
    }
  } finally {
    t.close();
  }
  return { ...outcome, file: new Uint8Array(readFileSync(part)) };
}

const otaBlock: FuzzTarget = {
  name: 'ota-block',
  parses: 'ota/block/<job>/<i> topics and payloads (device-agent/ota/protocol.ts blockTopic, transfer.ts)',
  async: false,
  run(data) {
    // First line: the topic after `ota/block/`; the rest: the payload.
    const nl = data.indexOf(0x0a);
    const topic = utf8(nl < 0 ? data : data.subarray(0, nl));
    const r = transfer([[topic, nl < 0 ? new Uint8Array(0) : data.subarray(nl + 1)]]);
    assert.ok(!r.complete, 'one block cannot complete a 3-block artifact');
  },
  seeds: () => {
    const a = ARTIFACT();
    return [Buffer.concat([text('fuzz/1\n'), a.blocks[1]!])];
  },
  properties: [
    {
      name: 'the blocks in any order, with duplicates and bad ones between, complete the exact artifact',
      property: () =>
        fc.property(
          fc.array(
            fc.oneof(
              fc.constantFrom(0, 1, 2).map((i) => ({ i, bad: 0 })),
              fc.record({ i: fc.integer({ min: -1, max: 4 }), bad: fc.integer({ min: 1, max: 3 }) }),
            ),
            { maxLength: 8 },
          ),
          fc.array(fc.constantFrom(0, 1, 2), { minLength: 3, maxLength: 3 }),
          (noise, order) => {
            const a = ARTIFACT();
            const messages: Array<[string, Uint8Array]> = noise
              .filter((n) => n.bad > 0)
              .slice(0, 2)
              .map((n) => [`fuzz/${n.i}`, a.blocks[Math.max(0, Math.min(2, n.i))]!.subarray(n.bad)]);
            for (const i of new Set([...order, 0, 1, 2])) messages.push([`fuzz/${i}`, a.blocks[i]!]);
            for (const n of noise.filter((n) => n.bad === 0)) messages.push([`fuzz/${n.i}`, a.blocks[n.i]!]);
            const r = transfer(messages);
            assert.equal(r.refused, null);
            assert.ok(r.complete);
            assert.deepEqual(r.file, a.bytes);
          },
        ),
    },
  ],
};

// ------------------------------------------------------------------------------------------------ MQTT commands

/** A running agent (random model, in-memory store, no broker) whose command context the payloads go to. */
let agentContext: Promise<{ ctx: CommandContext; stop: () => Promise<void> }> | null = null;
function commandContext(): Promise<{ ctx: CommandContext; stop: () => Promise<void> }> {
  agentContext ??= (async () => {
    const { Agent } = await import('../../device-agent/agent.js');
    const dir = mkdtempSync(join(tmpdir(), 'sei-fuzz-agent-'));
    const modelPath = join(dir, 'm.bwsnn');
    writeFileSync(modelPath, writeBwsnn(randomModel({ ...SMALL, input: [28, 28, 1] })));
    const agent = new Agent({
      config: {
        fleet: 'fuzz',
        device: 'd',
        model: { path: modelPath },
        source: { spec: 'samples', frameRate: 20 },
        mqtt: { url: null },
        metrics: { httpPort: null },
        store: { path: ':memory:' },
      },
    });
    agent.on('error', () => {});
    await agent.start();
    const real = (agent as unknown as { commands: CommandContext }).commands;
    // `config` validates a changed config with the agent's own check but does not apply it: a fuzzed source
    // spec must not make the fuzzing process read its own stdin or a device file.
    const ctx: CommandContext = { ...real, reconfigure: async (raw) => parseConfig(raw) };
    return {
      ctx,
      stop: async () => {
        await agent.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  })();
  return agentContext;
}

/** Stops what targets started (the command target's agent). */
export async function closeTargets(): Promise<void> {
  const c = agentContext;
  agentContext = null;
  if (c) await (await c).stop();
}

const COMMAND_NAMES = ['status', 'config', 'models', 'activate', 'label', 'finetune', 'preview', 'nope'];

const command: FuzzTarget = {
  name: 'command',
  parses: 'cmd/<name> payloads (device-agent/mqtt/link.ts parseCommand) through every handler of commands/',
  async: true,
  async run(data) {
    // First byte: which command; the rest: its payload.
    const name = COMMAND_NAMES[(data[0] ?? 0) % COMMAND_NAMES.length]!;
    const { command: cmd } = parseCommand(name, data.subarray(1));
    const { runCommand } = await import('../../device-agent/commands/index.js');
    const { ctx } = await commandContext();
    try {
      await runCommand(cmd, ctx, () => {});
    } catch (err) {
      if (err === cmd.parseError) return;
      expected(err, SeiError);
    }
  },
  seeds: () =>
    [
      [0, '{}'],
      [1, '{"source":{"frameRate":5},"reporting":{"predictions":false}}'],
      [3, '{"version":"x@0"}'],
      [4, '{"labels":[{"frame":1,"label":2},{"frame":2,"label":"3"}]}'],
      [5, '{"gate":{"minFrames":40}}'],
      [6, '{"seconds":1,"fps":1,"replyTo":"r","correlationId":"c"}'],
    ].map(([i, s]) => Buffer.concat([Uint8Array.of(i as number), text(s as string)])),
  properties: [
    {
      name: 'the reply fields are taken out of the arguments; a payload that is no JSON object, or holds a reserved key, is a parse error',
      property: () =>
        fc.property(fc.jsonValue({ maxDepth: 2 }), fc.string(), (value, replyTo) => {
          const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
          const payload = isObject ? { ...value, replyTo } : value;
          const r = parseCommand('status', text(JSON.stringify(payload)));
          const json = JSON.stringify(value);
          if (isObject && RESERVED_KEYS.some((k) => json.includes(`${JSON.stringify(k)}:`))) {
            assert.ok(r.command.parseError instanceof ConfigError, String(r.command.parseError));
          } else if (isObject) {
            assert.equal(r.command.parseError, null);
            assert.equal(r.replyTo, replyTo);
            assert.ok(!('replyTo' in r.command.args));
          } else assert.ok(r.command.parseError instanceof SyntaxError);
        }),
    },
  ],
};

// ------------------------------------------------------------------------------------------------ frames

const TARGET = [6, 6, 1] as const;
const FRAME_OPTS = { target: TARGET, crop: null, invert: false } as const;

function png(width: number, height: number, grey: boolean, seed: number): Uint8Array {
  const p = new PNG({ width, height, colorType: grey ? 0 : 2, inputColorType: 6 } as ConstructorParameters<
    typeof PNG
  >[0]);
  for (let i = 0; i < p.data.length; i++) p.data[i] = (i % 4 === 3 ? 255 : (i * 31 + seed * 7) & 0xff) as number;
  return new Uint8Array(PNG.sync.write(p, { colorType: grey ? 0 : 2, inputColorType: 6 } as never));
}

function pgm(width: number, height: number, data: Uint8Array, ascii = false): Uint8Array {
  if (ascii) return text(`P2\n# fuzz\n${width} ${height}\n255\n${Array.from(data).join(' ')}\n`);
  return Buffer.concat([text(`P5\n${width} ${height}\n255\n`), data]);
}

const frame: FuzzTarget = {
  name: 'frame-mqtt',
  parses: 'frames/in payloads: raw, PNG/PGM, JSON {data, label} (device-agent/sources/mqtt.ts decodeFrame)',
  async: false,
  run(data) {
    try {
      const f = decodeFrame(Buffer.from(data), undefined, FRAME_OPTS);
      assert.equal(f.data.length, 36);
    } catch (err) {
      expected(err, FrameError, ConfigError);
    }
  },
  seeds: () => [
    new Uint8Array(36).fill(7),
    png(8, 8, true, 1),
    pgm(6, 6, new Uint8Array(36).fill(9)),
    text(JSON.stringify({ data: Buffer.alloc(36, 3).toString('base64'), label: 2 })),
  ],
  properties: [
    {
      name: 'raw bytes of the input size and the same bytes as JSON base64 come back as they are, with the label',
      property: () =>
        fc.property(fc.uint8Array({ minLength: 36, maxLength: 36 }), fc.nat(9), (bytes, label) => {
          const raw = decodeFrame(Buffer.from(bytes), undefined, FRAME_OPTS);
          if (bytes[0] !== 0x7b) assert.deepEqual(raw.data, bytes);
          const json = decodeFrame(
            Buffer.from(JSON.stringify({ data: Buffer.from(bytes).toString('base64'), label })),
            undefined,
            FRAME_OPTS,
          );
          assert.deepEqual(json.data, bytes);
          assert.equal(json.label, label);
        }),
    },
  ],
};

const picture: FuzzTarget = {
  name: 'picture',
  parses: 'PNG (pngjs) and PGM P5/P2 pictures to model frames (device-agent/sources/image.ts)',
  async: false,
  run(data) {
    try {
      const img = decodePicture(data, 'fuzz');
      assert.equal(img.data.length, img.width * img.height * img.channels);
      toModelFrame(img, TARGET, null, false);
    } catch (err) {
      expected(err, FrameError);
    }
  },
  seeds: () => [png(6, 6, true, 2), png(9, 7, false, 3), pgm(5, 4, new Uint8Array(20).fill(200), true)],
  properties: [
    {
      name: 'PGM (P5 and P2) and grey PNG encode → decode returns the pixels',
      property: () =>
        fc.property(
          fc
            .record({ w: fc.integer({ min: 1, max: 12 }), h: fc.integer({ min: 1, max: 12 }) })
            .chain((r) => fc.tuple(fc.constant(r), fc.uint8Array({ minLength: r.w * r.h, maxLength: r.w * r.h }))),
          ([{ w, h }, data]) => {
            for (const ascii of [false, true]) {
              const img = decodePicture(pgm(w, h, data, ascii));
              assert.deepEqual([img.width, img.height, img.channels], [w, h, 1]);
              assert.deepEqual(img.data, data);
            }
            const p = new PNG({ width: w, height: h });
            for (let i = 0; i < w * h; i++) p.data.set([data[i]!, data[i]!, data[i]!, 255], 4 * i);
            const img = decodePicture(new Uint8Array(PNG.sync.write(p, { colorType: 0 } as never)));
            assert.deepEqual(img.data, data);
          },
        ),
    },
  ],
};

/** Raw video on a stream (the `stdin:` source): `grey` or `yuv420` frames of w×h, in chunks of any size. */
async function videoFrames(
  format: 'grey' | 'yuv420',
  width: number,
  height: number,
  chunks: readonly Uint8Array[],
): Promise<Uint8Array[]> {
  const stream = new PassThrough();
  const source = createSource(
    { kind: 'stdin', format, width, height },
    { target: TARGET, frameRate: 0, loop: false, crop: null, invert: false, stdin: stream },
  );
  const got: Uint8Array[] = [];
  const reading = (async () => {
    for await (const f of source) got.push(f.data);
  })();
  for (const c of chunks) stream.write(c);
  stream.end();
  await reading;
  return got;
}

const video: FuzzTarget = {
  name: 'video',
  parses: 'raw grey and yuv420 video on a stream (device-agent/sources/index.ts, the stdin: source)',
  async: true,
  async run(data) {
    // Byte 0: format and size; byte 1: chunk length; the rest: the stream.
    const b = data[0] ?? 0;
    const format = b & 1 ? 'yuv420' : 'grey';
    const width = 2 * (((b >> 1) & 7) + 1);
    const height = 2 * (((b >> 4) & 7) + 1);
    const step = (data[1] ?? 0) + 1;
    const body = data.subarray(2);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < body.length; i += step) chunks.push(body.subarray(i, i + step));
    let frames: Uint8Array[];
    try {
      frames = await videoFrames(format, width, height, chunks);
    } catch (err) {
      expected(err, FrameError);
      return;
    }
    const frameBytes = format === 'grey' ? width * height : (width * height * 3) / 2;
    assert.equal(frames.length, Math.floor(body.length / frameBytes));
  },
  seeds: () => [Buffer.concat([Uint8Array.of(0x22, 10), new Uint8Array(64).fill(5)])],
  properties: [
    {
      name: 'however the stream is chunked, every whole frame comes out, resized from its luma',
      property: () =>
        fc.asyncProperty(
          fc.constantFrom('grey' as const, 'yuv420' as const),
          fc.integer({ min: 1, max: 6 }).map((n) => 2 * n),
          fc.integer({ min: 1, max: 6 }).map((n) => 2 * n),
          fc.integer({ min: 0, max: 3 }),
          fc.integer({ min: 1, max: 50 }),
          fc.nat(),
          async (format, width, height, count, step, seed) => {
            const frameBytes = format === 'grey' ? width * height : (width * height * 3) / 2;
            const body = new Uint8Array(count * frameBytes + (seed % frameBytes));
            for (let i = 0; i < body.length; i++) body[i] = (i * 131 + seed) & 0xff;
            const chunks: Uint8Array[] = [];
            for (let i = 0; i < body.length; i += step) chunks.push(body.subarray(i, i + step));
            const frames = await videoFrames(format, width, height, chunks);
            assert.equal(frames.length, count);
            frames.forEach((f, k) => {
              const luma = body.subarray(k * frameBytes, k * frameBytes + width * height);
              assert.deepEqual(f, toModelFrame({ width, height, channels: 1, data: luma }, TARGET, null, false));
            });
          },
        ),
    },
  ],
};

const idx: FuzzTarget = {
  name: 'idx',
  parses: 'IDX files, gzip or not (runtime/data/idx.ts parseIdx)',
  async: false,
  run(data) {
    try {
      const a = parseIdx(data, 'fuzz');
      assert.equal(
        a.data.length,
        a.shape.reduce((x, y) => x * y, 1),
      );
    } catch (err) {
      expected(err, FormatError);
    }
  },
  seeds: () => [encodeIdx([2, 3, 3], new Uint8Array(18).fill(4)), encodeIdx([5], Uint8Array.of(0, 1, 2, 3, 4))],
  properties: [
    {
      name: 'encodeIdx → parseIdx returns shape and data (plain and gzip)',
      property: () =>
        fc.property(
          fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }).chain((shape) =>
            fc.tuple(
              fc.constant(shape),
              fc.uint8Array({
                minLength: shape.reduce((a, b) => a * b, 1),
                maxLength: shape.reduce((a, b) => a * b),
              }),
            ),
          ),
          ([shape, data]) => {
            const bytes = encodeIdx(shape, data);
            for (const b of [bytes, new Uint8Array(gzipSync(bytes))]) {
              const a = parseIdx(b);
              assert.deepEqual(a.shape, shape);
              assert.deepEqual(a.data, data);
            }
          },
        ),
    },
  ],
};

/** The folder loader's reasons for skipping a file (trainer/data/images.ts decode). */
const SKIP_REASON =
  /^(empty file|not a picture sharp can read|a \w+ picture: PNG and JPEG|too many pixels|unreadable (PNG|JPEG)|decoded to)/;

const imageFolder: FuzzTarget = {
  name: 'image-folder',
  parses: 'PNG and JPEG files of an image folder (trainer/data/images.ts decodeImage, via sharp)',
  async: true,
  async run(data) {
    const { decodeImage } = await import('../../trainer/data/images.js');
    try {
      const d = await decodeImage(Buffer.from(data));
      assert.equal(d.pixels.length, d.width * d.height * d.channels);
    } catch (err) {
      if (err instanceof Error && !(err instanceof SeiError) && SKIP_REASON.test(err.message)) return;
      throw err;
    }
  },
  seeds: () => [png(6, 6, true, 4), png(5, 9, false, 5), JPEG_SEED],
  properties: [
    {
      name: 'a PNG the project writes decodes to its pixels',
      property: () =>
        fc.asyncProperty(
          fc
            .record({ w: fc.integer({ min: 1, max: 10 }), h: fc.integer({ min: 1, max: 10 }) })
            .chain((r) => fc.tuple(fc.constant(r), fc.uint8Array({ minLength: r.w * r.h, maxLength: r.w * r.h }))),
          async ([{ w, h }, data]) => {
            const { decodeImage, encodePng } = await import('../../trainer/data/images.js');
            const d = await decodeImage(Buffer.from(await encodePng(data, [h, w, 1])));
            assert.deepEqual([d.width, d.height, d.channels], [w, h, 1]);
            assert.deepEqual(d.pixels, data);
          },
        ),
    },
  ],
};

/** A 2x2 baseline JPEG (RGB), for the folder loader's JPEG path. */
const JPEG_SEED = Buffer.from(
  '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAACAAIBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AKp//2Q==',
  'base64',
);

// ------------------------------------------------------------------------------------------------ config

const CONFIG_SEED = {
  fleet: 'f',
  device: 'd1',
  model: { path: null, kernel: 'auto' },
  source: { spec: 'stdin:yuv420:64x48', frameRate: 5, crop: { x: 0, y: 0, width: 48, height: 48 } },
  mqtt: { url: 'mqtt://127.0.0.1:1883', protocol: 5, tls: { ca: null }, maxMessageBytes: 1 << 20 },
  reporting: { metricsInterval: 2 },
  ota: { maxBytes: 1 << 24 },
  finetune: { auto: { minLabelled: 100 } },
};

const config: FuzzTarget = {
  name: 'config',
  parses: 'the agent config file, JSON or YAML (device-agent/config.ts parseConfigText, config-schema.ts)',
  async: false,
  run(data) {
    // The first byte picks the file type, as the extension does.
    const path = (data[0] ?? 0) & 1 ? 'agent.json' : 'agent.yaml';
    try {
      parseConfig(parseConfigText(utf8(data.subarray(1)), path));
    } catch (err) {
      expected(err, ConfigError);
    }
  },
  seeds: () => [
    Buffer.concat([Uint8Array.of(1), text(JSON.stringify(CONFIG_SEED))]),
    Buffer.concat([Uint8Array.of(0), text(YAML.stringify(CONFIG_SEED))]),
  ],
  properties: [
    {
      name: 'a config written as YAML or JSON reads back to the same parsed config',
      property: () =>
        fc.property(
          fc.record({
            fleet: fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/),
            frameRate: fc.integer({ min: 0, max: 1000 }),
            queueSize: fc.integer({ min: 1, max: 100 }),
            spec: fc.constantFrom('fmnist', 'samples', 'mqtt', 'stdin:grey:32x24', 'images:/tmp/x'),
            protocol: fc.constantFrom('auto', 4, 5),
            maxMessageBytes: fc.integer({ min: 65536, max: 2 ** 28 - 1 }),
          }),
          (r) => {
            const raw = {
              fleet: r.fleet,
              source: { spec: r.spec, frameRate: r.frameRate, queueSize: r.queueSize },
              mqtt: { protocol: r.protocol, maxMessageBytes: r.maxMessageBytes },
            };
            const want = parseConfig(raw);
            assert.deepEqual(parseConfig(parseConfigText(YAML.stringify(raw), 'a.yaml')), want);
            assert.deepEqual(parseConfig(parseConfigText(JSON.stringify(raw), 'a.json')), want);
          },
        ),
    },
  ],
};

export const TARGETS: readonly FuzzTarget[] = [
  bwsnn,
  bwsnnHeader,
  otaManifest,
  otaJob,
  otaBlock,
  command,
  frame,
  picture,
  video,
  idx,
  imageFolder,
  config,
];

export function target(name: string): FuzzTarget {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`--target: expected one of ${TARGETS.map((x) => x.name).join(', ')}, got ${name}`);
  return t;
}
