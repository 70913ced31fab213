/**
 * `npm run bench:train`: training throughput of the sei-edge trainer against a PyTorch CPU reference of the same
 * network and step (bench/train_torch.py, run by Debian's /usr/bin/python3 with python3-torch): forward over T
 * steps, SEI loss, backward (BPTT, surrogate, STE), Adam, BN statistics, on batches of random frames.
 * Reports images/s on the wall clock and images per CPU-second (a fairer figure on a shared machine: time spent
 * descheduled costs nothing). Both use every core by default: ours data-parallel over worker threads (one wasm
 * backend each, trainer/parallel/), PyTorch with its intra-op threads.
 * Flags: --steps N --batch B --width W --T T --threads K (ours) --torch-threads K --json.
 */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../trainer/backend/index.js';
import { DEFAULT_NET, initParams, macsPerFrame, namedVariables } from '../trainer/model.js';
import { DEFAULT_LOSS } from '../trainer/recipe/loss.js';
import { startPool, trainStep } from '../trainer/train.js';
import { PYTHON, requireTorch, TORCH_SCRIPT } from '../scripts/bench/torch.js';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '4' },
    // 64: at 128 the T=2 width-32 step's tape outgrows wasm32's 4 GiB heap.
    batch: { type: 'string', default: '64' },
    width: { type: 'string', default: '32' },
    T: { type: 'string', default: '2' },
    threads: { type: 'string', default: String(cpus().length) },
    'torch-threads': { type: 'string', default: String(cpus().length) },
    json: { type: 'boolean', default: false },
  },
});
const steps = Number(values.steps),
  batch = Number(values.batch),
  width = Number(values.width),
  T = Number(values.T);

interface Rate {
  imagesPerSecond: number;
  imagesPerCpuSecond: number;
  secondsPerStep: number;
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function ours(): Promise<Rate & { engine: string; threads: number }> {
  const backend = await initBackend();
  process.stderr.write(describeBackend(backend) + '\n');
  const net = { ...DEFAULT_NET, width, T };
  const params = initParams(net, 1);
  const trainables = namedVariables(params)
    .filter((v) => v.trainable)
    .map((v) => v.v);
  const optimizer = tf.train.adam(1e-3);
  const x = Float32Array.from({ length: batch * 784 }, (_, i) => (i * 2654435761) % 256);
  const y = Int32Array.from({ length: batch }, (_, i) => i % 10);
  const frame = [28, 28, 1] as const;
  const loss = { ...DEFAULT_LOSS, perStep: 0.5 };
  const pool = await startPool(Number(values.threads), backend.engine, { net, seed: 1, frame, loss }, params);
  const ctx = { net, params, trainables, optimizer, frame, loss, ...(pool ? { pool } : {}) };
  try {
    await trainStep(ctx, { x, y }); // warm-up: kernel set-up, XNNPACK operator creation, memory growth
    const w0 = performance.now(),
      c0 = cpuSeconds();
    for (let i = 0; i < steps; i++) await trainStep(ctx, { x, y });
    // process.cpuUsage counts every thread of the process, the workers' included.
    const wall = (performance.now() - w0) / 1000,
      cpu = cpuSeconds() - c0;
    return {
      engine: backend.engine,
      threads: 1 + (pool?.size ?? 0),
      imagesPerSecond: (steps * batch) / wall,
      imagesPerCpuSecond: (steps * batch) / cpu,
      secondsPerStep: wall / steps,
    };
  } finally {
    await pool?.close();
  }
}

function torch(): Rate & { torch: string; threads: number } {
  const out = execFileSync(
    PYTHON,
    [
      TORCH_SCRIPT,
      '--steps',
      String(steps),
      '--batch',
      String(batch),
      '--width',
      String(width),
      '--T',
      String(T),
      '--threads',
      values['torch-threads']!,
    ],
    { encoding: 'utf8' },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as Rate & { torch: string; threads: number };
}

requireTorch('bench:train');
const load0 = loadavg()[0]!;
const a = await ours();
const b = torch();
const gflop = (3 * 2 * macsPerFrame({ ...DEFAULT_NET, width, T })) / 1e9;
const summary = {
  network: `32-64-128 layout, width ${width}, T=${T}, batch ${batch}`,
  gflopPerImage: Number(gflop.toFixed(3)),
  ours: a,
  pytorch: b,
  ratioWall: a.imagesPerSecond / b.imagesPerSecond,
  ratioCpu: a.imagesPerCpuSecond / b.imagesPerCpuSecond,
  loadAverage: [load0, loadavg()[0]],
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  date: new Date().toISOString(),
};
process.stderr.write(
  `sei-edge trainer (${a.engine}, ${a.threads} thread${a.threads > 1 ? 's' : ''}): ${a.imagesPerSecond.toFixed(1)} img/s wall, ${a.imagesPerCpuSecond.toFixed(1)} img/CPU-s\n` +
    `PyTorch ${b.torch} (${b.threads} threads): ${b.imagesPerSecond.toFixed(1)} img/s wall, ${b.imagesPerCpuSecond.toFixed(1)} img/CPU-s\n` +
    `ratio: ${(100 * summary.ratioWall).toFixed(0)}% wall, ${(100 * summary.ratioCpu).toFixed(0)}% per CPU-second; ${gflop.toFixed(2)} GFLOP per image (forward + backward ≈ 3× forward); load average ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}\n`,
);
if (values.json) process.stdout.write(JSON.stringify(summary) + '\n');
