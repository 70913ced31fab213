/**
 * The coverage-guided fuzzer's entry (Jazzer.js, libFuzzer underneath): `fuzz(data)` runs the target named by
 * SEI_FUZZ_TARGET (./targets.ts) on each input libFuzzer makes. Started by ./run.ts inside the Debian root that
 * hosts Jazzer.js's native addon; any exception is a finding, and libFuzzer saves its input.
 */
import { prepareTargets, target } from './targets.js';

const t = target(process.env['SEI_FUZZ_TARGET'] ?? '');
await prepareTargets([t.name]);

export function fuzz(data: Buffer): void | Promise<void> {
  return t.run(new Uint8Array(data.buffer, data.byteOffset, data.length));
}
