import type { Command } from 'commander';

/** A command module: scripts/commands/<name>.ts exports `register(program)`. */
export interface CommandModule {
  register(program: Command): void;
}

/**
 * Every CLI command, in the order `sei --help` lists them. Each is imported only when it runs (or for --help),
 * so that `sei agent` does not load TensorFlow.js and `sei train` does not load the MQTT stack.
 */
export const commands: ReadonlyArray<readonly [names: readonly string[], load: () => Promise<CommandModule>]> = [
  [['run'], () => import('./run.js')],
  [['verify'], () => import('./verify.js')],
  [['bench'], () => import('./bench.js')],
  [['agent'], () => import('./agent.js')],
  [['broker'], () => import('./broker.js')],
  [['demo'], () => import('./demo.js')],
  [['console'], () => import('./console.js')],
  [['doctor'], () => import('./doctor.js')],
  [['finetune', 'finetune-experiment'], () => import('./finetune.js')],
  [['data'], () => import('./data.js')],
  [['train'], () => import('./train.js')],
  [['eval'], () => import('./eval.js')],
  [['export'], () => import('./export.js')],
  [['ablate'], () => import('./ablate.js')],
  [['keys'], () => import('./keys.js')],
  [['sign'], () => import('./sign.js')],
  [['deploy'], () => import('./deploy.js')],
  [['capture'], () => import('./capture.js')],
];
