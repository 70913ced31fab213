// Compiles the AssemblyScript kernels next to their sources, where their loaders look for them: the runtime's
// (runtime/kernels/wasm/assembly/simd-kernel.wasm) and the trainer's (trainer/backend/assembly/kernels.wasm).
// Runs at `postinstall` and as `npm run build:wasm`. Without the assemblyscript dev dependency (a production
// install) it says so and succeeds: the runtime then uses its reference kernel, the trainer its tfjs-only path.
import { fileURLToPath } from 'node:url';

const KERNELS = ['../runtime/kernels/wasm/assembly/simd-kernel.ts', '../trainer/backend/assembly/kernels.ts'];

let asc;
try {
  asc = (await import('assemblyscript/asc')).default;
} catch {
  console.warn('build-wasm: assemblyscript is not installed; the runtime will use the reference kernel');
  process.exit(0);
}

for (const kernel of KERNELS) {
  const source = fileURLToPath(new URL(kernel, import.meta.url));
  const output = source.replace(/\.ts$/, '.wasm');
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
}
