/** What the .bwsnn suites share: refusal checks, a small model with every op, arbitrary valid models, checksums. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { FormatError } from '../../runtime/errors.js';
import { validateModel } from '../../runtime/format/index.js';
import { randomModel, type RandomModelSpec } from '../../runtime/format/random-model.js';

/** A small model with every op and shortcut kind, so fuzzing a short file still reaches every parser branch. */
export const SMALL: RandomModelSpec = {
  seed: 7,
  input: [6, 6, 1],
  firstChannels: 4,
  T: 3,
  classes: 3,
  blocks: [{ cout: 4 }, { cout: 8, stride: 2 }, { cout: 8, stride: 2, shortcut: 'none' }],
  linear: [8, 8],
};

/** Asserts that `fn` throws a FormatError that names a field and is not the catch-all for an escaped bug. */
export function refuses(fn: () => unknown, field?: string | RegExp): FormatError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FormatError, `expected FormatError, got ${(err as Error).stack}`);
    assert.notEqual(err.field, 'internal', err.message);
    assert.ok(err.field, `no field on: ${err.message}`);
    if (typeof field === 'string') assert.equal(err.field, field, err.message);
    else if (field) assert.match(err.field!, field, err.message);
    assert.ok(
      err.message.startsWith(`${err.field}: expected`),
      `message should name field and expectation: ${err.message}`,
    );
    return err;
  }
  assert.fail(`expected a FormatError${field ? ` on ${String(field)}` : ''}, but it was accepted`);
}

/** Recomputes the checksum of an unsigned file in place, so that what lies behind it gets parsed. */
export function fixChecksum(bytes: Uint8Array): Uint8Array {
  const end = bytes.length - 32;
  bytes.set(createHash('sha256').update(bytes.subarray(0, end)).digest(), end);
  return bytes;
}

/** Arbitrary valid models: random layouts through the fixture generator, random names, labels and meta. */
export const arbModel = fc
  .record({
    seed: fc.nat(),
    T: fc.integer({ min: 1, max: 16 }),
    h: fc.integer({ min: 3, max: 12 }),
    w: fc.integer({ min: 3, max: 12 }),
    c: fc.integer({ min: 1, max: 3 }),
    firstChannels: fc.integer({ min: 1, max: 12 }),
    firstKernel: fc.constantFrom(1, 3, 5),
    blocks: fc.array(
      fc.record({
        cout: fc.integer({ min: 1, max: 12 }),
        stride: fc.constantFrom(1 as const, 2 as const),
        kernel: fc.constantFrom(1, 3),
      }),
      { maxLength: 3 },
    ),
    linear: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 2 }),
    classes: fc.integer({ min: 1, max: 12 }),
    name: fc.string({ minLength: 1, maxLength: 20 }),
    version: fc.nat(),
    labelSeed: fc.string({ maxLength: 8 }),
    meta: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 })),
  })
  .map((a) => {
    const base = randomModel({
      seed: a.seed,
      T: a.T,
      input: [a.h, a.w, a.c],
      firstChannels: a.firstChannels,
      firstKernel: a.firstKernel,
      blocks: a.blocks,
      linear: a.linear,
      classes: a.classes,
    });
    // JSON has no -0; meta is specified to survive JSON, so the generator stays inside that.
    const meta = JSON.parse(JSON.stringify(a.meta)) as Record<string, unknown>;
    return {
      ...base,
      name: a.name,
      version: a.version,
      labels: base.labels.map((l, i) => `${a.labelSeed}${l}${i}`),
      meta,
    };
  })
  .filter((m) => {
    try {
      validateModel(m);
      return true;
    } catch {
      return false; // e.g. a 5x5 first kernel larger than a 3-pixel padded input
    }
  });

/** One fuzzing mutation of a parsed header: at `path`, replace the value, delete it, or add a field beside it. */
export function mutateHeader(
  h: unknown,
  path: readonly (string | number)[],
  value: unknown,
  how: 'replace' | 'delete' | 'add',
): void {
  let parent: any = h;
  for (const k of path.slice(0, -1)) parent = parent[k];
  const key = path[path.length - 1]!;
  if (how === 'replace') parent[key] = value;
  else if (how === 'delete') Array.isArray(parent) ? parent.splice(Number(key), 1) : delete parent[key];
  else if (!Array.isArray(parent)) parent['x-extra'] = value;
  else parent.push(value);
}
