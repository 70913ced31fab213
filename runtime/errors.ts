/**
 * One error hierarchy for the whole project. Every message names the field, the expected and the actual value,
 * so that a log line alone tells what to fix.
 */
export class SeiError extends Error {
  /** Dotted path of the offending field (e.g. `header.layers[2].stride`), when there is one. */
  readonly field: string | undefined;
  constructor(message: string, field?: string) {
    super(message);
    this.name = new.target.name;
    this.field = field;
  }
}

/** A .bwsnn file (or a model object about to be written) is malformed, truncated, tampered with or unsupported. */
export class FormatError extends SeiError {}

/** A configuration value (agent config, CLI flag, engine option) is invalid. */
export class ConfigError extends SeiError {}

/** A frame handed to the engine or the agent has the wrong size, type or contents. */
export class FrameError extends SeiError {}

/** A remote model update was refused or failed. */
export class OtaError extends SeiError {}

/** An engine worker thread (runtime/pool) stopped or failed to start; the frame it held is lost, the pool goes on. */
export class WorkerError extends SeiError {}

/** Formats a value for an error message: short, unambiguous. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return `array(${value.length})`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as Uint8Array).length})`;
  return typeof value;
}
