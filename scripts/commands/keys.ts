/** `sei keys gen --out DIR`: an Ed25519 signing key pair for OTA (PEM); `sei keys id KEY`: a key's fingerprint. */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ConfigError, keyFingerprint } from '../../runtime/index.js';
import { readPublicKey } from '../../device-agent/ota/index.js';
import { fromFile } from '../options.js';
import { printJson } from '../output.js';

export function register(program: Command): void {
  const keys = program
    .command('keys')
    .description('Ed25519 keys that sign model updates (the agent trusts the public ones: ota.trustedKeys)');
  keys
    .command('gen')
    .description('generate a key pair: NAME.key (private, PKCS#8 PEM, mode 0600) and NAME.pub (public, SPKI PEM)')
    .requiredOption('--out <dir>', 'folder for the key files (created if missing)')
    .option('--name <name>', 'file name stem', 'sei-ota')
    .option('--force', 'overwrite existing key files')
    .option('--json', 'print {private, public, keyId} as JSON on the last line')
    .action((opts: { out: string; name: string; force?: boolean; json?: boolean }) => {
      const dir = resolve(opts.out);
      const priv = join(dir, `${opts.name}.key`);
      const pub = join(dir, `${opts.name}.pub`);
      for (const f of [priv, pub]) {
        if (existsSync(f) && !opts.force)
          throw new ConfigError(
            `--out: expected a folder without ${opts.name}.key/.pub (or --force), got existing ${f}`,
            '--out',
          );
      }
      fromFile('--out', 'a folder it can create and write to', opts.out, () => mkdirSync(dir, { recursive: true }));
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
      const keyId = keyFingerprint(publicKey);
      console.log(
        `private key ${priv} (keep it off the devices)\npublic key  ${pub} (list it in the agents' ota.trustedKeys)\nkey id      ${keyId}`,
      );
      if (opts.json) printJson({ private: priv, public: pub, keyId });
    });
  keys
    .command('id')
    .description('print the key id (hex SHA-256 of the raw public key) of a PEM key, private or public')
    .argument('<key>', 'PEM file')
    .action((file: string) => {
      console.log(keyFingerprint(readPublicKey(file, 'key')));
    });
}
