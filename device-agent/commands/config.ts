/** `config`: {} returns the effective config; {source?: {...}, reporting?: {...}} (config-file shape) changes it at once. */
import { ConfigError, show } from '../../runtime/index.js';
import { configToJson, mergeDeep } from '../config.js';
import type { CommandHandler } from './types.js';

/** The sections a command may change: the rest needs a restart. */
const CHANGEABLE = ['source', 'reporting'];

export const config: CommandHandler = async (args, ctx) => {
  for (const key of Object.keys(args)) {
    if (!CHANGEABLE.includes(key))
      throw new ConfigError(
        `config: ${key}: expected one of ${CHANGEABLE.join(', ')} (the settings a command may change), got ${show(args[key])}`,
        key,
      );
  }
  if (Object.keys(args).length === 0) return configToJson(ctx.config().parsed);
  return configToJson(await ctx.reconfigure(mergeDeep(ctx.config().raw, args)));
};
