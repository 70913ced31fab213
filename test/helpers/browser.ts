/**
 * Headless Chromium for the console's tests: Debian's /usr/bin/chromium driven by playwright-core (which downloads
 * no browser), a fresh profile per launch, errors of the page collected, screenshots saved with the test output
 * (test-output/console/, git-ignored).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
/** The reason the browser tests skip, or false when they run. */
export const noChromium: string | false = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is absent (Debian package "chromium"): the console's browser tests need it`;

export const SCREENSHOTS = fileURLToPath(new URL('../../test-output/console/', import.meta.url));

/**
 * Builds the console page from its current source (`npm run build:console`: the type check against the agent's
 * payload types, then the bundle), so that a test never drives a stale bundle; returns the build's report line.
 */
export function buildPage(): string {
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('../../console/build.mjs', import.meta.url))], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`npm run build:console failed:\n${r.stdout}${r.stderr}`);
  return r.stdout.trim();
}

export interface Browser {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Uncaught errors and console errors of the page, in order. */
  readonly errors: string[];
  /** Saves a full-page PNG as test-output/console/<name>.png; returns its path. */
  screenshot(name: string, page?: Page): Promise<string>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'sei-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const errors: string[] = [];
  const watch = (p: Page) => {
    p.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    p.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
  };
  const first = context.pages()[0];
  if (first) watch(first);
  context.on('page', watch);
  const page = first ?? (await context.newPage());
  mkdirSync(SCREENSHOTS, { recursive: true });
  return {
    context,
    page,
    errors,
    async screenshot(name, p = page) {
      const path = join(SCREENSHOTS, `${name}.png`);
      await p.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
