/**
 * The release build (`npm run build` → dist/, what a Pi runs on Node 18) type-checks its own project,
 * tsconfig.build.json, whose file list differs from the development tsconfig.json; the ARM lanes build with
 * `--no-typecheck` for speed, so this is where a type error in the shipped tree fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

test('tsc -p tsconfig.build.json type-checks', () => {
  const r = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', '--noEmit'], {
    cwd: root,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});
