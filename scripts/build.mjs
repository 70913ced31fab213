// `npm run build`: compiles the TypeScript to ESM JavaScript in dist/ (same tree as the sources), so that a box with
// Node 18 and no tsx runs `node dist/...`. Files the compiled code opens relative to itself are copied beside it:
// the kernels' .wasm and the models and sample frames. The release project (tsconfig.build.json) holds no test code.
// `node scripts/build.mjs --tests` also compiles the test suites and copies their non-TypeScript fixtures
// (tsconfig.build-tests.json), for the ARM lanes (`npm run test:arm`), which run them as JavaScript on Node 18.
// `--no-typecheck` emits without type checking (tsc --noCheck), for a quick look while another part of the tree is
// mid-edit; a release build type-checks.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

function run(args, what) {
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`build: ${what} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

/** Every file under `dir` (relative to the root) for which `keep(path)` holds. */
function files(dir, keep) {
  const abs = join(root, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath ?? e.path, e.name)))
    .filter(keep);
}

// The .wasm is built from its source at install; rebuilding here keeps dist/ in step with an edited kernel.
if (existsSync(join(root, 'scripts/build-wasm.mjs'))) run(['scripts/build-wasm.mjs'], 'build:wasm');

rmSync(dist, { recursive: true, force: true });
const check = process.argv.includes('--no-typecheck') ? ['--noCheck'] : [];
const tests = process.argv.includes('--tests');
const project = tests ? 'tsconfig.build-tests.json' : 'tsconfig.build.json';
run([join(root, 'node_modules/typescript/bin/tsc'), '-p', project, ...check], `tsc -p ${project}`);

const assets = [
  ...files('runtime', (p) => p.endsWith('.wasm')),
  // The bundled models and sample frames; not models/runs/ (training checkpoints, server side only).
  ...files('models', (p) => !p.startsWith('models/runs/')),
  ...(tests ? files('test/fixtures', (p) => !p.endsWith('.ts')) : []),
];
for (const p of assets) cpSync(join(root, p), join(dist, p));
console.log(`build: dist/ compiled, ${assets.length} asset file(s) copied`);
