/**
 * The commands a device answers on `cmd/<name>`, one file each. A new command is a file here exporting a
 * CommandHandler, a line in COMMANDS, and (when it needs more of the agent) a member of CommandContext.
 */
import { ConfigError, show } from '../../runtime/index.js';
import type { Command } from '../mqtt/link.js';
import { activate } from './activate.js';
import { capture } from './capture.js';
import { captureRead } from './capture-read.js';
import { captures } from './captures.js';
import { config } from './config.js';
import { finetune } from './finetune.js';
import { label } from './label.js';
import { models } from './models.js';
import { preview } from './preview.js';
import { status } from './status.js';
import type { CommandContext, CommandHandler } from './types.js';

export type { CommandContext, CommandHandler, FrameResult } from './types.js';

/** Name → handler, in the order the refusal of an unknown command lists them. */
export const COMMANDS: Readonly<Record<string, CommandHandler>> = {
  status,
  config,
  models,
  activate,
  label,
  finetune,
  preview,
  capture,
  captures,
  'capture-read': captureRead,
};

/** Runs one command: resolves to the reply's result, rejects with the error to reply with. */
export async function runCommand(
  cmd: Command,
  ctx: CommandContext,
  progress: (body: unknown) => void,
): Promise<unknown> {
  if (cmd.parseError) throw cmd.parseError;
  const handler = Object.hasOwn(COMMANDS, cmd.name) ? COMMANDS[cmd.name] : undefined;
  if (!handler)
    throw new ConfigError(
      `command: expected one of ${Object.keys(COMMANDS).join(', ')}, got ${show(cmd.name)}`,
      'command',
    );
  return handler(cmd.args, ctx, progress);
}
