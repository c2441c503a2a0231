// Real Chromium for the dashboard's tests: Debian's /usr/bin/chromium driven by playwright-core
// (no browser download, ever), phone-sized contexts, axe-core accessibility checks, screenshots.
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from './procs.js';

export const CHROMIUM = process.env.PORTHOLE_CHROMIUM ?? '/usr/bin/chromium';

/** Where screenshots go (git-ignored): a person can look at every page after a run. */
export const SCREENSHOT_DIR = join(repoRoot, 'test', '.artifacts', 'screenshots');

/**
 * Launches headless Chromium. Playwright gives each launch a fresh temporary profile
 * (user-data dir) and removes it on close. `*.localhost` is mapped to 127.0.0.1, where the
 * relay listens (Chromium would otherwise try ::1 first).
 */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install chromium, or set PORTHOLE_CHROMIUM)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1',
    ],
  });
}

/** A phone: 390×844 CSS pixels at 3×, touch, mobile viewport rules. A fresh cookie jar each time. */
export function phoneContext(browser: Browser, opts: { colorScheme?: 'light' | 'dark' } = {}): Promise<BrowserContext> {
  return browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 3,
    isMobile: true,
    hasTouch: true,
    colorScheme: opts.colorScheme ?? 'light',
    locale: 'en-GB',
    timezoneId: 'UTC',
  });
}

let axeSource: string | undefined;

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/**
 * Runs axe-core on the page as it is and returns the serious and critical violations (WCAG 2
 * A/AA and best practices). axe is evaluated through the DevTools protocol, which the page's
 * Content-Security-Policy does not govern: the pages keep their real CSP (no bypassCSP).
 */
export async function axeSerious(page: Page): Promise<AxeViolation[]> {
  axeSource ??= await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  const loaded = await page.evaluate(() => typeof (globalThis as unknown as { axe?: unknown }).axe === 'object');
  if (!loaded) await page.evaluate(axeSource);
  const results = await page.evaluate(async () => {
    const g = globalThis as unknown as { document: unknown };
    const axe = (globalThis as unknown as { axe: { run: (ctx: unknown, opts: unknown) => Promise<{ violations: Array<{ id: string; impact: string | null; help: string; nodes: Array<{ target: unknown[] }> }> }> } }).axe;
    const r = await axe.run(g.document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }, resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => JSON.stringify(n.target)) }));
  });
  return results.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** Saves a full-page screenshot as NAME.png under SCREENSHOT_DIR; returns the path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true, animations: 'disabled' });
  return path;
}
