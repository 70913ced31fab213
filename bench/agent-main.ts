/**
 * A process that runs `sei agent` and nothing else: what the soak measures, so that the figure is the agent's
 * and not that of every other command a CLI entry loads.
 */
import { Command } from 'commander';
import { register } from '../scripts/commands/agent.js';

const program = new Command('sei');
register(program);
await program.parseAsync(process.argv);
