// Access control end to end: the real relay and agents as processes, a recording origin that
// sees every request. Nobody reaches a printer who should not — tested from every way in.
import type http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Client } from './src/client.js';
import { collectFrames } from './src/mjpeg.js';
import { startOrigin, type Origin } from './src/origin.js';
import {
  addDevice,
  agentConfig,
  relayCommand,
  startAgent,
  startRelay,
  stopAll,
  type AgentProcess,
  type DeviceInfo,
  type RelayProcess,
} from './src/procs.js';

let origin: Origin;
let relay: RelayProcess;
let base: string;
const PASSWORD = 'correct horse battery staple 42';
let alice: Client; // owner of mk3s (OctoPrint) and voron (Moonraker)
let bob: Client; // owner of bobs
let devA: DeviceInfo;
let devB: DeviceInfo;
let devM: DeviceInfo;
const agents: AgentProcess[] = [];

const host = (slug: string) => `${slug}.localhost:${relay.port}`;
const deviceUrl = (slug: string, path = '/') => `http://${host(slug)}${path}`;

async function setupAdmin(c: Client, username: string): Promise<string> {
  const line = relay.lines.find((l) => typeof l.json?.setupUrl === 'string');
  if (line === undefined) throw new Error('relay printed no setup link');
  const token = new URL(String(line.json!.setupUrl)).searchParams.get('token')!;
  const r = await c.request(`${base}/api/setup`, { method: 'POST', json: { token, username, password: PASSWORD }, headers: { origin: base } });
  expect(r.status).toBe(200);
  return r.json<{ csrf: string }>().csrf;
}

async function login(c: Client, username: string, password = PASSWORD, code?: string) {
  return c.request(`${base}/api/login`, {
    method: 'POST',
    json: { username, password, ...(code !== undefined ? { code } : {}) },
    headers: { origin: base },
  });
}

async function csrfOf(c: Client): Promise<string> {
  const me = await c.request(`${base}/api/me`);
  expect(me.status).toBe(200);
  return me.json<{ csrf: string }>().csrf;
}

async function api(c: Client, method: string, path: string, json?: unknown) {
  const csrf = await csrfOf(c);
  return c.request(`${base}${path}`, { method, ...(json !== undefined ? { json } : {}), headers: { origin: base, 'x-csrf-token': csrf } });
}

/** Signs `c` in on a device's subdomain through /open/SLUG and the one-time handoff. */
async function openDevice(c: Client, slug: string, next = '/'): Promise<void> {
  const r = await c.request(`${base}/open/${slug}?next=${encodeURIComponent(next)}`, { follow: 2 });
  expect(r.url.startsWith(`http://${host(slug)}`)).toBe(true);
}

function originSaw(pred: (url: string, headers: http.IncomingHttpHeaders) => boolean): boolean {
  return origin.requests.some((r) => pred(r.url, r.headers));
}

beforeAll(async () => {
  origin = await startOrigin({ frames: 'tiny' });
  relay = await startRelay({ env: { PORTHOLE_LOGIN_DELAY_MS: '20' } });
  base = `http://localhost:${relay.port}`;
  alice = new Client(relay.port);
  bob = new Client(relay.port);
  await setupAdmin(alice, 'alice');
  await relayCommand(relay, ['user', 'add', '--username', 'bob', '--password-stdin'], 30_000, PASSWORD);
  devA = await addDevice(relay, { name: 'Alice MK3S', slug: 'mk3s', owner: 'alice' });
  devM = await addDevice(relay, { name: 'Alice Voron', slug: 'voron', owner: 'alice' });
  devB = await addDevice(relay, { name: 'Bob Ender', slug: 'bobs', owner: 'bob' });
  const cfg = (d: DeviceInfo, profile: string) => {
    const c = agentConfig({ relay: relay.port, credential: d.credential, ui: origin.url, webcam: origin.url });
    (c.services.ui as unknown as Record<string, unknown>).profile = profile;
    return c;
  };
  agents.push(await startAgent({ config: cfg(devA, 'octoprint') }));
  agents.push(await startAgent({ config: cfg(devM, 'moonraker') }));
  agents.push(await startAgent({ config: cfg(devB, 'octoprint') }));
  expect((await login(bob, 'bob')).status).toBe(200);
}, 90_000);

afterAll(async () => {
  await stopAll();
  await origin?.close();
});

describe('nobody unauthenticated reaches a printer', () => {
  it('an anonymous page load gets the login redirect and the origin sees nothing', async () => {
    origin.reset();
    const anon = new Client(relay.port);
    const r = await anon.request(deviceUrl('mk3s', '/api/printer'), { headers: { accept: 'text/html' } });
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe(`${base}/open/mk3s?next=${encodeURIComponent('/api/printer')}`);
    const api2 = await anon.request(deviceUrl('mk3s', '/api/printer'));
    expect(api2.status).toBe(401);
    const post = await anon.request(deviceUrl('mk3s', '/api/printer/command'), { method: 'POST', body: '{"commands":["M104 S250"]}' });
    expect(post.status).toBe(401);
    const ws = await wsStatus(anon, 'mk3s', '/sockjs/websocket');
    expect(ws).toBe(401);
    expect(origin.requests).toHaveLength(0);
  });

  it('the offline page of a printer is not shown to strangers either', async () => {
    const anon = new Client(relay.port);
    const r = await anon.request(deviceUrl('nosuchdevice', '/'));
    expect(r.status).toBe(404);
  });
});

async function wsStatus(c: Client, slug: string, path: string): Promise<number | 'open'> {
  const jar = c.jar.get(`${slug}.localhost`);
  const cookie = jar === undefined ? undefined : [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${relay.port}${path}`, {
      headers: { host: host(slug), ...(cookie !== undefined ? { cookie } : {}) },
    });
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    ws.on('error', () => resolve(0));
  });
}

describe('isolation between users and devices', () => {
  it('alice opens her printer through the handoff; the origin never sees relay cookies or credentials', async () => {
    origin.reset();
    await openDevice(alice, 'mk3s');
    const r = await alice.request(deviceUrl('mk3s', '/echo-headers'), { headers: { authorization: 'Bearer x' } });
    expect(r.status).toBe(200);
    for (const rec of origin.requests) {
      expect(rec.headers.cookie ?? '').not.toMatch(/porthole/i);
      expect(rec.headers.authorization).toBeUndefined();
    }
  });

  it('alice cannot reach bob’s printer by Host, X-Forwarded-Host, absolute URI, paths, or her cookie replayed', async () => {
    origin.reset();
    const aliceCookie = [...alice.cookies('mk3s.localhost')].map(([k, v]) => `${k}=${v}`).join('; ');
    expect(aliceCookie).toMatch(/porthole_device=/);
    const raw = (lines: string[]) => rawRequest(relay.port, lines);
    // her cookie replayed on bob's subdomain
    expect((await raw([`GET /api/printer HTTP/1.1`, `Host: ${host('bobs')}`, `Cookie: ${aliceCookie}`])).status).toBe(401);
    // X-Forwarded-Host pointing at bob, on her own host: still her device; on the relay host: not a device
    const xfh = await raw([`GET /echo-headers HTTP/1.1`, `Host: ${host('mk3s')}`, `X-Forwarded-Host: ${host('bobs')}`, `Cookie: ${aliceCookie}`]);
    expect(xfh.status).toBe(200);
    expect(JSON.parse(xfh.body).headers['x-forwarded-host']).toBe(host('mk3s'));
    const xfh2 = await raw([`GET /api/printer HTTP/1.1`, `Host: localhost:${relay.port}`, `X-Forwarded-Host: ${host('bobs')}`, `Cookie: ${aliceCookie}`]);
    expect(xfh2.status).not.toBe(200);
    // absolute-form request line naming bob with her Host
    expect((await raw([`GET http://${host('bobs')}/api/printer HTTP/1.1`, `Host: ${host('mk3s')}`, `Cookie: ${aliceCookie}`])).status).toBe(400);
    // dot segments and encoded slashes
    for (const p of ['/webcam/../api/printer', '/webcam/%2e%2e/api/printer', '/webcam/..%2fapi', '/%2e%2e/']) {
      expect((await raw([`GET ${p} HTTP/1.1`, `Host: ${host('mk3s')}`, `Cookie: ${aliceCookie}`])).status).toBe(400);
    }
    expect(originSaw((u) => u.includes('printer'))).toBe(false);
    // and bob's printer only ever saw nothing from alice: its agent carried no request
    expect(origin.requests.filter((r) => r.path === '/api/printer')).toHaveLength(0);
  });

  it('a member of one device gets 404 for another device in the API and at /open', async () => {
    const r = await bob.request(`${base}/open/mk3s`, { follow: 0 });
    expect(r.status).toBe(404);
    const list = await bob.request(`${base}/api/devices`);
    expect(list.json<{ slug: string }[]>().map((d) => d.slug)).toEqual(['bobs']);
  });
});

/** Sends a hand-written request (for shapes a client library would refuse to send). */
function rawRequest(port: number, lines: string[], body = ''): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // Browsers never half-close; Node's server aborts a request whose client did, so don't.
    const s = net.connect(port, '127.0.0.1', () => s.write(`${lines.join('\r\n')}\r\nConnection: close\r\n\r\n${body}`));
    const chunks: Buffer[] = [];
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const i = text.indexOf('\r\n\r\n');
      let b = i === -1 ? '' : text.slice(i + 4);
      if (/transfer-encoding: chunked/i.test(text.slice(0, i))) {
        let out = '';
        let rest = b;
        for (;;) {
          const nl = rest.indexOf('\r\n');
          const n = parseInt(rest.slice(0, nl), 16);
          if (!n) break;
          out += rest.slice(nl + 2, nl + 2 + n);
          rest = rest.slice(nl + 2 + n + 2);
        }
        b = out;
      }
      resolve({ status, body: b });
    });
    s.on('error', reject);
  });
}

describe('viewers and share links', () => {
  let shareUrl: string;
  let shareId: string;
  let viewer: Client;

  it('a share link opens a view-only session: webcam and status pass, commands and uploads do not', async () => {
    const created = await api(alice, 'POST', `/api/devices/${devA.id}/shares`, { expiresIn: '1h' });
    expect(created.status).toBe(201);
    ({ url: shareUrl, id: shareId } = created.json<{ url: string; id: string }>());
    viewer = new Client(relay.port);
    const landing = await viewer.request(shareUrl, { follow: 1 });
    expect(landing.status).toBe(200);
    expect(landing.text()).toContain('Alice MK3S');
    origin.reset();
    expect((await viewer.request(deviceUrl('mk3s', '/api/printer'))).status).toBe(200);
    expect((await viewer.request(deviceUrl('mk3s', '/api/job'))).status).toBe(200);
    expect((await viewer.request(deviceUrl('mk3s', '/webcam/?action=snapshot'))).status).toBe(200);
    const refused = [
      ['POST', '/api/printer/command', '{"commands":["M104 S250"]}'],
      ['POST', '/api/job', '{"command":"start"}'],
      ['POST', '/api/files/local', 'gcode'],
      ['PUT', '/api/settings', '{}'],
      ['DELETE', '/api/files/local/x.gcode', ''],
      ['GET', '/api/settings', ''],
      ['GET', '/api/files/local/secret.gcode', ''],
    ] as const;
    for (const [method, path, body] of refused) {
      const r = await viewer.request(deviceUrl('mk3s', path), { method, body });
      expect(r.status, `${method} ${path}`).toBe(403);
    }
    // Only the reads reached the printer.
    expect(origin.requests.every((r) => r.method === 'GET')).toBe(true);
    expect(origin.requests.map((r) => r.path).sort()).toEqual(['/', '/api/job', '/api/printer']);
  });

  it('Moonraker viewers: reads pass over the WebSocket, printer.gcode.script is refused and the socket cut', async () => {
    const created = await api(alice, 'POST', `/api/devices/${devM.id}/shares`, { expiresIn: '1d' });
    const v = new Client(relay.port);
    await v.request(created.json<{ url: string }>().url, { follow: 0 });
    const cookie = [...v.cookies('voron.localhost')].map(([k, val]) => `${k}=${val}`).join('; ');
    const ws = new WebSocket(`ws://127.0.0.1:${relay.port}/websocket`, { headers: { host: host('voron'), cookie } });
    await new Promise((res, rej) => {
      ws.once('open', res);
      ws.once('error', rej);
    });
    const read = { jsonrpc: '2.0', method: 'printer.objects.query', params: { objects: { extruder: null } }, id: 1 };
    const echoed = await new Promise<string>((res) => {
      ws.once('message', (d: Buffer) => res(d.toString()));
      ws.send(JSON.stringify(read));
    });
    expect(JSON.parse(echoed)).toEqual(read);
    const before = origin.wsMessages;
    const closed = new Promise<void>((res) => ws.once('close', () => res()));
    ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'printer.gcode.script', params: { script: 'M104 S250' }, id: 2 }));
    await closed;
    await new Promise((r) => setTimeout(r, 100));
    expect(origin.wsMessages).toBe(before); // the write never reached the printer
    // plain HTTP writes too
    expect((await v.request(deviceUrl('voron', '/printer/gcode/script?script=G28'), { method: 'POST' })).status).toBe(403);
    origin.reset();
    expect((await v.request(deviceUrl('voron', '/printer/objects/query?extruder'))).status).toBe(200);
    expect(origin.requests.map((r) => r.path)).toEqual(['/printer/objects/query']);
  });

  it('revoking a share link refuses it at once, also on an already open MJPEG stream', async () => {
    const frames = collectFrames(
      {
        host: '127.0.0.1',
        port: relay.port,
        path: '/webcam/?action=stream',
        headers: { host: host('mk3s'), cookie: [...viewer.cookies('mk3s.localhost')].map(([k, v]) => `${k}=${v}`).join('; ') },
        agent: false,
      },
      100_000,
      20_000,
    ).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    expect((await api(alice, 'DELETE', `/api/devices/${devA.id}/shares/${shareId}`)).status).toBe(200);
    const outcome = await frames;
    expect(Date.now() - t0).toBeLessThan(3_000); // cut at once, not at the next request or a timeout
    expect(outcome instanceof Error || (outcome as { frames: unknown[] }).frames.length < 100_000).toBe(true);
    expect((await viewer.request(deviceUrl('mk3s', '/api/printer'))).status).toBe(401);
    const again = await new Client(relay.port).request(shareUrl);
    expect(again.status).toBe(410);
  });
});

describe('sessions end when they should', () => {
  it('logout kills the dashboard session and the device sessions handed off from it', async () => {
    const c = new Client(relay.port);
    expect((await login(c, 'bob')).status).toBe(200);
    await openDevice(c, 'bobs');
    expect((await c.request(deviceUrl('bobs', '/api/printer'))).status).toBe(200);
    const dash = new Map(c.cookies('localhost'));
    const dev = new Map(c.cookies('bobs.localhost'));
    expect((await api(c, 'POST', '/api/logout')).status).toBe(200);
    // replay the old cookies
    c.jar.set('localhost', dash);
    c.jar.set('bobs.localhost', dev);
    expect((await c.request(`${base}/api/me`)).status).toBe(401);
    expect((await c.request(deviceUrl('bobs', '/api/printer'))).status).toBe(401);
  });

  it('a password change kills the other sessions', async () => {
    const other = new Client(relay.port);
    expect((await login(other, 'bob')).status).toBe(200);
    await openDevice(other, 'bobs');
    const r = await api(bob, 'POST', '/api/password', { old: PASSWORD, new: `${PASSWORD}!` });
    expect(r.status).toBe(200);
    expect((await other.request(`${base}/api/me`)).status).toBe(401);
    expect((await other.request(deviceUrl('bobs', '/api/printer'))).status).toBe(401);
    expect((await bob.request(`${base}/api/me`)).status).toBe(200);
    await api(bob, 'POST', '/api/password', { old: `${PASSWORD}!`, new: PASSWORD });
  });

  it('a tampered token and an alg:none token are refused', async () => {
    await openDevice(alice, 'mk3s');
    const jar = alice.cookies('mk3s.localhost');
    const [name, token] = [...jar].find(([k]) => k.includes('porthole_device'))!;
    const [h, p, sig] = token.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...payload, dev: devB.id })).toString('base64url');
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    for (const bad of [`${h}.${forged}.${sig}`, `${none}.${p}.`, `${h}.${p}.${sig![0] === 'A' ? 'B' : 'A'}${sig!.slice(1)}`]) {
      const r = await rawRequest(relay.port, [`GET /api/printer HTTP/1.1`, `Host: ${host('mk3s')}`, `Cookie: ${name}=${bad}`]);
      expect(r.status).toBe(401);
    }
  });

  it('revoking a device credential drops its live tunnel', async () => {
    const victim = await addDevice(relay, { name: 'Spare', slug: 'spare', owner: 'alice' });
    const a = await startAgent({ config: agentConfig({ relay: relay.port, credential: victim.credential, ui: origin.url }) });
    await openDevice(alice, 'spare');
    expect((await alice.request(deviceUrl('spare', '/api/printer'))).status).toBe(200);
    expect((await api(alice, 'POST', `/api/devices/${victim.id}/revoke`)).status).toBe(200);
    const exit = await a.waitExit(10_000);
    expect(exit.code).toBe(78);
    // Its sessions ended with it: no page of it is served to anyone any more.
    const r = await alice.request(deviceUrl('spare', '/api/printer'));
    expect(r.status).toBe(401);
    expect((await alice.request(`${base}/open/spare`)).status).not.toBe(302);
  });
});

describe('brute force', () => {
  it('slows then locks the account and the address; a right password during lockout does not get in; errors never say which part was wrong', async () => {
    await relayCommand(relay, ['user', 'add', '--username', 'carol', '--password-stdin'], 30_000, PASSWORD);
    await relayCommand(relay, ['user', 'add', '--username', 'dave', '--password-stdin'], 30_000, PASSWORD);
    const c = new Client(relay.port);
    const unknown = await login(c, 'nobody-here', 'wrong password here');
    const wrong = await login(c, 'carol', 'wrong password here');
    expect(unknown.status).toBe(401);
    expect(wrong.status).toBe(401);
    expect(unknown.json()).toEqual(wrong.json()); // unknown user and wrong password look the same
    let locked = false;
    let delayed = 0;
    for (let i = 0; i < 40 && !locked; i++) {
      const r = await login(c, 'carol', 'wrong password here');
      if (r.status === 401) {
        expect(r.json()).toEqual(wrong.json());
        continue;
      }
      expect(r.status).toBe(429);
      const wait = Number(r.headers['retry-after']);
      expect(r.json<{ error: { message: string } }>().error.message).toMatch(/too many attempts; try again in/i);
      // a delay lasts seconds; a lockout lasts many minutes
      if (wait >= 600) locked = true;
      else {
        delayed++;
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
    expect(delayed).toBeGreaterThan(0); // slowed first
    expect(locked).toBe(true); // then locked
    const right = await login(c, 'carol', PASSWORD);
    expect(right.status).toBe(429);
    expect(c.cookies('localhost').size).toBe(0);
    // The address is slowed too: another account from it is held back before it has failures
    // enough of its own to be slowed (fewer than the 5 free ones). The address's delay doubles
    // with each failure, so a slow machine that outlasts one delay meets the next.
    let heldBack = false;
    for (let i = 0; i < 4 && !heldBack; i++) {
      const other = await login(c, 'dave', 'wrong password here');
      if (other.status === 429) heldBack = true;
      else expect(other.status).toBe(401);
    }
    expect(heldBack).toBe(true);
  }, 90_000);
});
