/**
 * The PyTorch reference (bench/train_torch.py) and the Python that runs it: Debian's /usr/bin/python3 with
 * python3-torch (`npm run setup` installs it). Used by `npm run bench:train`, `npm run bench:parity` and
 * test/parity.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PYTHON = '/usr/bin/python3';
export const TORCH_SCRIPT = fileURLToPath(new URL('../../bench/train_torch.py', import.meta.url));

/** Why the reference cannot run here (one line), or undefined when it can. */
export function torchMissing(): string | undefined {
  const probe = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  if (probe.status === 0) return undefined;
  const why = (probe.stderr || String(probe.error)).trim().split('\n').pop();
  return `${PYTHON} cannot import torch (Debian's python3-torch; npm run setup installs it): ${why}`;
}

/** Exits with status 2 and one line when the reference cannot run (for the benchmarks' command lines). */
export function requireTorch(what: string): void {
  const missing = torchMissing();
  if (!missing) return;
  process.stderr.write(`${what}: ${missing}\n`);
  process.exit(2);
}
