import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { BwsnnModel } from '../runtime/format/index.js';
import {
  dirtyPadding,
  FORMAT_VERSION,
  inspectBwsnn,
  keyFingerprint,
  packRows,
  readBwsnn,
  readBwsnnFile,
  rowWords,
  unpackRows,
  validateModel,
  writeBwsnn,
} from '../runtime/format/index.js';
import { FMNIST_BLOCKS, randomModel, type RandomModelSpec } from '../runtime/format/random-model.js';
import { arbModel, fixChecksum, mutateHeader, refuses, SMALL } from './helpers/format.js';

const CREATED = '2026-01-01T00:00:00.000Z';
// This suite takes version-1 files apart byte by byte (version 1 stays readable); test/format-v2.test.ts has version 2.
const write = (m: BwsnnModel, opts: Parameters<typeof writeBwsnn>[1] = {}) =>
  writeBwsnn(m, { createdAt: CREATED, formatVersion: 1, ...opts });

// ----- container helpers: take a file apart and put it together again (unsigned, checksum recomputed)

interface Parts {
  header: Record<string, any>;
  data: Uint8Array;
  dataStart: number;
  dataEnd: number;
}

function split(bytes: Uint8Array): Parts {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hl = view.getUint32(8, true);
  const dl = view.getUint32(12, true);
  const dataStart = Math.ceil((16 + hl) / 16) * 16;
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + hl)));
  return { header, data: bytes.slice(dataStart, dataStart + dl), dataStart, dataEnd: dataStart + dl };
}

function build(header: unknown, data: Uint8Array, headerText = JSON.stringify(header)): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const dataStart = Math.ceil((16 + json.length) / 16) * 16;
  const out = new Uint8Array(dataStart + data.length + 32);
  const view = new DataView(out.buffer);
  out.set([0x42, 0x57, 0x53, 0x4e]);
  view.setUint16(4, 1, true);
  view.setUint32(8, json.length, true);
  view.setUint32(12, data.length, true);
  out.set(json, 16);
  out.set(data, dataStart);
  return fixChecksum(out);
}

function withHeader(bytes: Uint8Array, mutate: (h: Record<string, any>) => void): Uint8Array {
  const p = split(bytes);
  mutate(p.header);
  return build(p.header, p.data);
}

/** inspectBwsnn on any bytes: a summary or a FormatError, never anything else. */
function inspectNeverCrashes(bytes: Uint8Array): void {
  try {
    inspectBwsnn(bytes);
  } catch {
    refuses(() => inspectBwsnn(bytes));
  }
}

/** What readBwsnn accepts must be a valid model that survives its own round trip unchanged. */
function acceptedIsConsistent(model: BwsnnModel, bytes: Uint8Array): void {
  validateModel(model);
  const info = inspectBwsnn(bytes);
  assert.deepEqual(readBwsnn(writeBwsnn(model, { createdAt: info.createdAt, producer: info.producer })), model);
}

/** readBwsnn on any bytes: a consistent model (returned) or a FormatError (null), never anything else. */
function readOrRefuse(bytes: Uint8Array): BwsnnModel | null {
  let model: BwsnnModel;
  try {
    model = readBwsnn(bytes);
  } catch {
    refuses(() => readBwsnn(bytes));
    return null;
  }
  acceptedIsConsistent(model, bytes);
  return model;
}

describe('round trip', () => {
  const specs: Record<string, RandomModelSpec> = {
    'FMNIST_BLOCKS, 32 channels': { seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 },
    'with blinear layers (identity and none)': { seed: 2, blocks: FMNIST_BLOCKS.slice(0, 2), linear: [40, 40, 17] },
    'odd sizes, 5x5 kernels, RGB input': {
      seed: 3,
      input: [13, 11, 3],
      firstKernel: 5,
      blocks: [
        { cout: 7, kernel: 5 },
        { cout: 14, stride: 2 },
        { cout: 9, kernel: 1 },
      ],
      classes: 5,
    },
    'T = 1, no hidden layers': { seed: 4, T: 1, blocks: [] },
    'T = 16': { seed: 5, T: 16, blocks: FMNIST_BLOCKS.slice(0, 3) },
    'small model with every op': SMALL,
  };
  for (const [name, spec] of Object.entries(specs)) {
    it(name, () => {
      const model = randomModel(spec);
      const bytes = write(model);
      assert.equal(bytes.length % 16, 0, 'unsigned file = aligned data + 32-byte checksum');
      assert.deepEqual(readBwsnn(bytes), model);
      assert.deepEqual(write(model), bytes, 'writing is deterministic once createdAt is fixed');
    });
  }

  it('reads from a Buffer at an unaligned offset into a larger pool, and from disk', () => {
    const model = randomModel({ seed: 1, blocks: FMNIST_BLOCKS.slice(0, 2) });
    const bytes = write(model);
    const pooled = Buffer.concat([Buffer.alloc(7, 0xaa), Buffer.from(bytes), Buffer.alloc(9, 0xbb)]).subarray(
      7,
      7 + bytes.length,
    );
    assert.deepEqual(readBwsnn(pooled), model);
    const dir = mkdtempSync(join(tmpdir(), 'sei-format-'));
    try {
      writeFileSync(join(dir, 'm.bwsnn'), bytes);
      assert.deepEqual(readBwsnnFile(join(dir, 'm.bwsnn')), model);
      refuses(() => readBwsnnFile(join(dir, 'missing.bwsnn')), 'path');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('inspect summarises the header without reading tensors', () => {
    const model = randomModel({ seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 });
    const bytes = write(model, { producer: 'unit test' });
    const s = inspectBwsnn(bytes);
    assert.equal(s.name, model.name);
    assert.equal(s.T, model.T);
    assert.deepEqual(s.input, model.input);
    assert.deepEqual(s.labels, model.labels);
    assert.equal(s.producer, 'unit test');
    assert.equal(s.createdAt, CREATED);
    assert.equal(s.layers.length, 2 + model.hidden.length);
    assert.deepEqual(s.layers[2]!.outShape, [14, 14, 64]);
    assert.equal(s.layers[2]!.shortcut, 'avgpool_repeat');
    assert.equal(s.layers[2]!.bytes, 64 * rowWords(9 * 32) * 4 + 3 * 64 * 4);
    assert.equal(s.sizes.file, bytes.length);
    assert.equal(s.signed, false);
    assert.equal(s.keyId, null);
    assert.equal(s.checksum, Buffer.from(bytes.subarray(bytes.length - 32)).toString('hex'));
  });
});

describe('bit packing', () => {
  const rowsAndBits = fc.record({ rows: fc.integer({ min: 1, max: 6 }), bits: fc.integer({ min: 1, max: 300 }) });

  it('unpack(pack(w)) = sign(w), sign(0) = +1, padding stays zero', () => {
    fc.assert(
      fc.property(
        rowsAndBits.chain(({ rows, bits }) =>
          fc.tuple(
            fc.constant(rows),
            fc.constant(bits),
            fc.array(fc.oneof(fc.constant(0), fc.double({ noNaN: true })), {
              minLength: rows * bits,
              maxLength: rows * bits,
            }),
          ),
        ),
        ([rows, bits, w]) => {
          const packed = packRows(w, rows, bits);
          assert.equal(packed.length, rows * rowWords(bits));
          assert.equal(dirtyPadding(packed, rows, bits), null);
          assert.deepEqual(
            unpackRows(packed, rows, bits),
            Int8Array.from(w, (x) => (x >= 0 ? 1 : -1)),
          );
        },
      ),
    );
  });

  it('pack(unpack(p)) = p for clean packed rows; dirty padding is found', () => {
    const packedRows = rowsAndBits.chain(({ rows, bits }) =>
      fc.tuple(
        fc.constant(rows),
        fc.constant(bits),
        fc.array(fc.nat(0xffffffff), { minLength: rows * rowWords(bits), maxLength: rows * rowWords(bits) }),
      ),
    );
    fc.assert(
      fc.property(packedRows, ([rows, bits, raw]) => {
        const words = Uint32Array.from(raw);
        const clean = words.slice();
        let firstDirty: number | null = null;
        for (let r = 0; r < rows; r++) {
          for (let j = bits; j < rowWords(bits) * 32; j++) {
            const at = r * rowWords(bits) + (j >> 5);
            if ((clean[at]! >>> (j & 31)) & 1) firstDirty ??= r;
            clean[at]! &= ~(1 << (j & 31));
          }
        }
        assert.deepEqual(packRows(unpackRows(clean, rows, bits), rows, bits), clean);
        assert.equal(dirtyPadding(clean, rows, bits), null);
        assert.equal(dirtyPadding(words, rows, bits)?.row ?? null, firstDirty);
      }),
    );
  });
});

describe('properties', () => {
  it('round trip of arbitrary valid models is the identity', () => {
    fc.assert(
      fc.property(arbModel, (m) => assert.deepEqual(readBwsnn(write(m)), m)),
      { numRuns: 60 },
    );
  });
});

describe('fuzzing: only FormatError, never a crash, never a silently wrong model', () => {
  const small = randomModel(SMALL);
  const bytes = write(small);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const signed = write(small, { signingKey: privateKey });
  const { dataStart, dataEnd } = split(bytes);

  it('every truncation length, unsigned and signed', () => {
    for (const file of [bytes, signed]) {
      for (let n = 0; n < file.length; n++) {
        refuses(() => readBwsnn(file.subarray(0, n)));
        refuses(() => inspectBwsnn(file.subarray(0, n)));
      }
    }
  });

  it('random byte flips, checksum left as is', () => {
    fc.assert(
      fc.property(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), (pos, x) => {
        const b = bytes.slice();
        b[pos]! ^= x;
        refuses(() => readBwsnn(b));
      }),
      { numRuns: 300 },
    );
  });

  it('random byte flips behind a recomputed checksum', () => {
    fc.assert(
      fc.property(fc.nat({ max: dataEnd - 1 }), fc.integer({ min: 1, max: 255 }), (pos, x) => {
        const b = bytes.slice();
        b[pos]! ^= x;
        fixChecksum(b);
        inspectNeverCrashes(b);
        const model = readOrRefuse(b);
        // The data area is canonical: an accepted flip there is exactly a different tensor value.
        if (model && pos >= dataStart) assert.deepEqual(write(model, { producer: inspectBwsnn(b).producer }), b);
      }),
      { numRuns: 400 },
    );
  });

  it('flips in the signature block fail verification', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: signed.length - 100, max: signed.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (pos, x) => {
          const b = signed.slice();
          b[pos]! ^= x;
          refuses(() => readBwsnn(b, { trustedKeys: [publicKey] }), /^signature/);
        },
      ),
      { numRuns: 100 },
    );
  });

  /** Every path into the header JSON, so a mutation can hit any field at any depth. */
  function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
    const own = at.length ? [at] : [];
    if (Array.isArray(v)) return [...own, ...v.flatMap((x, i) => paths(x, [...at, i]))];
    if (v && typeof v === 'object') return [...own, ...Object.entries(v).flatMap(([k, x]) => paths(x, [...at, k]))];
    return own;
  }
  const allPaths = paths(split(bytes).header);
  const replacement = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.integer({ min: -3, max: 40 }),
    fc.constantFrom(
      0,
      -1,
      1.5,
      1e300,
      2 ** 31,
      2 ** 32 + 16,
      2 ** 53,
      'bconv',
      'blinear',
      'identity',
      'avgpool_repeat',
      'float32',
      'bits',
      'int8',
      null,
      [],
      {},
    ),
    fc.constantFrom([1, 1, 1], [2 ** 20, 2 ** 20, 2 ** 20], [0, 1, 1], [3, 3]),
  );

  it('random header JSON mutations (replace, delete, add a field)', () => {
    fc.assert(
      fc.property(fc.nat(), replacement, fc.constantFrom('replace', 'delete', 'add'), (which, value, how) => {
        const path = allPaths[which % allPaths.length]!;
        const b = withHeader(bytes, (h) => mutateHeader(h, path, value, how));
        inspectNeverCrashes(b);
        readOrRefuse(b);
      }),
      { numRuns: 500 },
    );
  });

  it('raw header byte mutations: invalid UTF-8, broken JSON, deep nesting', () => {
    const { header, data } = split(bytes);
    const text = JSON.stringify(header);
    refuses(() => readBwsnn(build(null, data, text.slice(0, -1))), 'header');
    refuses(() => readBwsnn(build(null, data, '[' + text + ']')), 'header');
    refuses(() => readBwsnn(build(null, data, '[]'.repeat(3))), 'header');
    refuses(() => readBwsnn(build(null, data, '['.repeat(200000) + ']'.repeat(200000))), 'header');
    const bad = build(header, data);
    bad[20] = 0xff;
    refuses(() => readBwsnn(fixChecksum(bad)), 'header');
    const deep = text.replace('"meta":{', `"meta":{"a":${'['.repeat(5000)}${']'.repeat(5000)},`);
    assert.notEqual(deep, text);
    refuses(() => readBwsnn(build(null, data, deep)), /^header\.meta\.a/);
  });
});

describe('refusals name the field', () => {
  const model = randomModel(SMALL);
  const bytes = write(model);
  const setU16 = (at: number, v: number) => {
    const b = bytes.slice();
    new DataView(b.buffer).setUint16(at, v, true);
    return b;
  };
  const setU32 = (at: number, v: number) => {
    const b = bytes.slice();
    new DataView(b.buffer).setUint32(at, v, true);
    return b;
  };

  it('envelope', () => {
    refuses(() => readBwsnn(new Uint8Array(0)), 'file.length');
    refuses(() => readBwsnn(Uint8Array.from([...Buffer.from('BWSX'), ...bytes.subarray(4)])), 'magic');
    const newer = refuses(() => readBwsnn(setU16(4, FORMAT_VERSION + 1)), 'formatVersion');
    assert.match(newer.message, new RegExp(`expected at most ${FORMAT_VERSION}.*got ${FORMAT_VERSION + 1}`));
    refuses(() => readBwsnn(setU16(4, 0)), 'formatVersion');
    refuses(() => readBwsnn(setU16(6, 4)), 'flags');
    refuses(() => readBwsnn(setU32(8, 0xffffffff)), 'headerLength');
    refuses(() => readBwsnn(setU32(8, 1)), 'headerLength');
    refuses(() => readBwsnn(setU32(12, 8)), 'dataLength');
    refuses(() => readBwsnn(setU32(12, 0xfffffff0)), 'file.length');
    refuses(() => readBwsnn(Uint8Array.from([...bytes, 0])), 'file.length');
    const flipped = bytes.slice();
    flipped[split(bytes).dataStart + 5]! ^= 1;
    refuses(() => readBwsnn(flipped), 'checksum');
  });

  it('header schema', () => {
    const cases: [string, (h: Record<string, any>) => void][] = [
      [
        'header.hidden[1].op',
        (h) => {
          h.hidden[1].op = 'bconv3d';
        },
      ],
      [
        'header.first.op',
        (h) => {
          h.first.op = 'conv_int4';
        },
      ],
      [
        'header.head.op',
        (h) => {
          h.head.op = 'softmax';
        },
      ],
      [
        'header.first.weights.offset',
        (h) => {
          h.first.weights.offset = 1 << 20;
        },
      ],
      [
        'header.first.weights.offset',
        (h) => {
          h.first.weights.offset += 1;
        },
      ],
      [
        'header.first.scale.offset',
        (h) => {
          h.first.scale.offset = h.first.weights.offset;
        },
      ],
      [
        'header.first.scale.dtype',
        (h) => {
          h.first.scale.dtype = 'int8';
        },
      ],
      [
        'header.first.scale.dtype',
        (h) => {
          h.first.scale.dtype = 'float64';
        },
      ],
      [
        'header.first.scale.length',
        (h) => {
          h.first.scale.length += 4;
        },
      ],
      [
        'header.first.scale.shape',
        (h) => {
          h.first.scale.shape = [2 ** 16, 2 ** 16];
        },
      ],
      [
        'header.first.scale.shape',
        (h) => {
          h.first.scale.shape = [2 ** 14, 2 ** 14, 2 ** 14];
        },
      ],
      [
        'header.hidden[0].weightBits.shape',
        (h) => {
          const s = h.hidden[0].weightBits.shape;
          h.hidden[0].weightBits.shape = [s[0], s[1] - 1];
        },
      ],
      [
        'header.first.weights.shape',
        (h) => {
          h.first.weights.shape = [4, 1, 3, 3];
        },
      ],
      [
        'header.x-extra',
        (h) => {
          h['x-extra'] = 1;
        },
      ],
      [
        'header.hidden[0].dilation',
        (h) => {
          h.hidden[0].dilation = 2;
        },
      ],
      [
        'header.T',
        (h) => {
          h.T = 17;
        },
      ],
      [
        'header.T',
        (h) => {
          h.T = 0;
        },
      ],
      [
        'header.hidden[0].lif.beta',
        (h) => {
          h.hidden[0].lif.beta = 0.1;
        },
      ], // not a float32 value
      [
        'header.hidden[0].lif.beta',
        (h) => {
          h.hidden[0].lif.beta = 1.5;
        },
      ],
      [
        'header.labels',
        (h) => {
          h.labels.pop();
        },
      ],
      [
        'header.meta',
        (h) => {
          h.meta = [1];
        },
      ],
      [
        'header.hidden[1].inShape',
        (h) => {
          h.hidden[1].inShape = [6, 6, 5];
        },
      ],
      [
        'header.hidden[1].outShape[0]',
        (h) => {
          h.hidden[1].outShape = [4, 3, 8];
        },
      ],
    ];
    for (const [field, mutate] of cases) refuses(() => readBwsnn(withHeader(bytes, mutate)), field);
  });

  it('tensor contents: NaN, Inf, non-positive theta, dirty row padding', () => {
    const { header, data } = split(bytes);
    const f32 = (ref: { offset: number }, v: number) => {
      const d = data.slice();
      new DataView(d.buffer).setFloat32(ref.offset, v, true);
      return build(header, d);
    };
    refuses(() => readBwsnn(f32(header.first.scale, NaN)), 'header.first.scale[0]');
    refuses(() => readBwsnn(f32(header.head.weight, -Infinity)), 'header.head.weight[0]');
    refuses(() => readBwsnn(f32(header.hidden[0].lif.theta, 0)), 'header.hidden[0].lif.theta[0]');
    const bits = data.slice();
    // hidden[0]: fan-in 3*3*4 = 36 bits in a 4-word row; word 3 of row 0 is all padding.
    bits[header.hidden[0].weightBits.offset + 12] = 1;
    refuses(() => readBwsnn(build(header, bits)), 'header.hidden[0].weightBits[3]');
    const gap = data.slice();
    gap[header.first.weights.offset + header.first.weights.length] = 1; // 36 int8 weights, then padding to 48
    refuses(() => readBwsnn(build(header, gap)), 'data');
  });

  it('in-memory models before writing', () => {
    const m = randomModel({ seed: 9, blocks: FMNIST_BLOCKS.slice(0, 2), linear: [10] }) as any;
    const edits: [string, (m: any) => any][] = [
      ['T', (x) => ({ ...x, T: 17 })],
      ['name', (x) => ({ ...x, name: '' })],
      ['first.stride', (x) => ({ ...x, first: { ...x.first, stride: 0 } })],
      ['first.pad', (x) => ({ ...x, first: { ...x.first, pad: 3 } })],
      ['first.kernel', (x) => ({ ...x, input: [28, 28, 64], first: { ...x.first, inShape: [28, 28, 64] } })],
      ['first.lif.beta', (x) => ({ ...x, first: { ...x.first, lif: { ...x.first.lif, beta: 0 } } })],
      ['first.weights.length', (x) => ({ ...x, first: { ...x.first, weights: x.first.weights.subarray(1) } })],
      [
        'hidden[0].shortcut',
        (x) => ({ ...x, hidden: [{ ...x.hidden[0], shortcut: 'identity' }, ...x.hidden.slice(1)] }),
      ], // 16 -> 32 channels
      [
        'hidden[1].shortcut',
        (x) => ({ ...x, hidden: [x.hidden[0], { ...x.hidden[1], shortcut: 'identity' }, x.hidden[2]] }),
      ],
      [
        'hidden[2].shortcut',
        (x) => ({ ...x, hidden: [x.hidden[0], x.hidden[1], { ...x.hidden[2], shortcut: 'avgpool_repeat' }] }),
      ],
      [
        'hidden[1].outShape[0]',
        (x) => ({ ...x, hidden: [x.hidden[0], { ...x.hidden[1], outShape: [13, 14, 32] }, x.hidden[2]] }),
      ],
      [
        'hidden[2].inFeatures',
        (x) => ({ ...x, hidden: [x.hidden[0], x.hidden[1], { ...x.hidden[2], inFeatures: 100 }] }),
      ],
      ['head.inFeatures', (x) => ({ ...x, hidden: x.hidden.slice(0, 2) })],
      ['labels', (x) => ({ ...x, labels: x.labels.slice(1) })],
      ['meta.bad', (x) => ({ ...x, meta: { bad: undefined } })],
      ['meta.n', (x) => ({ ...x, meta: { n: NaN } })],
    ];
    assert.ok(write(m).length > 0);
    for (const [field, edit] of edits) refuses(() => write(edit(m)), field);
    const avg = randomModel({ seed: 9, blocks: [{ cout: 16, stride: 1, shortcut: 'avgpool_repeat' }] });
    refuses(() => write(avg), 'hidden[0].shortcut');
  });
});

describe('signing', () => {
  const model = randomModel(SMALL);
  const a = generateKeyPairSync('ed25519');
  const b = generateKeyPairSync('ed25519');
  const signed = write(model, { signingKey: a.privateKey });

  it('a signed file verifies with its key (KeyObject or PEM) and reports its key id', () => {
    assert.deepEqual(readBwsnn(signed, { trustedKeys: [a.publicKey], requireSignature: true }), model);
    const pem = a.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    assert.deepEqual(readBwsnn(signed, { trustedKeys: [b.publicKey, pem], requireSignature: true }), model);
    const s = inspectBwsnn(signed);
    assert.equal(s.signed, true);
    assert.equal(s.keyId, keyFingerprint(a.publicKey));
    assert.equal(keyFingerprint(a.privateKey), keyFingerprint(a.publicKey));
    const fromPem = write(model, { signingKey: a.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() });
    assert.deepEqual(readBwsnn(fromPem, { trustedKeys: [a.publicKey], requireSignature: true }), model);
  });

  it('another key, a tampered file, a stripped or missing signature are refused', () => {
    refuses(() => readBwsnn(signed, { trustedKeys: [b.publicKey] }), 'signature.keyId');
    // Tampered behind a recomputed checksum: only the signature can tell.
    const tampered = signed.slice();
    const { dataStart, dataEnd } = split(signed);
    tampered[dataStart]! ^= 1;
    tampered.set(createHash('sha256').update(tampered.subarray(0, dataEnd)).digest(), dataEnd);
    refuses(() => readBwsnn(tampered, { trustedKeys: [a.publicKey] }), 'signature');
    // A signature by a trusted key over another file's digest.
    const other = write(randomModel({ ...SMALL, seed: 8 }), { signingKey: a.privateKey });
    const swapped = signed.slice();
    swapped.set(other.subarray(other.length - 64), swapped.length - 64);
    refuses(() => readBwsnn(swapped, { trustedKeys: [a.publicKey] }), 'signature');
    refuses(() => readBwsnn(write(model), { trustedKeys: [a.publicKey], requireSignature: true }), 'signature');
    // Dropping the block without clearing the flag is a truncated file; clearing the flag breaks the checksum.
    refuses(() => readBwsnn(signed.subarray(0, signed.length - 100), { trustedKeys: [a.publicKey] }), 'file.length');
    const unflagged = signed.slice(0, signed.length - 100);
    unflagged[6] = 0;
    refuses(() => readBwsnn(unflagged), 'checksum');
  });

  it('unusable keys are a ConfigError', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    assert.throws(() => write(model, { signingKey: rsa.privateKey }), { name: 'ConfigError' });
    assert.throws(() => write(model, { signingKey: 'not a pem' }), { name: 'ConfigError' });
    assert.throws(() => readBwsnn(signed, { requireSignature: true }), { name: 'ConfigError' });
    assert.throws(() => readBwsnn(signed, { trustedKeys: [rsa.publicKey] }), { name: 'ConfigError' });
  });
});
