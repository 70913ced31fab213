// Builds the device package: `npm run build`, then `node packaging/pack-device.mjs [--arch ARCH]
// [--sqlite-addon FILE] [--out DIR]` writes sei-edge-device-<version>-<arch>.tgz (an `npm pack` tarball).
//
// It holds what a box runs and nothing else: the compiled runtime and agent (dist/), the device CLI
// (scripts/sei-device.ts), the bundled models and sample frames, the systemd unit, the default config and the
// install script — and, bundled, the production packages the device code imports, so that installing needs no
// registry. Packages of the trainer side (tfjs, onnxruntime, the ONNX protobufs) are never bundled; an import
// chain that reaches one is printed, since the command at its head will not load on the box.
//
// better-sqlite3 is a native addon: pass the one built for the box's architecture and Node
// (`--sqlite-addon $(scripts/arm/build-sqlite.sh arm64)`: bookworm's Node 18), or let the box build it from the
// bundled sources.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HOST_ARCH = { x64: 'amd64', arm64: 'arm64', arm: 'armhf' }[process.arch] ?? process.arch;
const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: HOST_ARCH },
    'sqlite-addon': { type: 'string' },
    out: { type: 'string', default: join(root, 'dist/packages') },
  },
});
const arch = values.arch;
if (!['amd64', 'arm64', 'armhf'].includes(arch)) fail(`--arch: expected amd64, arm64 or armhf, got '${arch}'`);
if (values['sqlite-addon'] === undefined) {
  console.warn(
    `pack-device: no --sqlite-addon: the box must build better-sqlite3 itself (install-pi.sh does, given build tools)`,
  );
}

/** The device's entry points; everything they import (statically) comes along. */
const ENTRIES = [
  'dist/scripts/sei-device.js',
  ...['agent', 'run', 'finetune', 'broker', 'doctor'].map((c) => `dist/scripts/commands/${c}.js`),
];
/** Whole folders shipped as they are (the runtime loads its .wasm by path; models are data). */
const FOLDERS = ['dist/runtime', 'dist/device-agent', 'dist/models'];
/** Server-side packages that never go on a box (sharp decodes image folders for the trainer and `sei eval`). */
const TRAINER_ONLY = /^(@tensorflow\/|onnxruntime-|onnx-proto$|protobufjs$|sharp$|@img\/)/;

function fail(message) {
  console.error(`pack-device: ${message}`);
  process.exit(1);
}

for (const e of ENTRIES) if (!existsSync(join(root, e))) fail(`${e} is missing: run \`npm run build\` first`);

// Imports of compiled ESM with a literal specifier: `import … from 'x'`, `export … from 'x'`, `import 'x'`, and the
// lazy forms `import('x')` and `require('x')` (dependencies loaded only when a feature is used).
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\b(?:import|require)\(\s*['"]([^'"]+)['"]\s*\)/g;
const files = new Set();
/** package name → the import chain that first reached it. */
const packages = new Map();
/** Packages first reached through a lazy import: only the feature that loads them is missing without them. */
const lazily = new Set();
function walk(file, chain, lazy = false) {
  if (files.has(file)) return;
  files.add(file);
  for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3];
    const here = [...chain, relative(root, file)];
    const viaLazy = lazy || m[3] !== undefined;
    if (spec.startsWith('.')) walk(resolve(dirname(file), spec), here, viaLazy);
    else if (!spec.startsWith('node:')) {
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
      if (!packages.has(name)) {
        packages.set(name, here);
        if (viaLazy) lazily.add(name);
      }
    }
  }
}
for (const e of ENTRIES) walk(join(root, e), []);

const stage = join(root, '.cache/device-package', arch);
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
for (const f of FOLDERS) cpSync(join(root, f), join(stage, f), { recursive: true });
for (const f of files) cpSync(f, join(stage, relative(root, f)));

// Production packages and everything they depend on, copied from this project's node_modules (same versions the
// tests ran against).
const direct = [...packages.keys()].filter((n) => !TRAINER_ONLY.test(n)).sort();
for (const [name, chain] of packages) {
  if (TRAINER_ONLY.test(name))
    console.warn(
      `pack-device: not bundled: ${name}, imported by ${chain.join(' > ')} — ${lazily.has(name) ? 'loaded lazily: only that feature is missing on the box' : 'that command will not load on the box'}`,
    );
}
const pkgJson = (dir) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
const copied = new Set();
function bundle(name, fromDir) {
  // Node's lookup: the nearest node_modules up from the dependent package.
  let dir = fromDir;
  let at;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) {
      at = candidate;
      break;
    }
    if (dir === root) break;
    dir = dirname(dir);
  }
  if (at === undefined) fail(`${name} (needed by ${relative(root, fromDir) || 'the device code'}) is not installed`);
  if (copied.has(at)) return;
  copied.add(at);
  const native = existsSync(join(at, 'binding.gyp'));
  cpSync(at, join(stage, relative(root, at)), {
    recursive: true,
    // npm pack leaves out a bundled package's build/ (its "files" list): the addon travels in native/ instead.
    filter: (src) => !(native && /^build(\/|$)/.test(relative(at, src))),
  });
  const p = pkgJson(at);
  for (const dep of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) {
    if (existsSync(join(at, 'node_modules', dep)) || existsSync(join(root, 'node_modules', dep))) bundle(dep, at);
  }
}
for (const name of direct) bundle(name, root);

// The addon fits one architecture and one Node ABI (this machine's own is built for its Node, not the box's): take
// the one built for the box's Node (scripts/arm/build-sqlite.sh). install-pi.sh puts it where better-sqlite3
// looks (build/Release/), and rebuilds from the bundled sources when it does not load.
if (!direct.includes('better-sqlite3')) fail('the device code no longer imports better-sqlite3: update this script');
if (values['sqlite-addon'] !== undefined)
  cpSync(resolve(values['sqlite-addon']), join(stage, 'native/better_sqlite3.node'));

for (const f of ['sei-agent.service', 'agent.json', 'README.md'])
  cpSync(join(root, 'packaging', f), join(stage, 'packaging', f));
// The licence and the notices (the sample frames' attribution) travel with every copy (Apache-2.0 §4).
for (const f of ['LICENSE', 'NOTICE']) cpSync(join(root, f), join(stage, f));
cpSync(join(root, 'scripts/install-pi.sh'), join(stage, 'install-pi.sh'));
// The launcher runs with the unit's V8 heap flags (their reasons are in the unit), so that `sei` by hand behaves
// as the service does; `env -S` (coreutils 8.30+, every supported Debian) splits them off the shebang line.
const unit = readFileSync(join(root, 'packaging/sei-agent.service'), 'utf8');
const execStart = /^ExecStart=\/usr\/bin\/node((?: --[a-z-]+=\S+)*) \/opt\/sei-edge\/current\/bin\/sei\.js /m.exec(
  unit,
);
if (!execStart)
  fail(
    'packaging/sei-agent.service: expected `ExecStart=/usr/bin/node [--v8-flag=value...] /opt/sei-edge/current/bin/sei.js ...`',
  );
mkdirSync(join(stage, 'bin'));
writeFileSync(
  join(stage, 'bin/sei.js'),
  `#!/usr/bin/env -S node${execStart[1]}\nimport '../dist/scripts/sei-device.js';\n`,
  { mode: 0o755 },
);

const project = pkgJson(root);
const dependencies = Object.fromEntries(direct.map((n) => [n, pkgJson(join(root, 'node_modules', n)).version]));
writeFileSync(
  join(stage, 'package.json'),
  JSON.stringify(
    {
      name: 'sei-edge-device',
      version: project.version,
      description: `sei-edge on the device (${arch}): runtime, agent, device CLI`,
      type: 'module',
      license: project.license,
      engines: { node: '>=18' },
      os: ['linux'],
      cpu: [{ amd64: 'x64', arm64: 'arm64', armhf: 'arm' }[arch]],
      bin: { sei: 'bin/sei.js' },
      exports: { '.': './dist/runtime/index.js', './package.json': './package.json' },
      dependencies,
      bundleDependencies: direct,
    },
    null,
    2,
  ) + '\n',
);

mkdirSync(values.out, { recursive: true });
const packed = spawnSync('npm', ['pack', '--json', '--pack-destination', resolve(values.out)], {
  cwd: stage,
  encoding: 'utf8',
});
if (packed.status !== 0) fail(`npm pack failed:\n${packed.stderr}`);
const [info] = JSON.parse(packed.stdout);
const tarball = join(resolve(values.out), `sei-edge-device-${project.version}-${arch}.tgz`);
rmSync(tarball, { force: true });
cpSync(join(resolve(values.out), info.filename), tarball);
rmSync(join(resolve(values.out), info.filename));
console.log(
  `pack-device: ${relative(root, tarball)}: ${info.entryCount} files, ${(info.size / 2 ** 20).toFixed(1)} MiB packed, ${(info.unpackedSize / 2 ** 20).toFixed(1)} MiB unpacked; bundled ${direct.join(', ')}`,
);
