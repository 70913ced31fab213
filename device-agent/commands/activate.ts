/** `activate`: {version} switches to a registered version; {rollback: true} goes back to the one the last update replaced. */
import { ConfigError, show } from '../../runtime/index.js';
import type { CommandHandler } from './types.js';

export const activate: CommandHandler = async (args, ctx) => {
  if (args.rollback === true) return ctx.ota.rollback();
  const version = args.version;
  if (typeof version !== 'string')
    throw new ConfigError(`activate: version: expected a registered version string, got ${show(version)}`, 'version');
  if (!ctx.registry.get(version))
    throw new ConfigError(
      `activate: version: expected one of ${ctx.registry
        .list()
        .map((m) => m.version)
        .join(', ')}, got ${show(version)}`,
      'version',
    );
  const active = await ctx.activate(version);
  return { active: active.version, activatedAt: active.activatedAt };
};
