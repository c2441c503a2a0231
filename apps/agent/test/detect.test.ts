// Detection against fake local servers that answer as each kind of printer software does.
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { createDetectCommand } from '../src/commands/detect.js';
import { detect, identifyPort, propose, type Finding } from '../src/detect/index.js';
import { parseConfig } from '../src/config/index.js';
import { closedPort } from './helpers.js';

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});
function track(s: net.Server): void {
  servers.push(s);
  s.on('connection', (c: net.Socket) => {
    sockets.add(c);
    c.once('close', () => sockets.delete(c));
  });
}

type Routes = Record<string, { status?: number; type?: string; body: string | Buffer; headers?: Record<string, string> }>;

/** A server answering the given paths (path with query) and 404 elsewhere. */
async function fake(routes: Routes): Promise<number> {
  const server = http.createServer((req, res) => {
    const r = routes[req.url ?? '/'];
    if (r === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found');
      return;
    }
    res.writeHead(r.status ?? 200, { 'content-type': r.type ?? 'text/html', ...r.headers }).end(r.body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  track(server);
  return (server.address() as net.AddressInfo).port;
}

const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1, 0xff, 0xd9]);
const html = (title: string) => `<!doctype html><html><head><title>${title}</title></head><body></body></html>`;
const json = (v: unknown) => ({ type: 'application/json', body: JSON.stringify(v) });
const moonrakerInfo = json({ result: { klippy_connected: true, klippy_state: 'ready', moonraker_version: 'v0.9.3-1' } });

const FAKES = {
  octoprint: { '/': { body: html('OctoPrint') }, '/api/version': json({ api: '0.1', server: '1.10.2', text: 'OctoPrint 1.10.2' }) },
  // Anonymous API access off: /api/version is refused, the login page still says what it is.
  octoprintLocked: { '/': { body: html('OctoPrint Login') }, '/api/version': { status: 403, ...json({ error: 'Forbidden' }) } },
  moonraker: {
    '/server/info': moonrakerInfo,
    // Moonraker emulates OctoPrint's API for slicers: not OctoPrint.
    '/api/version': json({ server: '1.5.0', api: '0.1', text: 'OctoPrint (Moonraker v0.9.3)' }),
  },
  // nginx in front of Mainsail proxies Moonraker's paths too: the page title decides.
  mainsail: { '/': { body: html('Mainsail') }, '/server/info': moonrakerInfo },
  fluidd: { '/': { body: html('fluidd') } },
  prusalink: {
    '/': { body: html('Prusa Link') },
    '/api/version': { status: 401, type: 'text/plain', body: 'Unauthorized', headers: { 'www-authenticate': 'Digest realm="Printer API", nonce="abc"' } },
  },
  prusalinkApi: { '/api/version': json({ api: '2.0.0', server: '2.1.2', text: 'PrusaLink', hostname: 'prusa-mk3' }) },
  mjpgStreamer: { '/': { body: html('MJPG-Streamer') }, '/?action=snapshot': { type: 'image/jpeg', body: JPEG } },
  ustreamer: { '/': { body: html('uStreamer') }, '/?action=snapshot': { type: 'image/jpeg', body: JPEG, headers: { server: 'UStreamer/5.38' } } },
  cameraStreamer: { '/': { body: html('camera-streamer') }, '/snapshot': { type: 'image/jpeg', body: JPEG } },
  other: { '/': { body: html('Pi-hole') } },
} satisfies Record<string, Routes>;

describe('identifyPort', () => {
  it.each([
    ['octoprint', 'octoprint', 'OctoPrint 1.10.2'],
    ['octoprintLocked', 'octoprint', 'OctoPrint'],
    ['moonraker', 'moonraker', 'Moonraker v0.9.3-1'],
    ['mainsail', 'mainsail', 'Mainsail'],
    ['fluidd', 'fluidd', 'Fluidd'],
    ['prusalink', 'prusalink', 'PrusaLink'],
    ['prusalinkApi', 'prusalink', 'PrusaLink'],
    ['mjpgStreamer', 'mjpeg', 'mjpg-streamer'],
    ['ustreamer', 'mjpeg', 'ustreamer'],
    ['cameraStreamer', 'camera-streamer', 'camera-streamer'],
    ['other', 'http', 'a web server ("Pi-hole")'],
  ] as const)('recognises %s', async (name, kind, detail) => {
    const port = await fake(FAKES[name]);
    expect(await identifyPort('127.0.0.1', port, 1_000)).toEqual({ port, kind, detail });
  });

  it('finds nothing on a closed port, nor on one that never answers HTTP', async () => {
    expect(await identifyPort('127.0.0.1', await closedPort(), 500)).toBeUndefined();
    const silent = net.createServer(() => undefined); // accepts, says nothing
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    track(silent);
    const t0 = Date.now();
    expect(await identifyPort('127.0.0.1', (silent.address() as net.AddressInfo).port, 300)).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(2_000);
  });
});

const f = (port: number, kind: Finding['kind'], detail = kind as string): Finding => ({ port, kind, detail });

describe('propose', () => {
  it('OctoPi: OctoPrint direct on 5000 (not through haproxy on 80), the webcam at /webcam/', () => {
    const p = propose('127.0.0.1', [f(80, 'octoprint'), f(5000, 'octoprint'), f(8080, 'mjpeg', 'mjpg-streamer')])!;
    expect(p.services).toEqual({
      octoprint: { url: 'http://127.0.0.1:5000', profile: 'octoprint' },
      webcam: { url: 'http://127.0.0.1:8080', profile: 'camera' },
    });
    expect(p.routes).toEqual([
      { path: '/', service: 'octoprint' },
      { path: '/webcam/', service: 'webcam', stripPrefix: true },
    ]);
    expect(p.summary).toBe('OctoPrint with a webcam (mjpg-streamer)');
    expect(p.guess).toBe(false);
  });

  it('OctoPrint only behind haproxy on 80', () => {
    const p = propose('127.0.0.1', [f(80, 'octoprint')])!;
    expect(p.services).toEqual({ octoprint: { url: 'http://127.0.0.1:80', profile: 'octoprint' } });
  });

  it('Klipper: Mainsail at /, Moonraker at its own paths, the camera at /webcam/', () => {
    const p = propose('127.0.0.1', [f(80, 'mainsail', 'Mainsail'), f(7125, 'moonraker'), f(8080, 'camera-streamer')])!;
    expect(p.services).toEqual({
      mainsail: { url: 'http://127.0.0.1:80', profile: 'generic' },
      moonraker: { url: 'http://127.0.0.1:7125', profile: 'moonraker' },
      webcam: { url: 'http://127.0.0.1:8080', profile: 'camera' },
    });
    expect(p.routes).toEqual([
      { path: '/', service: 'mainsail' },
      ...['/websocket/', '/printer/', '/server/', '/machine/', '/access/', '/api/'].map((path) => ({ path, service: 'moonraker' })),
      { path: '/webcam/', service: 'webcam', stripPrefix: true },
    ]);
    expect(p.summary).toBe('Klipper: Mainsail with Moonraker with a webcam (camera-streamer)');
  });

  it('Moonraker without a web UI gets /', () => {
    const p = propose('127.0.0.1', [f(7125, 'moonraker')])!;
    expect(p.routes).toEqual([{ path: '/', service: 'moonraker' }]);
  });

  it('PrusaLink passes the browser\'s digest credentials through', () => {
    const p = propose('127.0.0.1', [f(8080, 'prusalink')])!;
    expect(p.services).toEqual({ prusalink: { url: 'http://127.0.0.1:8080', profile: 'prusalink', passAuthorization: true } });
    expect(p.routes).toEqual([{ path: '/', service: 'prusalink' }]);
  });

  it('an unrecognised web server on 80 is only a guess; nothing at all is no proposal', () => {
    const p = propose('127.0.0.1', [f(80, 'http', 'a web server')])!;
    expect(p).toMatchObject({ guess: true, services: { ui: { url: 'http://127.0.0.1:80', profile: 'generic' } }, routes: [{ path: '/', service: 'ui' }] });
    expect(propose('127.0.0.1', [])).toBeUndefined();
  });

  it('every proposal is a config the agent accepts', () => {
    for (const findings of [
      [f(5000, 'octoprint'), f(8080, 'mjpeg')],
      [f(80, 'fluidd', 'Fluidd'), f(7125, 'moonraker'), f(8081, 'mjpeg')],
      [f(8080, 'prusalink')],
      [f(80, 'http')],
    ]) {
      const p = propose('127.0.0.1', findings)!;
      expect(() => parseConfig({ relay: 'wss://relay.example', credential: 'pdc_x', services: p.services, routes: p.routes })).not.toThrow();
    }
  });
});

describe('detect', () => {
  it('finds a Klipper machine on its ports and proposes its config', async () => {
    const ports = [await fake(FAKES.mainsail), await fake(FAKES.moonraker), await fake(FAKES.ustreamer), await closedPort()];
    const d = await detect({ ports, timeoutMs: 1_000 });
    expect(d.findings.map((x) => x.kind).sort()).toEqual(['mainsail', 'mjpeg', 'moonraker']);
    expect(d.proposal?.services).toEqual({
      mainsail: { url: `http://127.0.0.1:${ports[0]}`, profile: 'generic' },
      moonraker: { url: `http://127.0.0.1:${ports[1]}`, profile: 'moonraker' },
      webcam: { url: `http://127.0.0.1:${ports[2]}`, profile: 'camera' },
    });
  });

  it('porthole-agent detect prints the findings and the proposal; --json for machines; 1 when nothing is found', async () => {
    const octo = await fake(FAKES.octoprint);
    const cam = await fake(FAKES.mjpgStreamer);
    const out: string[] = [];
    const ctx = { env: {}, stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t), onSignal: () => () => undefined };
    const cmd = createDetectCommand();
    expect(await cmd.main(['--port', String(octo), '--port', String(cam), '--timeout', '1000'], ctx)).toBe(0);
    const text = out.join('');
    expect(text).toContain(`:${octo}`);
    expect(text).toContain('OctoPrint 1.10.2');
    expect(text).toContain('Proposed: OctoPrint with a webcam (mjpg-streamer)');
    expect(text).toMatch(/\/webcam\/ +-> webcam \(prefix stripped\)/);

    out.length = 0;
    expect(await cmd.main(['--json', '--port', String(octo), '--timeout', '1000'], ctx)).toBe(0);
    const parsed = JSON.parse(out.join('')) as { proposal: { services: Record<string, unknown> } };
    expect(parsed.proposal.services).toEqual({ octoprint: { url: `http://127.0.0.1:${octo}`, profile: 'octoprint' } });

    out.length = 0;
    expect(await cmd.main(['--port', String(await closedPort()), '--timeout', '500'], ctx)).toBe(1);
    expect(out.join('')).toContain('No printer UI or webcam found');
    expect(await cmd.main(['--port', 'eighty'], ctx)).toBe(64);
  });
});
