/**
 * Every `sei` option-value parser. Each refuses a bad value with a ConfigError that names the flag, the expected
 * and the actual value (`--limit: expected a positive integer, got "0"`), which the CLI prints as one line and
 * exits 2 on (run-cli.ts). Number ranges read the same as the agent config's (device-agent/schema.ts).
 */
import { Option } from 'commander';
import { ConfigError } from '../runtime/errors.js';
import { LIMITS } from '../runtime/format/validate.js';
import { MAX_THREADS } from '../runtime/pool/index.js';
import { KERNEL_CHOICES } from '../device-agent/config-schema.js';
import { inRange, rangeText } from '../device-agent/schema.js';

/** Reads a file a flag names; a missing, unreadable or malformed one is a ConfigError naming the flag. */
export { fromFile } from '../device-agent/schema.js';
import type { Field, NumberRange } from '../device-agent/schema.js';

type Parser<T> = (value: string) => T;

function refuse(flag: string, expected: string, value: string): never {
  throw new ConfigError(`${flag}: expected ${expected}, got ${JSON.stringify(value)}`, flag);
}

/** A number in [min, max] (an integer when `integer`). */
export function num(flag: string, min = -Infinity, max = Infinity, integer = false): Parser<number> {
  return range(flag, { min, max, integer });
}

export function int(flag: string, min = -Infinity, max = Infinity): Parser<number> {
  return range(flag, { min, max, integer: true });
}

export function positiveInt(flag: string): Parser<number> {
  return range(flag, { min: 1, integer: true });
}

/** A number > 0 (and <= max). */
export function positive(flag: string, max = Infinity): Parser<number> {
  return range(flag, { min: 0, minExclusive: true, max });
}

function range(flag: string, r: NumberRange): Parser<number> {
  return (value) => {
    const n = value.trim() === '' ? NaN : Number(value);
    return inRange(n, r) ? n : refuse(flag, rangeText(r), value);
  };
}

/** One of `values`. */
export function choice<const T extends string>(flag: string, values: readonly T[]): Parser<T> {
  return (value) => (values.includes(value as T) ? (value as T) : refuse(flag, `one of ${values.join(', ')}`, value));
}

/** An option whose value is one of `values`: --help lists them (commander's choices), a bad one is a ConfigError. */
export function choiceOption<const T extends string>(
  flags: string,
  description: string,
  values: readonly T[],
  fallback?: NoInfer<T>,
): Option {
  const option = new Option(flags, description).choices(values);
  option.argParser(choice(option.long ?? flags, values));
  return fallback === undefined ? option : option.default(fallback);
}

/** `--kernel`: the runtime's kernel choice, default auto. */
export function kernelOption(description: string): Option {
  return choiceOption('--kernel <auto|wasm|reference>', description, KERNEL_CHOICES, 'auto');
}

/** `--steps <T>`: run the model at T time steps instead of the T its file states (the runtime's EngineOptions.steps). */
export function stepsOption(
  description = "time steps per frame (default: the model's T, what it was trained for)",
): Option {
  return new Option('--steps <T>', description).argParser(int('--steps', 1, LIMITS.maxT));
}

/** `--threads <n>`: worker threads with an engine each (runtime/pool), default 1 (the engine in the command's thread). */
export function threadsOption(
  description = 'engines on worker threads, one per core you give it (1: the engine in this thread)',
): Option {
  return new Option('--threads <n>', description).argParser(int('--threads', 1, MAX_THREADS)).default(1);
}

/** A comma-separated list, each item read by `item` (whose error names the flag). */
export function list<T>(flag: string, item: Parser<T>): Parser<T[]> {
  return (value) => {
    const items = value.split(',').map((s) => s.trim());
    if (items.some((s) => s === '')) refuse(flag, 'a comma-separated list without empty items', value);
    return items.map(item);
  };
}

/**
 * A flag that sets an agent config field (`--fps` is `source.frameRate`): the field's own check, under the flag's
 * name, so the flag and the file accept the same values with the same words.
 */
export function configOption<T>(flag: string, field: Field<T>): Parser<T> {
  return (value) => {
    const n = value.trim() === '' ? NaN : Number(value);
    return field.read(Number.isNaN(n) ? value : n, flag, {});
  };
}

/** Largest side of a `--input` frame (the runtime's shape limit is far above what a first conv should see). */
const MAX_SIDE = 1024;

/** `HxWxC` (e.g. 32x32x3, 64x64x1): a model's input frame shape, sides 1..1024, 1 or 3 channels. */
export function frameShape(flag: string): Parser<[number, number, number]> {
  return (value) => {
    const m = /^\s*(\d+)\s*[x×]\s*(\d+)\s*[x×]\s*(\d+)\s*$/i.exec(value);
    const dims = m ? ([Number(m[1]), Number(m[2]), Number(m[3])] as [number, number, number]) : undefined;
    if (
      !dims ||
      dims[0] < 1 ||
      dims[1] < 1 ||
      dims[0] > MAX_SIDE ||
      dims[1] > MAX_SIDE ||
      (dims[2] !== 1 && dims[2] !== 3)
    ) {
      refuse(flag, `HEIGHTxWIDTHxCHANNELS with sides 1..${MAX_SIDE} and 1 or 3 channels (e.g. 32x32x3)`, value);
    }
    return dims;
  };
}

/** `VAL,TEST`: fractions of each class held out, each in [0, 1), together below 1. */
export function holdout(flag: string): Parser<{ val: number; test: number }> {
  return (value) => {
    const parts = value.split(',').map((s) => (s.trim() === '' ? NaN : Number(s)));
    if (parts.length !== 2 || parts.some((x) => !(x >= 0 && x < 1)) || parts[0]! + parts[1]! >= 1) {
      refuse(flag, 'VAL,TEST: two fractions in [0, 1) that sum to less than 1 (e.g. 0.1,0.1)', value);
    }
    return { val: parts[0]!, test: parts[1]! };
  };
}
