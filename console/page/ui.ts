/** What every view shares: formatting, the confirmation dialog, the activity log of actions and their replies. */
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import type { VNode } from 'preact';
import { CommandError } from './link.js';
import type { Device } from './link.js';

export const fmt = {
  num: (v: number | null | undefined, digits = 1) =>
    v === null || v === undefined || !Number.isFinite(v)
      ? '—'
      : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }),
  ms: (v: number | null | undefined) =>
    v === null || v === undefined ? '—' : `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`,
  pct: (v: number | null | undefined, digits = 1) =>
    v === null || v === undefined ? '—' : `${(100 * v).toFixed(digits)}%`,
  mb: (v: number | null | undefined) => (v === null || v === undefined ? '—' : `${(v / 2 ** 20).toFixed(0)} MB`),
  bytes: (v: number) =>
    v < 1024 ? `${v} B` : v < 2 ** 20 ? `${(v / 1024).toFixed(1)} KiB` : `${(v / 2 ** 20).toFixed(2)} MiB`,
  time: (ts: number) => new Date(ts).toLocaleTimeString('en-GB', { hour12: false }),
  ago: (ts: number, now = Date.now()) => {
    const s = Math.max(0, Math.round((now - ts) / 1000));
    return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : `${Math.floor(s / 3600)} h ago`;
  },
};

/** online, offline (with since when, and why) or unknown: what the fleet table and the device header show. */
export function stateOf(d: Device): { state: 'online' | 'offline' | 'unknown'; text: string } {
  const s = d.status;
  if (!s) return { state: 'unknown', text: 'no status yet' };
  if (s.state === 'online')
    return {
      state: 'online',
      text: d.since ? `online since ${fmt.time(d.since)}` : `online since ${fmt.time(s.startedAt)}`,
    };
  const reason = s.reason === 'stopped' ? 'stopped' : 'connection lost';
  const since = d.since ?? (d.metrics ? d.metrics.ts : null);
  return { state: 'offline', text: since ? `offline since ${fmt.time(since)} (${reason})` : `offline (${reason})` };
}

export function StateBadge({ device }: { device: Device }): VNode {
  const s = stateOf(device);
  return html`<span class=${`badge ${s.state}`} data-state=${s.state}><span class="dot" aria-hidden="true"></span>${s.text}</span>`;
}

// ---- activity: every action, what it asked and what came back ----

export interface Entry {
  readonly id: number;
  readonly ts: number;
  readonly target: string;
  readonly action: string;
  state: 'pending' | 'ok' | 'error';
  text: string;
  detail: unknown;
}

export class Activity {
  readonly entries: Entry[] = [];
  private seq = 0;
  constructor(private readonly changed: () => void) {}

  add(target: string, action: string): Entry {
    const e: Entry = {
      id: ++this.seq,
      ts: Date.now(),
      target,
      action,
      state: 'pending',
      text: 'sent, waiting for the reply…',
      detail: null,
    };
    this.entries.unshift(e);
    this.entries.length = Math.min(this.entries.length, 50);
    this.changed();
    return e;
  }

  settle(e: Entry, state: 'ok' | 'error', text: string, detail: unknown = null): void {
    Object.assign(e, { state, text, detail });
    this.changed();
  }
}

export function ActivityLog({ activity, target }: { activity: Activity; target?: string }): VNode {
  const entries = activity.entries.filter((e) => target === undefined || e.target === target);
  return html`<section class="card activity" aria-labelledby="activity-title">
    <h2 id="activity-title">Activity</h2>
    <ol role="log" aria-live="polite" aria-label="Actions and replies">
      ${entries.length === 0 ? html`<li class="muted">No actions yet: each action asks for confirmation, then shows the device's reply here.</li>` : null}
      ${entries.map(
        (e) => html`<li key=${e.id} class=${`entry ${e.state}`} data-action=${e.action} data-state=${e.state}>
          <span class="when">${fmt.time(e.ts)}</span>
          <span class="what"><strong>${e.action}</strong> · ${e.target}</span>
          <span class="outcome">${e.state === 'pending' ? '…' : e.state === 'ok' ? 'ok' : 'error'}</span>
          <p class="text">${e.text}</p>
          ${e.detail !== null ? html`<details><summary>reply</summary><pre>${JSON.stringify(e.detail, null, 2)}</pre></details>` : null}
        </li>`,
      )}
    </ol>
  </section>`;
}

// ---- confirmation ----

export interface ConfirmRequest {
  readonly title: string;
  readonly body: string;
  readonly confirm: string;
  /** Irreversible or fleet-wide: the confirm button is drawn as a warning. */
  readonly danger?: boolean;
  resolve(ok: boolean): void;
}

/** The one modal dialog: every action passes through it (Escape or Cancel says no). */
export function ConfirmDialog({ request, done }: { request: ConfirmRequest | null; done: () => void }): VNode {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (request && !dialog.open) dialog.showModal();
    if (!request && dialog.open) dialog.close();
  }, [request]);
  const answer = (ok: boolean) => {
    request?.resolve(ok);
    done();
  };
  return html`<dialog ref=${ref} aria-labelledby="confirm-title" aria-describedby="confirm-body" onCancel=${(
    e: Event,
  ) => {
    e.preventDefault();
    answer(false);
  }}>
    ${
      request
        ? html`<form method="dialog" onSubmit=${(e: Event) => {
            e.preventDefault();
            answer(true);
          }}>
          <h2 id="confirm-title">${request.title}</h2>
          <p id="confirm-body">${request.body}</p>
          <div class="buttons">
            <button type="button" onClick=${() => answer(false)}>Cancel</button>
            <button type="submit" class=${request.danger ? 'danger' : 'primary'} autofocus>${request.confirm}</button>
          </div>
        </form>`
        : null
    }
  </dialog>`;
}

// ---- actions ----

export interface Ops {
  /** Asks; resolves true when the operator confirms. */
  confirm(ask: Omit<ConfirmRequest, 'resolve'>): Promise<boolean>;
  readonly activity: Activity;
}

/**
 * One action: confirmation, then the request, then its outcome in the activity log — the reply's summary, or the
 * device's error, the broker's refusal or the time-out, in words.
 */
export async function perform<R>(
  ops: Ops,
  target: string,
  action: string,
  ask: Omit<ConfirmRequest, 'resolve'>,
  run: () => Promise<R>,
  say: (result: R) => string,
): Promise<R | null> {
  if (!(await ops.confirm(ask))) return null;
  const entry = ops.activity.add(target, action);
  try {
    const result = await run();
    ops.activity.settle(entry, 'ok', say(result), result);
    return result;
  } catch (err) {
    const e = err as CommandError | Error;
    ops.activity.settle(entry, 'error', e.message, e instanceof CommandError ? e.body : null);
    return null;
  }
}
