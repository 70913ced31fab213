/**
 * The one place that chooses a backend: wasm when WebAssembly SIMD validates, the compiled kernel is present and
 * the model is within its limits, else the reference backend. A forced `wasm` that cannot run is a ConfigError,
 * never a silent fallback.
 */
import { ConfigError, show } from '../errors.js';
import type { BwsnnModel } from '../format/model.js';
import { referenceBackend } from './reference/runner.js';
import type { KernelName, RunnerFactory } from './runner.js';
import { wasmBackend } from './wasm/runner.js';

/** Which backend computes the layers. `auto` picks wasm when it can run. */
export type KernelChoice = 'auto' | KernelName;

/** The backend (a Runner factory) for `choice` and, when given, `model`. */
export function selectBackend(choice: KernelChoice, model?: BwsnnModel): RunnerFactory {
  if (choice === 'reference') return referenceBackend;
  if (choice !== 'wasm' && choice !== 'auto') {
    throw new ConfigError(`kernel: expected 'auto', 'wasm' or 'reference', got ${show(choice)}`, 'kernel');
  }
  const why = wasmBackend.unavailable(model);
  if (why === undefined) return wasmBackend;
  if (choice === 'wasm') throw new ConfigError(`kernel: 'wasm' was requested but is unavailable: ${why}`, 'kernel');
  return referenceBackend;
}

/** The name of the backend selectBackend picks. */
export function selectKernel(choice: KernelChoice, model?: BwsnnModel): KernelName {
  return selectBackend(choice, model).kernel;
}

/** Why the wasm backend cannot run here (or cannot run `model`), or undefined when it can. */
export function wasmUnavailable(model?: BwsnnModel): string | undefined {
  return wasmBackend.unavailable(model);
}
