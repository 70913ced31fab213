/**
 * `capture`: {count, label?, seconds?} keeps the next `count` inferred frames (1..1000, default 1) in the capture
 * store (device-agent/capture), labelled `label` (a class index or name of the running model, or a new class name)
 * or unlabelled; replies once they are taken, or after `seconds` (default 60) with those taken so far.
 */
import { ConfigError, show } from '../../runtime/index.js';
import { captureLabel, MAX_COUNT } from '../capture/index.js';
import type { CaptureResult } from '../messages.js';
import type { CommandHandler } from './types.js';

const FIELDS = ['count', 'label', 'seconds'];
const MAX_SECONDS = 3600;

export const capture: CommandHandler = async (args, ctx): Promise<CaptureResult> => {
  for (const key of Object.keys(args))
    if (!FIELDS.includes(key))
      throw new ConfigError(`capture: ${key}: expected one of ${FIELDS.join(', ')}, got ${show(args[key])}`, key);
  const count = args.count ?? 1;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > MAX_COUNT)
    throw new ConfigError(`capture: count: expected an integer in [1, ${MAX_COUNT}], got ${show(args.count)}`, 'count');
  const seconds = args.seconds ?? 60;
  if (typeof seconds !== 'number' || !(seconds > 0 && seconds <= MAX_SECONDS))
    throw new ConfigError(
      `capture: seconds: expected a number in (0, ${MAX_SECONDS}], got ${show(args.seconds)}`,
      'seconds',
    );
  const labels = ctx.active().engine.model.labels;
  const label =
    args.label === undefined || args.label === null ? null : captureLabel(args.label, 'capture: label', labels);
  const { ids, timedOut, stats } = await ctx.capture.request(count, label, seconds * 1000);
  return { ids, label, timedOut, store: stats };
};
