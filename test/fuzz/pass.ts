/**
 * The fast-check pass of a fuzz target: its `run` on mutated seeds and random bytes, then its properties, for a
 * number of inputs or a time budget. A failure is shrunk by fast-check and comes back with its input.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FuzzTarget } from './targets.js';

export interface Failure {
  /** `run` for the byte-level pass, else the property's name. */
  readonly what: string;
  /** The (shrunk) input of `run`, or null for a property (its counterexample is in `example`). */
  readonly input: Uint8Array | null;
  readonly example: string;
  readonly error: string;
}

export interface PassResult {
  readonly inputs: number;
  readonly failures: readonly Failure[];
}

/** One edit of a seed: what a mutation-based fuzzer does to its corpus, small enough for fast-check to shrink. */
const edit = fc.record({
  kind: fc.constantFrom('set', 'insert', 'delete', 'truncate', 'duplicate', 'int32'),
  at: fc.nat(),
  value: fc.nat(0xffffffff),
  length: fc.integer({ min: 1, max: 16 }),
});
type Edit = typeof edit extends fc.Arbitrary<infer E> ? E : never;

function applyEdits(seed: Uint8Array, edits: readonly Edit[]): Uint8Array {
  let b: Uint8Array = Uint8Array.from(seed);
  for (const e of edits) {
    const at = b.length === 0 ? 0 : e.at % (b.length + 1);
    const end = Math.min(b.length, at + e.length);
    if (e.kind === 'set' && at < b.length) b[at] = e.value & 0xff;
    else if (e.kind === 'insert') b = concat(b.subarray(0, at), Uint8Array.of(e.value & 0xff), b.subarray(at));
    else if (e.kind === 'delete') b = concat(b.subarray(0, at), b.subarray(end));
    else if (e.kind === 'truncate') b = b.subarray(0, at);
    else if (e.kind === 'duplicate') b = concat(b.subarray(0, end), b.subarray(at, end), b.subarray(end));
    else if (e.kind === 'int32' && at + 4 <= b.length)
      new DataView(b.buffer, b.byteOffset).setUint32(at, e.value, e.length % 2 === 0);
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Inputs for `run`: mostly seeds with a few edits, some plain random bytes. */
export function inputs(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const random = fc.uint8Array({ maxLength: 256 });
  if (seeds.length === 0) return random;
  return fc.oneof(
    { weight: 1, arbitrary: random },
    {
      weight: 5,
      arbitrary: fc
        .tuple(fc.nat(seeds.length - 1), fc.array(edit, { minLength: 1, maxLength: 6 }))
        .map(([i, edits]) => applyEdits(seeds[i]!, edits)),
    },
  );
}

export interface PassOptions {
  /** Inputs per property (the byte-level pass gets `runs` too). */
  readonly runs?: number;
  /** Time budget of the whole pass, ms (split: 2/3 the byte-level pass, 1/3 the properties). */
  readonly ms?: number;
  readonly seed?: number;
}

/** Runs a target's byte-level pass and its properties; never throws for a failing input (it is returned). */
export async function fastCheckPass(t: FuzzTarget, opts: PassOptions): Promise<PassResult> {
  const runs = opts.runs ?? 2 ** 31 - 1;
  const failures: Failure[] = [];
  let count = 0;
  const budget = (share: number) =>
    opts.ms === undefined ? {} : { interruptAfterTimeLimit: Math.max(200, Math.round(opts.ms * share)) };
  const common = { numRuns: runs, ...(opts.seed === undefined ? {} : { seed: opts.seed }) };

  const byBytes = t.async
    ? fc.asyncProperty(inputs(t.seeds()), async (data) => {
        count++;
        await t.run(data);
      })
    : fc.property(inputs(t.seeds()), (data) => {
        count++;
        t.run(data);
      });
  const r = await fc.check(byBytes as fc.IAsyncProperty<[Uint8Array]>, { ...common, ...budget(2 / 3) });
  if (r.failed) {
    const input = r.counterexample?.[0] ?? null;
    failures.push({ what: 'run', input, example: fc.stringify(r.counterexample), error: errorText(r.errorInstance) });
  }
  const share = t.properties.length > 0 ? 1 / 3 / t.properties.length : 0;
  for (const p of t.properties) {
    const prop = p.property();
    const before = count;
    const d = await fc.check(prop as fc.IAsyncProperty<unknown[]>, { ...common, ...budget(share) });
    count = before + d.numRuns;
    if (d.failed)
      failures.push({
        what: p.name,
        input: null,
        example: fc.stringify(d.counterexample),
        error: errorText(d.errorInstance),
      });
  }
  return { inputs: count, failures };
}

function errorText(err: unknown): string {
  return err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
}

/** Writes a failure's input (and what it did) under dir; returns the input's path, or the report's for a property. */
export function saveFailure(dir: string, f: Failure): string {
  mkdirSync(dir, { recursive: true });
  const body = f.input ?? new TextEncoder().encode(f.example);
  const id = createHash('sha256').update(body).digest('hex').slice(0, 16);
  const path = join(dir, f.input ? `crash-${id}` : `property-${id}.txt`);
  writeFileSync(path, body);
  writeFileSync(`${path}.error.txt`, `${f.what}\n${f.example.slice(0, 2000)}\n\n${f.error}\n`);
  return path;
}
