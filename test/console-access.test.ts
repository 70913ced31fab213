/**
 * The console's access control as a deployment has it: Mosquitto (MQTT 5 over its websockets listener) with a
 * password file and an ACL in which a viewer account may only subscribe and an operator account may publish
 * commands. In headless Chromium: a wrong password is refused at sign-in, a viewer signs in with the keyboard and
 * watches the fleet, is refused a rollout and every command with the broker's reason while nothing reaches the
 * devices, and an operator's commands go through.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { startConsole } from '../console/server.js';
import type { ConsoleServer } from '../console/server.js';
import { Agent } from '../device-agent/index.js';
import { otaModelFile, testKeys } from './fixtures/ota/models.js';
import { agentConfig, Operator } from './helpers/agent.js';
import { mosquitto, mosquittoAvailable } from './helpers/brokers.js';
import type { TestBroker } from './helpers/brokers.js';
import { buildPage, launchBrowser, noChromium } from './helpers/browser.js';
import type { Browser } from './helpers/browser.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ACL = `# the fleet's operators see and command everything
user operator
topic readwrite sei/#

# a viewer only watches
user viewer
topic read sei/#

# each device only under its own prefix
pattern readwrite sei/f/%u/#
`;
const USERS = { operator: 'op-secret', viewer: 'view-secret', d1: 'd1-secret', d2: 'd2-secret' };

describe('the console with Mosquitto accounts: viewer and operator', {
  skip: noChromium || (!mosquittoAvailable && 'no mosquitto'),
}, () => {
  let dir: string;
  let broker: TestBroker;
  let agents: Agent[] = [];
  let op: Operator;
  let server: ConsoleServer;
  let browser: Browser;
  let page: Page;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sei-console-acl-'));
    const artifacts = join(dir, 'artifacts');
    mkdirSync(artifacts);
    broker = await mosquitto({ users: USERS, acl: ACL, websockets: true });
    op = await Operator.connect(broker.url, 5, { username: 'operator', password: USERS.operator });
    await op.subscribe('sei/#');
    const keys = testKeys(dir);
    await new Promise<void>((resolve, reject) =>
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
          join(artifacts, 'v2'),
        ],
        { cwd: ROOT },
        (err, _o, stderr) => (err ? reject(new Error(stderr)) : resolve()),
      ),
    );
    const model = otaModelFile(dir, 1, 1);
    agents = (['d1', 'd2'] as const).map(
      (device) =>
        new Agent({
          config: agentConfig({
            dir,
            model,
            url: broker.url,
            device,
            protocol: 5,
            extra: {
              fleet: 'f',
              mqtt: { username: device, password: USERS[device], protocol: 5 },
              reporting: { metricsInterval: 0.5 },
            },
          }),
        }),
    );
    for (const a of agents) {
      a.on('error', () => {});
      await a.start();
    }
    assert.match(buildPage(), /app\.js .*gzipped/);
    server = await startConsole({ mqtt: broker.wsUrl!, port: 0, artifacts });
    browser = await launchBrowser();
    page = browser.page;
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    await Promise.all(agents.map((a) => a.stop()));
    await op?.close();
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const signIn = async (username: string, password: string) => {
    await page.goto(server.url);
    const form = page.getByRole('form', { name: 'sei-edge fleet console' });
    await form.waitFor();
    // The keyboard alone: Tab from the broker field to the account fields, Enter submits.
    await form.getByRole('textbox', { name: 'Broker (MQTT over WebSocket)' }).focus();
    await page.keyboard.press('Tab');
    await page.keyboard.type(username);
    await page.keyboard.press('Tab');
    await page.keyboard.type(password);
    await page.keyboard.press('Enter');
  };

  test('a wrong password is refused at sign-in, and the page says why', async () => {
    await signIn('viewer', 'wrong');
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(
      (await alert.textContent())!,
      /^Could not sign in to ws:\/\/127\.0\.0\.1:\d+: .*(bad user name or password|not authori[sz]ed)/i,
    );
  });

  test('a viewer signs in with the keyboard and watches the fleet over MQTT 5', async () => {
    await signIn('viewer', USERS.viewer);
    await page.getByRole('status', { name: 'Broker connection' }).getByText('viewer').waitFor();
    assert.match(
      (await page.getByRole('status', { name: 'Broker connection' }).textContent())!,
      /connected as viewer · MQTT 5/,
    );
    for (const d of ['d1', 'd2']) await page.locator(`tr[data-device="f/${d}"] [data-state="online"]`).waitFor();
    await page.locator('tr[data-device="f/d1"] td[data-col="fps"]').filter({ hasText: /\d/ }).waitFor();
  });

  test('the viewer cannot start a rollout and is told why; nothing reaches the devices', async () => {
    const from = op.messages.length;
    await page.getByRole('link', { name: 'Rollouts' }).click();
    const form = page.getByRole('form', { name: 'New rollout' });
    await form.getByRole('combobox', { name: 'Signed artifact' }).selectOption('v2');
    await form.getByRole('button', { name: 'Start rollout…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Start rollout' }).click();
    const progress = page.locator('section.rollout').first();
    await progress.and(page.locator('[data-state="failed"]')).waitFor({ timeout: 15_000 });
    assert.match(
      (await progress.getByRole('alert').textContent())!,
      /^rollout refused: the broker does not let user "viewer" publish device commands \(Publish error: Not authorized\); this account can only watch: sign in with an operator account to deploy$/,
    );
    await browser.screenshot('viewer-rollout-refused');
    assert.deepEqual(
      op.messages
        .slice(from)
        .filter((m) => m.topic.includes('/ota/job'))
        .map((m) => m.topic),
      [],
    );
    assert.deepEqual(
      agents.map((a) => a.modelVersion),
      ['ota-test@1', 'ota-test@1'],
    );
  });

  test("the viewer's commands are refused by the broker, and the page says so", async () => {
    await page.evaluate("location.hash = '#/device/f/d1'");
    await page.getByRole('heading', { level: 1, name: 'd1' }).waitFor();
    const frames = page.getByRole('region', { name: 'Live frames' });
    await frames
      .getByText(
        /^No frames: refused by the broker: user "viewer" may not publish sei\/f\/d1\/cmd\/preview \(Not authorized\)/,
      )
      .waitFor();
    await page.getByRole('button', { name: 'Roll back…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Roll back' }).click();
    const entry = page.locator('li[data-action="roll back"]').first();
    await entry.and(page.locator('[data-state="error"]')).waitFor();
    assert.match(
      (await entry.textContent())!,
      /refused by the broker: user "viewer" may not publish sei\/f\/d1\/cmd\/activate \(Not authorized\); this account can only watch/,
    );
    await browser.screenshot('viewer-refused');
    assert.equal(
      op.messages.filter((m) => m.topic.startsWith('sei/f/d1/reply/')).length,
      0,
      'the device never saw a request',
    );
  });

  test("an operator's commands go through: live frames, and the device's own reply", async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn('operator', USERS.operator);
    await page.getByRole('status', { name: 'Broker connection' }).getByText('operator').waitFor();
    await page.evaluate("location.hash = '#/device/f/d1'");
    await page.getByRole('list', { name: 'Newest frames first' }).getByRole('img').first().waitFor({ timeout: 10_000 });
    await page.getByRole('button', { name: 'Roll back…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Roll back' }).click();
    const entry = page.locator('li[data-action="roll back"]').first();
    await entry.and(page.locator('[data-state="error"]')).waitFor();
    assert.match((await entry.textContent())!, /activate: rollback: expected a running version installed by an update/);
    assert.deepEqual(browser.errors, []);
  });
});
