import type { Command } from 'commander';
import { register as run } from './run.js';
import { register as verify } from './verify.js';

/** Every CLI command, in the order `sei --help` lists them. */
export const commands: ReadonlyArray<(program: Command) => void> = [run, verify];
