// The trainer's WebAssembly SIMD module (AssemblyScript, built by scripts/build-wasm.mjs with --enable simd): the
// training ops that tfjs-backend-wasm runs slowly or as chains of small kernels, one source file each. Every kernel
// works on operands the loader (trainer/backend/wasm-kernels.ts) has copied into this module's memory at the
// byte offsets it is given, and allocates nothing.

export { filterGrad, filterGradScratch } from './conv-grad';
export { lifBackward, lifForward } from './lif';
export { bnAffine, bnGradSums, bnInputGrad, bnSums } from './batchnorm';
