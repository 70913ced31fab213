/**
 * The fleet console page: signs in to the broker (with the credentials `sei console` was given, else the ones the
 * operator types), then shows the fleet, one device, or the rollouts, by the address's #fragment.
 */
import { html, render } from 'htm/preact';
import { useEffect, useReducer, useState } from 'preact/hooks';
import type { VNode } from 'preact';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import type { ConsoleConfig } from '../api.js';
import { DeviceView } from './device.js';
import { FleetView } from './fleet.js';
import { Link } from './link.js';
import type { Identity } from './link.js';
import { RolloutLog, RolloutsView } from './rollouts.js';
import { Activity, ConfirmDialog } from './ui.js';
import type { ConfirmRequest, Ops } from './ui.js';

type Route = { view: 'fleet' } | { view: 'device'; fleet: string; device: string } | { view: 'rollouts' };

function route(): Route {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (parts[0] === 'device' && parts[1] && parts[2]) return { view: 'device', fleet: parts[1], device: parts[2] };
  if (parts[0] === 'rollouts') return { view: 'rollouts' };
  return { view: 'fleet' };
}

function SignIn({ config, onLink }: { config: ConsoleConfig; onLink: (l: Link) => void }): VNode {
  const [url, setUrl] = useState(config.mqtt);
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      onLink(await Link.connect({ url, username: username || null, password: password || null }, config.topicRoot));
    } catch (err) {
      setProblem(`Could not sign in to ${url}: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <form class="card" onSubmit=${submit} aria-labelledby="signin-title">
      <h1 id="signin-title">sei-edge fleet console</h1>
      <p class="hint">Sign in with a broker account: a viewer account watches, an operator account may also command devices.</p>
      <label>Broker (MQTT over WebSocket) <input name="url" value=${url} onInput=${(e: Event) => setUrl((e.target as HTMLInputElement).value)} required /></label>
      <label>User name <input name="username" autocomplete="username" value=${username} onInput=${(e: Event) => setUsername((e.target as HTMLInputElement).value)} /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" value=${password} onInput=${(e: Event) => setPassword((e.target as HTMLInputElement).value)} /></label>
      ${problem ? html`<p class="problem" role="alert">${problem}</p>` : null}
      <div class="buttons"><button type="submit" class="primary" disabled=${busy}>${busy ? 'Connecting…' : 'Sign in'}</button></div>
    </form>
  </main>`;
}

function App({ config }: { config: ConsoleConfig }): VNode {
  const [link, setLink] = useState<Link | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [where, setWhere] = useState<Route>(route());
  const [, redraw] = useReducer((n: number) => n + 1, 0);
  const [asking, setAsking] = useState<ConfirmRequest | null>(null);
  const [activity] = useState(() => new Activity(() => redraw(0)));
  const [rollouts] = useState(() => new RolloutLog(() => redraw(0)));

  useEffect(() => {
    const on = () => setWhere(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  // Credentials given to `sei console`: sign in at once.
  useEffect(() => {
    if (config.signIn !== 'auto') return;
    const identity: Identity = { url: config.mqtt, username: config.username, password: config.password };
    Link.connect(identity, config.topicRoot).then(setLink, (err: Error) =>
      setProblem(`Could not sign in to ${config.mqtt} as ${config.username ?? 'an anonymous client'}: ${err.message}`),
    );
  }, []);
  useEffect(() => (link ? link.fleet.subscribe(() => redraw(0)) : undefined), [link]);
  // "3 s ago" must age without a message.
  useEffect(() => {
    const t = setInterval(() => redraw(0), 1000);
    return () => clearInterval(t);
  }, []);

  if (!link) {
    if (config.signIn === 'auto' && !problem)
      return html`<main class="signin"><p role="status">Signing in to ${config.mqtt}…</p></main>`;
    return html`${problem ? html`<p class="problem banner" role="alert">${problem}</p>` : null}<${SignIn} config=${config} onLink=${setLink} />`;
  }
  const ops: Ops = { activity, confirm: (ask) => new Promise((resolve) => setAsking({ ...ask, resolve })) };
  const devices = [...link.fleet.devices.values()];
  const device = where.view === 'device' ? link.fleet.devices.get(`${where.fleet}/${where.device}`) : undefined;
  const signOut = () => {
    link.close();
    setLink(null);
    location.hash = '#/';
  };
  const current = (v: Route['view']) =>
    where.view === v || (v === 'fleet' && where.view === 'device') ? 'page' : undefined;
  return html`<header class="top">
      <a class="brand" href="#/"><span class="logo" aria-hidden="true">◆</span> sei-edge <span>fleet console</span></a>
      <nav aria-label="Views">
        <a href="#/" aria-current=${current('fleet')}>Fleet</a>
        <a href="#/rollouts" aria-current=${current('rollouts')}>Rollouts</a>
      </nav>
      <div class="conn" role="status" aria-label="Broker connection">
        <span class=${`dot ${link.online ? 'online' : 'offline'}`} aria-hidden="true"></span>
        ${link.online ? 'connected' : `reconnecting${link.lastError ? ` (${link.lastError})` : ''}…`} as <strong>${link.identity.username ?? 'anonymous'}</strong> · MQTT ${link.protocol === 5 ? '5' : '3.1.1'} · ${link.identity.url}
        <button type="button" onClick=${signOut}>Sign out</button>
      </div>
    </header>
    <main>
      ${where.view === 'fleet' ? html`<${FleetView} devices=${devices} />` : null}
      ${where.view === 'device' ? (device ? html`<${DeviceView} key=${device.key} link=${link} device=${device} ops=${ops} />` : html`<p class="muted" role="status">No device ${where.fleet}/${where.device} has reported yet. <a href="#/">Back to the fleet</a></p>`) : null}
      ${where.view === 'rollouts' ? html`<${RolloutsView} link=${link} devices=${devices} log=${rollouts} ops=${ops} />` : null}
    </main>
    <${ConfirmDialog} request=${asking} done=${() => setAsking(null)} />`;
}

fetch('config.json')
  .then((r) => r.json() as Promise<ConsoleConfig>)
  .then((config) => render(html`<${App} config=${config} />`, document.getElementById('app')!));
