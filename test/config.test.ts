// The agent config schema (device-agent/config-schema.ts): every default, every kind of refusal with its message,
// the retention limits derived from it, and the README tables generated from it.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { DEFAULT_LIMITS, loadConfigFile, mergeDeep, parseConfig } from '../device-agent/index.js';
import { parseConfigText } from '../device-agent/config.js';
import type { Json } from '../device-agent/index.js';
import { COMMANDS } from '../device-agent/commands/index.js';
import type { CommandContext } from '../device-agent/commands/index.js';
import { parseCommand } from '../device-agent/mqtt/link.js';
import { AGENT_SCHEMA, parseOtaConfig, retentionLimits } from '../device-agent/config-schema.js';
import { int, markdownTable, num, section, str } from '../device-agent/schema.js';
import { ConfigError } from '../runtime/index.js';
import { BEGIN, CONFIG_TABLES, END, withTable } from '../scripts/config-docs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function refuses(raw: unknown, field: string, message: string): void {
  assert.throws(
    () => parseConfig(raw),
    (e: Error) => {
      assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
      assert.equal(e.field, field);
      assert.equal(e.message, message);
      return true;
    },
  );
}

describe('config schema', () => {
  test('an empty config reads to every default, the same values the agent always had', () => {
    assert.deepEqual(parseConfig({ device: 'pi-7' }), {
      fleet: 'default',
      device: 'pi-7',
      topicPrefix: 'sei/default/pi-7/',
      model: { path: null, dir: null, kernel: 'auto' },
      engine: { steps: null, threads: 1 },
      source: { spec: { kind: 'fmnist' }, frameRate: 10, loop: true, crop: null, invert: false, queueSize: 8 },
      mqtt: {
        url: null,
        protocol: 'auto',
        clientId: 'sei-default-pi-7',
        username: null,
        password: null,
        tls: { ca: null, cert: null, key: null, rejectUnauthorized: true },
        keepalive: 30,
        reconnectMinMs: 500,
        reconnectMaxMs: 30_000,
        maxMessageBytes: 8 * 1024 * 1024,
      },
      reporting: { metricsInterval: 10, predictions: true, predictionBatch: 1, predictionMaxRate: 20 },
      metrics: { httpPort: 9464, httpHost: '127.0.0.1', latencyWindow: 1024 },
      store: {
        path: 'sei-agent.db',
        metricsHistory: 1000,
        predictionRows: 10_000,
        predictionMaxAge: 86_400,
        recentFrames: 256,
        outboxMax: 100_000,
      },
      capture: { dir: null, maxBytes: 64 * 2 ** 20, maxFrames: 10_000, auto: null },
      ota: {
        trustedKeys: [],
        dir: null,
        maxBytes: 64 * 2 ** 20,
        reserveBytes: 16 * 2 ** 20,
        window: 8,
        requestTimeoutMs: 3000,
        maxBlockRetries: 3,
        probation: { frames: 100, seconds: 60, maxErrorRate: 0.05, maxLatencyRatio: 4, minConfidenceRatio: 0.5 },
      },
      finetune: { auto: null },
    });
  });

  test('defaults derived from other fields follow them', () => {
    const c = parseConfig({ fleet: 'plant-3', device: 'line-2' });
    assert.equal(c.topicPrefix, 'sei/plant-3/line-2/');
    assert.equal(c.mqtt.clientId, 'sei-plant-3-line-2');
    assert.match(parseConfig().device, /^[A-Za-z0-9_.-]+$/, 'the host name, made a topic level');
  });

  test('the store retention limits are the store section of the schema', () => {
    assert.deepEqual(DEFAULT_LIMITS, {
      metricsHistory: 1000,
      predictionRows: 10_000,
      predictionMaxAge: 86_400,
      outboxMax: 100_000,
    });
    assert.deepEqual(retentionLimits(parseConfig({ store: { predictionRows: 7 } }).store), {
      ...DEFAULT_LIMITS,
      predictionRows: 7,
    });
  });

  test('each kind of field refuses a bad value naming the field, the expected and the actual value', () => {
    refuses(
      { store: { metricsHistory: 0 } },
      'store.metricsHistory',
      'store.metricsHistory: expected an integer in [1, 10000000], got 0',
    );
    refuses(
      { reporting: { metricsInterval: 0.01 } },
      'reporting.metricsInterval',
      'reporting.metricsInterval: expected a number in [0.05, 86400], got 0.01',
    );
    refuses(
      { metrics: { httpPort: 'on' } },
      'metrics.httpPort',
      'metrics.httpPort: expected an integer in [0, 65535] or null, got "on"',
    );
    refuses({ engine: { steps: 17 } }, 'engine.steps', 'engine.steps: expected an integer in [1, 16] or null, got 17');
    refuses({ engine: { threads: 0 } }, 'engine.threads', 'engine.threads: expected an integer in [1, 64], got 0');
    refuses({ source: { loop: 'yes' } }, 'source.loop', 'source.loop: expected true or false, got "yes"');
    refuses(
      { model: { kernel: 'gpu' } },
      'model.kernel',
      'model.kernel: expected one of "auto", "wasm", "reference", got "gpu"',
    );
    refuses({ model: { path: '' } }, 'model.path', 'model.path: expected a non-empty string or null, got ""');
    refuses(
      { metrics: { httpHost: null } },
      'metrics.httpHost',
      'metrics.httpHost: expected a non-empty string, got null',
    );
    refuses({ device: 'a b' }, 'device', 'device: expected a topic level without "/", "#", "+" or spaces, got "a b"');
    refuses(
      { source: { spec: 7 } },
      'source.spec',
      'source.spec: expected a source spec string such as "fmnist" or "stdin:yuv420:640x480", got 7',
    );
    refuses(
      { source: { crop: 'centre' } },
      'source.crop',
      'source.crop: expected null or {x, y, width, height}, got "centre"',
    );
    refuses(
      { source: { crop: { width: 10, height: 10, z: 1 } } },
      'source.crop.z',
      'source.crop.z: unknown setting (a typo?), got 1',
    );
    refuses({ finetune: { auto: 300 } }, 'finetune.auto', 'finetune.auto: expected null or {minLabelled}, got 300');
    refuses(
      { finetune: { auto: { minLabelled: 10 } } },
      'finetune.auto.minLabelled',
      'finetune.auto.minLabelled: expected an integer in [40, 10000000], got 10',
    );
    refuses(
      { ota: { trustedKeys: 'key.pem' } },
      'ota.trustedKeys',
      'ota.trustedKeys: expected an array of PEM public keys or PEM file paths, got "key.pem"',
    );
    refuses(
      { ota: { probation: { frames: null, seconds: null } } },
      'ota.probation.seconds',
      'ota.probation.seconds: expected a number when ota.probation.frames is null (probation must end), got null',
    );
    refuses(
      { ota: { probation: { maxErrorRate: 2 } } },
      'ota.probation.maxErrorRate',
      'ota.probation.maxErrorRate: expected a number in [0, 1], got 2',
    );
    refuses([], 'config', 'config: expected a mapping, got array(0)');
    refuses({ mqtt: { tls: 'on' } }, 'mqtt.tls', 'mqtt.tls: expected a mapping, got "on"');
  });

  test('a section that null switches off reads null, false or absent as off', () => {
    for (const auto of [undefined, null, false]) assert.equal(parseConfig({ finetune: { auto } }).finetune.auto, null);
    assert.deepEqual(parseConfig({ finetune: { auto: {} } }).finetune.auto, { minLabelled: 300 });
    assert.deepEqual(parseConfig({ source: { crop: { width: 10, height: 20 } } }).source.crop, {
      x: 0,
      y: 0,
      width: 10,
      height: 20,
    });
  });

  test('the ota section parses alone with the same defaults and checks', () => {
    assert.deepEqual(parseOtaConfig({ window: 2 }), { ...parseConfig().ota, window: 2 });
    assert.throws(
      () => parseOtaConfig({ window: 0 }),
      (e: Error) => e instanceof ConfigError && e.field === 'ota.window',
    );
  });

  test('a schema built from the same parts: type, defaults, messages and table from one declaration', () => {
    const s = section('demo', {
      name: str({ doc: 'who', default: 'x' }),
      n: int({ doc: 'how many', min: 1, max: 9 }),
      rate: num({ doc: 'how fast', default: 0.5, min: 0, max: 1 }),
    });
    assert.deepEqual(s.read({ n: 3 }, '', {}), { name: 'x', n: 3, rate: 0.5 });
    assert.throws(() => s.read({}, '', {}), { message: 'n: expected an integer in [1, 9], got undefined' });
    assert.equal(
      markdownTable(s),
      [
        '| key | default | accepted values | meaning |',
        '|---|---|---|---|',
        '| `name` | `x` | a non-empty string | who |',
        '| `n` | required | an integer in [1, 9] | how many |',
        '| `rate` | `0.5` | a number in [0, 1] | how fast |',
      ].join('\n'),
    );
  });
});

describe('config tables in the READMEs', () => {
  test('each README holds the table generated from the schema (npm run docs:config rewrites them)', () => {
    for (const { file, table } of CONFIG_TABLES) {
      const text = readFileSync(`${ROOT}${file}`, 'utf8');
      assert.equal(
        withTable(text, table, file),
        text,
        `${file}: the config table is out of date: run npm run docs:config`,
      );
    }
  });

  test('the agent table lists every leaf field of the schema except the ota section, which points to its own', () => {
    const table = CONFIG_TABLES[0]!.table;
    assert.match(table, /^\| `source\.frameRate` \| `10` \| a number in \[0, 100000\] \| /m);
    assert.match(table, /^\| `ota` \| \| \| .*ota\/README\.md/m);
    assert.doesNotMatch(table, /`ota\.window`/);
    const rows = table.split('\n').length - 2;
    const leaves = (
      fields: Record<string, { fields?: Record<string, never>; nullable?: boolean; documentedIn?: string }>,
    ): number =>
      Object.values(fields).reduce(
        (n, f) => n + (f.documentedIn !== undefined ? 1 : f.fields ? leaves(f.fields) + (f.nullable ? 1 : 0) : 1),
        0,
      );
    assert.equal(rows, leaves(AGENT_SCHEMA.fields as never));
  });

  test('a README without the markers is an error, not a silent skip', () => {
    assert.throws(() => withTable('# no table\n', '| x |', 'X.md'), /X\.md: expected the config table markers/);
    assert.equal(withTable(`a\n${BEGIN}\nold\n${END}\nb\n`, 'new', 'X.md'), `a\n${BEGIN}\nnew\n${END}\nb\n`);
  });
});

describe('reserved keys (__proto__, constructor, prototype) in outside input', () => {
  const reserved = (field: string) => (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.field, field);
    assert.match(e.message, /reserved key/);
    return true;
  };

  test('a config file holding one is refused naming the field, YAML and JSON', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sei-config-'));
    try {
      const cases: [string, string, string][] = [
        ['a.yaml', 'source:\n  __proto__:\n    bogus: 1\n', 'source.__proto__'],
        ['a.json', '{"source":{"__proto__":{"bogus":1}}}', 'source.__proto__'],
        ['b.yaml', 'reporting:\n  constructor: 1\n', 'reporting.constructor'],
        ['c.yaml', 'ota:\n  trustedKeys:\n    - prototype: x\n', 'ota.trustedKeys[0].prototype'],
      ];
      for (const [name, text, field] of cases) {
        const path = join(dir, name);
        writeFileSync(path, text);
        assert.throws(() => loadConfigFile(path), reserved(field), name);
        // Merged into overrides (the CLI's path) the same.
        assert.throws(() => mergeDeep({}, parseConfigText(text, name)), reserved(field), name);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a cmd/config payload holding one is refused naming the field, and the config stays', async () => {
    const payload = Buffer.from('{"source":{"__proto__":{"bogus":1}},"correlationId":"c"}');
    const { command } = parseCommand('config', payload);
    assert.throws(() => {
      throw command.parseError;
    }, reserved('source.__proto__'));
    // The handler itself, given such arguments (JSON.parse makes `__proto__` an own key), refuses them too.
    const raw = { source: { frameRate: 5 } };
    let changed = 0;
    const ctx = {
      config: () => ({ raw, parsed: parseConfig(raw) }),
      reconfigure: async (next: Json) => {
        changed++;
        return parseConfig(next);
      },
    } as unknown as CommandContext;
    await assert.rejects(
      async () => COMMANDS.config!(JSON.parse('{"source":{"__proto__":{"bogus":1}}}'), ctx, () => {}),
      reserved('source.__proto__'),
    );
    assert.equal(changed, 0);
    // Without the key, the same change goes through.
    const ok = (await COMMANDS.config!({ source: { frameRate: 7 } }, ctx, () => {})) as Json;
    assert.equal((ok.source as Json).frameRate, 7);
  });

  test('an inherited name (toString, hasOwnProperty) is an unknown setting, not a known one', () => {
    refuses({ source: { toString: 1 } }, 'source.toString', 'source.toString: unknown setting (a typo?), got 1');
    refuses({ hasOwnProperty: 1 }, 'hasOwnProperty', 'hasOwnProperty: unknown setting (a typo?), got 1');
  });
});

describe('YAML the parser warns about', () => {
  test('is refused with a ConfigError naming the warning, and nothing is printed to stderr', async () => {
    const printed: string[] = [];
    const onWarning = (w: Error) => printed.push(w.message);
    process.on('warning', onWarning);
    try {
      for (const [text, warning] of [
        ['mqtt:\n  password: !secret broker-pass\n', /Unresolved tag: !secret/],
        [
          'source:\n  ? { spec: fmnist }\n  : 1\n',
          /a mapping or list as a key \({"spec":"fmnist"}\): keys are setting names/,
        ],
      ] as const) {
        assert.throws(
          () => parseConfigText(text, 'agent.yaml'),
          (e: unknown) =>
            e instanceof ConfigError &&
            e.field === 'config' &&
            e.message.startsWith('config: expected valid YAML in agent.yaml, got ') &&
            warning.test(e.message),
          text,
        );
      }
      // Warnings are emitted on a later tick: wait for them before looking.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(printed, []);
      // Plain YAML still reads, errors still refused as before.
      assert.deepEqual(parseConfigText('source:\n  frameRate: 5\n', 'a.yaml'), { source: { frameRate: 5 } });
      assert.throws(() => parseConfigText('a: b: c\n', 'a.yaml'), /^ConfigError: config: expected valid YAML/);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
