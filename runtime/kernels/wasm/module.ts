/**
 * The compiled SIMD kernel (./assembly/simd-kernel.ts, built by scripts/build-wasm.mjs): where it is, whether it
 * can run in this process, its exports, and the descriptor layout the planner writes and the kernel reads.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The compiled kernel, next to its AssemblyScript source. */
export const WASM_URL = new URL('./assembly/simd-kernel.wasm', import.meta.url);

/**
 * Descriptor fields (i32 indices), documented in ./assembly/simd-kernel.ts. The module exports the same names
 * and values (`moduleLayout`); test/kernels.test.ts holds the two equal.
 */
export const FIELDS = {
  KIND: 0,
  IN: 1,
  IH: 2,
  IW: 3,
  ICW: 4,
  OH: 5,
  OW: 6,
  COUT: 7,
  OCW: 8,
  K: 9,
  STRIDE: 10,
  PAD: 11,
  WGT: 12,
  SCALE: 13,
  BIAS: 14,
  THETA: 15,
  BETA: 16,
  V: 17,
  CUR: 18,
  OUT: 19,
  SC_KIND: 20,
  SC_PTR: 21,
  SC_CIN: 22,
  SC_W: 23,
  COUNTS: 24,
  I0: 25,
  SPIKES: 26,
  DOTS: 27,
  LIST: 28,
  START: 29,
  SCTMP: 30,
  GROUPS: 31,
  ICB: 32,
  SAME: 33,
  SAVE: 34,
  WEV: 35,
  PATH: 36,
  EVENTS: 37,
  ZERO: 38,
  SPIKED: 39,
  CLONE: 40,
  SC_CLONE: 41,
  STEP: 42,
  IN_STEP: 43,
  SWITCH: 44,
} as const;
/** i32 words per layer descriptor. */
export const DESC_WORDS = 48;

/** The module's function exports. */
export interface KernelExports {
  readonly memory: WebAssembly.Memory;
  start(desc: number, layers: number): void;
  step(desc: number, layers: number): void;
  frame(desc: number, layers: number, T: number): void;
  layer(desc: number): void;
  bare(w: number, x: number, rows: number, vecs: number, reps: number): number;
}

let compiled: WebAssembly.Module | undefined;

/** A fresh instance (own memory) of the compiled kernel; the module is compiled once per process. */
export function instantiate(): KernelExports {
  compiled ??= new WebAssembly.Module(readFileSync(WASM_URL));
  return new WebAssembly.Instance(compiled, {}).exports as unknown as KernelExports;
}

/** The layout the compiled module itself exports: every i32 global (its field offsets and DESC_WORDS) by name. */
export function moduleLayout(): Record<string, number> {
  const layout: Record<string, number> = {};
  for (const [name, value] of Object.entries(instantiate())) {
    if (value instanceof WebAssembly.Global && typeof value.value === 'number') layout[name] = value.value;
  }
  return layout;
}

// (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): fails validation without SIMD.
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00,
  0x0a, 0x0a, 0x01, 0x08, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0xfd, 0x62, 0x0b,
]);

/** Why the compiled kernel cannot run in this process, or undefined when it can. */
export function moduleUnavailable(): string | undefined {
  if (typeof WebAssembly !== 'object' || !WebAssembly.validate(SIMD_PROBE))
    return 'this JavaScript engine has no WebAssembly SIMD';
  if (!existsSync(fileURLToPath(WASM_URL))) return `${fileURLToPath(WASM_URL)} is missing (run \`npm run build:wasm\`)`;
  return undefined;
}
