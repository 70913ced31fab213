import type { Command } from 'commander';

/** Every CLI command, in the order `sei --help` lists them. */
export const commands: ReadonlyArray<(program: Command) => void> = [];
