/**
 * Rollouts: ship an artifact `sei sign` already signed to devices of a fleet, in waves with an abort threshold.
 * The console server runs the rollout with this page's credentials (the page holds no key); each device's steps
 * come from its own `ota/status`, the waves and the outcome from the server's event stream.
 */
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import type { ApiError, Artifact, ArtifactList, RolloutEvent, RolloutRequest, RolloutStarted } from '../api.js';
import { isTerminal } from '../../device-agent/messages.js';
import type { JobStatus } from '../../device-agent/messages.js';
import type { Device, Link } from './link.js';
import { ActivityLog, fmt, perform, stateOf } from './ui.js';
import type { Ops } from './ui.js';

export interface Rollout {
  readonly started: RolloutStarted;
  readonly events: RolloutEvent[];
}

/** The rollouts this page started, newest first (kept while the page is open). */
export class RolloutLog {
  readonly rollouts: Rollout[] = [];
  constructor(private readonly changed: () => void) {}

  follow(started: RolloutStarted): void {
    const r: Rollout = { started, events: [] };
    this.rollouts.unshift(r);
    const source = new EventSource(`api/rollouts/${encodeURIComponent(started.id)}/events`);
    source.onmessage = (msg) => {
      const e = JSON.parse(msg.data as string) as RolloutEvent;
      r.events.push(e);
      if (e.type !== 'log') source.close();
      this.changed();
    };
    this.changed();
  }
}

async function api<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, init);
  const body = (await res.json()) as T | ApiError;
  if (!res.ok) throw new Error((body as ApiError).error.message);
  return body as T;
}

const STEPS = ['QUEUED', 'DOWNLOADING', 'VERIFYING', 'ACTIVATING', 'PROBATION'] as const;

export function RolloutsView({
  link,
  devices,
  log,
  ops,
}: {
  link: Link;
  devices: readonly Device[];
  log: RolloutLog;
  ops: Ops;
}): VNode {
  const [list, setList] = useState<ArtifactList | null>(null);
  const [listProblem, setListProblem] = useState<string | null>(null);
  const fleets = [...new Set(devices.map((d) => d.fleet))].sort();
  const [artifact, setArtifact] = useState('');
  const [fleet, setFleet] = useState('');
  const [picked, setPicked] = useState<ReadonlySet<string> | null>(null);
  const [waveSize, setWaveSize] = useState('');
  const [threshold, setThreshold] = useState('50');
  const [timeout, setTimeoutS] = useState('600');
  const [downgrade, setDowngrade] = useState(false);

  const load = () =>
    api<ArtifactList>('api/artifacts').then(
      (l) => {
        setList(l);
        setListProblem(null);
        setArtifact((a) => a || (l.artifacts.find((x) => !x.problem)?.id ?? ''));
      },
      (err: Error) => setListProblem(err.message),
    );
  useEffect(() => void load(), []);
  const theFleet = fleet || fleets[0] || '';
  const members = devices.filter((d) => d.fleet === theFleet).sort((a, b) => a.device.localeCompare(b.device));
  // Until the operator picks, the online devices of the fleet are the targets.
  const targets = picked ?? new Set(members.filter((d) => d.status?.state === 'online').map((d) => d.device));
  const chosen: Artifact | undefined = list?.artifacts.find((a) => a.id === artifact);

  const start = async () => {
    const devicesList = members.map((d) => d.device).filter((d) => targets.has(d));
    const req: RolloutRequest = {
      artifact,
      fleet: theFleet,
      devices: devicesList,
      abortThreshold: Number(threshold),
      timeoutS: Number(timeout),
      allowDowngrade: downgrade,
      ...(waveSize ? { waveSize: Number(waveSize) } : {}),
      ...(link.identity.username ? { username: link.identity.username } : {}),
      ...(link.identity.password ? { password: link.identity.password } : {}),
    };
    const waves = waveSize ? Math.ceil(devicesList.length / Number(waveSize)) : 1;
    await perform(
      ops,
      `${theFleet} (${devicesList.length} devices)`,
      'rollout',
      {
        title: `Roll ${chosen?.model ?? artifact} out to ${devicesList.length} device(s)?`,
        body: `${devicesList.join(', ')} in ${waves} wave(s); the rollout stops when more than ${threshold}% of a wave does not succeed. Each device checks the signature, runs the canaries and keeps the new model only if it passes probation.`,
        confirm: 'Start rollout',
        danger: true,
      },
      async () => {
        const started = await api<RolloutStarted>('api/rollouts', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(req),
        });
        log.follow(started);
        return started;
      },
      (s) => `job ${s.id} started: ${s.model} to ${s.devices.join(', ')}`,
    );
  };

  return html`<section aria-labelledby="rollouts-title">
    <div class="title-row"><h1 id="rollouts-title">Rollouts</h1></div>
    <div class="grid two">
      <form class="card rollout-form" onSubmit=${(e: Event) => {
        e.preventDefault();
        void start();
      }} aria-labelledby="new-rollout">
        <h2 id="new-rollout">New rollout</h2>
        <p class="hint">Ships a model signed with <code>sei sign</code> from ${list ? html`<code>${list.dir}</code>` : 'the artifacts folder'}: the page holds no key.</p>
        ${listProblem ? html`<p class="problem" role="alert">Artifacts unavailable: ${listProblem}</p>` : null}
        <label>Signed artifact
          <select value=${artifact} onChange=${(e: Event) => setArtifact((e.target as HTMLSelectElement).value)} required>
            ${list?.artifacts.length === 0 ? html`<option value="">none found</option>` : null}
            ${(list?.artifacts ?? []).map((a) => html`<option value=${a.id} disabled=${a.problem !== null}>${a.model} — ${a.id}${a.problem ? ' (unusable)' : ''}</option>`)}
          </select>
        </label>
        ${
          chosen
            ? html`<p class="hint">${fmt.bytes(chosen.size)}, sha256 <span class="mono">${chosen.sha256.slice(0, 12)}…</span>, signed by key <span class="mono">${chosen.keyId.slice(0, 12)}…</span>, ${chosen.canaries} canary frames${chosen.problem ? html` — <strong>${chosen.problem}</strong>` : ''}</p>`
            : null
        }
        <label>Fleet
          <select value=${theFleet} onChange=${(e: Event) => {
            setFleet((e.target as HTMLSelectElement).value);
            setPicked(null);
          }}>
            ${fleets.map((f) => html`<option value=${f}>${f}</option>`)}
          </select>
        </label>
        <fieldset>
          <legend>Devices</legend>
          ${members.length === 0 ? html`<p class="muted">No device in this fleet.</p>` : null}
          ${members.map(
            (d) => html`<label class="check">
              <input type="checkbox" checked=${targets.has(d.device)} onChange=${(e: Event) => {
                const next = new Set(targets);
                if ((e.target as HTMLInputElement).checked) next.add(d.device);
                else next.delete(d.device);
                setPicked(next);
              }} />
              ${d.device} <span class="muted">${stateOf(d).text}</span>
            </label>`,
          )}
        </fieldset>
        <div class="row">
          <label>Wave size <input type="number" min="1" value=${waveSize} placeholder="all" onInput=${(e: Event) => setWaveSize((e.target as HTMLInputElement).value)} /></label>
          <label>Abort threshold (%) <input type="number" min="0" max="100" value=${threshold} onInput=${(e: Event) => setThreshold((e.target as HTMLInputElement).value)} required /></label>
          <label>Device time-out (s) <input type="number" min="1" value=${timeout} onInput=${(e: Event) => setTimeoutS((e.target as HTMLInputElement).value)} required /></label>
        </div>
        <label class="check"><input type="checkbox" checked=${downgrade} onChange=${(e: Event) => setDowngrade((e.target as HTMLInputElement).checked)} /> Allow a downgrade (a version not newer than the running one)</label>
        <div class="buttons"><button type="button" onClick=${() => void load()}>Refresh artifacts</button><button type="submit" class="primary" disabled=${!chosen || chosen.problem !== null || targets.size === 0}>Start rollout…</button></div>
      </form>
      <div>
        ${log.rollouts.length === 0 ? html`<section class="card"><h2>Progress</h2><p class="muted">No rollout started from this page yet.</p></section>` : log.rollouts.map((r) => html`<${Progress} key=${r.started.id} rollout=${r} devices=${devices} />`)}
        <${ActivityLog} activity=${ops.activity} />
      </div>
    </div>
  </section>`;
}

function Progress({ rollout: r, devices }: { rollout: Rollout; devices: readonly Device[] }): VNode {
  const end = r.events.find((e) => e.type !== 'log');
  const state = !end
    ? 'running'
    : end.type === 'failed'
      ? 'failed'
      : end.outcome.ok
        ? 'succeeded'
        : end.outcome.aborted
          ? 'aborted'
          : 'incomplete';
  return html`<section class="card rollout" data-job=${r.started.id} data-state=${state} aria-labelledby=${`job-${r.started.id}`}>
    <h2 id=${`job-${r.started.id}`}>${r.started.model} <span class="muted">job ${r.started.id}</span> <span class=${`badge ${state}`}>${state}</span></h2>
    ${end?.type === 'failed' ? html`<p class="problem" role="alert">${end.error.message}</p>` : null}
    <table class="steps">
      <caption class="sr-only">Steps per device</caption>
      <thead><tr><th scope="col">Device</th>${STEPS.map((s) => html`<th scope="col">${s.toLowerCase()}</th>`)}<th scope="col">Outcome</th></tr></thead>
      <tbody>
        ${r.started.devices.map((name) => {
          const d = devices.find((x) => x.fleet === r.started.fleet && x.device === name);
          const seen: JobStatus[] = d?.jobs.get(r.started.id) ?? [];
          const last = seen.at(-1);
          const final = end?.type === 'done' ? end.outcome.devices.find((x) => x.device === name) : undefined;
          const steps = new Set(seen.map((s) => s.step ?? s.state));
          const outcome = last && isTerminal(last.state) ? last : null;
          return html`<tr data-device=${name}>
            <th scope="row">${name}</th>
            ${STEPS.map((s) => {
              const here = last && !isTerminal(last.state) && (last.step ?? last.state) === s;
              const done = steps.has(s) || (s === 'QUEUED' && seen.length > 0);
              const text =
                s === 'DOWNLOADING' && seen.some((x) => x.step === 'DOWNLOADING')
                  ? `${Math.max(...seen.map((x) => x.received))}/${last!.blocks}`
                  : done
                    ? '✓'
                    : '';
              return html`<td class=${`step ${here ? 'here' : done ? 'done' : ''}`} data-step=${s} data-seen=${done ? 'yes' : 'no'}>${text}</td>`;
            })}
            <td class=${`outcome ${outcome?.state ?? final?.state ?? ''}`} data-outcome=${outcome?.state ?? final?.state ?? ''}>
              ${outcome ? `${outcome.state}${outcome.active ? `, runs ${outcome.active}` : ''}${outcome.reason ? ` — ${outcome.reason}` : ''}` : final ? `${final.state}${final.reason ? ` — ${final.reason}` : ''}` : '…'}
            </td>
          </tr>`;
        })}
      </tbody>
    </table>
    <details open>
      <summary>Rollout log</summary>
      <ol class="log" role="log" aria-label=${`Log of job ${r.started.id}`}>${r.events.map((e) => html`<li><span class="when">${fmt.time(e.ts)}</span> ${e.type === 'log' ? e.line : e.type === 'done' ? `finished: ${e.outcome.ok ? 'every device updated' : e.outcome.aborted ? 'rollout aborted' : 'not every device updated'}` : `failed: ${e.error.message}`}</li>`)}</ol>
    </details>
  </section>`;
}
