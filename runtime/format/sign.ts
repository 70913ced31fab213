/**
 * Ed25519 signing of a .bwsnn digest, and key fingerprints (the key id stored in the signature block).
 * node:crypto only, APIs present since Node 16, so the runtime verifies on a Pi's Node 18 as well.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { ConfigError } from '../errors.js';

/** Bytes of the DER SPKI prefix in front of a raw 32-byte Ed25519 public key. */
const ED25519_SPKI_PREFIX = 12;
export const KEY_ID_BYTES = 32;
export const SIGNATURE_BYTES = 64;

function asKey(key: KeyObject | string, kind: 'private' | 'public', field: string): KeyObject {
  let obj: KeyObject;
  try {
    if (typeof key === 'string') obj = kind === 'private' ? createPrivateKey(key) : createPublicKey(key);
    else obj = kind === 'public' && key.type === 'private' ? createPublicKey(key) : key;
  } catch (err) {
    throw new ConfigError(
      `${field}: expected a PEM-encoded Ed25519 ${kind} key, got one node:crypto cannot parse (${(err as Error).message})`,
      field,
    );
  }
  if (obj.asymmetricKeyType !== 'ed25519' || (kind === 'private' && obj.type !== 'private')) {
    throw new ConfigError(
      `${field}: expected an Ed25519 ${kind} key, got a ${obj.asymmetricKeyType ?? obj.type} ${obj.type} key`,
      field,
    );
  }
  return obj;
}

export function privateKey(key: KeyObject | string, field = 'signingKey'): KeyObject {
  return asKey(key, 'private', field);
}

export function publicKey(key: KeyObject | string, field = 'trustedKeys'): KeyObject {
  return asKey(key, 'public', field);
}

function rawPublic(key: KeyObject): Uint8Array {
  const der = key.export({ type: 'spki', format: 'der' });
  return new Uint8Array(der.buffer, der.byteOffset + ED25519_SPKI_PREFIX, der.length - ED25519_SPKI_PREFIX);
}

/** Key id: SHA-256 of the raw 32-byte Ed25519 public key (a private key gives its public key's id). */
export function keyId(key: KeyObject | string): Uint8Array {
  return new Uint8Array(
    createHash('sha256')
      .update(rawPublic(publicKey(key, 'key')))
      .digest(),
  );
}

/** The key id as lowercase hex, as `sei` commands and the OTA print it. */
export function keyFingerprint(key: KeyObject | string): string {
  return Buffer.from(keyId(key)).toString('hex');
}

export function signDigest(digest: Uint8Array, key: KeyObject): Uint8Array {
  return new Uint8Array(sign(null, digest, key));
}

export function verifyDigest(digest: Uint8Array, signature: Uint8Array, key: KeyObject): boolean {
  return verify(null, digest, key, signature);
}
