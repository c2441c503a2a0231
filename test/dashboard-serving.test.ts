// How the relay serves the phone dashboard, and who gets its webcam: the static build under
// /app/ (caching, CSP, manifest and icons, the client-side routes), and the dashboard's webcam
// endpoints deny by default (no session, no membership), serve members, and cut a stream the
// moment its sign-in ends or its membership goes. Real relay, agent and demo printer.
import http, { type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from './src/client.js';
import { startDemoPrinter, type DemoPrinter } from './src/demo.js';
import { addDevice, agentConfig, relayCommand, startAgent, startRelay, stopAll, type RelayProcess } from './src/procs.js';

let demo: DemoPrinter;
let relay: RelayProcess;
let base: string;
let deviceId: string;

const PASSWORD = 'a long enough passphrase 42';

async function signIn(username: string): Promise<{ client: Client; csrf: string; cookie: string }> {
  const client = new Client(relay.port);
  const r = await client.request(`${base}/api/login`, { method: 'POST', json: { username, password: PASSWORD }, headers: { origin: base } });
  expect(r.status).toBe(200);
  const cookie = [...client.cookies('localhost')].map(([k, v]) => `${k}=${v}`).join('; ');
  return { client, csrf: r.json<{ csrf: string }>().csrf, cookie };
}

/** Opens the MJPEG stream; resolves once its headers and first bytes are in. */
function openStream(path: string, cookie: string): Promise<{ res: IncomingMessage; closed: Promise<void>; bytes: () => number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: relay.port, path, headers: { host: `localhost:${relay.port}`, cookie }, agent: false }, (res) => {
      let n = 0;
      const closed = new Promise<void>((done) => {
        res.on('close', done);
        res.on('error', () => done());
      });
      res.on('data', (d: Buffer) => {
        n += d.length;
        if (n === d.length) resolve({ res, closed, bytes: () => n });
      });
      if (res.statusCode !== 200) reject(new Error(`stream answered ${res.statusCode}`));
    });
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error('no stream within 20 s')));
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms).unref())]);
}

beforeAll(async () => {
  demo = await startDemoPrinter();
  relay = await startRelay();
  base = `http://localhost:${relay.port}`;
  for (const [name, admin] of [
    ['olive', true],
    ['victor', false],
    ['stranger', false],
  ] as const) {
    await relayCommand(relay, ['user', 'add', '--username', name, '--password-stdin', ...(admin ? ['--admin'] : [])], 30_000, PASSWORD);
  }
  const device = await addDevice(relay, { name: 'Demo printer', slug: 'demo', owner: 'olive' });
  deviceId = device.id;
  await startAgent({ config: agentConfig({ relay, credential: device.credential, ui: demo.url, webcam: demo.url }) });
}, 90_000);

afterAll(async () => {
  await stopAll();
  await demo?.close();
});

describe('the dashboard build, served by the relay', () => {
  it('serves the page no-cache under a strict CSP, hashed assets for a year, the client routes, and no foreign URL', async () => {
    const c = new Client(relay.port);
    const index = await c.request(`${base}/app/`);
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toMatch(/^text\/html/);
    expect(index.headers['cache-control']).toBe('no-cache');
    const csp = String(index.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(index.headers['x-frame-options']).toBe('DENY');
    const page = index.text();
    // Nothing from elsewhere and no inline script: every script is a same-origin file.
    expect(page).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect(page).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);

    const assets = [...page.matchAll(/(?:src|href)="(\/app\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true);
    expect(assets.some((a) => a.endsWith('.css'))).toBe(true);
    for (const a of assets) {
      const r = await c.request(`${base}${a}`);
      expect(r.status, a).toBe(200);
      expect(r.headers['cache-control'], a).toBe('public, max-age=31536000, immutable');
      expect(r.text()).not.toMatch(/https?:\/\/(?!www\.w3\.org)[a-z0-9.-]+\.[a-z]{2,}\//i);
    }
    // Small on a slow network: the whole script, uncompressed, well under 100 KB.
    const jsBytes = (await c.request(`${base}${assets.find((a) => a.endsWith('.js'))!}`)).body.length;
    expect(jsBytes).toBeLessThan(100 * 1024);

    // Client-side routes get the page; a missing hashed file is a 404, never the page.
    const deep = await c.request(`${base}/app/printers/${deviceId}`);
    expect(deep.status).toBe(200);
    expect(deep.text()).toBe(page);
    expect((await c.request(`${base}/app/assets/index-missing.js`)).status).toBe(404);
    expect((await c.request(`${base}/app/nothing.png`)).status).toBe(404);
    const bare = await c.request(`${base}/app`);
    expect([301, 302]).toContain(bare.status);
    expect(bare.headers.location).toBe('/app/');
  });

  it('is installable: a manifest with standalone display and real PNG icons, and a service worker for the shell', async () => {
    const c = new Client(relay.port);
    const m = await c.request(`${base}/app/manifest.webmanifest`);
    expect(m.status).toBe(200);
    const manifest = m.json<{ display: string; start_url: string; scope: string; icons: Array<{ src: string; sizes: string; type: string }> }>();
    expect(manifest).toMatchObject({ display: 'standalone', start_url: '/app/', scope: '/app/' });
    for (const icon of manifest.icons) {
      const r = await c.request(`${base}${icon.src}`);
      expect(r.status, icon.src).toBe(200);
      if (icon.type === 'image/png') {
        // The PNG signature, and an IHDR whose width and height are the declared size.
        expect(r.body.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
        const [w, h] = icon.sizes.split('x').map(Number);
        expect([r.body.readUInt32BE(16), r.body.readUInt32BE(20)]).toEqual([w, h]);
      }
    }
    const sw = await c.request(`${base}/app/sw.js`);
    expect(sw.status).toBe(200);
    expect(sw.headers['cache-control']).toBe('no-cache');
    expect(sw.headers['content-type']).toMatch(/javascript/);
    // The worker caches the shell, never the API or printers.
    expect(sw.text()).toContain("url.pathname.startsWith('/app/')");
  });
});

describe('the dashboard webcam', () => {
  it('refuses without a session and to non-members (the same 404 as no device), serves members', async () => {
    const anon = new Client(relay.port);
    const none = await anon.request(`${base}/api/devices/${deviceId}/snapshot`);
    expect(none.status).toBe(401);
    expect(none.json<{ error: { code: string } }>().error.code).toBe('RELAY_UNAUTHENTICATED');

    const stranger = await signIn('stranger');
    for (const path of [`/api/devices/${deviceId}/snapshot`, `/api/devices/${deviceId}/webcam`, '/api/devices/no-such-device/snapshot']) {
      const r = await stranger.client.request(`${base}${path}`);
      expect(r.status, path).toBe(404);
      expect(r.json<{ error: { code: string } }>().error.code).toBe('RELAY_DEVICE_NOT_FOUND');
    }

    const owner = await signIn('olive');
    const add = await owner.client.request(`${base}/api/devices/${deviceId}/members`, {
      method: 'POST',
      json: { username: 'victor', role: 'viewer' },
      headers: { origin: base, 'x-csrf-token': owner.csrf },
    });
    expect(add.status).toBe(201);
    const viewer = await signIn('victor');
    const snap = await viewer.client.request(`${base}/api/devices/${deviceId}/snapshot`);
    expect(snap.status).toBe(200);
    expect(snap.headers['content-type']).toBe('image/jpeg');
    expect(snap.body.subarray(0, 2).toString('hex')).toBe('ffd8');
    expect(snap.headers['cross-origin-resource-policy']).toBe('same-origin');
  });

  it('cuts an open stream when its sign-in ends, and when the membership is removed', async () => {
    const owner = await signIn('olive');
    const stream = await openStream(`/api/devices/${deviceId}/webcam?fps=5`, owner.cookie);
    expect(stream.res.headers['content-type']).toMatch(/^multipart\/x-mixed-replace/);
    const logout = await owner.client.request(`${base}/api/logout`, { method: 'POST', headers: { origin: base, 'x-csrf-token': owner.csrf } });
    expect(logout.status).toBe(200);
    await within(stream.closed, 5_000, 'the stream ending after sign-out');

    const admin = await signIn('olive');
    const viewer = await signIn('victor');
    const watching = await openStream(`/api/devices/${deviceId}/webcam`, viewer.cookie);
    const users = await admin.client.request(`${base}/api/devices/${deviceId}/members`);
    const victor = users.json<Array<{ userId: string; username: string }>>().find((m) => m.username === 'victor')!;
    const removed = await admin.client.request(`${base}/api/devices/${deviceId}/members/${victor.userId}`, {
      method: 'DELETE',
      headers: { origin: base, 'x-csrf-token': admin.csrf },
    });
    expect(removed.status).toBe(200);
    // Checked every few seconds while the stream is open.
    await within(watching.closed, 20_000, 'the stream ending after the membership went');
    expect((await viewer.client.request(`${base}/api/devices/${deviceId}/snapshot`)).status).toBe(404);
  });

  it('the share view: a hostile printer name stays text, the page runs no script, the picture is the device\'s own stream', async () => {
    const owner = await signIn('olive');
    const headers = { origin: base, 'x-csrf-token': owner.csrf };
    const evil = '<img src=x onerror=alert(1)> & "quotes"';
    expect((await owner.client.request(`${base}/api/devices/${deviceId}`, { method: 'PATCH', json: { name: evil }, headers })).status).toBe(200);
    const link = await owner.client.request(`${base}/api/devices/${deviceId}/shares`, { method: 'POST', json: { expiresIn: '1h' }, headers });
    expect(link.status).toBe(201);
    const guest = new Client(relay.port);
    const view = await guest.request(link.json<{ url: string }>().url, { follow: 1 });
    expect(view.status).toBe(200);
    expect(view.url).toBe(`http://demo.localhost:${relay.port}/_porthole/view`);
    const csp = String(view.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('script-src');
    const body = view.text();
    expect(body).not.toContain('<img src=x');
    expect(body).toContain('&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;');
    expect(body).toMatch(/<img src="\/webcam\/\?action=stream" alt="Live webcam of &lt;img/);
    expect(body).not.toMatch(/<script/i);
    expect(body).toContain('View only');
  });
});
