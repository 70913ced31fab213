/**
 * `label`: {frame, label} or {labels: [{frame, label}, ...]} for frames still held in memory, stored for
 * fine-tuning; an item {capture, label} labels a frame of the capture store instead (device-agent/capture: a class
 * index or name of the running model, a new class name, or null to unlabel it), what `sei capture pull` files it
 * under.
 */
import { ConfigError, show } from '../../runtime/index.js';
import type { LabelResult } from '../messages.js';
import type { Json } from '../mqtt/link.js';
import { captureLabel } from '../capture/index.js';
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
  const captures: Array<{ id: number; name: string | null }> = [];
  for (const [i, item] of items.entries()) {
    const it = item as Json;
    const field = Array.isArray(args.labels) ? `labels[${i}]` : '';
    if (typeof it !== 'object' || it === null)
      throw new ConfigError(`label: ${field}: expected {frame, label} or {capture, label}, got ${show(it)}`, field);
    const at = `label: ${field}${field ? '.' : ''}`;
    if (it.capture !== undefined) {
      const id = it.capture;
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 1)
        throw new ConfigError(`${at}capture: expected a capture id (integer >= 1), got ${show(id)}`, `${field}capture`);
      const name = it.label === null ? null : captureLabel(it.label, `${at}label`, model.labels);
      captures.push({ id, name });
      continue;
    }
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
  // Every item is checked before anything is stored: a refused command changes nothing.
  const before = ctx.store.labelledFrameCount();
  ctx.store.saveLabelledFrames(saved);
  const total = ctx.store.labelledFrameCount();
  ctx.finetuner.labelled(before, total);
  if (captures.length === 0) return { saved: saved.length, missing, total };
  const notKept = captures.filter((c) => !ctx.capture.store.setLabel(c.id, c.name)).map((c) => c.id);
  return {
    saved: saved.length,
    missing,
    total,
    captures: { labelled: captures.length - notKept.length, missing: notKept },
  };
};
