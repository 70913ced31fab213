/**
 * The one place that chooses a kernel: wasm when WebAssembly SIMD validates and the compiled kernel is present,
 * else the reference kernel. A forced `wasm` that cannot run is a ConfigError, never a silent fallback.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError, show } from '../errors.js';
import type { KernelChoice } from '../engine/types.js';
import type { BwsnnModel } from '../format/model.js';
import { WASM_URL, wasmUnsupported } from './wasm.js';

// (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): fails validation without SIMD.
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00,
  0x0a, 0x0a, 0x01, 0x08, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0xfd, 0x62, 0x0b,
]);

/** Why the wasm kernel cannot run here (or cannot run `model`), or undefined when it can. */
export function wasmUnavailable(model?: BwsnnModel): string | undefined {
  if (typeof WebAssembly !== 'object' || !WebAssembly.validate(SIMD_PROBE)) return 'this JavaScript engine has no WebAssembly SIMD';
  if (!existsSync(fileURLToPath(WASM_URL))) return `${fileURLToPath(WASM_URL)} is missing (run \`npm run build:wasm\`)`;
  return model && wasmUnsupported(model);
}

export function selectKernel(choice: KernelChoice, model?: BwsnnModel): 'wasm' | 'reference' {
  if (choice === 'reference') return 'reference';
  if (choice !== 'wasm' && choice !== 'auto') {
    throw new ConfigError(`kernel: expected 'auto', 'wasm' or 'reference', got ${show(choice)}`, 'kernel');
  }
  const why = wasmUnavailable(model);
  if (why === undefined) return 'wasm';
  if (choice === 'wasm') throw new ConfigError(`kernel: 'wasm' was requested but is unavailable: ${why}`, 'kernel');
  return 'reference';
}
