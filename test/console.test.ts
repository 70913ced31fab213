/**
 * `sei console` end to end, in headless Chromium: the embedded Aedes broker with its websocket listener, three
 * real agents (two in this process with OTA keys, one a `sei agent` process so that it can be frozen), the console
 * server, and the page driven as an operator would. The page lists the three devices with the figures their
 * metrics carry; the device view plots, previews frames and shows the card; a refused rollback is shown with the
 * device's reason; a rollout started from the page updates two devices step by step; a frozen device goes offline
 * within its keepalive; the page works from the keyboard and every control has a name in the accessibility tree.
 * Screenshots go to test-output/console/.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { startConsole } from '../console/server.js';
import type { ConsoleServer } from '../console/server.js';
import { Agent } from '../device-agent/index.js';
import type { MetricsMessage } from '../device-agent/messages.js';
import { otaModelFile, otaSection, testKeys } from './fixtures/ota/models.js';
import { agentConfig, Operator } from './helpers/agent.js';
import { aedes } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';
import { buildPage, launchBrowser, noChromium } from './helpers/browser.js';
import type { Browser } from './helpers/browser.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FLEET = 'f';
/** The frozen device's keepalive, seconds: the broker gives up on it after 1.5 times that. */
const KEEPALIVE = 2;

/** Polls `check` until it returns true (or a message saying what is still wrong, for the failure). */
async function until(what: string, check: () => Promise<true | string>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const r = await check().catch((err: Error) => err.message);
    if (r === true) return;
    last = r;
    if (Date.now() > deadline) assert.fail(`${what}: still ${last} after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** A fleet table row's cells, by column (none while the row is absent). */
async function rowCells(page: Page, device: string): Promise<Record<string, string> | null> {
  const cells = await page
    .locator(`tr[data-device="${FLEET}/${device}"] td`)
    .evaluateAll((tds) => tds.map((td) => [td.getAttribute('data-col')!, td.textContent!.trim()] as const));
  return cells.length ? Object.fromEntries(cells) : null;
}

/** The attribute of every element a selector matches, in document order. */
const attributes = (page: Page, selector: string, name: string) =>
  page.locator(selector).evaluateAll((els, n) => els.map((e) => e.getAttribute(n)), name);

const number = (text: string) => Number(text.replace(/[^0-9.-]/g, ''));

describe('sei console against the embedded broker and three agents', { skip: noChromium }, () => {
  let dir: string;
  let broker: TestBroker;
  let agents: Agent[] = [];
  let child: ChildProcess | null = null;
  let op: Operator;
  let server: ConsoleServer;
  let browser: Browser;
  let page: Page;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sei-console-'));
    const artifacts = join(dir, 'artifacts');
    mkdirSync(artifacts);
    broker = await aedes({ ws: true });
    op = await Operator.connect(broker.url, 4);
    await op.subscribe('sei/#');
    const keys = testKeys(dir);
    const first = otaModelFile(dir, 1, 1);
    // The artifact as an operator makes it: `sei sign` writes PREFIX.bwsnn and PREFIX.manifest.json.
    const signed = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [
          '--import',
          'tsx',
          join(ROOT, 'scripts/cli.ts'),
          'sign',
          '--model',
          otaModelFile(dir, 2, 2),
          '--key',
          keys.privatePath,
          '--out',
          join(artifacts, 'ota-test-v2'),
        ],
        { cwd: ROOT },
        (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)),
      ),
    );
    assert.match(signed, /wrote .*ota-test-v2\.bwsnn/);

    const config = (device: string, extra: Record<string, unknown>) =>
      agentConfig({
        dir,
        model: first,
        url: broker.url,
        device,
        extra: { fleet: FLEET, source: { frameRate: 40 }, reporting: { metricsInterval: 0.5 }, ...extra },
      });
    agents = ['a1', 'a2'].map(
      (device) =>
        new Agent({
          config: config(device, { ota: otaSection(keys.publicPath, { dir: join(dir, `${device}-models`) }) }),
        }),
    );
    for (const a of agents) {
      a.on('error', () => {});
      await a.start();
    }
    const cfg = join(dir, 'a3.json');
    writeFileSync(cfg, JSON.stringify(config('a3', { mqtt: { keepalive: KEEPALIVE, protocol: 4 } })));
    child = spawn(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'agent', '--config', cfg], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await op.waitFor((m) => m.topic === `sei/${FLEET}/a3/metrics`, 'the a3 process reporting', 30_000);

    assert.match(buildPage(), /app\.js .*gzipped/);
    server = await startConsole({ mqtt: broker.wsUrl!, port: 0, anonymous: true, artifacts });
    browser = await launchBrowser();
    page = browser.page;
    await page.goto(server.url);
  });

  after(async () => {
    child?.kill('SIGKILL');
    await browser?.close();
    await server?.close();
    await Promise.all(agents.map((a) => a.stop()));
    await op?.close();
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the fleet view lists the three devices with the figures their metrics carry', async () => {
    await until('three online rows', async () => {
      const states = await attributes(page, 'tbody tr[data-device] [data-state]', 'data-state');
      return states.length === 3 && states.every((s) => s === 'online') ? true : `states ${JSON.stringify(states)}`;
    });
    assert.equal(await page.getByTestId('online-count').textContent(), '3 / 3');
    for (const device of ['a1', 'a2', 'a3']) {
      await until(`${device}'s row showing its latest metrics message`, async () => {
        const m = op.messages.filter((x) => x.topic === `sei/${FLEET}/${device}/metrics`).at(-1)?.json as
          | MetricsMessage
          | undefined;
        const cells = await rowCells(page, device);
        if (!m || !cells) return 'no metrics or no row';
        const wrong = [
          cells.model === m.model ? null : `model ${cells.model} vs ${m.model}`,
          Math.abs(number(cells.fps!) - m.framesPerSecond) <= 0.051 ? null : `fps ${cells.fps} vs ${m.framesPerSecond}`,
          Math.abs(number(cells.p50!) - m.latencyMs.p50) <= 0.051 ? null : `p50 ${cells.p50} vs ${m.latencyMs.p50}`,
          Math.abs(number(cells.p99!) - m.latencyMs.p99) <= 0.051 ? null : `p99 ${cells.p99} vs ${m.latencyMs.p99}`,
          m.accuracy && Math.abs(number(cells.accuracy!) - 100 * m.accuracy.ratio) <= 0.051
            ? null
            : `accuracy ${cells.accuracy} vs ${JSON.stringify(m.accuracy)}`,
          Math.abs(number(cells.rss!) - m.rssBytes! / 2 ** 20) <= 0.51 ? null : `rss ${cells.rss} vs ${m.rssBytes}`,
          number(cells.outbox!) === m.outbox ? null : `outbox ${cells.outbox} vs ${m.outbox}`,
        ].filter((x) => x !== null);
        return wrong.length === 0 ? true : wrong.join('; ');
      });
    }
    // Sorting by frames/s and filtering act on the same rows.
    await page.getByRole('button', { name: 'Frames/s' }).click();
    assert.equal(await page.getByRole('columnheader', { name: 'Frames/s' }).getAttribute('aria-sort'), 'descending');
    await page.getByRole('searchbox', { name: 'Filter devices' }).fill('a2');
    await until('the filter leaving a2', async () => {
      const rows = await attributes(page, 'tbody tr[data-device]', 'data-device');
      return JSON.stringify(rows) === JSON.stringify([`${FLEET}/a2`]) ? true : JSON.stringify(rows);
    });
    await page.getByRole('searchbox', { name: 'Filter devices' }).fill('');
    await browser.screenshot('fleet');
    // Nobody has opened a device view: no device sends preview frames.
    assert.equal(op.messages.filter((m) => /^sei\/[^/]+\/[^/]+\/preview$/.test(m.topic)).length, 0);
  });

  test('the device view plots, shows live frames with predictions, firing rates per layer and the model card; only it gets frames', async () => {
    await page.getByRole('link', { name: 'a1', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'a1' }).waitFor();
    await page.getByRole('list', { name: 'Newest frames first' }).getByRole('img').first().waitFor({ timeout: 10_000 });
    for (const name of ['Frames per second', 'Inference latency', 'Confidence', 'Spike rate per layer']) {
      await page.getByRole('img', { name: new RegExp(`^${name}, latest: `) }).waitFor();
    }
    const card = page.getByRole('region', { name: 'Model card' });
    await card.getByText('ota-test@1').waitFor();
    const bars = page.getByRole('list', { name: /^Firing rate per layer for frame \d+$/ }).getByRole('listitem');
    assert.equal(await bars.count(), 2, 'conv0 and one binary block: the test model has two spiking layers');
    const frame = await page
      .getByRole('list', { name: 'Newest frames first' })
      .getByRole('img')
      .first()
      .getAttribute('aria-label');
    assert.match(frame!, /^frame \d+: \S+ \d+%/);
    await until('a1 streaming preview frames', async () =>
      op.messages.some((m) => m.topic === `sei/${FLEET}/a1/preview`) ? true : 'none yet',
    );
    const previews = op.messages.filter((m) => /^sei\/[^/]+\/[^/]+\/preview$/.test(m.topic));
    assert.deepEqual(
      [...new Set(previews.map((m) => m.topic))],
      [`sei/${FLEET}/a1/preview`],
      'only the watched device sends frames',
    );
    assert.equal(previews[0]!.json.shape.join('x'), '28x28x1');
    await browser.screenshot('device');
  });

  test('a device reply with an error is shown: rollback with nothing to roll back to', async () => {
    await page.getByRole('button', { name: 'Roll back…' }).click();
    const dialog = page.getByRole('dialog', { name: 'Roll a1 back?' });
    await dialog.waitFor();
    await browser.screenshot('confirm');
    await dialog.getByRole('button', { name: 'Roll back' }).click();
    const entry = page.getByRole('log', { name: 'Actions and replies' }).locator('li[data-action="roll back"]').first();
    await until('the refusal in the activity log', async () =>
      (await entry.getAttribute('data-state')) === 'error' ? true : `state ${await entry.getAttribute('data-state')}`,
    );
    assert.match(
      (await entry.textContent())!,
      /activate: rollback: expected a running version installed by an update, got "ota-test@1"/,
    );
  });

  test('a frame picked in the live strip is labelled on the device, for fine-tuning', async () => {
    const strip = page.getByRole('list', { name: 'Newest frames first' });
    await strip.getByRole('button').first().click();
    // Newer frames push it along the strip; it stays the one picked.
    const frame = Number(
      (await strip.getByRole('button', { pressed: true }).getByRole('img').getAttribute('aria-label'))!.match(
        /^frame (\d+)/,
      )![1],
    );
    await new Promise((r) => setTimeout(r, 600));
    assert.match(
      (await strip.getByRole('button', { pressed: true }).getByRole('img').getAttribute('aria-label'))!,
      new RegExp(`^frame ${frame}:`),
    );
    await page.getByRole('combobox', { name: `True class of frame ${frame}` }).selectOption('3');
    await page.getByRole('button', { name: 'Label…' }).click();
    await page
      .getByRole('dialog', { name: `Label frame ${frame} as class3?` })
      .getByRole('button', { name: 'Label' })
      .click();
    const entry = page.locator('li[data-action="label"]').first();
    await until('the label stored', async () =>
      (await entry.getAttribute('data-state')) === 'ok' ? true : `${await entry.textContent()}`,
    );
    assert.match(
      (await entry.textContent())!,
      new RegExp(`frame ${frame} stored as class3; the device holds 1 labelled frames`),
    );
    assert.equal(agents[0]!.store.labelledFrameCount(), 1);
  });

  test('a rollout started from the page updates two devices, and the page shows each step', async () => {
    await page.getByRole('link', { name: 'Rollouts' }).click();
    const form = page.getByRole('form', { name: 'New rollout' });
    await form.getByRole('combobox', { name: 'Signed artifact' }).selectOption('ota-test-v2');
    await form.getByRole('checkbox', { name: /^a3 / }).uncheck();
    await form.getByRole('spinbutton', { name: 'Wave size' }).fill('1');
    await form.getByRole('button', { name: 'Start rollout…' }).click();
    await page
      .getByRole('dialog', { name: 'Roll ota-test@2 out to 2 device(s)?' })
      .getByRole('button', { name: 'Start rollout' })
      .click();
    const progress = page.locator('section.rollout').first();
    await until(
      'the rollout finishing',
      async () => {
        const state = await progress.getAttribute('data-state');
        return state === 'succeeded' ? true : `${state}: ${await progress.textContent()}`;
      },
      90_000,
    );
    for (const device of ['a1', 'a2']) {
      const row = progress.locator(`tr[data-device="${device}"]`);
      for (const step of ['DOWNLOADING', 'VERIFYING', 'ACTIVATING', 'PROBATION'])
        assert.equal(
          await row.locator(`td[data-step="${step}"]`).getAttribute('data-seen'),
          'yes',
          `${device} ${step}`,
        );
      assert.equal(await row.locator('td.outcome').getAttribute('data-outcome'), 'SUCCEEDED');
      assert.match((await row.locator('td.outcome').textContent())!, /runs ota-test@2/);
    }
    const log = (await page.getByRole('log', { name: /^Log of job / }).textContent())!;
    assert.match(log, /wave 1\/2 done: 1 SUCCEEDED/);
    assert.match(log, /wave 2\/2 done: 1 SUCCEEDED/);
    assert.deepEqual(
      agents.map((a) => a.modelVersion),
      ['ota-test@2', 'ota-test@2'],
    );
    await browser.screenshot('rollout');
    await page.getByRole('link', { name: 'Fleet', exact: true }).click();
    await until('the fleet table showing the new model', async () => {
      const models = await Promise.all(['a1', 'a2', 'a3'].map(async (d) => (await rowCells(page, d))?.model));
      return JSON.stringify(models) === JSON.stringify(['ota-test@2', 'ota-test@2', 'ota-test@1'])
        ? true
        : JSON.stringify(models);
    });
  });

  test('keyboard navigation and labelled controls, from the accessibility tree', async () => {
    await page.goto(`${server.url}#/`);
    await page.getByRole('row', { name: /a1/ }).waitFor();
    // Every interactive node of Chromium's accessibility tree has a name.
    const cdp = await page.context().newCDPSession(page);
    const { nodes } = (await cdp.send('Accessibility.getFullAXTree')) as {
      nodes: Array<{ ignored: boolean; role?: { value: string }; name?: { value: string } }>;
    };
    const controls = nodes.filter(
      (n) =>
        !n.ignored &&
        ['button', 'link', 'textbox', 'searchbox', 'combobox', 'checkbox', 'spinbutton'].includes(n.role?.value ?? ''),
    );
    assert.ok(controls.length >= 15, `only ${controls.length} controls`);
    assert.deepEqual(
      controls.filter((n) => !n.name?.value.trim()).map((n) => n.role!.value),
      [],
      'controls without an accessible name',
    );
    await cdp.detach();

    // From the address bar's side: Tab reaches the views, the filter, the sort buttons and each device's link.
    await page.locator('body').focus();
    const reached: string[] = [];
    for (let i = 0; i < 30; i++) {
      await page.keyboard.press('Tab');
      // Evaluated as text: this project's type check has no DOM.
      reached.push(
        await page.evaluate<string>(
          // biome-ignore lint/suspicious/noTemplateCurlyInString: the template literal runs in the page
          "`${document.activeElement?.tagName.toLowerCase()}:${document.activeElement?.innerText?.trim() || document.activeElement?.getAttribute('type') || ''}`",
        ),
      );
    }
    for (const want of [
      'a:Fleet',
      'a:Rollouts',
      'button:Sign out',
      'input:search',
      'button:Latency p99',
      'a:a1',
      'a:a2',
      'a:a3',
    ])
      assert.ok(reached.includes(want), `Tab never reached ${want}: ${reached.join(' | ')}`);

    // Enter on a focused sort button sorts; Enter on a device link opens it; Escape dismisses a dialog untouched.
    await page.getByRole('button', { name: 'Latency p99' }).focus();
    await page.keyboard.press('Enter');
    assert.equal(await page.getByRole('columnheader', { name: 'Latency p99' }).getAttribute('aria-sort'), 'descending');
    await page.getByRole('link', { name: 'a2', exact: true }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'a2' }).waitFor();
    const before = await page.locator('li[data-action]').count();
    await page.getByRole('button', { name: 'Fine-tune…' }).focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Fine-tune a2?' });
    await dialog.waitFor();
    assert.equal(
      await page.evaluate<string>('document.activeElement?.textContent'),
      'Start fine-tuning',
      'focus moves into the dialog, on its action',
    );
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await page.locator('li[data-action]').count(), before, 'a dismissed dialog sends nothing');
  });

  test('a frozen device turns offline within its keepalive', async () => {
    await page.goto(`${server.url}#/`);
    await page.getByRole('row', { name: /a3/ }).waitFor();
    const state = () => page.locator(`tr[data-device="${FLEET}/a3"] [data-state]`).getAttribute('data-state');
    assert.equal(await state(), 'online');
    // SIGSTOP: the process holds its connection but sends nothing, as a box that hangs or loses its cable.
    const stopped = Date.now();
    child!.kill('SIGSTOP');
    await until(
      'a3 offline',
      async () => ((await state()) === 'offline' ? true : `${await state()}`),
      3 * KEEPALIVE * 1000,
    );
    const took = (Date.now() - stopped) / 1000;
    assert.ok(took <= 1.5 * KEEPALIVE + 1, `offline after ${took.toFixed(1)} s, keepalive ${KEEPALIVE} s`);
    assert.match(
      (await page.locator(`tr[data-device="${FLEET}/a3"] [data-state]`).textContent())!,
      /offline since \d\d:\d\d:\d\d \(connection lost\)/,
    );
    assert.equal(await page.getByTestId('online-count').textContent(), '2 / 3');
    await browser.screenshot('offline');
    child!.kill('SIGKILL');
    assert.deepEqual(browser.errors, []);
  });
});
