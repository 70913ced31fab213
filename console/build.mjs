// `npm run build:console` (also at install): type-checks the console page against the agent's payload types
// (console/page/tsconfig.json: DOM, no Node types), then bundles it with esbuild into console/dist/ — app.js,
// app.css, index.html — with every dependency inside (no CDN: the console must work on an offline network).
// Prints the JavaScript's size, raw and gzipped. `--no-typecheck` bundles without the type check.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const out = join(here, 'dist');

const tsc = join(root, 'node_modules/typescript/bin/tsc');
// An install without dev dependencies has no TypeScript: it bundles what the repository's checks passed.
if (!existsSync(tsc))
  console.warn('build:console: no TypeScript installed (dev dependency): bundling without the type check');
else if (!process.argv.includes('--no-typecheck')) {
  const r = spawnSync(process.execPath, [tsc, '-p', join(here, 'page/tsconfig.json')], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(
      'build:console: the page does not type-check against device-agent/messages.ts and console/api.ts (above)',
    );
    process.exit(1);
  }
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(here, 'page/main.ts') },
  outdir: out,
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
  // The dependencies' licence comments go to app.js.LEGAL.txt beside the bundle, not into the page.
  legalComments: 'linked',
  logLevel: 'warning',
});
copyFileSync(join(here, 'page/index.html'), join(out, 'index.html'));
const js = readFileSync(join(out, 'app.js'));
const css = readFileSync(join(out, 'app.css'));
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(
  `build:console: console/dist/app.js ${kib(js.length)} (${kib(gzipSync(js, { level: 9 }).length)} gzipped), app.css ${kib(css.length)} (${kib(gzipSync(css, { level: 9 }).length)} gzipped)`,
);
