// scripts/options.ts, the `sei` option-value parsers: what each accepts, the one message form they refuse with, and
// that choices still show in --help.
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { describe, test } from 'node:test';
import { AGENT_SCHEMA } from '../device-agent/config-schema.js';
import { ConfigError } from '../runtime/index.js';
import {
  choice,
  choiceOption,
  configOption,
  fromFile,
  int,
  kernelOption,
  list,
  num,
  positive,
  positiveInt,
} from '../scripts/options.js';

function refuses(parse: (v: string) => unknown, value: string, message: string): void {
  assert.throws(
    () => parse(value),
    (e: Error) => e instanceof ConfigError && e.message === message && e.field === message.split(':')[0],
  );
}

describe('option parsers', () => {
  test('numbers: range words shared with the config file', () => {
    assert.equal(num('--x', 0, 1)('0.5'), 0.5);
    assert.equal(int('--n', 1, 16)('16'), 16);
    assert.equal(positiveInt('--n')('3'), 3);
    assert.equal(positive('--s', 600)('0.1'), 0.1);
    refuses(num('--x', 0, 1), '1.5', '--x: expected a number in [0, 1], got "1.5"');
    refuses(int('--n', 1, 16), '2.5', '--n: expected an integer in [1, 16], got "2.5"');
    refuses(positiveInt('--n'), '0', '--n: expected a positive integer, got "0"');
    refuses(int('--n', 0), '-1', '--n: expected a non-negative integer, got "-1"');
    refuses(positive('--s', 600), '0', '--s: expected a number in (0, 600], got "0"');
    refuses(positive('--s'), '', '--s: expected a number > 0, got ""');
    refuses(num('--x'), 'NaN', '--x: expected a number, got "NaN"');
  });

  test('choices and lists', () => {
    assert.equal(choice('--clock', ['wall', 'cpu'])('cpu'), 'cpu');
    refuses(choice('--clock', ['wall', 'cpu']), 'gpu', '--clock: expected one of wall, cpu, got "gpu"');
    assert.deepEqual(list('--steps', int('--steps', 1, 16))('1, 2,4'), [1, 2, 4]);
    refuses(
      list('--steps', int('--steps', 1, 16)),
      '1,,2',
      '--steps: expected a comma-separated list without empty items, got "1,,2"',
    );
    refuses(list('--steps', int('--steps', 1, 16)), '1,17', '--steps: expected an integer in [1, 16], got "17"');
  });

  test("a flag that sets a config field reads with that field's check, under the flag's name", () => {
    const fps = configOption('--fps', AGENT_SCHEMA.fields.source.fields.frameRate);
    assert.equal(fps('30'), 30);
    refuses(fps, 'fast', '--fps: expected a number in [0, 100000], got "fast"');
    assert.equal(configOption('--mqtt', AGENT_SCHEMA.fields.mqtt.fields.url)('mqtt://b:1883'), 'mqtt://b:1883');
  });

  test('a file a flag names: file-system and format errors become one ConfigError naming the flag', async () => {
    assert.throws(
      () =>
        fromFile('--frames', 'a readable IDX file', '/nope', () => {
          throw Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
        }),
      {
        message: '--frames: expected a readable IDX file, got "/nope" (ENOENT)',
      },
    );
    await assert.rejects(
      fromFile('--model', 'a model', 'm', () => Promise.reject(Object.assign(new Error('x'), { code: 'EISDIR' }))),
      { message: '--model: expected a model, got "m" (EISDIR)' },
    );
    // Anything else is not about the file: it passes through unchanged.
    assert.throws(
      () =>
        fromFile('--model', 'a model', 'm', () => {
          throw new TypeError('a bug');
        }),
      TypeError,
    );
  });

  test("choice options keep commander's choices in --help and default", () => {
    const program = new Command('t')
      .exitOverride()
      .addOption(kernelOption('kernel'))
      .addOption(choiceOption('--which <name>', 'checkpoint', ['last', 'best'], 'last'));
    const help = program.helpInformation().replace(/\s+/g, ' ');
    assert.match(help, /choices: "auto", "wasm", "reference", default: "auto"/);
    assert.match(help, /choices: "last", "best", default: "last"/);
    program.parse(['--kernel', 'wasm'], { from: 'user' });
    assert.deepEqual(program.opts(), { kernel: 'wasm', which: 'last' });
    assert.throws(
      () => program.parse(['--kernel', 'gpu'], { from: 'user' }),
      (e: Error) => e instanceof ConfigError && e.field === '--kernel',
    );
  });
});
