import type { Command } from 'commander';
import { register as run } from './run.js';
import { register as verify } from './verify.js';
import { register as bench } from './bench.js';
import { register as agent } from './agent.js';
import { register as broker } from './broker.js';
import { register as demo } from './demo.js';
import { register as doctor } from './doctor.js';
import { register as finetune } from './finetune.js';
import { register as train } from './train.js';
import { register as evalCmd } from './eval.js';
import { register as exportCmd } from './export.js';
import { register as ablate } from './ablate.js';
import { register as keys } from './keys.js';
import { register as sign } from './sign.js';
import { register as deploy } from './deploy.js';

/** Every CLI command, in the order `sei --help` lists them. */
export const commands: ReadonlyArray<(program: Command) => void> = [run, verify, bench, agent, broker, demo, doctor, finetune, train, evalCmd, exportCmd, ablate, keys, sign, deploy];
