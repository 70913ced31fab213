/**
 * `npm run docs:config`: writes the config tables of device-agent/README.md and device-agent/ota/README.md from
 * the schema (device-agent/config-schema.ts), between the markers below; `--check` only says whether they are
 * current (test/config-docs.test.ts runs the check, so a field changed in the schema alone fails the tests).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AGENT_SCHEMA } from '../device-agent/config-schema.js';
import { markdownTable } from '../device-agent/schema.js';

export const BEGIN =
  '<!-- config table: generated from device-agent/config-schema.ts by `npm run docs:config`; edit the schema, not this table -->';
export const END = '<!-- end of config table -->';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Each README and the table it holds. */
export const CONFIG_TABLES: ReadonlyArray<{ readonly file: string; readonly table: string }> = [
  { file: 'device-agent/README.md', table: markdownTable(AGENT_SCHEMA) },
  { file: 'device-agent/ota/README.md', table: markdownTable(AGENT_SCHEMA.fields.ota) },
];

/** `text` with its generated section replaced by `table`; throws when the markers are missing. */
export function withTable(text: string, table: string, file: string): string {
  const from = text.indexOf(BEGIN);
  const to = text.indexOf(END);
  if (from < 0 || to < from)
    throw new Error(`${file}: expected the config table markers (${BEGIN} ... ${END}), got none`);
  return `${text.slice(0, from)}${BEGIN}\n${table}\n${text.slice(to)}`;
}

/** The READMEs whose table differs from the schema's (after writing them, when `write`). */
export function updateConfigTables(write: boolean): string[] {
  const stale: string[] = [];
  for (const { file, table } of CONFIG_TABLES) {
    const path = `${root}${file}`;
    const text = readFileSync(path, 'utf8');
    const next = withTable(text, table, file);
    if (next === text) continue;
    stale.push(file);
    if (write) writeFileSync(path, next);
  }
  return stale;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  const stale = updateConfigTables(!check);
  for (const file of stale)
    console.log(
      check ? `${file}: config table out of date (run npm run docs:config)` : `${file}: config table rewritten`,
    );
  if (check && stale.length > 0) process.exitCode = 1;
}
