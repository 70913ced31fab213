// `npm run test:arm`: runs the runtime's test suites, compiled to JavaScript in dist/ (`node scripts/build.mjs
// --tests` first), on Debian's Node 18 for arm64 and armhf under qemu user-mode emulation, and prints node:test's summary per
// architecture. Exits non-zero when a suite fails on any architecture. Only correctness is checked here: emulated
// timings say nothing about a real ARM board.
//
// Usage: node scripts/arm/test.mjs [--arch arm64,armhf,armhf-nosimd] [suite...]   suite: format, kernels, engine, golden
//
// node:test runs each file given to `node --test` in a child process started from process.execPath, which the
// host kernel cannot execute without binfmt; so one emulated process imports every suite and node:test reports
// them together.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const distTest = join(root, 'dist/test');
/** The suites that exercise runtime/ alone (no broker, no SQLite, no onnxruntime, no tfjs). */
const RUNTIME_SUITES = ['format', 'kernels', 'engine', 'golden'];
/**
 * The lanes: Debian architecture, emulator, extra Node flags, and suites (when not all). `armhf-nosimd` is a
 * 32-bit core without NEON (Pi Zero/1 class), where V8 has no WebAssembly SIMD: the golden vectors must then come
 * out of the reference kernel the runtime falls back to.
 */
const LANES = {
  arm64: { root: 'arm64', qemu: 'qemu-aarch64-static', node: [] },
  armhf: { root: 'armhf', qemu: 'qemu-arm-static', node: [] },
  'armhf-nosimd': { root: 'armhf', qemu: 'qemu-arm-static', node: ['--arm-arch=armv6'], suites: ['golden'] },
};

const { values, positionals } = parseArgs({
  options: { arch: { type: 'string', default: Object.keys(LANES).join(',') } },
  allowPositionals: true,
});
const arches = values.arch.split(',').filter(Boolean);
for (const a of arches)
  if (!(a in LANES)) fail(`--arch: expected some of ${Object.keys(LANES).join(', ')}, got '${a}'`);
const wanted = positionals.length > 0 ? positionals : RUNTIME_SUITES;

function fail(message) {
  console.error(`test:arm: ${message}`);
  process.exit(2);
}

if (!existsSync(distTest)) fail('dist/test is missing: run `node scripts/build.mjs --tests` first');
const compiled = readdirSync(distTest).filter((f) => f.endsWith('.test.js'));

/** The compiled files of some suites, in order, and (written once per set) the entry that imports them. */
function suiteEntry(suites) {
  const files = [];
  for (const suite of suites) {
    const matches = compiled.filter(
      (f) => f === `${suite}.test.js` || f.startsWith(`${suite}-`) || f.startsWith(`${suite}.`),
    );
    if (matches.length === 0)
      console.warn(`test:arm: no compiled suite for '${suite}' in dist/test (test/${suite}*.test.ts absent?)`);
    files.push(...matches.sort());
  }
  if (files.length === 0) fail(`none of the suites ${suites.join(', ')} exists in dist/test`);
  // Imported in order, the suites register on node:test's one root, which runs them and prints one summary.
  const entry = join(distTest, `arm-suites-${suites.join('-')}.mjs`);
  writeFileSync(
    entry,
    files.map((f) => `await import(${JSON.stringify(pathToFileURL(join(distTest, f)).href)});\n`).join(''),
  );
  return { files, entry };
}

function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim();
}

/** Runs the suites under one emulator; resolves to the node:test summary lines and the exit status. */
function runArch(arch) {
  const lane = LANES[arch];
  const built = spawnSync(join(root, 'scripts/arm/rootfs.sh'), [lane.root], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (built.status !== 0)
    return Promise.resolve({ arch, status: 1, summary: [`root filesystem build failed (exit ${built.status})`] });
  const rootfs = built.stdout.trim().split('\n').pop();
  const qemu = which(lane.qemu);
  if (!qemu)
    return Promise.resolve({ arch, status: 1, summary: [`${lane.qemu} is missing: apt-get install qemu-user-static`] });
  // An explicit suite list on the command line applies to every lane; else each lane runs its own set.
  const { files, entry } = suiteEntry(positionals.length > 0 || !lane.suites ? wanted : lane.suites);
  const args = [
    '-n',
    '10',
    qemu,
    '-L',
    rootfs,
    join(rootfs, 'usr/bin/node'),
    ...lane.node,
    '--test-reporter=spec',
    entry,
  ];
  console.log(`\n=== ${arch}: ${lane.qemu} -L ${rootfs} node ${lane.node.join(' ')} (${files.join(', ')})`);
  return new Promise((resolve) => {
    // Started from a test file (test/arm.test.ts), this process inherits NODE_TEST_CONTEXT, which would make the
    // emulated node:test write its binary child protocol instead of the spec report and summary read below.
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const child = spawn('nice', args, { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let tail = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      tail = (tail + chunk.toString()).slice(-4000);
    });
    child.on('close', (code, signal) => {
      const summary = tail
        .split('\n')
        .filter((l) => /^[ℹ#] (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) /.test(l));
      resolve({ arch, status: code ?? 1, summary: signal ? [`killed by ${signal}`, ...summary] : summary });
    });
  });
}

const results = [];
for (const arch of arches) results.push(await runArch(arch));

console.log('\n=== test:arm summary');
for (const r of results) {
  console.log(
    `${r.arch}: ${r.status === 0 ? 'PASS' : `FAIL (exit ${r.status})`}  ${r.summary.map((l) => l.slice(2)).join(' · ')}`,
  );
}
process.exitCode = results.every((r) => r.status === 0) ? 0 : 1;
