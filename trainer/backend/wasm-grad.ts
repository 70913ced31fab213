/**
 * The trainer's own WebAssembly kernel (./assembly/grad-kernel.ts, built by scripts/build-wasm.mjs): a conv's weight
 * gradient as a direct sum, which tfjs-backend-wasm can only phrase as a convolution with a huge kernel (several
 * times slower per multiply-add than its forward conv). Loaded once per thread, synchronously; absent (no
 * assemblyscript at install), `filterGradKernel()` is undefined and trainer/backend/conv.ts keeps its tfjs path.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const WASM_PATH = fileURLToPath(new URL('./assembly/grad-kernel.wasm', import.meta.url));

interface Exports {
  memory: WebAssembly.Memory;
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
  ): void;
}

/** Shape of a weight-gradient problem: xp [n, hp, wp, cin] (already padded), dy [n, oh, ow, cout], k × k, stride. */
export interface FilterGradShape {
  readonly n: number;
  readonly hp: number;
  readonly wp: number;
  readonly cin: number;
  readonly oh: number;
  readonly ow: number;
  readonly cout: number;
  readonly kh: number;
  readonly kw: number;
  readonly stride: number;
}

export type FilterGradKernel = (xp: Float32Array, dy: Float32Array, shape: FilterGradShape, out: Float32Array) => void;

let loaded: FilterGradKernel | null | undefined;

let enabled = process.env.SEI_TRAIN_GRAD_KERNEL !== '0';

/** The kernel, or undefined when the .wasm is not built or it is switched off (`SEI_TRAIN_GRAD_KERNEL=0`). */
export function filterGradKernel(): FilterGradKernel | undefined {
  if (!enabled) return undefined;
  if (loaded === undefined) loaded = load();
  return loaded ?? undefined;
}

/** Switches the kernel on or off in this thread (to compare it with the tfjs path); returns whether it was on. */
export function useFilterGradKernel(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

function load(): FilterGradKernel | null {
  if (!existsSync(WASM_PATH)) return null;
  const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(WASM_PATH)), {
    env: {
      abort: () => {
        throw new Error('grad-kernel: abort');
      },
    },
  });
  const ex = instance.exports as unknown as Exports;
  const base = ex.memory.buffer.byteLength; // the module's own data ends below its initial memory
  return (xp, dy, sh, out) => {
    if (xp.length !== sh.n * sh.hp * sh.wp * sh.cin || dy.length !== sh.n * sh.oh * sh.ow * sh.cout)
      throw new RangeError('grad-kernel: operand sizes do not match the shape');
    if (out.length !== sh.kh * sh.kw * sh.cin * sh.cout) throw new RangeError('grad-kernel: output size');
    if ((sh.oh - 1) * sh.stride + sh.kh > sh.hp || (sh.ow - 1) * sh.stride + sh.kw > sh.wp)
      throw new RangeError('grad-kernel: the output reads past the input');
    const xAt = base,
      dyAt = xAt + xp.length * 4,
      dwAt = dyAt + dy.length * 4,
      end = dwAt + out.length * 4;
    if (end > ex.memory.buffer.byteLength) ex.memory.grow(Math.ceil((end - ex.memory.buffer.byteLength) / 65536));
    const heap = new Float32Array(ex.memory.buffer);
    heap.set(xp, xAt / 4);
    heap.set(dy, dyAt / 4);
    ex.filterGrad(xAt, dyAt, dwAt, sh.n, sh.hp, sh.wp, sh.cin, sh.oh, sh.ow, sh.cout, sh.kh, sh.kw, sh.stride);
    out.set(new Float32Array(ex.memory.buffer, dwAt, out.length));
  };
}
