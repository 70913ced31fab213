/**
 * Loading the agent's configuration: a JSON or YAML file, overrides merged in, then the checks of
 * config-schema.ts (where every field is declared, with its default). A bad value is refused with a ConfigError
 * naming the field, the expected and the actual value; unknown keys are refused too.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ConfigError, show } from '../runtime/index.js';
import { parseConfig, sourceSpecString } from './config-schema.js';
import type { AgentConfig } from './config-schema.js';
import { isPlain, refuseReservedKeys } from './schema.js';
import type { Json } from './schema.js';

export { parseConfig, parseSourceSpec, sourceSpecString } from './config-schema.js';
export type { AgentConfig, Crop, SourceSpec } from './config-schema.js';
export type { Json } from './schema.js';

// Optional parsers are loaded on first use: every module the agent loads costs resident memory on a small box.
const require = createRequire(import.meta.url);

/** Reads a JSON or YAML config file (by extension; anything but .json parses as YAML, a superset of JSON), unvalidated. */
export function readConfigFile(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `config: expected a readable file, got ${JSON.stringify(path)} (${(err as Error).message})`,
      'config',
    );
  }
  return parseConfigText(text, path);
}

/**
 * A config file's text, parsed as the file at `path` would be (JSON by its extension, else YAML), unvalidated.
 * A YAML warning (an unresolved tag such as `!secret`, a mapping used as a key) is refused like an error: the
 * parser would go on with a value the file's author did not write (the tag dropped, the key stringified) and print
 * the warning to the process's stderr, where no one reading the agent's log expects it.
 */
export function parseConfigText(text: string, path: string): Json {
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    // The YAML parser's message goes on with a picture of the offending lines: its first line says it all.
    throw new ConfigError(
      `config: expected valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} in ${path}, got ${(err as Error).message.split('\n')[0]!.replace(/:$/, '')}`,
      'config',
    );
  }
  if (raw === null || raw === undefined) return {};
  if (!isPlain(raw))
    throw new ConfigError(`config: expected a mapping at the top of ${path}, got ${show(raw)}`, 'config');
  refuseReservedKeys(raw);
  return raw;
}

/** YAML text to plain values; its first error or warning thrown, nothing printed. */
function parseYaml(text: string): unknown {
  const yaml = require('yaml') as typeof import('yaml');
  // logLevel 'error': the parser collects its warnings in doc.warnings instead of printing them.
  const doc = yaml.parseDocument(text, { logLevel: 'error' });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) throw problem;
  // The one warning toJS would give (and, at this log level, drop): a mapping or list used as a key.
  yaml.visit(doc, {
    Pair(_, pair) {
      if (yaml.isCollection(pair.key))
        throw new Error(`a mapping or list as a key (${String(pair.key)}): keys are setting names`);
    },
  });
  return doc.toJS();
}

/** Reads, merges the overrides into, and validates a config file. */
export function loadConfigFile(path: string, overrides: Json = {}): AgentConfig {
  return parseConfig(mergeDeep(readConfigFile(path), overrides));
}

/**
 * Deep-merges plain objects (b wins). Used for CLI flag overrides and for the `config` command. A reserved key
 * (`__proto__`, `constructor`, `prototype`) in either is a ConfigError naming it: merged, `__proto__` would set
 * the result's prototype, out of sight of the unknown-key check.
 */
export function mergeDeep(a: Json, b: Json): Json {
  refuseReservedKeys(a);
  refuseReservedKeys(b);
  return merge(a, b);
}

function merge(a: Json, b: Json): Json {
  const out: Json = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isPlain(v) && isPlain(prev) ? merge(prev, v) : v;
  }
  return out;
}

/** The config as plain JSON (source spec as its string), for the `config` command and the status message. */
export function configToJson(config: AgentConfig): Json {
  const { password: _password, ...mqtt } = config.mqtt;
  return {
    ...config,
    source: { ...config.source, spec: sourceSpecString(config.source.spec) },
    mqtt: { ...mqtt, password: config.mqtt.password === null ? null : '***' },
  };
}
