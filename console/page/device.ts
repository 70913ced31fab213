/**
 * The device view: live plots of its metrics, the frames it sees with their predictions and the firing rate of
 * each layer for the newest one (what `preview` streams while this view is open), the model card, and the
 * device's operations (activate a stored version, roll back, fine-tune) with their replies.
 */
import { html } from 'htm/preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import type {
  ActivateResult,
  LabelResult,
  ModelCard,
  ModelRecord,
  ModelsResult,
  PreviewMessage,
} from '../../device-agent/messages.js';
import { Chart, PALETTE } from './chart.js';
import type { Device, Link } from './link.js';
import type { CommandError } from './link.js';
import { ActivityLog, fmt, perform, StateBadge } from './ui.js';
import type { Ops } from './ui.js';

export function DeviceView({ link, device: d, ops }: { link: Link; device: Device; ops: Ops }): VNode {
  useEffect(() => link.watch(d), [link, d]);
  // The frame an operator picked to label (kept when newer ones push it out of the strip), else the newest.
  const [picked, setPicked] = useState<PreviewMessage | null>(null);
  const frame = picked ?? d.frames[0] ?? null;
  const m = d.status?.state === 'online' ? d.metrics : null;
  const model = d.status?.state === 'online' ? d.status.model : (d.metrics?.model ?? null);
  return html`<section aria-labelledby="device-title">
    <nav class="crumbs" aria-label="Breadcrumb"><a href="#/">Fleet</a> <span aria-hidden="true">/</span> ${d.fleet} <span aria-hidden="true">/</span> <span aria-current="page">${d.device}</span></nav>
    <div class="title-row">
      <h1 id="device-title">${d.device}</h1>
      <${StateBadge} device=${d} />
      <span class="chip" title="running model">${model ?? 'no model reported'}</span>
      ${d.status?.state === 'online' ? html`<span class="chip">${d.status.kernel ?? '?'} kernel</span><span class="chip">source ${d.status.source}</span>` : null}
    </div>
    <div class="tiles" role="group" aria-label="Latest metrics">
      <${Tile} k="Frames/s" v=${fmt.num(m?.framesPerSecond, 1)} />
      <${Tile} k="Latency p50" v=${fmt.ms(m?.latencyMs.p50)} />
      <${Tile} k="Latency p99" v=${fmt.ms(m?.latencyMs.p99)} />
      <${Tile} k="Running accuracy" v=${m?.accuracy ? fmt.pct(m.accuracy.ratio) : m ? 'no labels' : '—'} sub=${m?.accuracy ? `of ${m.accuracy.labelled} labelled frames` : undefined} />
      <${Tile} k="RSS" v=${fmt.mb(m?.rssBytes)} />
      <${Tile} k="Outbox" v=${fmt.num(m?.outbox, 0)} />
      <${Tile} k="Synaptic ops/frame" v=${m ? `${(m.synOpsPerFrame / 1e6).toFixed(2)} M` : '—'} />
      <${Tile} k="CPU temperature" v=${m?.cpuTemperatureC == null ? '—' : `${m.cpuTemperatureC.toFixed(1)} °C`} />
    </div>
    <${Charts} device=${d} />
    <div class="grid two">
      <${LiveFrames} device=${d} picked=${frame?.frame ?? null} pick=${setPicked} />
      <${Card} card=${d.preview?.model ?? null} problem=${d.previewProblem} />
    </div>
    <div class="grid two">
      <${Operations} link=${link} device=${d} ops=${ops} frame=${frame} />
      <${ActivityLog} activity=${ops.activity} target=${d.key} />
    </div>
    ${
      d.errors.length > 0
        ? html`<section class="card" aria-labelledby="errors-title"><h2 id="errors-title">Frames the device could not use</h2><ul class="errors">${d.errors.map((e) => html`<li><span class="when">${fmt.time(e.ts)}</span> ${e.origin}: ${e.error.message}</li>`)}</ul></section>`
        : null
    }
  </section>`;
}

function Tile({ k, v, sub }: { k: string; v: string; sub?: string }): VNode {
  return html`<div class="tile"><span class="k">${k}</span><span class="v">${v}</span>${sub ? html`<span class="sub">${sub}</span>` : null}</div>`;
}

/** Axis and legend figures: as many decimals as the magnitude needs. */
const short = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

function Charts({ device: d }: { device: Device }): VNode {
  const h = d.history;
  const layers = Object.keys(h.at(-1)?.spike ?? {});
  // New arrays only when a point arrived: uPlot redraws on setData.
  const last = h.at(-1)?.t ?? 0;
  const data = useMemo(() => {
    const t = h.map((p) => p.t);
    return {
      fps: [t, h.map((p) => p.fps)] as [number[], number[]],
      latency: [t, h.map((p) => p.p50), h.map((p) => p.p99)] as [number[], number[], number[]],
      spikes: [t, ...layers.map((l) => h.map((p) => p.spike[l] ?? null))] as [number[], ...(number | null)[][]],
      confidence: [d.confidence.map((c) => c[0]), d.confidence.map((c) => c[1])] as [number[], number[]],
    };
  }, [last, h.length, d.confidence.length, d.confidence.at(-1)?.[2], layers.join()]);
  return html`<div class="grid charts">
    <${Chart} title="Frames per second" unit="frames/s" series=${[{ label: 'frames/s', color: PALETTE[0]! }]} data=${data.fps} format=${short} />
    <${Chart} title="Inference latency" unit="ms" series=${[{ label: 'p50', color: PALETTE[3]! }, { label: 'p99', color: PALETTE[2]! }]} data=${data.latency} format=${short} />
    <${Chart} title="Confidence" unit="mean per second" series=${[{ label: 'confidence', color: PALETTE[1]! }]} data=${data.confidence} format=${(v: number) => v.toFixed(2)} />
    <${Chart} title="Spike rate per layer" unit="fraction of neuron-steps" series=${layers.map((l, i) => ({ label: l, color: PALETTE[i % PALETTE.length]! }))} data=${data.spikes} format=${(v: number) => v.toFixed(2)} />
  </div>`;
}

function FrameImage({ frame }: { frame: PreviewMessage }): VNode {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const c = ref.current;
    if (!c || !frame.data) return;
    const [h, w, ch] = frame.shape;
    const bytes = Uint8Array.from(atob(frame.data), (x) => x.charCodeAt(0));
    const img = new ImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      const grey = ch === 1;
      img.data[4 * i] = bytes[i * ch]!;
      img.data[4 * i + 1] = bytes[i * ch + (grey ? 0 : 1)]!;
      img.data[4 * i + 2] = bytes[i * ch + (grey ? 0 : 2)]!;
      img.data[4 * i + 3] = 255;
    }
    c.getContext('2d')!.putImageData(img, 0, 0);
  }, [frame]);
  const truth = frame.label === null ? '' : frame.label === frame.class ? ', correct' : `, truth class ${frame.label}`;
  return html`<canvas ref=${ref} width=${frame.shape[1]} height=${frame.shape[0]} role="img" aria-label=${`frame ${frame.frame}: ${frame.name ?? frame.class} ${fmt.pct(frame.confidence, 0)}${truth}`}></canvas>`;
}

function LiveFrames({
  device: d,
  picked,
  pick,
}: {
  device: Device;
  picked: number | null;
  pick: (frame: PreviewMessage) => void;
}): VNode {
  const newest = d.frames[0];
  const labels = d.preview?.model.labels ?? [];
  const mean = d.metrics?.spikeRate ?? {};
  const rates = newest ? Object.entries(newest.spikeRate) : [];
  const scale = Math.max(0.1, ...rates.map(([, v]) => v), ...Object.values(mean)) * 1.1;
  return html`<section class="card" aria-labelledby="frames-title">
    <h2 id="frames-title">Live frames</h2>
    ${
      d.frames.length === 0
        ? html`<p class="muted" role="status">${d.previewProblem ? `No frames: ${d.previewProblem}` : d.status?.state === 'online' ? 'Asking the device for a preview…' : 'The device is offline.'}</p>`
        : html`<ol class="frames" aria-label="Newest frames first">
          ${d.frames.map((f) => {
            const ok = f.label === null ? null : f.label === f.class;
            return html`<li key=${f.frame} class=${ok === null ? '' : ok ? 'right' : 'wrong'}>
              <button type="button" class="frame" aria-pressed=${f.frame === picked} title="pick this frame to label it" onClick=${() => pick(f)}>
                <${FrameImage} frame=${f} />
                <span class="pred">${f.name ?? f.class}</span>
                <span class="conf">${fmt.pct(f.confidence, 0)}${ok === false ? html` · truth ${labels[f.label!] ?? f.label}` : ''}</span>
              </button>
            </li>`;
          })}
        </ol>`
    }
    ${
      newest
        ? html`<h3>Firing rate per layer, frame ${newest.frame}</h3>
          <ul class="bars" aria-label=${`Firing rate per layer for frame ${newest.frame}`}>
            ${rates.map(
              ([layer, v]) => html`<li>
                <span class="name">${layer}</span>
                <span class="bar" aria-hidden="true"><span class="fill" style=${`width:${(100 * v) / scale}%`}></span>${mean[layer] !== undefined ? html`<span class="mean" style=${`left:${(100 * mean[layer]!) / scale}%`} title="running mean"></span>` : null}</span>
                <span class="val">${fmt.pct(v)}</span>
              </li>`,
            )}
          </ul>
          <p class="hint">Bar: this frame. Tick: the running mean over the last 256 frames (metrics).</p>
          <h3>Class probabilities, frame ${newest.frame}</h3>
          <ul class="bars probs" aria-label=${`Class probabilities for frame ${newest.frame}`}>
            ${newest.probabilities.map(
              (p, i) => html`<li class=${i === newest.class ? 'top' : ''}>
                <span class="name">${labels[i] ?? i}</span>
                <span class="bar" aria-hidden="true"><span class="fill" style=${`width:${100 * p}%`}></span></span>
                <span class="val">${fmt.pct(p)}</span>
              </li>`,
            )}
          </ul>`
        : null
    }
  </section>`;
}

function Card({ card, problem }: { card: ModelCard | null; problem: string | null }): VNode {
  return html`<section class="card" aria-labelledby="card-title">
    <h2 id="card-title">Model card</h2>
    ${
      !card
        ? html`<p class="muted">${problem ? `The card comes with the preview: ${problem}` : 'Waiting for the device…'}</p>`
        : html`<dl class="kv">
            <dt>Model</dt><dd>${card.key}</dd>
            <dt>Time steps T</dt><dd>${card.T}</dd>
            <dt>Input</dt><dd>${card.input.join(' × ')}</dd>
            <dt>Classes</dt><dd>${card.labels.length}: ${card.labels.join(', ')}</dd>
            <dt>File size</dt><dd>${fmt.bytes(card.sizes.file)} (header ${fmt.bytes(card.sizes.header)}, tensors ${fmt.bytes(card.sizes.data)})</dd>
            <dt>SHA-256</dt><dd class="mono">${card.sha256.slice(0, 16)}…</dd>
            <dt>Signed by key</dt><dd class="mono">${card.keyId ? `${card.keyId.slice(0, 16)}…` : 'unsigned'}</dd>
            <dt>Producer</dt><dd>${card.producer}</dd>
            <dt>Created</dt><dd>${card.createdAt}</dd>
            <dt>Format</dt><dd>.bwsnn v${card.formatVersion}</dd>
          </dl>
          <table class="layers">
            <caption>Layers</caption>
            <thead><tr><th scope="col">Layer</th><th scope="col">Op</th><th scope="col">Output</th><th scope="col" class="num">Bytes</th></tr></thead>
            <tbody>${card.layers.map((l) => html`<tr><td>${l.name}${l.shortcut ? html` <span class="muted">+ ${l.shortcut}</span>` : ''}</td><td class="mono">${l.op}</td><td>${l.outShape.join('×')}</td><td class="num">${fmt.bytes(l.bytes)}</td></tr>`)}</tbody>
          </table>`
    }
  </section>`;
}

function Operations({
  link,
  device: d,
  ops,
  frame,
}: {
  link: Link;
  device: Device;
  ops: Ops;
  frame: PreviewMessage | null;
}): VNode {
  const [versions, setVersions] = useState<readonly ModelRecord[] | null>(null);
  const [truth, setTruth] = useState('0');
  const labels = d.preview?.model.labels ?? [];
  const [problem, setProblem] = useState<string | null>(null);
  const [chosen, setChosen] = useState('');
  const active = d.status?.state === 'online' ? d.status.model : null;
  const online = d.status?.state === 'online';

  useEffect(() => {
    if (!online) return;
    link.command<ModelsResult>(d, 'models').then(
      (r) => {
        setVersions(r.models);
        setProblem(null);
        setChosen((c) => c || (r.models.find((x) => x.version !== r.active)?.version ?? r.active));
      },
      (err: CommandError) => setProblem(err.message),
    );
  }, [link, d, active, online]);

  const activate = () =>
    perform(
      ops,
      d.key,
      'activate',
      {
        title: `Activate ${chosen} on ${d.device}?`,
        body: `The device switches from ${active ?? 'its model'} to ${chosen} between two frames; frames queued for the old one are dropped.`,
        confirm: 'Activate',
      },
      () => link.command<ActivateResult>(d, 'activate', { version: chosen }),
      (r) => `now running ${r.active}`,
    );
  const rollback = () =>
    perform(
      ops,
      d.key,
      'roll back',
      {
        title: `Roll ${d.device} back?`,
        body: `The device goes back to the version its last update replaced (it now runs ${active ?? 'an unknown model'}).`,
        confirm: 'Roll back',
        danger: true,
      },
      () => link.command<ActivateResult>(d, 'activate', { rollback: true }),
      (r) =>
        'rolledBackFrom' in r ? `rolled back from ${r.rolledBackFrom} to ${r.active}` : `now running ${r.active}`,
    );
  const finetune = () =>
    perform(
      ops,
      d.key,
      'fine-tune',
      {
        title: `Fine-tune ${d.device}?`,
        body: "The device retrains its model's head on the frames labelled so far, gated by a holdout and the reference frames; an accepted head becomes a new version on probation.",
        confirm: 'Start fine-tuning',
      },
      () =>
        link.command<{ accepted?: boolean; version?: string | null; reasons?: string[] }>(
          d,
          'finetune',
          {},
          { timeoutMs: 60_000 },
        ),
      (r) =>
        r.accepted
          ? `accepted: ${r.version} runs on probation`
          : `refused by the gate: ${(r.reasons ?? []).filter((x) => x.startsWith('fail')).join('; ') || 'see the reply'}`,
    );

  const label = () => {
    if (!frame) return;
    const name = labels[Number(truth)] ?? truth;
    void perform(
      ops,
      d.key,
      'label',
      {
        title: `Label frame ${frame.frame} as ${name}?`,
        body: `The device stores the frame with this class for fine-tuning (it predicted ${frame.name ?? frame.class}).`,
        confirm: 'Label',
      },
      () => link.command<LabelResult>(d, 'label', { frame: frame.frame, label: Number(truth) }),
      (r) =>
        r.saved
          ? `frame ${frame.frame} stored as ${name}; the device holds ${r.total} labelled frames`
          : `frame ${frame.frame} is no longer held by the device (it keeps only its most recent frames): nothing stored`,
    );
  };

  return html`<section class="card" aria-labelledby="ops-title">
    <h2 id="ops-title">Operations</h2>
    ${!online ? html`<p class="muted">The device is offline: commands would not be answered.</p>` : null}
    <form class="ops" onSubmit=${(e: Event) => {
      e.preventDefault();
      void activate();
    }}>
      <label>Stored version
        <select value=${chosen} onChange=${(e: Event) => setChosen((e.target as HTMLSelectElement).value)} disabled=${!versions || !online}>
          ${(versions ?? []).map((v) => html`<option value=${v.version}>${v.version}${v.version === active ? ' (running)' : v.state === 'failed' ? ' (failed)' : ''}</option>`)}
        </select>
      </label>
      <button type="submit" disabled=${!online || !chosen || chosen === active}>Activate…</button>
    </form>
    ${problem ? html`<p class="problem" role="status">Stored versions unavailable: ${problem}</p>` : null}
    <form class="ops" onSubmit=${(e: Event) => {
      e.preventDefault();
      label();
    }}>
      <label>True class of frame ${frame?.frame ?? '—'}
        <select value=${truth} onChange=${(e: Event) => setTruth((e.target as HTMLSelectElement).value)} disabled=${!frame || !online}>
          ${labels.map((l, i) => html`<option value=${String(i)}>${l}</option>`)}
        </select>
      </label>
      <button type="submit" disabled=${!frame || !online}>Label…</button>
    </form>
    <div class="buttons">
      <button type="button" onClick=${rollback} disabled=${!online}>Roll back…</button>
      <button type="button" onClick=${finetune} disabled=${!online}>Fine-tune…</button>
    </div>
  </section>`;
}
