/**
 * The signed manifest of an OTA artifact: what the model is (version, size, sha256, architecture, input shape),
 * canary frames with the predictions the runtime engine gives them, and who vouches for it (Ed25519).
 *
 * The manifest travels as a JSON string and the signature covers that exact string's UTF-8 bytes, so that no
 * canonical-JSON step can make the signer and the device disagree about what was signed.
 */
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import {
  ConfigError,
  FORMAT_VERSION,
  inspectBwsnn,
  keyFingerprint,
  loadModel,
  OP_NAMES,
  OtaError,
  readBwsnn,
  show,
  writeBwsnn,
} from '../../runtime/index.js';
import type { Engine } from '../../runtime/index.js';
import { modelKey, sha256 } from '../models.js';
import { sampleFrames } from '../../runtime/index.js';

export const MANIFEST_SCHEMA = 1;
/** Ops the runtime can execute: the format's op table (runtime/format/ops.ts). */
export const SUPPORTED_OPS: readonly string[] = OP_NAMES;

export interface Canary {
  /** The frame, HWC uint8, base64. */
  readonly frame: string;
  readonly prediction: number;
  readonly logits: readonly number[];
}

export interface Manifest {
  readonly schema: number;
  /** Model name and its monotonic version number (the .bwsnn header's `version`). */
  readonly name: string;
  readonly version: number;
  /** Registry key on the device, `<name>@<version>`. */
  readonly model: string;
  readonly size: number;
  readonly sha256: string;
  readonly architecture: {
    readonly formatVersion: number;
    readonly T: number;
    readonly input: readonly [number, number, number];
    readonly ops: readonly string[];
    readonly classes: number;
  };
  readonly canaries: readonly Canary[];
  readonly createdAt: string;
}

export interface SignedManifest {
  /** The Manifest as JSON text: exactly the bytes that were signed. */
  readonly manifest: string;
  /** Fingerprint (hex SHA-256 of the raw public key) of the signing key. */
  readonly keyId: string;
  /** Ed25519 signature over the UTF-8 bytes of `manifest`, base64. */
  readonly signature: string;
}

/** Logit agreement a canary demands (the kernels are bit-exact; this only absorbs printing the logits as JSON). */
const CANARY_LOGIT_TOLERANCE = 1e-4;

/** A PEM key given as text or as a file path. */
function pemText(keyOrPath: string, field: string): string {
  if (keyOrPath.includes('-----BEGIN')) return keyOrPath;
  if (!existsSync(keyOrPath))
    throw new ConfigError(
      `${field}: expected a PEM key or the path of a PEM file, got ${show(keyOrPath)} (no such file)`,
      field,
    );
  return readFileSync(keyOrPath, 'utf8');
}

function checkEd25519(key: KeyObject, kind: 'private' | 'public', field: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519')
    throw new ConfigError(
      `${field}: expected an Ed25519 ${kind} key, got a ${key.asymmetricKeyType ?? 'symmetric'} key`,
      field,
    );
  return key;
}

/** Reads an Ed25519 private key (PEM text or file). */
export function readPrivateKey(keyOrPath: string, field = '--key'): KeyObject {
  const pem = pemText(keyOrPath, field);
  try {
    return checkEd25519(createPrivateKey(pem), 'private', field);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `${field}: expected a PEM Ed25519 private key, got one node:crypto cannot parse (${(err as Error).message})`,
      field,
    );
  }
}

/** Reads an Ed25519 public key (PEM text or file; a private key stands for its public key). */
export function readPublicKey(keyOrPath: string, field = 'ota.trustedKeys'): KeyObject {
  const pem = pemText(keyOrPath, field);
  try {
    return checkEd25519(createPublicKey(pem), 'public', field);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `${field}: expected a PEM Ed25519 public key, got one node:crypto cannot parse (${(err as Error).message})`,
      field,
    );
  }
}

/** mulberry32 frames for models whose input is not Fashion-MNIST's 28×28×1. */
function seededFrame(size: number, seed: number): Uint8Array {
  let a = seed >>> 0;
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) >>> 24;
  }
  return out;
}

/** Canary frames for an input shape: shipped Fashion-MNIST samples where they fit, else seeded noise. */
export function canaryFrames(input: readonly [number, number, number], count: number): Uint8Array[] {
  const [h, w, c] = input;
  if (h === 28 && w === 28 && c === 1) {
    const samples = sampleFrames();
    // Spread over the set so that the canaries cover several classes.
    return Array.from({ length: count }, (_, i) => Uint8Array.from(samples.frame((i * 97) % samples.count)));
  }
  return Array.from({ length: count }, (_, i) => seededFrame(h * w * c, 0x5e1 + i));
}

export interface ManifestOptions {
  /** Canary frames. Default 4. */
  readonly canaries?: number;
  /** Default: now. */
  readonly createdAt?: string;
}

/** Describes an artifact and runs its canaries through the reference engine (the runtime's living spec). */
export async function buildManifest(bytes: Uint8Array, opts: ManifestOptions = {}): Promise<Manifest> {
  const info = inspectBwsnn(bytes);
  const engine = await loadModel(bytes, { kernel: 'reference' });
  const input = engine.model.input;
  const canaries = canaryFrames(input, opts.canaries ?? 4).map((frame) => {
    const r = engine.infer(frame);
    return { frame: Buffer.from(frame).toString('base64'), prediction: r.prediction, logits: Array.from(r.logits) };
  });
  return {
    schema: MANIFEST_SCHEMA,
    name: info.name,
    version: info.version,
    model: modelKey(info),
    size: bytes.length,
    sha256: sha256(bytes),
    architecture: {
      formatVersion: info.formatVersion,
      T: info.T,
      input: [input[0], input[1], input[2]],
      ops: [...new Set(info.layers.map((l) => l.op))],
      classes: info.labels.length,
    },
    canaries,
    createdAt: opts.createdAt ?? new Date().toISOString(),
  };
}

export function signManifest(manifest: Manifest, key: KeyObject): SignedManifest {
  const text = JSON.stringify(manifest);
  return {
    manifest: text,
    keyId: keyFingerprint(key),
    signature: sign(null, Buffer.from(text, 'utf8'), key).toString('base64'),
  };
}

/**
 * What an operator ships: the artifact signed in its own container (Ed25519 over the .bwsnn digest, so the file
 * verifies on its own wherever it is copied) and a signed manifest describing it. A file already signed by
 * `key` is shipped as it is; otherwise it is re-written with the same header, producer, creation time and format
 * version (a box with an older runtime may read only version 1).
 */
export async function prepareArtifact(
  bytes: Uint8Array,
  key: KeyObject,
  opts: ManifestOptions = {},
): Promise<{ artifact: Uint8Array; manifest: Manifest; signed: SignedManifest }> {
  const info = inspectBwsnn(bytes);
  const artifact =
    info.keyId === keyFingerprint(key)
      ? bytes
      : writeBwsnn(readBwsnn(bytes), {
          signingKey: key,
          producer: info.producer,
          createdAt: info.createdAt,
          formatVersion: info.formatVersion === 1 ? 1 : 2,
        });
  const manifest = await buildManifest(artifact, opts);
  return { artifact, manifest, signed: signManifest(manifest, key) };
}

function field(ok: boolean, name: string, expected: string, actual: unknown): asserts ok {
  if (!ok) throw new OtaError(`manifest.${name}: expected ${expected}, got ${show(actual)}`, `manifest.${name}`);
}

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;

/**
 * Checks the signature against the trusted keys and the manifest's shape. Throws OtaError whose message is
 * the refusal reason (unknown key, bad signature, malformed field).
 */
export function verifyManifest(signed: unknown, trusted: readonly KeyObject[]): Manifest {
  const s = signed as Partial<SignedManifest> | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.manifest !== 'string' ||
    typeof s.keyId !== 'string' ||
    typeof s.signature !== 'string'
  ) {
    throw new OtaError(
      `manifest: expected {manifest: string, keyId: string, signature: string}, got ${show(signed)}`,
      'manifest',
    );
  }
  const key = trusted.find((k) => keyFingerprint(k) === s.keyId);
  if (!key) {
    const known = trusted.map((k) => keyFingerprint(k).slice(0, 16)).join(', ') || 'none configured';
    throw new OtaError(
      `unknown key: manifest.keyId: expected one of the trusted keys (${known}), got ${s.keyId.slice(0, 16)}`,
      'manifest.keyId',
    );
  }
  if (!verify(null, Buffer.from(s.manifest, 'utf8'), key, Buffer.from(s.signature, 'base64'))) {
    throw new OtaError(
      `bad signature: manifest.signature: expected a valid Ed25519 signature by key ${s.keyId.slice(0, 16)}, got one that does not verify (tampered manifest or wrong key)`,
      'manifest.signature',
    );
  }
  let m: Manifest;
  try {
    m = JSON.parse(s.manifest) as Manifest;
  } catch (err) {
    throw new OtaError(`manifest: expected JSON, got ${(err as Error).message}`, 'manifest');
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m))
    throw new OtaError(`manifest: expected a JSON object, got ${show(m)}`, 'manifest');
  field(m.schema === MANIFEST_SCHEMA, 'schema', String(MANIFEST_SCHEMA), m.schema);
  field(typeof m.name === 'string' && m.name.length > 0, 'name', 'a model name', m.name);
  field(isInt(m.version), 'version', 'an integer >= 0', m.version);
  field(m.model === modelKey(m), 'model', `"${modelKey(m)}"`, m.model);
  field(isInt(m.size, 1), 'size', 'an integer >= 1', m.size);
  field(typeof m.sha256 === 'string' && /^[0-9a-f]{64}$/.test(m.sha256), 'sha256', '64 hex digits', m.sha256);
  const a = m.architecture;
  field(typeof a === 'object' && a !== null, 'architecture', 'an object', a);
  field(isInt(a.formatVersion, 1), 'architecture.formatVersion', 'an integer >= 1', a.formatVersion);
  field(isInt(a.T, 1), 'architecture.T', 'an integer >= 1', a.T);
  field(
    Array.isArray(a.input) && a.input.length === 3 && a.input.every((d) => isInt(d, 1)),
    'architecture.input',
    '[height, width, channels]',
    a.input,
  );
  field(
    Array.isArray(a.ops) && a.ops.every((o) => typeof o === 'string'),
    'architecture.ops',
    'an array of op names',
    a.ops,
  );
  field(isInt(a.classes, 1), 'architecture.classes', 'an integer >= 1', a.classes);
  field(Array.isArray(m.canaries), 'canaries', 'an array', m.canaries);
  m.canaries.forEach((c, i) => {
    field(
      typeof c === 'object' && c !== null && typeof c.frame === 'string',
      `canaries[${i}].frame`,
      'base64 frame bytes',
      c?.frame,
    );
    field(isInt(c.prediction), `canaries[${i}].prediction`, 'a class index', c.prediction);
    field(
      Array.isArray(c.logits) && (c.logits as unknown[]).every((x) => typeof x === 'number'),
      `canaries[${i}].logits`,
      'an array of numbers',
      c.logits,
    );
  });
  return m;
}

/** What the device can run: the refusal reason, or null. `input` is the frame shape its source produces. */
export function architectureProblem(m: Manifest, input: readonly number[]): string | null {
  const a = m.architecture;
  if (a.formatVersion > FORMAT_VERSION)
    return `architecture: .bwsnn format version: expected <= ${FORMAT_VERSION}, got ${a.formatVersion}`;
  const unknown = a.ops.filter((o) => !SUPPORTED_OPS.includes(o));
  if (unknown.length > 0)
    return `architecture: ops: expected only ${SUPPORTED_OPS.join(', ')}, got ${unknown.join(', ')}`;
  if (a.input.join('x') !== input.join('x'))
    return `input shape: expected ${input.join('x')} (what this device's source delivers), got ${a.input.join('x')}`;
  return null;
}

/** Runs the canaries on an engine: null when every prediction and logit matches, else the failure reason. */
export function canaryProblem(engine: Engine, m: Manifest): string | null {
  for (const [i, c] of m.canaries.entries()) {
    const r = engine.infer(new Uint8Array(Buffer.from(c.frame, 'base64')));
    if (r.prediction !== c.prediction) return `canary ${i}: expected class ${c.prediction}, got ${r.prediction}`;
    for (const [j, x] of c.logits.entries()) {
      const y = r.logits[j];
      if (y === undefined || Math.abs(y - x) > CANARY_LOGIT_TOLERANCE * Math.max(1, Math.abs(x)))
        return `canary ${i}: logit ${j}: expected ${x}, got ${y}`;
    }
  }
  return null;
}
