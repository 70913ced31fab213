/** `label`: {frame, label} or {labels: [{frame, label}, ...]} for frames still held in memory; stored for fine-tuning. */
import { ConfigError, show } from '../../runtime/index.js';
import type { LabelResult } from '../messages.js';
import type { Json } from '../mqtt/link.js';
import { parseLabel } from '../sources/mqtt.js';
import type { LabelledFrame } from '../store/types.js';
import type { CommandHandler } from './types.js';

export const label: CommandHandler = (args, ctx): LabelResult => {
  const items = Array.isArray(args.labels) ? (args.labels as unknown[]) : [args];
  const { model } = ctx.active().engine;
  const [h, w, c] = model.input;
  const classes = model.labels.length;
  const saved: LabelledFrame[] = [];
  const missing: number[] = [];
  for (const [i, item] of items.entries()) {
    const it = item as Json;
    const field = Array.isArray(args.labels) ? `labels[${i}]` : '';
    if (typeof it !== 'object' || it === null)
      throw new ConfigError(`label: ${field}: expected {frame, label}, got ${show(it)}`, field);
    const frame = it.frame;
    if (typeof frame !== 'number' || !Number.isInteger(frame) || frame < 1)
      throw new ConfigError(
        `label: ${field}${field ? '.' : ''}frame: expected a frame id (integer >= 1), got ${show(frame)}`,
        `${field}frame`,
      );
    const label = parseLabel(it.label, `label: ${field}${field ? '.' : ''}label`, classes);
    const held = ctx.held(frame);
    if (!held) missing.push(frame);
    else saved.push({ frame, ts: held.ts, label, shape: [h, w, c], data: held.data });
  }
  const before = ctx.store.labelledFrameCount();
  ctx.store.saveLabelledFrames(saved);
  const total = ctx.store.labelledFrameCount();
  ctx.finetuner.labelled(before, total);
  return { saved: saved.length, missing, total };
};
