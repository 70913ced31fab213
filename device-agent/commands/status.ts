/** `status`: the status fields plus a live metrics snapshot and the outbox depth. */
import type { CommandHandler } from './types.js';

export const status: CommandHandler = (_args, ctx) => ({
  ...ctx.status(),
  metrics: ctx.snapshot(),
  outbox: ctx.store.outboxCount(),
});
