/**
 * A small declarative schema for configuration: each field is declared once, with its doc line, its default and
 * what it accepts, and from that one declaration come the TypeScript type (`Infer`), the checks and their
 * ConfigError messages (field, expected, actual), the defaults and the README tables (`markdownTable`).
 * Unknown keys are refused, so that a typo does not silently fall back to a default.
 *
 * Why not a schema library: the agent loads this on every box, and each module costs resident memory there
 * (device-agent/README.md, memory); the messages must also stay exactly what operators and tests already read.
 */
import { ConfigError, FormatError, show } from '../runtime/errors.js';

export type Json = Record<string, unknown>;

/** One configuration value. */
export interface Field<T> {
  /** One line for the README: what the field does. */
  readonly doc: string;
  /** What a good value is, in the words of the error message: "an integer in [1, 100000]". */
  readonly expected: string;
  /** The default as the README shows it. */
  readonly shown: string;
  /**
   * Checks `value` (undefined when absent) found at `path` and returns it, or the default. `root` holds the
   * top-level fields read so far (declaration order), for defaults derived from them.
   */
  read(value: unknown, path: string, root: Json): T;
  /** A section's fields. */
  readonly fields?: Fields;
  /** A section that null switches off. */
  readonly nullable?: boolean;
  /** Where the README documents this section instead of the table it belongs to (e.g. "ota/README.md"). */
  readonly documentedIn?: string;
}

export type Fields = { readonly [key: string]: Field<unknown> };

/** The value type a field reads to. */
export type Infer<F> = F extends Field<infer T> ? T : never;
export type InferFields<F extends Fields> = { readonly [K in keyof F]: Infer<F[K]> };

/** A nested mapping of fields. */
export interface Section<F extends Fields> extends Field<InferFields<F>> {
  readonly fields: F;
}

/** Refuses `actual` at `path`: `path: expected <expected>, got <actual>`. */
export function fail(path: string, expected: string, actual: unknown): never {
  throw new ConfigError(`${path}: expected ${expected}, got ${show(actual)}`, path);
}

export function isPlain(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

const join = (path: string, key: string) => (path ? `${path}.${key}` : key);

/**
 * Keys that reach an object's prototype rather than its own fields when merged (`out[key] = value` with
 * `__proto__` sets the prototype, which no check of the object's own keys then sees), so they are refused in
 * any input from outside (config files, command payloads) before it is merged or validated.
 */
export const RESERVED_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];

/** Refuses a reserved key at any depth of `v` (mappings and lists) with a ConfigError naming its path. */
export function refuseReservedKeys(v: unknown, path = ''): void {
  // A list, not recursion: a deeply nested payload must be refused or taken, never overflow the stack.
  const todo: [unknown, string][] = [[v, path]];
  for (let next = todo.pop(); next; next = todo.pop()) {
    const [value, at] = next;
    if (Array.isArray(value)) value.forEach((x, i) => todo.push([x, `${at}[${i}]`]));
    else if (isPlain(value)) {
      for (const key of Object.keys(value)) {
        if (RESERVED_KEYS.includes(key))
          throw new ConfigError(
            `${join(at, key)}: expected a setting name, got the reserved key ${JSON.stringify(key)} (refused anywhere in a config or command)`,
            join(at, key),
          );
        todo.push([value[key], join(at, key)]);
      }
    }
  }
}

/** The range words of every number check, config file and CLI alike. */
export function rangeText(r: NumberRange): string {
  const kind = r.integer ? 'an integer' : 'a number';
  const min = r.min ?? -Infinity;
  const max = r.max ?? Infinity;
  if (r.integer && max === Infinity && min === 1) return 'a positive integer';
  if (r.integer && max === Infinity && min === 0) return 'a non-negative integer';
  if (max === Infinity) return min === -Infinity ? kind : `${kind} ${r.minExclusive ? '>' : '>='} ${min}`;
  if (min === -Infinity) return `${kind} <= ${max}`;
  return `${kind} in ${r.minExclusive ? '(' : '['}${min}, ${max}]`;
}

export interface NumberRange {
  readonly min?: number;
  readonly max?: number;
  /** The minimum itself is refused: (min, max]. */
  readonly minExclusive?: boolean;
  readonly integer?: boolean;
}

/** Whether `v` is a finite number inside the range. */
export function inRange(v: unknown, r: NumberRange): v is number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (r.integer && !Number.isInteger(v))) return false;
  if (r.min !== undefined && (r.minExclusive ? v <= r.min : v < r.min)) return false;
  return r.max === undefined || v <= r.max;
}

interface Base<T> {
  readonly doc: string;
  /** Absent: the field is required. A function derives it from the top-level fields read before this one. */
  readonly default?: T | ((root: Json) => T);
  /** How the README shows the default when the value alone does not say it (derived defaults, units). */
  readonly shown?: string;
}

/** A field whose value is accepted as is once `accepts` says so; `refine` adds a second, narrower check. */
function scalar<T>(
  expected: string,
  o: Base<T>,
  accepts: (v: unknown) => boolean,
  refine?: { test: (v: T) => boolean; expected: string },
): Field<T> {
  const hasDefault = 'default' in o;
  return {
    doc: o.doc,
    expected: refine?.expected ?? expected,
    shown: o.shown ?? (hasDefault ? showDefault(o.default) : 'required'),
    read(v, path, root) {
      if (v === undefined) {
        if (!hasDefault) fail(path, refine?.expected ?? expected, v);
        return typeof o.default === 'function' ? (o.default as (root: Json) => T)(root) : (o.default as T);
      }
      if (!accepts(v)) fail(path, expected, v);
      if (refine && !refine.test(v as T)) fail(path, refine.expected, v);
      return v as T;
    },
  };
}

function showDefault(v: unknown): string {
  if (typeof v === 'function') return 'derived';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

type Refine<T> = { readonly refine?: { test: (v: T) => boolean; expected: string } };

const nonEmpty = (v: unknown) => typeof v === 'string' && v.length > 0;

export function str(o: Base<string> & Refine<string>): Field<string> {
  return scalar('a non-empty string', o, nonEmpty, o.refine);
}

export function strOrNull(o: Base<string | null> & Refine<string>): Field<string | null> {
  const refine = o.refine && {
    test: (v: string | null) => v === null || o.refine!.test(v),
    expected: `${o.refine.expected}, or null`,
  };
  return scalar('a non-empty string or null', { default: null, ...o }, (v) => v === null || nonEmpty(v), refine);
}

export function num(o: Base<number> & Omit<NumberRange, 'integer'>): Field<number> {
  return scalar(rangeText(o), o, (v) => inRange(v, o));
}

export function int(o: Base<number> & Omit<NumberRange, 'integer'>): Field<number> {
  const r = { ...o, integer: true };
  return scalar(rangeText(r), o, (v) => inRange(v, r));
}

export function intOrNull(o: Base<number | null> & Omit<NumberRange, 'integer'>): Field<number | null> {
  const r = { ...o, integer: true };
  return scalar(`${rangeText(r)} or null`, o, (v) => v === null || inRange(v, r));
}

export function bool(o: Base<boolean>): Field<boolean> {
  return scalar('true or false', o, (v) => typeof v === 'boolean');
}

export function oneOf<const T extends string | number>(values: readonly T[], o: Base<NoInfer<T>>): Field<T> {
  return scalar(`one of ${values.map((a) => JSON.stringify(a)).join(', ')}`, o, (v) => values.includes(v as T));
}

/** A field with its own reader (a spec string, a list): `parse` gets the present value and throws ConfigError. */
export function custom<T>(o: Base<T> & { readonly expected: string; parse(v: unknown, path: string): T }): Field<T> {
  const f = scalar<T>(o.expected, o, () => true);
  return { ...f, read: (v, path, root) => (v === undefined ? f.read(v, path, root) : o.parse(v, path)) };
}

export interface SectionOptions<F extends Fields> {
  /** Checks across fields, after each field passed its own; `refuse(key, expected, actual)` names the field. */
  readonly check?: (
    value: InferFields<F>,
    refuse: (key: keyof F & string, expected: string, actual: unknown) => never,
  ) => void;
  readonly documentedIn?: string;
}

export function section<F extends Fields>(doc: string, fields: F, opts: SectionOptions<F> = {}): Section<F> {
  return {
    doc,
    fields,
    expected: 'a mapping',
    shown: '',
    ...(opts.documentedIn !== undefined ? { documentedIn: opts.documentedIn } : {}),
    read(v, path, root) {
      const raw = v === undefined ? {} : v;
      if (!isPlain(raw)) fail(path || 'config', 'a mapping', raw);
      const out: Json = {};
      // At the top level the fields read so far are the root that derived defaults look at.
      const r = path === '' ? out : root;
      for (const [key, field] of Object.entries(fields)) out[key] = field.read(raw[key], join(path, key), r);
      for (const key of Object.keys(raw)) {
        if (!Object.hasOwn(fields, key))
          throw new ConfigError(
            `${join(path, key)}: unknown setting (a typo?), got ${show(raw[key])}`,
            join(path, key),
          );
      }
      opts.check?.(out as InferFields<F>, (key, expected, actual) => fail(join(path, key), expected, actual));
      return out as InferFields<F>;
    },
  };
}

/** A section that may be switched off: absent, null or false reads as null (the default). */
export function nullable<F extends Fields>(s: Section<F>): Field<InferFields<F> | null> & { readonly fields: F } {
  const expected = `null or {${Object.keys(s.fields).join(', ')}}`;
  return {
    doc: s.doc,
    fields: s.fields,
    nullable: true,
    expected,
    shown: 'null',
    read(v, path, root) {
      if (v === undefined || v === null || v === false) return null;
      if (!isPlain(v)) fail(path, expected, v);
      return s.read(v, path, root);
    },
  };
}

/** Reads a whole config object: every default filled in, every value checked. */
export function parse<F extends Fields>(schema: Section<F>, raw: unknown): InferFields<F> {
  return schema.read(raw, '', {});
}

/** A section's defaults: what it reads to when absent (defaults derived from top-level fields are not meaningful here). */
export function defaultsOf<F extends Fields>(s: Section<F>, path: string): InferFields<F> {
  return s.read(undefined, path, {});
}

/**
 * The Markdown table of a section's leaf fields (key, default, accepted values, meaning), nested keys dotted
 * under `prefix`. A sub-section documented elsewhere is one row pointing there.
 */
export function markdownTable(s: Section<Fields>, prefix = ''): string {
  const rows: string[] = [];
  const cell = (text: string) => text.replace(/\|/g, '\\|');
  const walk = (fields: Fields, path: string) => {
    for (const [key, field] of Object.entries(fields)) {
      const name = join(path, key);
      if (field.documentedIn !== undefined) {
        rows.push(`| \`${name}\` | | | ${cell(field.doc)}: see [${field.documentedIn}](${field.documentedIn}) |`);
        continue;
      }
      // A section is its fields' rows; one that null switches off has a row of its own first.
      if (!field.fields || field.nullable)
        rows.push(
          `| \`${name}\` | ${field.shown === 'required' ? 'required' : `\`${cell(field.shown)}\``} | ${cell(field.expected)} | ${cell(field.doc)} |`,
        );
      if (field.fields) walk(field.fields, name);
    }
  };
  walk(s.fields, prefix);
  return ['| key | default | accepted values | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/**
 * Reads a file that a config field or a CLI flag names: a missing, unreadable or malformed one (a file-system
 * error or a FormatError) becomes one ConfigError naming the field and the path. Works for sync and async readers.
 */
export function fromFile<T>(field: string, expected: string, path: string, read: () => T): T {
  const convert = (err: unknown): never => {
    const code = (err as NodeJS.ErrnoException).code;
    if (err instanceof FormatError || (typeof code === 'string' && code.startsWith('E'))) {
      throw new ConfigError(
        `${field}: expected ${expected}, got ${JSON.stringify(path)} (${err instanceof FormatError ? err.message : code})`,
        field,
      );
    }
    throw err;
  };
  try {
    const out = read();
    return (out instanceof Promise ? out.catch(convert) : out) as T;
  } catch (err) {
    return convert(err);
  }
}
