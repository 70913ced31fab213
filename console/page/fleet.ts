/** The fleet view: every device from its retained status and Last Will, with the figures of its last metrics. */
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import type { VNode } from 'preact';
import type { Device } from './link.js';
import { fmt, StateBadge, stateOf } from './ui.js';

interface Column {
  readonly key: string;
  readonly label: string;
  readonly numeric: boolean;
  readonly value: (d: Device) => number | string | null;
  readonly show: (d: Device) => string | VNode;
}

const m = (d: Device) => (d.status?.state === 'online' ? d.metrics : null);

const COLUMNS: readonly Column[] = [
  {
    key: 'device',
    label: 'Device',
    numeric: false,
    value: (d) => d.key,
    show: (d) =>
      html`<a href=${`#/device/${encodeURIComponent(d.fleet)}/${encodeURIComponent(d.device)}`}>${d.device}</a><span class="fleet">${d.fleet}</span>`,
  },
  {
    key: 'state',
    label: 'State',
    numeric: false,
    value: (d) => stateOf(d).state,
    show: (d) => html`<${StateBadge} device=${d} />`,
  },
  {
    key: 'model',
    label: 'Model',
    numeric: false,
    value: (d) => (d.status?.state === 'online' ? d.status.model : d.metrics?.model) ?? null,
    show: (d) => (d.status?.state === 'online' ? d.status.model : d.metrics?.model) ?? '—',
  },
  {
    key: 'fps',
    label: 'Frames/s',
    numeric: true,
    value: (d) => m(d)?.framesPerSecond ?? null,
    show: (d) => fmt.num(m(d)?.framesPerSecond, 1),
  },
  {
    key: 'p50',
    label: 'Latency p50',
    numeric: true,
    value: (d) => m(d)?.latencyMs.p50 ?? null,
    show: (d) => fmt.ms(m(d)?.latencyMs.p50),
  },
  {
    key: 'p99',
    label: 'Latency p99',
    numeric: true,
    value: (d) => m(d)?.latencyMs.p99 ?? null,
    show: (d) => fmt.ms(m(d)?.latencyMs.p99),
  },
  {
    key: 'accuracy',
    label: 'Accuracy',
    numeric: true,
    value: (d) => m(d)?.accuracy?.ratio ?? null,
    show: (d) =>
      !m(d) ? '—' : m(d)!.accuracy ? fmt.pct(m(d)!.accuracy!.ratio) : html`<span class="muted">no labels</span>`,
  },
  {
    key: 'rss',
    label: 'RSS',
    numeric: true,
    value: (d) => m(d)?.rssBytes ?? null,
    show: (d) => fmt.mb(m(d)?.rssBytes),
  },
  {
    key: 'outbox',
    label: 'Outbox',
    numeric: true,
    value: (d) => m(d)?.outbox ?? null,
    show: (d) => fmt.num(m(d)?.outbox, 0),
  },
  {
    key: 'seen',
    label: 'Last metrics',
    numeric: true,
    value: (d) => d.metrics?.ts ?? null,
    show: (d) => (d.metrics ? fmt.ago(d.metrics.ts) : '—'),
  },
];

export function FleetView({ devices }: { devices: readonly Device[] }): VNode {
  const [sort, setSort] = useState<{ key: string; dir: 1 | -1 }>({ key: 'device', dir: 1 });
  const [filter, setFilter] = useState('');
  const [only, setOnly] = useState<'all' | 'online' | 'offline'>('all');

  const words = filter.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const column = COLUMNS.find((c) => c.key === sort.key)!;
  const shown = devices
    .filter((d) => only === 'all' || stateOf(d).state === only)
    .filter((d) => {
      const text = `${d.key} ${stateOf(d).text} ${d.status?.state === 'online' ? d.status.model : ''}`.toLowerCase();
      return words.every((w) => text.includes(w));
    })
    .sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      // Devices without the figure go last whichever way the column is sorted.
      if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
      return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
    });

  const online = devices.filter((d) => d.status?.state === 'online');
  const totalFps = online.reduce((a, d) => a + (d.metrics?.framesPerSecond ?? 0), 0);
  const worstP99 = Math.max(0, ...online.map((d) => d.metrics?.latencyMs.p99 ?? 0));
  const labelled = online.map((d) => d.metrics?.accuracy).filter((a) => a);
  const accuracy = labelled.length
    ? labelled.reduce((a, x) => a + x!.correct, 0) / labelled.reduce((a, x) => a + x!.labelled, 0)
    : null;

  return html`<section aria-labelledby="fleet-title">
    <div class="title-row"><h1 id="fleet-title">Fleet</h1></div>
    <div class="tiles" role="group" aria-label="Fleet summary">
      <div class="tile"><span class="k">Devices online</span><span class="v" data-testid="online-count">${online.length} / ${devices.length}</span></div>
      <div class="tile"><span class="k">Frames/s, all devices</span><span class="v">${fmt.num(totalFps, 0)}</span></div>
      <div class="tile"><span class="k">Worst latency p99</span><span class="v">${online.length ? fmt.ms(worstP99) : '—'}</span></div>
      <div class="tile"><span class="k">Running accuracy</span><span class="v">${accuracy === null ? '—' : fmt.pct(accuracy)}</span></div>
    </div>
    <div class="card">
      <div class="toolbar">
        <label>Filter devices <input type="search" value=${filter} onInput=${(e: Event) => setFilter((e.target as HTMLInputElement).value)} placeholder="name, fleet, model…" /></label>
        <label>State
          <select value=${only} onChange=${(e: Event) => setOnly((e.target as HTMLSelectElement).value as typeof only)}>
            <option value="all">all</option><option value="online">online</option><option value="offline">offline</option>
          </select>
        </label>
        <span class="muted" aria-live="polite">${shown.length} of ${devices.length} shown</span>
      </div>
      <table class="fleet">
        <caption class="sr-only">Devices, sorted by ${column.label} ${sort.dir === 1 ? 'ascending' : 'descending'}</caption>
        <thead><tr>
          ${COLUMNS.map(
            (
              c,
            ) => html`<th scope="col" class=${c.numeric ? 'num' : ''} aria-sort=${c.key === sort.key ? (sort.dir === 1 ? 'ascending' : 'descending') : 'none'}>
              <button type="button" onClick=${() => setSort({ key: c.key, dir: c.key === sort.key ? (-sort.dir as 1 | -1) : c.numeric ? -1 : 1 })}>
                ${c.label}<span class="arrow" aria-hidden="true">${c.key === sort.key ? (sort.dir === 1 ? '▲' : '▼') : ''}</span>
              </button>
            </th>`,
          )}
        </tr></thead>
        <tbody>
          ${shown.length === 0 ? html`<tr><td colspan=${COLUMNS.length} class="muted empty">${devices.length === 0 ? 'No device has reported on this broker yet.' : 'No device matches the filter.'}</td></tr>` : null}
          ${shown.map((d) => html`<tr key=${d.key} data-device=${d.key} class=${stateOf(d).state}>${COLUMNS.map((c) => html`<td class=${c.numeric ? 'num' : ''} data-col=${c.key}>${c.show(d)}</td>`)}</tr>`)}
        </tbody>
      </table>
    </div>
  </section>`;
}
