/** The `ota` section of the agent config: trusted keys, limits, transfer pacing and the probation gate. */

export interface OtaConfig {
  /** Ed25519 public keys (PEM text or PEM file paths) whose signed manifests this device accepts. Default []: every job is refused. */
  readonly trustedKeys: readonly string[];
  /** Folder that receives downloaded versions (the old ones stay there). Default null: model.dir, else `<store folder>/sei-models/<device>`. */
  readonly dir: string | null;
  /** Largest artifact accepted, bytes. Default 64 MiB. */
  readonly maxBytes: number;
  /** Free disk that must remain once the artifact is on disk, bytes. Default 16 MiB. */
  readonly reserveBytes: number;
  /** Blocks requested at once. Default 8. */
  readonly window: number;
  /** Outstanding blocks are requested again after this long without one arriving, ms. Default 3000. */
  readonly requestTimeoutMs: number;
  /** A block that arrives corrupt or truncated this many times refuses the job. Default 3. */
  readonly maxBlockRetries: number;
  readonly probation: {
    /** Frames the new model must serve before the job succeeds; null = no frame bound. Default 100. */
    readonly frames: number | null;
    /** Seconds of probation at most; null = no time bound (then `frames` must be set). Default 60. */
    readonly seconds: number | null;
    /** Largest share of probation frames that may fail to infer. Default 0.05. */
    readonly maxErrorRate: number;
    /** Median latency may grow to at most this many times the previous model's (plus 1 ms of slack). Default 4. */
    readonly maxLatencyRatio: number;
    /** Mean confidence must stay at least this fraction of the previous model's. Default 0.5. */
    readonly minConfidenceRatio: number;
  };
}

/** The part of the agent's config reader that this section uses. */
export interface SectionReader {
  num(key: string, def: number, min: number, max: number, integer?: boolean): number;
  numOrNull(key: string, def: number | null, min: number, max: number): number | null;
  strOrNull(key: string, def: string | null): string | null;
  raw(key: string): unknown;
  sub(key: string): SectionReader;
  fail(key: string, expected: string, actual: unknown): never;
  done(): void;
}

export function parseOtaConfig(o: SectionReader): OtaConfig {
  const keys = o.raw('trustedKeys') ?? [];
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string' && k.length > 0)) o.fail('trustedKeys', 'an array of PEM public keys or PEM file paths', keys);
  const p = o.sub('probation');
  const probation = {
    frames: p.numOrNull('frames', 100, 1, 10_000_000),
    seconds: p.numOrNull('seconds', 60, 1, 7 * 86_400),
    maxErrorRate: p.num('maxErrorRate', 0.05, 0, 1),
    maxLatencyRatio: p.num('maxLatencyRatio', 4, 1, 1e6),
    minConfidenceRatio: p.num('minConfidenceRatio', 0.5, 0, 1),
  };
  if (probation.frames === null && probation.seconds === null) p.fail('seconds', 'a number when ota.probation.frames is null (probation must end)', null);
  p.done();
  const cfg: OtaConfig = {
    trustedKeys: keys as string[],
    dir: o.strOrNull('dir', null),
    maxBytes: o.num('maxBytes', 64 * 2 ** 20, 1, 2 ** 32, true),
    reserveBytes: o.num('reserveBytes', 16 * 2 ** 20, 0, Number.MAX_SAFE_INTEGER, true),
    window: o.num('window', 8, 1, 1024, true),
    requestTimeoutMs: o.num('requestTimeoutMs', 3000, 50, 3_600_000, true),
    maxBlockRetries: o.num('maxBlockRetries', 3, 1, 1000, true),
    probation,
  };
  o.done();
  return cfg;
}
