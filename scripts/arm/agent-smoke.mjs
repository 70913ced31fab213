// The agent's smoke test on an emulated ARM box, from the device package as a box gets it: embedded broker,
// the package's model, SQLite through the cross-built better-sqlite3, a few hundred frames; checks that
// predictions reach the broker and the SQLite log, and that status is published; then `sei doctor` of the
// package's own CLI must pass on the same emulated box.
//
// Host side:     node scripts/arm/agent-smoke.mjs [--arch arm64,armhf] [--frames N]
//   builds the addon (build-sqlite.sh) and the device package for each arch (dist/ must be built), unpacks it in
//   the temp folder,
//   and runs this same file inside it under qemu with Debian's Node 18.
// Emulated side: node agent-smoke.mjs --inside PACKAGE_DIR --frames N   (prints one JSON line, exits 1 on failure)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'arm64,armhf' },
    frames: { type: 'string', default: '300' },
    inside: { type: 'string' },
  },
});
const frames = Number(values.frames);

if (values.inside !== undefined) {
  await inside(values.inside);
} else {
  host();
}

async function inside(pkg) {
  const started = Date.now();
  const { Agent, SqliteStore, bundledModel, startBroker } = await import(
    pathToFileURL(join(pkg, 'dist/device-agent/index.js')).href
  );
  const mqtt = createRequire(join(pkg, 'package.json'))('mqtt');
  const dir = mkdtempSync(join(tmpdir(), 'sei-smoke-'));
  // The bundled model when the package has one; else the seeded random model `sei agent` falls back to.
  let modelPath = bundledModel();
  if (!modelPath) {
    const { writeBwsnn } = await import(pathToFileURL(join(pkg, 'dist/runtime/index.js')).href);
    const { randomModel, FMNIST_BLOCKS } = await import(
      pathToFileURL(join(pkg, 'dist/runtime/format/random-model.js')).href
    );
    modelPath = join(dir, 'random-1.bwsnn');
    writeFileSync(modelPath, writeBwsnn(randomModel({ seed: 1, blocks: FMNIST_BLOCKS, firstChannels: 32 })));
  }
  const broker = await startBroker({ port: 0 });
  const watcher = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  const seen = { status: null, predictions: 0, metrics: 0 };
  watcher.on('message', (topic, payload) => {
    const body = JSON.parse(payload.toString());
    if (topic.endsWith('/status') && body.state === 'online') seen.status = body;
    else if (topic.endsWith('/predictions'))
      seen.predictions += Array.isArray(body.predictions) ? body.predictions.length : 1;
    else if (topic.endsWith('/metrics')) seen.metrics += 1;
  });
  await watcher.subscribeAsync('sei/smoke/#', { qos: 1 });
  const agent = new Agent({
    config: {
      fleet: 'smoke',
      device: process.arch,
      model: { path: modelPath },
      source: { spec: 'samples', frameRate: 0, loop: true },
      mqtt: { url: broker.url },
      reporting: { metricsInterval: 1, predictionBatch: 1, predictionMaxRate: 100 },
      metrics: { httpPort: null },
      store: { path: join(dir, 'agent.db') },
    },
  });
  let results = 0;
  let failure = null;
  const done = new Promise((resolve) => {
    agent.on('result', () => {
      if (++results === frames) resolve();
    });
    agent.on('error', (err) => {
      failure ??= err;
    });
  });
  await agent.start();
  const kernel = agent.activeEngine?.kernel ?? null;
  const model = agent.modelVersion;
  await done;
  // Let the last batches and log flushes land before stopping.
  await new Promise((r) => setTimeout(r, 1500));
  await agent.stop();
  // Reopened after the agent closed it: what survives the process is what counts.
  const store = new SqliteStore(join(dir, 'agent.db'));
  const logged = store.predictionCount();
  store.close();
  await watcher.endAsync();
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
  const summary = {
    arch: process.arch,
    node: process.version,
    model,
    kernel,
    frames: results,
    predictionsOnBroker: seen.predictions,
    metricsMessages: seen.metrics,
    status: seen.status?.state ?? null,
    sqlitePredictionRows: logged,
    error: failure ? String(failure.message ?? failure) : null,
    seconds: (Date.now() - started) / 1000,
  };
  console.log(JSON.stringify(summary));
  const ok =
    !failure && results >= frames && seen.predictions >= frames * 0.9 && logged >= frames * 0.9 && seen.status !== null;
  process.exit(ok ? 0 : 1);
}

function host() {
  const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
  const QEMU = { arm64: 'qemu-aarch64-static', armhf: 'qemu-arm-static' };
  const sh = (cmd, args, opts = {}) => {
    const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...opts });
    if (r.status !== 0) {
      console.error(`agent-smoke: ${cmd} ${args.join(' ')} failed (exit ${r.status})`);
      process.exit(1);
    }
    return (r.stdout ?? '').trim().split('\n').pop();
  };
  let failed = 0;
  for (const arch of values.arch.split(',')) {
    if (!(arch in QEMU)) throw new Error(`--arch: expected arm64 and/or armhf, got '${arch}'`);
    const addon = sh(join(root, 'scripts/arm/build-sqlite.sh'), [arch]);
    sh(
      'node',
      [
        'packaging/pack-device.mjs',
        '--arch',
        arch,
        '--sqlite-addon',
        addon,
        '--out',
        join(root, '.cache/arm/packages'),
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    const version = JSON.parse(
      sh('node', ['-e', 'process.stdout.write(JSON.stringify(require("./package.json").version))']),
    );
    // Outside the repository, so that no import can climb to the development node_modules: the package must stand alone.
    const unpacked = join(tmpdir(), `sei-edge-device-${arch}`);
    rmSync(unpacked, { recursive: true, force: true });
    sh('mkdir', ['-p', unpacked]);
    sh('tar', [
      '-xzf',
      join(root, '.cache/arm/packages', `sei-edge-device-${version}-${arch}.tgz`),
      '-C',
      unpacked,
      '--strip-components=1',
    ]);
    // Where install-pi.sh puts the addon.
    sh('install', [
      '-D',
      join(unpacked, 'native/better_sqlite3.node'),
      join(unpacked, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'),
    ]);
    const rootfs = sh(join(root, 'scripts/arm/rootfs.sh'), [arch]);
    const node = ['-n', '10', QEMU[arch], '-L', rootfs, join(rootfs, 'usr/bin/node')];
    // The addon first, with Node's own reason when it does not load (an ABI or architecture mismatch says so).
    const load = spawnSync(
      'nice',
      [
        ...node,
        '-e',
        "try { new (require('better-sqlite3'))(':memory:').close() } catch (e) { console.log(String(e.message).replace(/\\s+/g, ' ')); process.exit(1) }",
      ],
      {
        cwd: unpacked,
        encoding: 'utf8',
      },
    );
    if (load.status !== 0) {
      failed++;
      console.log(
        `${arch}: FAIL (the package's better-sqlite3 (${addon}) does not load on ${arch} Node 18: ${(load.stdout + load.stderr).trim()})`,
      );
      continue;
    }
    console.log(`\n=== ${arch}: agent smoke (${frames} frames) under ${QEMU[arch]}, Node from ${rootfs}`);
    const r = spawnSync(
      'nice',
      [...node, fileURLToPath(import.meta.url), '--inside', unpacked, '--frames', String(frames)],
      {
        cwd: unpacked,
        stdio: 'inherit',
      },
    );
    // The device CLI as the unit starts it, on the same emulated box: `sei doctor` must find it ready.
    const doctor = spawnSync(
      'nice',
      [...node, join(unpacked, 'bin/sei.js'), 'doctor', '--json', '--state-dir', tmpdir()],
      { cwd: unpacked, encoding: 'utf8' },
    );
    process.stdout.write(doctor.stdout.split('\n').slice(0, -2).join('\n') + '\n');
    const ok = r.status === 0 && doctor.status === 0;
    if (!ok) failed++;
    console.log(
      `${arch}: ${ok ? 'PASS' : `FAIL (smoke exit ${r.status ?? r.signal}, sei doctor exit ${doctor.status ?? doctor.signal})`}`,
    );
  }
  process.exitCode = failed ? 1 : 0;
}
