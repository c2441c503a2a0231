// The fan-out on real sockets: an MJPEG source on 127.0.0.1, a small HTTP server in front of
// the hub doing what the proxy does (authorized request in, `hub.handle()`), and a fake tunnel
// whose streams are plain TCP connections to the source.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeviceTunnel } from '../src/tunnel/device-tunnel.js';
import { WebcamHub, type AdoptHook, type WebcamOptions } from '../src/webcam/hub.js';
import { boundaryOf, MjpegParser } from '../src/webcam/parser.js';
import { placeholderJpeg } from '../src/webcam/placeholder.js';

const log = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A JPEG-shaped frame of `size` bytes carrying its sequence number. */
function frame(seq: number, size: number): Buffer {
  const b = Buffer.alloc(Math.max(size, 16), 0x11);
  b.set([0xff, 0xd8, 0xff, 0xfe, 0x00, 0x06]);
  b.writeUInt32BE(seq, 6);
  b[b.length - 2] = 0xff;
  b[b.length - 1] = 0xd9;
  return b;
}
const seqOf = (jpeg: Buffer) => jpeg.readUInt32BE(6);

interface Source {
  port: number;
  /** Open stream responses. */
  readonly clients: number;
  /** Requests seen, by path and query. */
  requests: string[];
  framesSent: number;
  close(): Promise<void>;
}

/** An mjpg-streamer-like source: ?action=stream, ?action=snapshot, /video.mjpg, /page. */
async function startSource(o: { fps: number; frameBytes: number; port?: number; boundary?: string }): Promise<Source> {
  const boundary = o.boundary ?? 'boundarydonotcross';
  const clients = new Set<http.ServerResponse>();
  const sockets = new Set<net.Socket>();
  const requests: string[] = [];
  let seq = 0;
  const src = {
    port: 0,
    get clients() {
      return clients.size;
    },
    requests,
    framesSent: 0,
    close: async () => undefined as void,
  };
  const timer = setInterval(() => {
    const jpeg = frame(++seq, o.frameBytes);
    for (const res of clients) {
      if (res.writableNeedDrain) continue;
      res.write(`--${boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`);
      res.write(jpeg);
      res.write('\r\n');
      src.framesSent++;
    }
  }, 1000 / o.fps);
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/page') {
      res.end('<html>camera page</html>');
      return;
    }
    if (u.searchParams.get('action') === 'snapshot') {
      const jpeg = frame(++seq, o.frameBytes);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length });
      res.end(jpeg);
      return;
    }
    if (u.pathname === '/missing') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('no such stream');
      return;
    }
    res.writeHead(200, { 'content-type': `multipart/x-mixed-replace;boundary=${boundary}` });
    clients.add(res);
    res.on('close', () => clients.delete(res));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(o.port ?? 0, '127.0.0.1', r));
  src.port = (server.address() as AddressInfo).port;
  src.close = async () => {
    clearInterval(timer);
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  cleanups.push(() => src.close());
  return src;
}

/** A stand-in for a DeviceTunnel: its "streams" are TCP connections to the source. */
function fakeTunnel(port: () => number): DeviceTunnel & { agent: http.Agent } {
  const agent = new http.Agent({ keepAlive: true });
  (agent as unknown as { createConnection: unknown }).createConnection = () => net.connect(port(), '127.0.0.1');
  cleanups.push(() => agent.destroy());
  return {
    closed: false,
    agent,
    info: {
      deviceId: 'dev1',
      slug: 'mk3s',
      name: 'MK3S',
      remote: '127.0.0.1',
      hello: { routes: [{ path: '/cam/', service: 'webcam', stripPrefix: true }, { path: '/', service: 'ui' }], services: [{ name: 'webcam' }, { name: 'ui' }] },
    },
    agentFor: () => agent,
  } as unknown as DeviceTunnel & { agent: http.Agent };
}

interface Harness {
  hub: WebcamHub;
  port: number;
  tunnel: DeviceTunnel & { agent: http.Agent };
  online: boolean;
  /** Requests the plain-proxy path forwarded. */
  forwarded: string[];
}

/** The relay's part: `/cam/…` is the camera service (prefix stripped), the rest the UI service. */
async function startHub(source: () => number, opts: Partial<WebcamOptions> = {}): Promise<Harness> {
  const tunnel = fakeTunnel(source);
  const h: Harness = { hub: undefined as unknown as WebcamHub, port: 0, tunnel, online: true, forwarded: [] };
  h.hub = new WebcamHub({ tunnel: () => (h.online ? tunnel : undefined), log }, { graceMs: 300, retryMinMs: 50, retryMaxMs: 200, placeholderEveryMs: 200, ...opts });
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const alias = url.startsWith('/_porthole/') ? h.hub.relayAlias(url, tunnel) : undefined;
    const effective = alias?.url ?? url;
    const cam = effective.startsWith('/cam/');
    const target = cam ? effective.slice(4) : effective;
    const forward = (adopt?: AdoptHook) => {
      h.forwarded.push(target);
      const preq = http.request({ agent: tunnel.agent, path: target, headers: { host: 'x' } }, (pres) => {
        if (adopt?.(preq, pres) === true) return;
        res.writeHead(pres.statusCode ?? 502, pres.headers);
        pres.pipe(res);
      });
      preq.on('error', () => res.destroy());
      preq.end();
    };
    h.hub.handle({
      req,
      res,
      deviceId: 'dev1',
      slug: 'mk3s',
      tunnel,
      service: cam ? { name: 'webcam' } : { name: 'ui', profile: 'octoprint' },
      target,
      headers: { host: 'mk3s.localhost' },
      role: String(req.headers['x-role'] ?? 'owner'),
      relayPath: alias?.kind,
      forward,
    });
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  h.port = (server.address() as AddressInfo).port;
  cleanups.push(async () => {
    h.hub.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return h;
}

interface Watcher {
  res: http.IncomingMessage;
  frames: Buffer[];
  /** Arrival times (performance.now()) of each frame. */
  times: number[];
  close(): void;
}

async function watch(port: number, path: string, headers: Record<string, string> = {}, read = true): Promise<Watcher> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers, agent: false }, resolve);
    req.on('error', reject);
  });
  const w: Watcher = { res, frames: [], times: [], close: () => void res.destroy() };
  cleanups.push(() => void res.destroy());
  if (!read) {
    res.pause();
    return w;
  }
  const parser = new MjpegParser(boundaryOf(res.headers['content-type']));
  res.on('data', (c: Buffer) => {
    for (const f of parser.push(c)) {
      w.frames.push(f);
      w.times.push(performance.now());
    }
  });
  res.on('error', () => undefined);
  return w;
}

async function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

const isPlaceholder = (f: Buffer) => f.equals(placeholderJpeg('camera')) || f.equals(placeholderJpeg('device'));

describe('WebcamHub', () => {
  it('serves every viewer of a camera from one upstream pull', async () => {
    const src = await startSource({ fps: 30, frameBytes: 2_000 });
    const h = await startHub(() => src.port);
    const viewers = await Promise.all(Array.from({ length: 8 }, (_, i) => watch(h.port, `/cam/?action=stream&${1000 + i}`)));
    await until('10 frames each', () => viewers.every((v) => v.frames.length >= 10));
    expect(src.clients).toBe(1);
    expect(src.requests.filter((r) => r.includes('action=stream'))).toEqual(['/?action=stream']); // cache busters stripped
    for (const v of viewers) {
      expect(v.res.headers['content-type']).toBe('multipart/x-mixed-replace;boundary=portholeframe');
      const seqs = v.frames.map(seqOf);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b)); // in order, never repeated
      expect(new Set(seqs).size).toBe(seqs.length);
    }
    const s = h.hub.stats('dev1');
    expect(s.cameras).toHaveLength(1);
    expect(s.cameras[0]).toMatchObject({ viewers: 8, state: 'live', service: 'webcam', path: '/?action=stream' });
    expect(s.cameras[0]!.framesIn).toBeGreaterThanOrEqual(10);
    expect(s.totals.delivered).toBeGreaterThanOrEqual(80);
  });

  it('a stalled viewer drops frames, holds about one frame, and slows nobody', async () => {
    const frameBytes = 256 * 1024;
    const src = await startSource({ fps: 20, frameBytes });
    const h = await startHub(() => src.port);
    const stalled = await watch(h.port, '/cam/?action=stream', {}, false);
    const live = await Promise.all([1, 2, 3].map(() => watch(h.port, '/cam/?action=stream')));
    // The kernel's socket buffers absorb some megabytes first; then the relay must drop.
    await until('the stalled viewer to drop frames', () => (h.hub.stats().cameras[0]?.dropped ?? 0) > 5, 20_000);
    const startIn = h.hub.stats().cameras[0]!.framesIn;
    const startLive = live.map((v) => v.frames.length);
    let maxHeld = 0;
    for (let i = 0; i < 20; i++) {
      await sleep(50);
      for (const v of h.hub.stats().cameras[0]!.perViewer) maxHeld = Math.max(maxHeld, v.heldBytes);
    }
    const cam = h.hub.stats().cameras[0]!;
    const gotIn = cam.framesIn - startIn;
    expect(gotIn).toBeGreaterThan(12);
    live.forEach((v, i) => expect(v.frames.length - startLive[i]!).toBeGreaterThanOrEqual(gotIn - 2));
    // Its response buffer plus the one newest frame it waits to send: about one frame, not a queue.
    expect(maxHeld).toBeLessThanOrEqual(2 * (frameBytes + 200));
    const slow = cam.perViewer.find((v) => v.dropped > 0)!;
    expect(slow.delivered).toBeLessThan(cam.framesIn);
    expect(stalled.frames).toHaveLength(0);
    expect(src.clients).toBe(1);
  }, 30_000);

  it('caps a viewer at ?fps=N and viewers by role at the default', async () => {
    const src = await startSource({ fps: 25, frameBytes: 1_000 });
    const h = await startHub(() => src.port, { viewerFps: 4 });
    const capped = await watch(h.port, '/cam/?action=stream&fps=2');
    const viewer = await watch(h.port, '/cam/?action=stream', { 'x-role': 'viewer' });
    const owner = await watch(h.port, '/cam/?action=stream');
    await sleep(2_100);
    const rate = (w: Watcher) => (w.frames.length - 1) / ((w.times.at(-1)! - w.times[0]!) / 1000);
    expect(rate(capped)).toBeGreaterThan(1.6);
    expect(rate(capped)).toBeLessThan(2.5);
    expect(rate(viewer)).toBeGreaterThan(3.2);
    expect(rate(viewer)).toBeLessThan(5);
    expect(rate(owner)).toBeGreaterThan(18);
    expect(src.clients).toBe(1);
    const per = h.hub.stats().cameras[0]!.perViewer;
    expect(per.map((v) => v.fps).sort()).toEqual([2, 4, null]);
    expect(per.find((v) => v.fps === 2)!.skipped).toBeGreaterThan(20);
  });

  it('closes the upstream a grace period after the last viewer leaves, and reopens on demand', async () => {
    const src = await startSource({ fps: 30, frameBytes: 1_000 });
    const h = await startHub(() => src.port, { graceMs: 400 });
    const a = await watch(h.port, '/cam/?action=stream');
    await until('a frame', () => a.frames.length > 0);
    a.close();
    await sleep(200);
    expect(src.clients).toBe(1); // still within the grace period
    const b = await watch(h.port, '/cam/?action=stream');
    await until('a frame for b', () => b.frames.length > 0);
    expect(src.requests.filter((r) => r.includes('stream'))).toHaveLength(1); // reused, not reopened
    b.close();
    await until('the upstream to close', () => src.clients === 0, 2_000);
    expect(h.hub.stats().cameras).toHaveLength(0);
    const c = await watch(h.port, '/cam/?action=stream');
    await until('a frame for c', () => c.frames.length > 0);
    expect(src.requests.filter((r) => r.includes('stream'))).toHaveLength(2);
  });

  it('shows a placeholder while the camera is away and resumes when it is back', async () => {
    let src = await startSource({ fps: 30, frameBytes: 1_000 });
    const port = src.port;
    const h = await startHub(() => port);
    const v = await watch(h.port, '/cam/?action=stream');
    await until('frames', () => v.frames.length >= 3);
    await src.close();
    await until('a placeholder', () => v.frames.some(isPlaceholder));
    expect(v.frames.at(-1)!.equals(placeholderJpeg('camera'))).toBe(true);
    expect(h.hub.stats().cameras[0]).toMatchObject({ state: 'offline', offline: 'camera' });
    // A snapshot meanwhile is the placeholder too, marked as such.
    const snap = await get(h.port, '/cam/?action=snapshot');
    expect(snap.status).toBe(503);
    expect(snap.headers['x-porthole-snapshot']).toMatch(/^placeholder/);
    const n = v.frames.length;
    src = await startSource({ fps: 30, frameBytes: 1_000, port });
    await until('real frames again', () => v.frames.length > n + 3 && !isPlaceholder(v.frames.at(-1)!));
    expect(h.hub.stats().cameras[0]!.reconnects).toBeGreaterThanOrEqual(1);
  });

  it('shows the printer-offline placeholder when the device has no tunnel, to new viewers too', async () => {
    const src = await startSource({ fps: 30, frameBytes: 1_000 });
    const h = await startHub(() => src.port);
    h.online = false;
    const v = await watch(h.port, '/cam/?action=stream');
    expect(v.res.statusCode).toBe(200);
    await until('a placeholder', () => v.frames.length > 0);
    expect(v.frames[0]!.equals(placeholderJpeg('device'))).toBe(true);
    h.online = true;
    await until('real frames', () => v.frames.some((f) => !isPlaceholder(f)));
  });

  it('a stream URL that answers with no stream is forwarded as it is, for every waiting viewer', async () => {
    const src = await startSource({ fps: 30, frameBytes: 1_000 });
    const h = await startHub(() => src.port);
    const results = await Promise.all([1, 2, 3].map(() => get(h.port, '/cam/missing?action=stream')));
    for (const r of results) {
      expect(r.status).toBe(404);
      expect(r.body.toString()).toBe('no such stream');
    }
    expect(h.forwarded.filter((f) => f.startsWith('/missing'))).toHaveLength(3);
    expect(h.hub.stats().cameras).toHaveLength(0);
  });

  it('takes over any MJPEG answer on a camera route and fans it out', async () => {
    const src = await startSource({ fps: 30, frameBytes: 1_000 });
    const h = await startHub(() => src.port);
    const a = await watch(h.port, '/cam/video.mjpg');
    await until('frames', () => a.frames.length >= 2);
    const b = await watch(h.port, '/cam/video.mjpg');
    await until('frames for b', () => b.frames.length >= 2);
    expect(src.requests.filter((r) => r === '/video.mjpg')).toHaveLength(1);
    expect(src.clients).toBe(1);
    // A plain page on the camera service still passes through untouched.
    const page = await get(h.port, '/cam/page');
    expect(page.body.toString()).toBe('<html>camera page</html>');
    // The first viewer leaving does not end the adopted upstream for the second.
    a.close();
    const n = b.frames.length;
    await until('more frames for b', () => b.frames.length > n + 3);
  });

  it('snapshots come from the live stream when there is one, else from the camera', async () => {
    const src = await startSource({ fps: 30, frameBytes: 1_000 });
    const h = await startHub(() => src.port);
    const cold = await get(h.port, '/cam/?action=snapshot');
    expect(cold.status).toBe(200);
    expect(cold.headers['x-porthole-snapshot']).toBeUndefined();
    expect(src.requests.filter((r) => r.includes('snapshot'))).toHaveLength(1);
    const v = await watch(h.port, '/cam/?action=stream');
    await until('frames', () => v.frames.length >= 2);
    for (const path of ['/cam/?action=snapshot', '/_porthole/snapshot']) {
      const warm = await get(h.port, path);
      expect(warm.status).toBe(200);
      expect(warm.headers['x-porthole-snapshot']).toBe('live');
      expect(warm.headers['content-type']).toBe('image/jpeg');
      expect(seqOf(warm.body)).toBeGreaterThanOrEqual(seqOf(v.frames.at(-1)!));
    }
    expect(src.requests.filter((r) => r.includes('snapshot'))).toHaveLength(1);
  });

  it('owner statistics on /_porthole/webcam, refused to viewers', async () => {
    const src = await startSource({ fps: 30, frameBytes: 1_000 });
    const h = await startHub(() => src.port);
    const v = await watch(h.port, '/cam/?action=stream');
    await until('frames', () => v.frames.length >= 2);
    const owner = await get(h.port, '/_porthole/webcam');
    expect(owner.status).toBe(200);
    const body = JSON.parse(owner.body.toString()) as { cameras: { viewers: number }[]; totals: { viewers: number } };
    expect(body.cameras[0]!.viewers).toBe(1);
    expect(body.totals.viewers).toBe(1);
    expect((await get(h.port, '/_porthole/webcam', { 'x-role': 'viewer' })).status).toBe(403);
  });

  it('close() ends every stream and upstream', async () => {
    const src = await startSource({ fps: 30, frameBytes: 1_000 });
    const h = await startHub(() => src.port);
    const v = await watch(h.port, '/cam/?action=stream');
    await until('frames', () => v.frames.length >= 1);
    const ended = new Promise<void>((r) => v.res.once('close', () => r()));
    h.hub.close();
    await ended;
    await until('the upstream to close', () => src.clients === 0);
  });
});
