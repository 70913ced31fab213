/**
 * `preview`: {seconds, fps} streams the frames the device sees on `preview` — the frame, the prediction and each
 * layer's firing rate for it — for a bounded time, at a bounded rate. A console's device view asks and renews
 * while it is open; nobody asking means no frames, so an idle fleet sends none. One stream per device whoever
 * asks: a request extends the window and may raise the rate (never above MAX_FPS), so ten open pages cost the
 * broker what one does. The reply describes the model the frames run through (its card).
 */
import { readFileSync } from 'node:fs';
import { ConfigError, inspectBwsnn, show } from '../../runtime/index.js';
import type { ModelCard, PreviewMessage, PreviewResult } from '../messages.js';
import { round } from '../metrics/collector.js';
import type { CommandContext, CommandHandler, FrameResult } from './types.js';

/** Longest window one request opens, seconds. */
export const MAX_SECONDS = 60;
/** Frames per second at most, per device. */
export const MAX_FPS = 10;
const DEFAULTS = { seconds: 30, fps: 2 };

interface Window {
  until: number;
  fps: number;
  last: number;
  timer: NodeJS.Timeout | null;
  stop: () => void;
  card: ModelCard | null;
}

/** The open window of each agent (its command context). */
const windows = new WeakMap<CommandContext, Window>();

function bounded(value: unknown, field: 'seconds' | 'fps', min: number, max: number): number {
  if (value === undefined) return DEFAULTS[field];
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new ConfigError(`preview: ${field}: expected a number in [${min}, ${max}], got ${show(value)}`, field);
  }
  return value;
}

export const preview: CommandHandler = (args, ctx): PreviewResult => {
  const seconds = bounded(args.seconds, 'seconds', 1, MAX_SECONDS);
  const fps = bounded(args.fps, 'fps', 0.1, MAX_FPS);
  const now = Date.now();
  let w = windows.get(ctx);
  if (!w) {
    const opened: Window = { until: now, fps, last: 0, timer: null, card: null, stop: () => {} };
    opened.stop = ctx.results((r) => send(ctx, opened, r));
    windows.set(ctx, opened);
    w = opened;
  } else w.fps = Math.max(w.fps, fps);
  w.until = Math.max(w.until, now + seconds * 1000);
  // The window closes on time even when no frame comes to notice it.
  if (w.timer) clearTimeout(w.timer);
  const open = w;
  open.timer = setTimeout(() => close(ctx, open), open.until - now);
  open.timer.unref?.();
  return { until: w.until, fps: w.fps, model: card(ctx, w) };
};

function close(ctx: CommandContext, w: Window): void {
  if (w.timer) clearTimeout(w.timer);
  w.stop();
  if (windows.get(ctx) === w) windows.delete(ctx);
}

function send(ctx: CommandContext, w: Window, r: FrameResult): void {
  const now = Date.now();
  if (now >= w.until) {
    close(ctx, w);
    return;
  }
  if (now - w.last < 1000 / w.fps) return;
  w.last = now;
  const { engine } = ctx.active();
  const { model } = engine;
  const names = [model.first.name, ...model.hidden.map((l) => l.name)];
  const spikeRate: Record<string, number> = {};
  names.forEach((name, l) => (spikeRate[name] = round(r.result.spikeRates[l] ?? 0, 4)));
  const held = ctx.held(r.frame);
  const message: PreviewMessage = {
    frame: r.frame,
    ts: now,
    model: r.model,
    shape: [model.input[0], model.input[1], model.input[2]],
    data: held ? Buffer.from(held.data.buffer, held.data.byteOffset, held.data.byteLength).toString('base64') : null,
    class: r.result.prediction,
    name: model.labels[r.result.prediction] ?? null,
    confidence: round(r.result.confidence, 4),
    label: r.label,
    latencyMs: round(r.result.latencyMs, 4),
    probabilities: softmax(r.result.logits).map((p) => round(p, 4)),
    spikeRate,
  };
  ctx.publish('preview', message);
}

function softmax(logits: Float32Array): number[] {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** The running model's card, read from its file once per version. */
function card(ctx: CommandContext, w: Window): ModelCard {
  const { version } = ctx.active();
  if (w.card?.key === version) return w.card;
  const rec = ctx.registry.get(version)!;
  const s = inspectBwsnn(new Uint8Array(readFileSync(rec.path)));
  w.card = {
    key: version,
    sha256: rec.sha256,
    formatVersion: s.formatVersion,
    name: s.name,
    version: s.version,
    T: s.T,
    input: s.input,
    labels: s.labels,
    producer: s.producer,
    createdAt: s.createdAt,
    layers: s.layers,
    sizes: s.sizes,
    signed: s.signed,
    keyId: s.keyId,
  };
  return w.card;
}
