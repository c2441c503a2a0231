// The phone dashboard in real Chromium at 390×844, against a real relay, agent and demo printer
// (child processes): first-run setup, sign-in, the printer online with a live thumbnail, the
// printer's own UI through the tunnel, the webcam, share links, pairing, the sign-in lockout,
// and axe-core on every page in light and dark. Screenshots land in test/.artifacts/screenshots.
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { axeSerious, launchBrowser, phoneContext, screenshot, SCREENSHOT_DIR } from './src/browser.js';
import { startDemoPrinter, type DemoPrinter } from './src/demo.js';
import {
  addDevice,
  agentCli,
  agentConfig,
  deviceRequest,
  relayCommand,
  spawnManaged,
  startAgent,
  startRelay,
  stopAll,
  tempDir,
  type RelayProcess,
} from './src/procs.js';

const OWNER = 'owner';
const PASSWORD = 'correct horse battery staple 7';

let demo: DemoPrinter;
let relay: RelayProcess;
let browser: Browser;
let base: string;
let setupToken: string;
/** The owner's phone: one context, signed in from the first test on. */
let owner: BrowserContext;
let page: Page;
let demoId = '';
const shots: string[] = [];

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** RFC 6238 (SHA-1, 6 digits, 30 s), as authenticator apps compute it: the test is the phone's app. */
function totp(base32: string, at: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bits = [...base32.replace(/[\s=]/g, '').toUpperCase()].map((c) => alphabet.indexOf(c).toString(2).padStart(5, '0')).join('');
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30_000)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const n = (mac.readUInt32BE(mac[19]! & 0xf) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}

/** axe in light and dark, and a screenshot of each. Fails with the violations listed. */
async function checkPage(p: Page, name: string): Promise<void> {
  for (const scheme of ['light', 'dark'] as const) {
    await p.emulateMedia({ colorScheme: scheme });
    const violations = await axeSerious(p);
    expect(violations, `${name} (${scheme}): ${JSON.stringify(violations, null, 1)}`).toEqual([]);
    shots.push(await screenshot(p, `${name}-${scheme}`));
  }
  await p.emulateMedia({ colorScheme: 'light' });
}

/** An <img> as far as these tests look at it (the test project has no DOM types). */
type Img = { complete: boolean; naturalWidth: number; hidden: boolean; style: { transform: string } };
const decoded = (el: unknown) => {
  const i = el as Img;
  return i.complete && i.naturalWidth > 0 && !i.hidden;
};
const CLEAR_ALERT = "document.querySelector('[role=alert]')?.remove()";

/** Two element screenshots that differ: the picture moves. */
async function framesChange(img: Locator, timeoutMs = 20_000): Promise<void> {
  await until('a decoded webcam picture', () => img.evaluate(decoded), timeoutMs);
  const first = await img.screenshot();
  await until(
    'a different webcam frame',
    async () => {
      const next = await img.screenshot();
      return !next.equals(first);
    },
    timeoutMs,
  );
}

beforeAll(async () => {
  demo = await startDemoPrinter();
  relay = await startRelay({ env: { PORTHOLE_LOGIN_DELAY_MS: '1', PORTHOLE_LOG_LEVEL: 'info' } });
  const line = await relay.waitForLog('no account yet: open the setup link to create the first admin', 15_000);
  setupToken = new URL(String(line.json?.setupUrl)).searchParams.get('token') ?? '';
  base = `http://localhost:${relay.port}`;
  browser = await launchBrowser();
  owner = await phoneContext(browser);
  page = await owner.newPage();
  page.setDefaultTimeout(20_000);
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await stopAll();
  await demo?.close();
  if (shots.length > 0) process.stdout.write(`\nDashboard screenshots (${shots.length}): ${SCREENSHOT_DIR}\n`);
});

describe('phone dashboard', () => {
  it('first-run setup, sign in, the demo printer online with a thumbnail, its UI through the tunnel, the webcam moving', async () => {
    // A fresh relay sends the phone to setup.
    await page.goto(`${base}/app/`);
    await page.waitForURL(/\/app\/setup$/);
    await expect.poll(() => page.getByLabel('Setup token').isVisible()).toBe(true);
    await page.goto(`${base}/app/setup?token=${setupToken}`);
    await expect.poll(() => page.getByRole('heading', { name: 'Set up Porthole' }).isVisible()).toBe(true);
    expect(await page.getByLabel('Setup token').isVisible()).toBe(false);
    await checkPage(page, '01-setup');
    await page.getByLabel('Username').fill(OWNER);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByLabel('Password again').fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(`${base}/app/`);
    await expect.poll(() => page.getByText('No printers yet.').isVisible()).toBe(true);

    // The demo printer: a device owned by the new admin, its agent dialling in.
    const device = await addDevice(relay, { name: 'Demo printer', slug: 'demo', owner: OWNER });
    demoId = device.id;
    await startAgent({ config: agentConfig({ relay, credential: device.credential, ui: demo.url, webcam: demo.url }) });

    // Sign out (from the account page) and back in.
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.waitForURL(/\/app\/login\?signedOut=1$/);
    await expect.poll(() => page.getByRole('status').textContent()).toContain('You are signed out');
    await checkPage(page, '02-login');
    await page.getByLabel('Username').fill(OWNER);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/app/`);

    // The app shell is cached by its service worker (installable, fast on a slow network).
    await until('an active service worker', () => page.evaluate("navigator.serviceWorker.getRegistration('/app/').then((r) => Boolean(r && r.active))") as Promise<boolean>);

    const card = page.locator('li.printer', { hasText: 'Demo printer' });
    await expect.poll(() => card.locator('.state').textContent(), { timeout: 20_000 }).toMatch(/^Online/);
    // The thumbnail is a real picture from the camera, through the relay's snapshot.
    await until('a thumbnail frame', () => card.locator('.thumb img').evaluate(decoded));
    await checkPage(page, '03-printers');

    // Open-in-one-tap: the printer's own page through the tunnel, its WebSocket live.
    await card.getByRole('link', { name: 'Open printer UI for Demo printer' }).click();
    await page.waitForURL(`http://demo.localhost:${relay.port}/`);
    await expect.poll(() => page.title()).toBe('Demo printer');
    await expect.poll(() => page.locator('#conn').textContent(), { timeout: 20_000 }).toBe('live');
    shots.push(await screenshot(page, '04-printer-ui'));

    // The printer's page in the dashboard: the webcam streams, and its frames change.
    await page.goto(`${base}/app/printers/${demoId}`);
    await expect.poll(() => page.getByRole('heading', { name: 'Demo printer', level: 1 }).isVisible()).toBe(true);
    const stream = page.getByRole('img', { name: 'Live webcam of Demo printer' });
    await framesChange(stream);
    // Rotation is applied to the picture and remembered on this phone.
    await page.getByRole('button', { name: 'Rotate a quarter turn' }).click();
    expect(await stream.evaluate((el) => (el as unknown as Img).style.transform)).toContain('rotate(90deg)');
    await page.getByRole('button', { name: 'Rotate a quarter turn' }).click();
    await page.getByRole('button', { name: 'Rotate a quarter turn' }).click();
    await page.getByRole('button', { name: 'Rotate a quarter turn' }).click();
    // Double-tap zooms in, the button zooms back out.
    await stream.dblclick();
    expect(await stream.evaluate((el) => (el as unknown as Img).style.transform)).toContain('scale(2.5)');
    await page.getByRole('button', { name: 'Reset zoom' }).click();
    expect(await stream.evaluate((el) => (el as unknown as Img).style.transform)).toMatch(/^translate\(0px, 0px\) scale\(1\) rotate\(0deg\)/);
    await checkPage(page, '05-printer');
  });

  it('a share link plays the webcam in a fresh browser, and refuses a command', async () => {
    await page.goto(`${base}/app/printers/${demoId}`);
    const shares = page.getByRole('region', { name: 'Share links' });
    await shares.getByLabel('Link works for').selectOption('1h');
    await shares.getByLabel('Label (optional)').fill('family chat');
    await shares.getByRole('button', { name: 'Create link' }).click();
    const url = await until('the new link', async () => (await page.locator('#share-url').inputValue().catch(() => '')) || undefined);
    expect(url).toMatch(new RegExp(`^http://demo\\.localhost:${relay.port}/_porthole/share/`));
    await expect.poll(() => shares.getByText('family chat').isVisible()).toBe(true);

    const guest = await phoneContext(browser);
    try {
      const view = await guest.newPage();
      await view.goto(url);
      await view.waitForURL(`http://demo.localhost:${relay.port}/_porthole/view`);
      const cam = view.getByRole('img', { name: /webcam/i });
      await framesChange(cam);
      await checkPage(view, '06-share-view');

      // With the link's cookie, a command to the printer is refused by the relay.
      const cookie = (await guest.cookies(`http://demo.localhost:${relay.port}/`)).map((c) => `${c.name}=${c.value}`).join('; ');
      expect(cookie).not.toBe('');
      const body = JSON.stringify({ command: 'M104 S215' });
      const refused = await deviceRequest(relay, 'demo', {
        method: 'POST',
        path: '/api/printer/command',
        headers: { cookie, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
        body,
      });
      expect(refused.status).toBe(403);
      expect(refused.body.toString()).toContain('View only');
      // The same cookie may read: the refusal is about the command, not a dead cookie.
      const read = await deviceRequest(relay, 'demo', { path: '/api/status', headers: { cookie } });
      expect(read.status).toBe(200);
    } finally {
      await guest.close();
    }

    // The owner sees the use, and revoking ends the link.
    await page.reload();
    const row = page.getByRole('region', { name: 'Share links' }).locator('li', { hasText: 'family chat' });
    await expect.poll(() => row.textContent()).toMatch(/used 1 time\b/);
    await row.getByRole('button', { name: 'Revoke link family chat' }).click();
    await expect.poll(() => page.getByRole('region', { name: 'Share links' }).getByText('No active links.').isVisible()).toBe(true);
    const again = await browser.newContext();
    try {
      const p = await again.newPage();
      const r = await p.goto(url);
      expect(r?.status()).toBe(410);
      expect(await p.locator('h1').textContent()).toContain('This link has expired or was revoked');
      expect(await p.locator('body').textContent()).toContain("Ask the printer's owner for a new one.");
    } finally {
      await again.close();
    }
  });

  it('pairs a new agent through the page and shows it online', async () => {
    const dir = await tempDir('porthole-dash-pair-', true);
    const configPath = join(dir, 'agent.json');
    const pair = spawnManaged('agent-pair', process.execPath, [agentCli, 'pair', '--relay', relay.url, '--config', configPath, '--name', 'Voron', '--service', `ui=${demo.url}`], {
      env: { ...process.env },
    });
    const line = await pair.waitForLog(/^Open (\S+) and enter (\S{4}-\S{4})$/, 20_000);
    const code = /enter (\S{4}-\S{4})$/.exec(line.text)![1]!;

    await page.goto(`${base}/app/pair`);
    await page.getByLabel('Pairing code shown by the agent').fill(code.toLowerCase().replace('-', ''));
    await page.getByRole('button', { name: 'Look up' }).click();
    await expect.poll(() => page.getByText('asks to connect as').textContent()).toContain('Voron');
    await checkPage(page, '07-pair');
    await page.getByLabel('Address (optional)').fill('voron');
    await page.getByRole('button', { name: 'Approve' }).click();
    await expect.poll(() => page.getByRole('heading', { name: 'Voron is paired' }).isVisible()).toBe(true);

    expect(await pair.waitExit(20_000)).toEqual({ code: 0, signal: null });
    const voron = await startAgent({ configPath });
    // The page follows the device until it is online.
    await expect.poll(() => page.locator('.card .state').first().textContent(), { timeout: 30_000 }).toMatch(/^Online/);
    shots.push(await screenshot(page, '08-paired'));

    // Offline: the list says since when, the printer's page says what to do.
    await voron.stop();
    await page.goto(`${base}/app/`);
    const card = page.locator('li.printer', { hasText: 'Voron' });
    await expect.poll(() => card.locator('.state').textContent(), { timeout: 20_000 }).toMatch(/^Offline since /);
    expect(await card.locator('.thumb-note').textContent()).toBe('Printer offline');
    await card.getByRole('link', { name: 'Voron', exact: true }).click();
    await expect.poll(() => page.getByText('The printer is offline, so there is no picture.').isVisible()).toBe(true);
    expect(await page.getByText('Check that the printer and its Pi are powered and online').isVisible()).toBe(true);
    await checkPage(page, '08-printer-offline');

    const list = JSON.parse((await relayCommand(relay, ['device', 'list', '--json'])).stdout) as Array<{ slug: string }>;
    expect(list.map((d) => d.slug).sort()).toEqual(['demo', 'voron']);
  });

  it('two-factor on from the account page, then sign-in asks for the code', async () => {
    await page.goto(`${base}/app/account`);
    await expect.poll(() => page.getByRole('heading', { name: 'Where you are signed in' }).isVisible()).toBe(true);
    await expect.poll(() => page.getByText('this one').isVisible()).toBe(true);
    await checkPage(page, '09-account');

    await page.getByRole('button', { name: 'Set up two-factor' }).click();
    const key = (await page.getByLabel('Key').textContent()) ?? '';
    expect(key.replace(/\s/g, '')).toMatch(/^[A-Z2-7]{16,}$/);
    await page.getByLabel('Code the app shows now').fill(totp(key, Date.now()));
    await page.getByRole('button', { name: 'Turn on' }).click();
    await expect.poll(() => page.locator('ul.codes li').count()).toBeGreaterThan(4);
    await checkPage(page, '10-two-factor-on');
    await page.getByRole('button', { name: 'Done' }).click();

    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.waitForURL(/\/app\/login/);
    await page.getByLabel('Username').fill(OWNER);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const code = page.getByLabel('Code from your authenticator app (or a recovery code)');
    await expect.poll(() => code.isVisible()).toBe(true);
    await checkPage(page, '11-login-code');
    // The next time step's code: the one that turned two-factor on cannot be replayed.
    await code.fill(totp(key, Date.now() + 30_000));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/app/`);
    await expect.poll(() => page.getByRole('heading', { name: 'Printers' }).isVisible()).toBe(true);
  });

  it('an admin adds a user; the users page passes axe', async () => {
    await page.goto(`${base}/app/admin`);
    await page.getByLabel('Username').fill('bob');
    await page.getByLabel('Password', { exact: true }).fill('another fine passphrase 9');
    await page.getByRole('button', { name: 'Add user' }).click();
    await expect.poll(() => page.getByRole('status').textContent()).toContain('bob can sign in now.');
    await checkPage(page, '12-users');
  });

  it('a wrong password gets the generic error; repeated failures show the lockout', async () => {
    const stranger = await phoneContext(browser);
    try {
      const p = await stranger.newPage();
      await p.goto(`${base}/app/login`);
      const attempt = async (password: string) => {
        await p.getByLabel('Username').fill('bob');
        await p.getByLabel('Password').fill(password);
        await p.getByRole('button', { name: 'Sign in' }).click();
        return until('an answer', async () => (await p.getByRole('alert').textContent().catch(() => null)) ?? undefined);
      };
      const first = await attempt('not the password');
      expect(first).toContain('Wrong username, password or code');
      // The same words whether the account exists or not.
      await p.getByLabel('Username').fill('nobody-here');
      await p.getByLabel('Password').fill('whatever it is');
      await p.getByRole('button', { name: 'Sign in' }).click();
      await expect.poll(() => p.getByRole('alert').textContent()).toContain('Wrong username, password or code');
      await checkPage(p, '13-login-error');

      let last = first;
      for (let i = 0; i < 14 && !/Too many attempts/.test(last); i++) {
        await p.evaluate(CLEAR_ALERT);
        last = await attempt(`wrong ${i}`);
      }
      expect(last).toMatch(/Too many attempts; try again in 1[45] minutes/);
      expect(last).toContain('locked for a while');
      // Locked: even the right password gets the same refusal.
      await p.evaluate(CLEAR_ALERT);
      expect(await attempt('another fine passphrase 9')).toMatch(/Too many attempts/);
      await checkPage(p, '14-login-locked');
    } finally {
      await stranger.close();
    }
  });
});
