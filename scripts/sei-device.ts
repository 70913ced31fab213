/**
 * The `sei` command of the device package (packaging/): only the commands a box runs, without the trainer's
 * dependencies (tfjs, onnxruntime). Each command is imported on its own, so that one whose dependencies do not
 * load here (a native addon built for another machine, a missing package) becomes a stub that says why, and
 * `sei doctor` still runs to diagnose it.
 */
import type { Command } from 'commander';
import { createProgram, runCli } from './run-cli.js';

/** The device's commands, in `sei --help` order. */
export const DEVICE_COMMANDS = ['agent', 'run', 'finetune', 'broker', 'doctor'] as const;

const program = createProgram('sei-edge on the device: run the agent, check the box');

for (const name of DEVICE_COMMANDS) {
  try {
    const { register } = (await import(`./commands/${name}.js`)) as { register: (p: Command) => void };
    register(program);
  } catch (err) {
    const why = (err as Error).message.split('\n')[0];
    program
      .command(name, { hidden: false })
      .description(`unavailable on this box: ${why}`)
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => {
        process.stderr.write(`sei ${name}: cannot load on this box: ${why}\nrun \`sei doctor\` to see what to fix\n`);
        process.exitCode = 1;
      });
  }
}

await runCli(program);
