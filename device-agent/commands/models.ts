/** `models`: the registry, and which version runs. */
import type { CommandHandler } from './types.js';

export const models: CommandHandler = (_args, ctx) => ({ active: ctx.active().version, models: ctx.registry.list() });
