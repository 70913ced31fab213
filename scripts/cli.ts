/**
 * The `sei` CLI. Each command lives in scripts/commands/<name>.ts and exports `register(program)`.
 * Conventions: every command has --help; every command that reports numbers has --json, which prints one JSON
 * object on the last line of stdout (human-readable lines may precede it).
 */
import { Command, CommanderError } from 'commander';
import { SeiError } from '../runtime/errors.js';
import { commands } from './commands/index.js';

const program = new Command('sei')
  .description('sei-edge: train, ship and run 1-bit spiking neural networks on edge boxes')
  .showHelpAfterError()
  .exitOverride();

for (const register of commands) register(program);

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
