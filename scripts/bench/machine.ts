/** What a benchmark ran on: enough to tell two RESULTS.md runs apart. */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { createRequire } from 'node:module';

export interface MachineInfo {
  readonly cpu: string;
  readonly cores: number;
  /** CPU flags that change how V8 lowers the kernel's SIMD (x64) — e.g. avx512_bitalg gives a one-instruction byte popcount. */
  readonly simdFlags: readonly string[];
  readonly node: string;
  readonly onnxruntime: string;
  readonly date: string;
}

const INTERESTING = ['sse4_2', 'avx2', 'fma', 'avx512f', 'avx512_bitalg', 'avx512_vpopcntdq', 'asimd', 'asimddp'];

export function machineInfo(): MachineInfo {
  let cpu = cpus()[0]?.model ?? 'unknown';
  let flags: string[] = [];
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1] ?? /^Model\s*:\s*(.+)$/m.exec(info)?.[1] ?? cpu;
    flags = (/^(?:flags|Features)\s*:\s*(.+)$/m.exec(info)?.[1] ?? '').split(/\s+/);
  } catch {
    // Not Linux: the os module's model string is all there is.
  }
  const require = createRequire(import.meta.url);
  const ortVersion = (require('onnxruntime-node/package.json') as { version: string }).version;
  return {
    cpu,
    cores: cpus().length,
    simdFlags: INTERESTING.filter((f) => flags.includes(f)),
    node: process.version,
    onnxruntime: ortVersion,
    date: new Date().toISOString(),
  };
}
