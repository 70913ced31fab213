/** Runs a commander program the way every `sei` entry point does: errors become exit codes and one stderr line. */
import { CommanderError } from 'commander';
import type { Command } from 'commander';
import { SeiError } from '../runtime/errors.js';

/** Parses process.argv; a SeiError exits 2 with its message, any other error 1 with its stack. */
export async function runCli(program: Command): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
    } else if (err instanceof SeiError) {
      process.stderr.write(`sei: ${err.name}: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`sei: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  }
}
