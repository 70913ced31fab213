/**
 * The trainer's own WebAssembly module (./assembly/kernels.ts, built by scripts/build-wasm.mjs with the runtime's
 * kernel): training ops that tfjs-backend-wasm runs slowly or as chains of small kernels. Loaded once per thread,
 * synchronously. A kernel runs on operands `run` copies into the module's memory (its own, not tfjs's heap) and on
 * outputs it copies back.
 *
 * One switch covers every kernel of the trainer's own (this module and the binary layers' forward by the engine's
 * kernel, ./spike-conv.ts): `SEI_TRAIN_KERNELS=0` in the environment, or `useTrainerKernels(false)` in a thread (the
 * tests compare both paths). Off, or without the built .wasm (no assemblyscript at install), `trainerKernels()` is
 * undefined and every caller keeps its tfjs or JavaScript path.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const WASM_PATH = fileURLToPath(new URL('./assembly/kernels.wasm', import.meta.url));

/** The module's exports: one function per kernel, arguments as its source documents them. */
export interface KernelExports {
  readonly memory: WebAssembly.Memory;
  filterGrad(
    xp: number,
    dy: number,
    dw: number,
    n: number,
    hp: number,
    wp: number,
    cin: number,
    oh: number,
    ow: number,
    cout: number,
    kh: number,
    kw: number,
    s: number,
    scratch: number,
  ): void;
  filterGradScratch(hp: number, wp: number, cin: number): number;
  lifForward(I: number, theta: number, u: number, s: number, beta: number, T: number, M: number, C: number): void;
  lifBackward(
    g: number,
    u: number,
    theta: number,
    dI: number,
    dTheta: number,
    beta: number,
    T: number,
    M: number,
    C: number,
    thetaWindow: number,
  ): number;
  bnSums(x: number, sums: number, n: number, C: number): void;
  bnAffine(x: number, coef: number, y: number, n: number, C: number): void;
  bnGradSums(dy: number, x: number, mean: number, sums: number, n: number, C: number): void;
  bnInputGrad(dy: number, x: number, coef: number, dx: number, n: number, C: number): void;
}

/** What a kernel reads or writes. */
export type Operand = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

export interface TrainerKernels {
  readonly exports: KernelExports;
  /**
   * Copies `inputs` into the module's memory (each 16-byte aligned), reserves room for `outputs` and `scratchBytes`
   * of scratch, calls `fn` with the byte offsets of all three, then copies each output's bytes back into `outputs`.
   * Nothing stays in the module between calls.
   */
  run(
    inputs: readonly Operand[],
    outputs: readonly Operand[],
    fn: (ins: number[], outs: number[], scratch: number) => void,
    scratchBytes?: number,
  ): void;
}

let enabled = process.env.SEI_TRAIN_KERNELS !== '0';
let loaded: TrainerKernels | null | undefined;

/** Whether the trainer's own kernels are switched on in this thread. */
export function trainerKernelsOn(): boolean {
  return enabled;
}

/** Switches the trainer's own kernels on or off in this thread; returns whether they were on. */
export function useTrainerKernels(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/** The module, or undefined when it is not built or the trainer's kernels are switched off. */
export function trainerKernels(): TrainerKernels | undefined {
  if (!enabled) return undefined;
  if (loaded === undefined) loaded = load();
  return loaded ?? undefined;
}

const align = (bytes: number) => Math.ceil(bytes / 16) * 16;

function load(): TrainerKernels | null {
  if (!existsSync(WASM_PATH)) return null;
  const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(WASM_PATH)), {
    env: {
      abort: () => {
        throw new Error('trainer kernels: abort');
      },
    },
  });
  const ex = instance.exports as unknown as KernelExports;
  const base = align(ex.memory.buffer.byteLength); // the module's own data ends below its initial memory
  return {
    exports: ex,
    run(inputs, outputs, fn, scratchBytes = 0) {
      let end = base;
      const place = (a: Operand) => {
        const at = end;
        end += align(a.byteLength);
        return at;
      };
      const ins = inputs.map(place);
      const outs = outputs.map(place);
      const scratch = end;
      end += align(scratchBytes);
      if (end > ex.memory.buffer.byteLength) ex.memory.grow(Math.ceil((end - ex.memory.buffer.byteLength) / 65536));
      const bytes = new Uint8Array(ex.memory.buffer);
      inputs.forEach((a, i) => bytes.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), ins[i]));
      fn(ins, outs, scratch);
      // A kernel never grows the memory, so `bytes` still views it.
      outputs.forEach((a, i) =>
        new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(bytes.subarray(outs[i]!, outs[i]! + a.byteLength)),
      );
    },
  };
}
