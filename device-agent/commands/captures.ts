/** `captures`: {after?, limit?} lists the captured frames with an id above `after` (default 0), at most `limit` (1..500, default 100). */
import { ConfigError, show } from '../../runtime/index.js';
import { CAPTURE_BLOCK } from '../capture/index.js';
import type { CapturesResult } from '../messages.js';
import type { CommandHandler } from './types.js';

const MAX_LIMIT = 500;

export const captures: CommandHandler = (args, ctx): CapturesResult => {
  const after = args.after ?? 0;
  if (typeof after !== 'number' || !Number.isInteger(after) || after < 0)
    throw new ConfigError(`captures: after: expected a capture id (integer >= 0), got ${show(args.after)}`, 'after');
  const limit = args.limit ?? 100;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
    throw new ConfigError(
      `captures: limit: expected an integer in [1, ${MAX_LIMIT}], got ${show(args.limit)}`,
      'limit',
    );
  const frames = ctx.capture.store.list(after, limit);
  return {
    frames,
    next: frames.length === limit ? frames.at(-1)!.id : null,
    blockSize: CAPTURE_BLOCK,
    store: ctx.capture.store.stats(),
  };
};
