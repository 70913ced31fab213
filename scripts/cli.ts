/**
 * The `sei` CLI. Each command lives in scripts/commands/<name>.ts and exports `register(program)`.
 * Conventions: every command has --help; every command that reports numbers has --json, which prints one JSON
 * object on the last line of stdout (human-readable lines may precede it).
 */
import { commands } from './commands/index.js';
import { createProgram, runCli } from './run-cli.js';

const program = createProgram('sei-edge: train, ship and run 1-bit spiking neural networks on edge boxes');

// Load only the command being run; `sei`, `sei --help` or an unknown name load them all to list them.
const requested = process.argv.slice(2).find((arg) => !arg.startsWith('-'));
const chosen = commands.filter(([names]) => requested !== undefined && names.includes(requested));
for (const [, load] of chosen.length > 0 ? chosen : commands) (await load()).register(program);

await runCli(program);
