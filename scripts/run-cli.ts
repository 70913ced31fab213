/**
 * What every `sei` entry point shares: how errors reach the user. A bad argument is one stderr line and exit 2,
 * never a stack trace: a SeiError (a ConfigError from an option parser in options.ts, a FormatError from a file)
 * prints its message, a usage error found by commander (unknown option, missing value) its own, and a
 * file-system error (a path the user gave, not caught by name) its code and path. Anything else is a bug: its
 * stack, exit 1.
 */
import { Command, CommanderError } from 'commander';
import { SeiError } from '../runtime/errors.js';

/** Commander's codes that are not errors in what the user typed. */
const NOT_USAGE_ERRORS = new Set([
  'commander.help',
  'commander.helpDisplayed',
  'commander.version',
  'commander.executeSubCommandAsync',
]);

/** The root command; commands registered on it afterwards inherit its error handling. */
export function createProgram(description: string): Command {
  return new Command('sei')
    .description(description)
    .configureOutput({
      outputError: (str, write) => write(`sei: ${str.trim().replace(/\s*\n\s*/g, ' ')} (add --help for usage)\n`),
    })
    .exitOverride();
}

/** Parses process.argv and turns errors into exit codes and one stderr line. */
export async function runCli(program: Command): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = NOT_USAGE_ERRORS.has(err.code) ? err.exitCode : 2;
    } else if (err instanceof SeiError) {
      process.stderr.write(`sei: ${err.name}: ${err.message}\n`);
      process.exitCode = 2;
    } else if (isFileError(err)) {
      process.stderr.write(`sei: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`sei: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  }
}

function isFileError(err: unknown): err is NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException;
  return e instanceof Error && typeof e.code === 'string' && e.code.startsWith('E') && typeof e.path === 'string';
}
