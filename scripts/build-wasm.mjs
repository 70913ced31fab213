// Compiles the AssemblyScript kernel to runtime/kernels/wasm/assembly/simd-kernel.wasm (next to its source, where
// the runtime looks for it). Runs at `postinstall` and as `npm run build:wasm`. Without the assemblyscript dev
// dependency (a production install) it says so and succeeds: the runtime then uses its reference kernel.
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('../runtime/kernels/wasm/assembly/simd-kernel.ts', import.meta.url));
const output = fileURLToPath(new URL('../runtime/kernels/wasm/assembly/simd-kernel.wasm', import.meta.url));

let asc;
try {
  asc = (await import('assemblyscript/asc')).default;
} catch {
  console.warn('build-wasm: assemblyscript is not installed; the runtime will use the reference kernel');
  process.exit(0);
}

const { error, stderr } = await asc.main([
  source,
  '--outFile',
  output,
  '--optimizeLevel',
  '3',
  '--shrinkLevel',
  '0',
  '--runtime',
  'stub',
  '--noAssert',
  '--enable',
  'simd',
  '--disable',
  'relaxed-simd',
]);
if (error) {
  console.error(stderr.toString());
  console.error(`build-wasm: ${error.message}`);
  process.exit(1);
}
console.log(`build-wasm: wrote ${output}`);
