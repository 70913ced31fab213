/** A live uPlot time series, sized to its box; the latest values are the chart's accessible name. */
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import type { VNode } from 'preact';
import uPlot from 'uplot';

export interface Series {
  readonly label: string;
  readonly color: string;
}

/** Colours that stay apart on the dark background (and for the common colour blindnesses, mostly). */
export const PALETTE = ['#4cc9f0', '#f9c74f', '#f3722c', '#90be6d', '#c77dff', '#f94144', '#43aa8b', '#ff99c8'];

const AXIS = { stroke: '#8b98a9', grid: { stroke: '#233044', width: 1 }, ticks: { stroke: '#233044', width: 1 } };

export function Chart({
  title,
  series,
  data,
  unit,
  format,
}: {
  title: string;
  series: readonly Series[];
  data: uPlot.AlignedData;
  unit: string;
  format: (v: number) => string;
}): VNode {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = series.map((s) => s.label).join('|');

  useEffect(() => {
    const el = box.current!;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: 170,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
      axes: [
        { ...AXIS, space: 60 },
        { ...AXIS, size: 56, values: (_u, ticks) => ticks.map((t) => format(t)) },
      ],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, points: { show: false } }))],
    };
    plot.current = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() =>
      plot.current?.setSize({ width: Math.max(200, el.clientWidth), height: 170 }),
    );
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [key]);

  useEffect(() => plot.current?.setData(data), [data]);

  const latest = series.map((s, i) => {
    const ys = data[i + 1] as ArrayLike<number | null | undefined> | undefined;
    const v = ys && ys.length > 0 ? ys[ys.length - 1] : null;
    return `${s.label} ${v === null || v === undefined ? 'no data' : format(v)}`;
  });
  return html`<figure class="chart">
    <figcaption>${title} <span class="unit">${unit}</span></figcaption>
    <div ref=${box} role="img" aria-label=${`${title}, latest: ${latest.join(', ')}`}></div>
  </figure>`;
}
