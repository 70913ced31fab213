import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import type { BwsnnModel } from '../runtime/format/index.js';
import {
  compactModel,
  FORMAT_VERSION,
  inspectBwsnn,
  isFloat16,
  packRows,
  packStream,
  readBwsnn,
  readBwsnnFile,
  toFloat16,
  unpackRows,
  unpackStream,
  writeBwsnn,
} from '../runtime/format/index.js';
import { float16Bits, float16Value, q8Scale, quantizeQ8 } from '../runtime/format/precision.js';
import { FMNIST_BLOCKS, randomModel } from '../runtime/format/random-model.js';
import { loadModel } from '../runtime/index.js';
import { annTwinOnnx } from '../trainer/export/onnx.js';
import { arbModel, fixChecksum, mutateHeader, refuses, SMALL } from './helpers/format.js';

const CREATED = '2026-01-01T00:00:00.000Z';
const BUNDLED = new URL('../models/fmnist-sei-t2.bwsnn', import.meta.url).pathname;
const write = (m: BwsnnModel, opts: Parameters<typeof writeBwsnn>[1] = {}) =>
  writeBwsnn(m, { createdAt: CREATED, ...opts });

// ----- a version-2 file taken apart and put together again (unsigned, checksum recomputed)

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
  const header = JSON.parse(inflateRawSync(bytes.subarray(16, 16 + hl)).toString('utf8'));
  return { header, data: bytes.slice(16 + hl, 16 + hl + dl), dataStart: 16 + hl, dataEnd: 16 + hl + dl };
}

function build(
  header: unknown,
  data: Uint8Array,
  stored: Uint8Array = deflateRawSync(JSON.stringify(header)),
): Uint8Array {
  const out = new Uint8Array(16 + stored.length + data.length + 32);
  const view = new DataView(out.buffer);
  out.set([0x42, 0x57, 0x53, 0x4e]);
  view.setUint16(4, 2, true);
  view.setUint32(8, stored.length, true);
  view.setUint32(12, data.length, true);
  out.set(stored, 16);
  out.set(data, 16 + stored.length);
  return fixChecksum(out);
}

const withHeader = (bytes: Uint8Array, mutate: (h: Record<string, any>) => void) => {
  const p = split(bytes);
  mutate(p.header);
  return build(p.header, p.data);
};

/** readBwsnn on any bytes: a FormatError (null), or a valid model that writes and reads back unchanged. */
function readOrRefuse(bytes: Uint8Array): BwsnnModel | null {
  let model: BwsnnModel;
  try {
    model = readBwsnn(bytes);
  } catch {
    refuses(() => readBwsnn(bytes));
    return null;
  }
  assert.deepEqual(readBwsnn(writeBwsnn(model)), model);
  return model;
}

function inspectNeverCrashes(bytes: Uint8Array): void {
  try {
    inspectBwsnn(bytes);
  } catch {
    refuses(() => inspectBwsnn(bytes));
  }
}

describe('float16 and q8', () => {
  it('every float16 value encodes to its own bit pattern; midpoints round to even', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = float16Value(h);
      if (!Number.isNaN(v)) assert.equal(float16Bits(v), h, `pattern 0x${h.toString(16)}`);
    }
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (float16Value(h) + float16Value(h + 1)) / 2;
      assert.equal(float16Bits(mid), h & 1 ? h + 1 : h, `midpoint above 0x${h.toString(16)}`);
    }
    assert.equal(toFloat16(65520), Infinity);
    assert.ok(Object.is(toFloat16(-1e-9), -0));
  });

  it('toFloat16 of any float32 is the nearest float16', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, min: -65504, max: 65504 }), (x) => {
        const y = toFloat16(x);
        assert.ok(isFloat16(y));
        const h = float16Bits(Math.abs(y));
        const below = h > 0 ? float16Value(h - 1) : -float16Value(1);
        const above = float16Value(h + 1);
        const a = Math.abs(x);
        assert.ok(Math.abs(a - Math.abs(y)) <= Math.min(a - below, above - a), `${x} -> ${y}`);
      }),
      { numRuns: 2000 },
    );
  });

  it('q8 rows: exact in float32, within half a step, idempotent, and their scale is recovered', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e4, max: 1e4 }), {
          minLength: 1,
          maxLength: 80,
        }),
        (raw) => {
          const row = Float32Array.from(raw);
          const q = quantizeQ8(row);
          const s = q8Scale(q);
          assert.notEqual(s, undefined, 'a quantised row is a q8 row');
          assert.ok(isFloat16(s!));
          q.forEach((x, i) => {
            assert.ok(Number.isInteger(x / s!) && Math.abs(x / s!) <= 127);
            assert.ok(Math.abs(x - row[i]!) <= s! / 2, `element ${i}`);
          });
          assert.deepEqual(quantizeQ8(q), q);
        },
      ),
      { numRuns: 500 },
    );
    assert.equal(q8Scale([0.1, 0.3]), undefined, 'not a q8 row');
    assert.equal(q8Scale([-0, 0]), undefined, '-0 is not q8');
  });
});

describe('unpadded bit stream', () => {
  it('unpackStream(packStream(p)) = p for clean packed rows; the stream is ceil(rows*bits/8) bytes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 300 }), fc.nat(), (rows, bits, seed) => {
        const weights = Array.from({ length: rows * bits }, (_, i) =>
          ((Math.imul(i + 1, 2654435761) ^ seed) >>> 13) & 1 ? 1 : -1,
        );
        const packed = packRows(weights, rows, bits);
        const stream = packStream(packed, rows, bits);
        assert.equal(stream.length, Math.ceil((rows * bits) / 8));
        if ((rows * bits) & 7)
          assert.equal(stream[stream.length - 1]! >>> ((rows * bits) & 7), 0, 'bits after the stream are zero');
        assert.deepEqual(unpackStream(stream, rows, bits), packed);
        assert.deepEqual(unpackRows(unpackStream(stream, rows, bits), rows, bits), Int8Array.from(weights));
      }),
      { numRuns: 300 },
    );
  });
});

describe('version 2 round trip', () => {
  it('arbitrary valid models round trip exactly and deterministically', () => {
    fc.assert(
      fc.property(arbModel, (m) => {
        const bytes = write(m);
        assert.equal(inspectBwsnn(bytes).formatVersion, FORMAT_VERSION);
        assert.deepEqual(readBwsnn(bytes), m);
        assert.deepEqual(write(m), bytes);
      }),
      { numRuns: 60 },
    );
  });

  it('each float tensor takes the narrowest exact encoding: a constant, q8, float16 or float32', () => {
    const base = randomModel(SMALL);
    const c = base.first.outShape[2];
    const m: BwsnnModel = {
      ...base,
      hidden: [{ ...base.hidden[0]!, bias: quantizeQ8(base.hidden[0]!.bias) }, ...base.hidden.slice(1)],
      first: {
        ...base.first,
        scale: new Float32Array(c).fill(0.75),
        bias: Float32Array.of(0.5, 0.25, -0.125, 1),
        lif: { ...base.first.lif, theta: Float32Array.from({ length: c }, (_, i) => 1 + i / 3) },
      },
      head: {
        ...base.head,
        weight: compactModel({ ...base, head: { ...base.head, weight: base.head.weight.map((x) => x * 3) } }).head
          .weight,
        bias: Float32Array.of(-0, 0, 0),
      },
    };
    const bytes = write(m);
    const { header } = split(bytes);
    assert.equal(header.first.scale, 0.75);
    assert.equal(header.first.bias, 'float16', 'float16-exact, and 1/127 is no float16 scale');
    assert.equal(header.hidden[0].bias, 'q8');
    assert.equal(header.first.lif.theta, 'float32');
    assert.equal(header.first.weights, 'int8');
    assert.equal(header.hidden[0].weightBits, 'bits');
    assert.equal(header.head.bias, 'float16', 'a -0 cannot be a JSON constant');
    assert.deepEqual(readBwsnn(bytes), m);
  });

  it('compactModel rounds to the compact encodings, is idempotent, and what it makes is stored exactly', () => {
    const m = randomModel({ seed: 3, blocks: FMNIST_BLOCKS, firstChannels: 16 });
    const c = compactModel(m);
    assert.deepEqual(compactModel(c), c);
    assert.deepEqual(readBwsnn(write(c)), c);
    const { header } = split(write(c));
    assert.equal(header.head.weight, 'q8');
    for (const l of [header.first, ...header.hidden])
      for (const v of [l.scale, l.bias, l.lif.theta])
        assert.ok(['float16', 'float32', 'q8'].includes(v) || typeof v === 'number');
    assert.ok(write(c).length < write(m).length);
  });

  it('version 1 stays readable and writable; the bundled version-1 model loads', async () => {
    const m = randomModel(SMALL);
    const v1 = write(m, { formatVersion: 1 });
    assert.equal(inspectBwsnn(v1).formatVersion, 1);
    assert.deepEqual(readBwsnn(v1), readBwsnn(write(m)));
    const bundled = readBwsnnFile(BUNDLED);
    assert.deepEqual(readBwsnn(write(bundled)), bundled, 'a version-1 model rewritten as version 2 is the same model');
    assert.ok((await loadModel(BUNDLED)).infer(new Uint8Array(784)).logits.length === 10);
    assert.throws(() => write(m, { formatVersion: 3 as 2 }), {
      name: 'ConfigError',
      message: /formatVersion: expected 1 or 2, got 3/,
    });
  });

  it('the bundled architecture, compacted, is at least 25x smaller than its float ANN in ONNX', () => {
    const bundled = readBwsnnFile(BUNDLED);
    const bytes = write(compactModel(bundled));
    const ratio = annTwinOnnx(bundled).length / bytes.length;
    assert.ok(ratio >= 25, `${ratio.toFixed(2)}x (${bytes.length} bytes)`);
  });

  it("inspect reports each layer's bytes as stored", () => {
    const m = compactModel(randomModel({ seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 }));
    const bytes = write(m);
    const s = inspectBwsnn(bytes);
    // hidden[1]: 64 rows of 9*32 bits, then float16 scale and bias, theta a constant (fixed theta).
    const l = m.hidden[1]!;
    const vectors = [l.scale, l.bias, l.lif.theta].reduce(
      (n, v) => n + (v.every((x) => x === v[0]) ? 0 : 2 * v.length),
      0,
    );
    assert.equal(s.layers[2]!.bytes, (64 * 9 * 32) / 8 + vectors);
    assert.equal(
      s.layers.reduce((n, x) => n + x.bytes, 0),
      s.sizes.data,
    );
    assert.equal(s.sizes.file, 16 + s.sizes.header + s.sizes.data + 32);
  });

  it('signs and verifies like version 1', () => {
    const m = randomModel(SMALL);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signed = write(m, { signingKey: privateKey });
    assert.deepEqual(readBwsnn(signed, { trustedKeys: [publicKey], requireSignature: true }), m);
    const tampered = signed.slice();
    tampered[split(signed).dataStart]! ^= 1;
    refuses(() => readBwsnn(tampered, { trustedKeys: [publicKey] }), 'checksum');
  });
});

describe('version 2 fuzzing: only FormatError, never a crash, never a silently wrong model', () => {
  const small = compactModel(randomModel(SMALL));
  const bytes = write(small);
  const { dataEnd } = split(bytes);

  it('every truncation length', () => {
    for (let n = 0; n < bytes.length; n++) {
      refuses(() => readBwsnn(bytes.subarray(0, n)));
      refuses(() => inspectBwsnn(bytes.subarray(0, n)));
    }
  });

  it('random byte flips behind a recomputed checksum', () => {
    fc.assert(
      fc.property(fc.nat({ max: dataEnd - 1 }), fc.integer({ min: 1, max: 255 }), (pos, x) => {
        const b = bytes.slice();
        b[pos]! ^= x;
        fixChecksum(b);
        inspectNeverCrashes(b);
        readOrRefuse(b);
      }),
      { numRuns: 400 },
    );
  });

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
      0.1,
      1.5,
      1e300,
      2 ** 31,
      2 ** 53,
      'float16',
      'float32',
      'q8',
      'bits',
      'int8',
      'float64',
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
});

describe('version 2 refusals name the field', () => {
  const model = randomModel(SMALL);
  const bytes = write(model);
  const { header, data } = split(bytes);

  it('header and data area', () => {
    refuses(() => readBwsnn(build(header, data, new TextEncoder().encode(JSON.stringify(header)))), 'header');
    refuses(() => readBwsnn(build(header, data, deflateRawSync(' '.repeat(16 * 1024 * 1024 + 1)))), 'header');
    refuses(() => readBwsnn(build(header, data, deflateRawSync('[1]'))), 'header');
    refuses(() => readBwsnn(build(header, Uint8Array.from([...data, 0]))), 'dataLength');
    refuses(() => readBwsnn(build(header, data.subarray(0, data.length - 1))), 'header.head.bias');
  });

  it('tensor entries', () => {
    const cases: [string, (h: Record<string, any>) => void][] = [
      [
        'header.first.weights',
        (h) => {
          h.first.weights = 'float16';
        },
      ],
      [
        'header.hidden[0].weightBits',
        (h) => {
          h.hidden[0].weightBits = { offset: 0, length: 16, dtype: 'bits', shape: [4, 36] };
        },
      ],
      [
        'header.first.scale',
        (h) => {
          h.first.scale = 'float64';
        },
      ],
      [
        'header.first.scale',
        (h) => {
          h.first.scale = 0.1;
        },
      ], // not a float32 value
      [
        'header.hidden[0].lif.theta[0]',
        (h) => {
          h.hidden[0].lif.theta = -1;
        },
      ],
      [
        'header.first.outShape',
        (h) => {
          h.first.outShape = 'big';
        },
      ],
      [
        'header.hidden[0].kernel',
        (h) => {
          h.hidden[0].kernel = 99;
        },
      ],
      [
        'header.hidden[3].inFeatures',
        (h) => {
          h.hidden[3].inFeatures = -4;
        },
      ],
      [
        'header.head.outFeatures',
        (h) => {
          h.head.outFeatures = 2 ** 20;
        },
      ],
      [
        'header.hidden[0].dilation',
        (h) => {
          h.hidden[0].dilation = 2;
        },
      ],
    ];
    for (const [field, mutate] of cases) refuses(() => readBwsnn(withHeader(bytes, mutate)), field);
  });

  it('tensor contents: stray stream bits, q8 -128, a NaN scale', () => {
    // Constant per-channel vectors take no bytes, so the data area is: 3*3*3 int8 weights, 3 rows of 27 bits
    // (81 bits: 11 bytes, the last one holding bit 80 in its bit 0), then the q8 head (2 scales, 2*3 values).
    const base = randomModel({ seed: 2, input: [5, 5, 1], firstChannels: 3, blocks: [{ cout: 3 }], classes: 2 });
    const fill = (v: Float32Array, x: number) => new Float32Array(v.length).fill(x);
    const m: BwsnnModel = {
      ...base,
      first: {
        ...base.first,
        scale: fill(base.first.scale, 0.5),
        bias: fill(base.first.bias, 0),
        lif: { ...base.first.lif, theta: fill(base.first.lif.theta, 1) },
      },
      hidden: base.hidden.map((l) => ({
        ...l,
        scale: fill(l.scale, 0.25),
        bias: fill(l.bias, 0.125),
        lif: { ...l.lif, theta: fill(l.lif.theta, 1) },
      })),
      head: { ...base.head, weight: compactModel(base).head.weight, bias: fill(base.head.bias, 0) },
    };
    const { header: h, data: d } = split(write(m));
    assert.equal(d.length, 27 + 11 + 4 + 6);
    assert.equal(h.head.weight, 'q8');
    const at = (i: number, x: number) => {
      const c = d.slice();
      c[i] = x;
      return build(h, c);
    };
    refuses(() => readBwsnn(at(27 + 10, d[27 + 10]! | 0x80)), 'header.hidden[0].weightBits');
    refuses(() => readBwsnn(at(38 + 4 + 1, 0x80)), 'header.head.weight[1]');
    const nan = d.slice();
    new DataView(nan.buffer).setUint16(38, 0x7e00, true);
    refuses(() => readBwsnn(build(h, nan)), /^header\.head\.weight\[\d+\]$/);
    assert.deepEqual(readBwsnn(build(h, d)), m);
  });
});
