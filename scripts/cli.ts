/**
 * The `sei` CLI. Each command lives in scripts/commands/<name>.ts and exports `register(program)`.
 * Conventions: every command has --help; every command that reports numbers has --json, which prints one JSON
 * object on the last line of stdout (human-readable lines may precede it).
 */
import { Command } from 'commander';
import { commands } from './commands/index.js';
import { runCli } from './run-cli.js';

const program = new Command('sei')
  .description('sei-edge: train, ship and run 1-bit spiking neural networks on edge boxes')
  .showHelpAfterError()
  .exitOverride();

for (const register of commands) register(program);

await runCli(program);
