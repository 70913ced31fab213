/**
 * `sei sign --model FILE --key KEY`: the artifact signed in its own container and a signed manifest beside it
 * (version, size, sha256, architecture, input shape, canary frames with the engine's predictions).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { prepareArtifact, readPrivateKey } from '../../device-agent/ota/index.js';
import { printJson } from '../output.js';
import { fromFile, positiveInt } from '../options.js';

export function register(program: Command): void {
  program
    .command('sign')
    .description(
      'sign a .bwsnn for remote update: writes PREFIX.bwsnn (container signature) and PREFIX.manifest.json (signed manifest)',
    )
    .requiredOption('--model <file>', '.bwsnn model')
    .requiredOption('--key <file>', 'Ed25519 private key (PEM), from `sei keys gen`')
    .option('--canaries <n>', 'canary frames in the manifest', positiveInt('--canaries'), 4)
    .option('--out <prefix>', 'output path without extension (default: the model path without .bwsnn, plus ".signed")')
    .option('--json', 'print the manifest summary as JSON on the last line')
    .action(async (opts: { model: string; key: string; canaries: number; out?: string; json?: boolean }) => {
      const key = readPrivateKey(opts.key);
      const { artifact, manifest, signed } = await fromFile('--model', 'a .bwsnn model', opts.model, () =>
        prepareArtifact(new Uint8Array(readFileSync(opts.model)), key, { canaries: opts.canaries }),
      );
      const prefix = opts.out ?? `${opts.model.replace(/\.bwsnn$/, '')}.signed`;
      writeFileSync(`${prefix}.bwsnn`, artifact);
      writeFileSync(`${prefix}.manifest.json`, JSON.stringify(signed, null, 2) + '\n');
      console.log(`${manifest.model}: ${manifest.size} bytes, sha256 ${manifest.sha256}`);
      console.log(
        `input ${manifest.architecture.input.join('x')}, T ${manifest.architecture.T}, ops ${manifest.architecture.ops.join(' ')}`,
      );
      console.log(
        `canaries: ${manifest.canaries.map((c) => c.prediction).join(' ')}; signed by key ${signed.keyId.slice(0, 16)}…`,
      );
      console.log(`wrote ${prefix}.bwsnn and ${prefix}.manifest.json`);
      if (opts.json)
        printJson({
          model: manifest.model,
          version: manifest.version,
          size: manifest.size,
          sha256: manifest.sha256,
          keyId: signed.keyId,
          canaries: manifest.canaries.length,
          artifact: `${prefix}.bwsnn`,
          manifest: `${prefix}.manifest.json`,
        });
    });
}
