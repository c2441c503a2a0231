// Hostile input against a real relay, agent and origin on 127.0.0.1 (issue #9, "Hostile input"):
// request smuggling shapes, oversized and slow requests, a device's stream cap, WebSocket abuse
// and agent-endpoint floods. Each attack is refused before anything reaches the printer, and
// after each one a signed-in user still gets the printer's page through the tunnel.
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { encodeHello, type Hello } from '@porthole/protocol';
import { signInToDevice } from './src/auth.js';
import type { Client } from './src/client.js';
import { startOrigin, type Origin } from './src/origin.js';
import {
  addDevice,
  agentConfig,
  deviceDefaults,
  deviceHost,
  deviceRequest,
  deviceStream,
  relayCommand,
  startAgent,
  startRelay,
  stopAll,
  type DeviceInfo,
  type RelayProcess,
} from './src/procs.js';
import { drip, rawExchange, rawRequest, wsFrame } from './src/raw-http.js';

const SLUG = 'mk3s';
const PASSWORD = 'a long enough password for the hostile suite';
const HEADERS_TIMEOUT_MS = 1_500;
const BODY_IDLE_MS = 1_500;
const STREAM_CAP = 8;
const REFUSAL_BURST = 5;

let origin: Origin;
let relay: RelayProcess;
let device: DeviceInfo;
/** A second device whose credential the agent-endpoint tests use; no agent runs for it. */
let spare: DeviceInfo;
let owner: Client;
let cookie: string;
let host: string;

/** Figures for docs/RELIABILITY.md, printed at the end of the run. */
const figures: { attack: string; outcome: string; ms: number; servedMs: number }[] = [];

/**
 * The check every test ends with: the relay still serves another user through the tunnel.
 * Returns how long the request took.
 */
async function stillServes(): Promise<number> {
  const t = Date.now();
  const r = await deviceRequest(relay.port, SLUG, { path: '/api/status?still=serving', timeoutMs: 15_000 });
  expect(r.status).toBe(200);
  expect(r.json<{ state: unknown }>()).toHaveProperty('state');
  expect(origin.find('/api/status?still=serving').length).toBeGreaterThan(0);
  return Date.now() - t;
}

/** Records an attack's figures after checking that the relay still serves a user (stillServes). */
async function survived(attack: string, outcome: string, ms: number): Promise<void> {
  const servedMs = await stillServes();
  figures.push({ attack, outcome, ms: Math.round(ms), servedMs });
}

/** A request head for the device with the owner's cookie, and `extra` header lines. */
function head(requestLine: string, extra = ''): string {
  return `${requestLine}\r\nHost: ${host}\r\nCookie: ${cookie}\r\n${extra}`;
}

async function poll(cond: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const hello: Hello = { v: 1, agent: 'hostile-suite', services: [{ name: 'ui' }], routes: [{ path: '/', service: 'ui' }] };

function agentUpgrade(credential: string, extra = ''): string {
  return (
    `GET /_porthole/agent HTTP/1.1\r\nHost: localhost:${relay.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${credential}\r\n` +
    `Porthole-Hello: ${encodeHello(hello)}\r\n${extra}\r\n`
  );
}

const agentConnectedLines = (slug: string) => relay.lines.filter((l) => l.json?.device === slug && /agent connected/.test(l.text)).length;

beforeAll(async () => {
  origin = await startOrigin({ frames: 'tiny' });
  relay = await startRelay({
    env: {
      PORTHOLE_LOGIN_DELAY_MS: '20',
      PORTHOLE_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      PORTHOLE_BODY_IDLE_TIMEOUT_MS: String(BODY_IDLE_MS),
      PORTHOLE_MAX_STREAMS_PER_DEVICE: String(STREAM_CAP),
      PORTHOLE_AGENT_REFUSAL_BURST: String(REFUSAL_BURST),
      PORTHOLE_AGENT_REFUSALS_PER_MINUTE: '6',
    },
  });
  host = deviceHost(relay.port, SLUG);
  await relayCommand(relay, ['user', 'add', '--admin', '--username', 'maker', '--password-stdin'], 30_000, PASSWORD);
  device = await addDevice(relay, { name: 'Hostile MK3S', slug: SLUG, owner: 'maker' });
  spare = await addDevice(relay, { name: 'Spare', slug: 'spare', owner: 'maker' });
  const cfg = agentConfig({ relay: relay.port, credential: device.credential, ui: origin.url });
  // Moonraker's profile: a viewer's WebSocket messages go through the relay's frame filter.
  (cfg.services.ui as unknown as Record<string, unknown>).profile = 'moonraker';
  await startAgent({ config: cfg });
  const s = await signInToDevice(relay, { username: 'maker', password: PASSWORD, slug: SLUG });
  owner = s.client;
  cookie = s.cookie;
  deviceDefaults.headers.cookie = cookie;
  await stillServes();
}, 90_000);

afterAll(async () => {
  deviceDefaults.headers = {};
  await stopAll();
  await origin?.close();
  if (figures.length > 0) {
    const rows = figures.map((f) => `| ${f.attack} | ${f.outcome} | ${f.ms} | ${f.servedMs} |`);
    process.stdout.write(`\nhostile-input figures:\n| attack | outcome | refused after (ms) | next user request (ms) |\n|---|---|---|---|\n${rows.join('\n')}\n`);
  }
});

describe('request smuggling shapes are refused before anything reaches the tunnel', () => {
  const cases: [string, string][] = [
    ['Content-Length and Transfer-Encoding', head('POST /upload?smuggle=clte HTTP/1.1', 'Content-Length: 6\r\nTransfer-Encoding: chunked\r\n') + '\r\n0\r\n\r\nX'],
    ['Transfer-Encoding then Content-Length', head('POST /upload?smuggle=tecl HTTP/1.1', 'Transfer-Encoding: chunked\r\nContent-Length: 3\r\n') + '\r\n1\r\nA\r\n0\r\n\r\n'],
    ['two different Content-Lengths', head('POST /upload?smuggle=cl2 HTTP/1.1', 'Content-Length: 3\r\nContent-Length: 5\r\n') + '\r\nabcde'],
    ['two equal Content-Lengths', head('POST /upload?smuggle=cl2same HTTP/1.1', 'Content-Length: 3\r\nContent-Length: 3\r\n') + '\r\nabc'],
    ['a Content-Length list', head('POST /upload?smuggle=cllist HTTP/1.1', 'Content-Length: 3, 3\r\n') + '\r\nabc'],
    ['obs-fold header continuation', head('GET /api/status?smuggle=fold HTTP/1.1', 'X-Folded: a\r\n b\r\n') + '\r\n'],
    ['bare LF line endings', `GET /api/status?smuggle=lf HTTP/1.1\nHost: ${host}\nCookie: ${cookie}\n\n`],
    ['bare CR line endings', `GET /api/status?smuggle=cr HTTP/1.1\rHost: ${host}\rCookie: ${cookie}\r\r`],
    ['a bare LF inside the head', head('GET /api/status?smuggle=lf2 HTTP/1.1', 'X-A: 1\nX-B: 2\r\n') + '\r\n'],
    ['an invalid chunk size', head('POST /upload?smuggle=chunk HTTP/1.1', 'Transfer-Encoding: chunked\r\n') + '\r\nzz\r\nab\r\n0\r\n\r\n'],
    ['a chunk size with a bare LF', head('POST /upload?smuggle=chunklf HTTP/1.1', 'Transfer-Encoding: chunked\r\n') + '\r\n2\nab\r\n0\r\n\r\n'],
    ['Transfer-Encoding gzip', head('POST /upload?smuggle=gzip HTTP/1.1', 'Transfer-Encoding: gzip\r\n') + '\r\nabcd'],
    ['Transfer-Encoding gzip, chunked', head('POST /upload?smuggle=gzipchunked HTTP/1.1', 'Transfer-Encoding: gzip, chunked\r\n') + '\r\n0\r\n\r\n'],
    ['Transfer-Encoding twice', head('POST /upload?smuggle=te2 HTTP/1.1', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n') + '\r\n0\r\n\r\n'],
    ['Transfer-Encoding with a space before the colon', head('POST /upload?smuggle=tesp HTTP/1.1', 'Transfer-Encoding : chunked\r\n') + '\r\n0\r\n\r\n'],
    ['chunked in HTTP/1.0', head('POST /upload?smuggle=http10 HTTP/1.0', 'Transfer-Encoding: chunked\r\n') + '\r\n0\r\n\r\n'],
    ['two Host headers', head('GET /api/status?smuggle=host2 HTTP/1.1', `Host: ${deviceHost(relay?.port ?? 0, 'spare')}\r\n`) + '\r\n'],
    ['a NUL in a header value', head('GET /api/status?smuggle=nul HTTP/1.1', 'X-A: a\0b\r\n') + '\r\n'],
    ['a negative Content-Length', head('POST /upload?smuggle=neg HTTP/1.1', 'Content-Length: -1\r\n') + '\r\n'],
  ];

  it.each(cases.map(([name]) => name))('%s → 400, and the printer sees nothing', async (name) => {
    // Built lazily: the relay's port is only known once it runs.
    const bytes = cases.find(([n]) => n === name)![1].replace(/localhost:0\b/g, `localhost:${relay.port}`);
    origin.reset();
    const r = await rawRequest(relay.port, bytes);
    expect(r.status, r.text).toBe(400);
    expect(r.ended).toBe('closed');
    // Give anything that slipped through time to arrive, then check nothing did.
    await new Promise((res) => setTimeout(res, 150));
    expect(origin.requests.filter((q) => q.url.includes('smuggle='))).toEqual([]);
    await survived(`smuggling: ${name}`, '400, connection closed', r.ms);
  });

  it('a smuggled request pipelined behind a valid one: the connection is refused, the smuggled part never forwarded', async () => {
    origin.reset();
    const first = head('GET /api/status?smuggle=first HTTP/1.1') + '\r\n';
    const second = head('POST /upload?smuggle=second HTTP/1.1', 'Content-Length: 30\r\nTransfer-Encoding: chunked\r\n') + '\r\n0\r\n\r\nGET /api/status?smuggle=third HTTP/1.1\r\n\r\n';
    const r = await rawRequest(relay.port, first + second);
    // The parser refuses the connection at the second head; the first (valid) request may have
    // been forwarded already, but its answer cannot follow a 400 on a closed connection.
    expect(r.text).toContain('HTTP/1.1 400');
    expect(r.ended).toBe('closed');
    await new Promise((res) => setTimeout(res, 300));
    const seen = origin.requests.map((q) => q.url).filter((u) => u.includes('smuggle='));
    expect(seen.filter((u) => !u.endsWith('smuggle=first'))).toEqual([]);
    await survived('smuggling: pipelined behind a valid request', '400 at the smuggled head', r.ms);
  });
});

describe('oversized requests', () => {
  it.each([
    ['a 9 KiB request target', 9 * 1024],
    ['a 100 KiB request target', 100 * 1024],
  ])('%s → 414', async (_name, n) => {
    origin.reset();
    const r = await rawRequest(relay.port, head(`GET /api/status?big=${'a'.repeat(n)} HTTP/1.1`) + '\r\n');
    expect(r.status, r.text.slice(0, 200)).toBe(414);
    expect(origin.find((q) => q.url.includes('big='))).toEqual([]);
    await survived(`${n / 1024} KiB URL`, '414', r.ms);
  });

  it.each([
    ['20 KiB in one header', `X-Big: ${'b'.repeat(20 * 1024)}\r\n`],
    ['100 KiB in 1,000 headers', Array.from({ length: 1000 }, (_, i) => `X-H${i}: ${'c'.repeat(90)}\r\n`).join('')],
  ])('%s → 431', async (name, extra) => {
    origin.reset();
    const r = await rawRequest(relay.port, head('GET /api/status?bighead=1 HTTP/1.1', extra) + '\r\n');
    expect(r.status, r.text.slice(0, 200)).toBe(431);
    expect(origin.find((q) => q.url.includes('bighead='))).toEqual([]);
    await survived(`headers: ${name}`, '431', r.ms);
  });
});

describe('slow clients time out', () => {
  it('slow headers (slowloris, 30 connections) get 408 while other users are served', async () => {
    origin.reset();
    const attacks = Array.from({ length: 30 }, () =>
      rawExchange(
        relay.port,
        async (s) => {
          s.write(`GET /api/status?slowloris=1 HTTP/1.1\r\nHost: ${host}\r\n`);
          await drip(s, 'X-Slow: ' + 'z'.repeat(200), 200);
        },
        { timeoutMs: 20_000 },
      ),
    );
    // Served while 30 connections hang on their heads.
    const during = await stillServes();
    const results = await Promise.all(attacks);
    for (const r of results) {
      expect(r.status, r.text).toBe(408);
      expect(r.ended).toBe('closed');
      // Refused by the headers timer, not by our own give-up timer.
      expect(r.ms).toBeLessThan(15_000);
    }
    expect(origin.find((q) => q.url.includes('slowloris'))).toEqual([]);
    await survived('slow headers ×30 (headersTimeout 1.5 s)', `408, the slowest after ${Math.max(...results.map((r) => r.ms))} ms; legit GET during: ${during} ms`, Math.max(...results.map((r) => r.ms)));
  });

  it('a stalled request body gets 408 and the printer sees an aborted upload, never a complete one', async () => {
    origin.reset();
    const url = '/upload?stall=body';
    const r = await rawExchange(
      relay.port,
      (s) => {
        s.write(head(`POST ${url} HTTP/1.1`, 'Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n') + '\r\n' + 'x'.repeat(1000));
      },
      { timeoutMs: 20_000 },
    );
    expect(r.status, r.text).toBe(408);
    const rec = await origin.waitFor(url, { state: 'settled', timeoutMs: 15_000 });
    expect(rec.state).toBe('aborted');
    expect(rec.bodyBytes).toBeLessThan(100_000);
    await survived('stalled body (idle timeout 1.5 s)', '408; origin saw the upload aborted', r.ms);
  });

  it('a slow but steady body is not cut: the idle timer is not a total', async () => {
    origin.reset();
    const url = '/upload?steady=1';
    const body = 'steady-body-16b!';
    const r = await rawExchange(
      relay.port,
      async (s) => {
        s.write(head(`POST ${url} HTTP/1.1`, `Content-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\nConnection: close\r\n`) + '\r\n');
        // 16 bytes over ~4 s: twice the idle timeout in total, never idle for long.
        await drip(s, body, 250);
      },
      { timeoutMs: 20_000 },
    );
    expect(r.status, r.text).toBe(200);
    expect(r.ms).toBeGreaterThan(2 * BODY_IDLE_MS);
    const rec = await origin.waitFor(url, { state: 'settled' });
    expect(rec.state).toBe('complete');
    expect(rec.bodyBytes).toBe(body.length);
    await survived('slow but steady body (16 bytes over 4 s)', '200, complete at the printer', r.ms);
  });
});

describe("a device's concurrent streams are capped", () => {
  it(`beyond ${STREAM_CAP} exchanges: 503 with Retry-After and a readable page; HTTP and WebSocket alike`, async () => {
    origin.reset();
    // Responses that start and never end: the exchanges stay in flight until we let them go.
    const held = await Promise.all(Array.from({ length: STREAM_CAP }, (_, i) => deviceStream(relay.port, SLUG, { path: `/stall?bytes=1&hold=${i}`, timeoutMs: 20_000 })));
    expect(held.map((r) => r.statusCode)).toEqual(Array(STREAM_CAP).fill(200));
    const t = Date.now();
    const over = await deviceRequest(relay.port, SLUG, { path: '/api/status?over=cap' });
    const refusedMs = Date.now() - t;
    expect(over.status).toBe(503);
    expect(over.headers['retry-after']).toBe('5');
    expect(over.headers['content-type']).toMatch(/text\/html/);
    expect(over.text()).toContain('Too many open connections');
    expect(origin.find('/api/status?over=cap')).toEqual([]);
    const ws = await rawRequest(
      relay.port,
      head('GET /websocket HTTP/1.1', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n') + '\r\n',
    );
    expect(ws.status).toBe(503);
    expect(ws.headers['retry-after']).toBe('5');
    // The phones give up: their exchanges end, and the cap frees (not a leak).
    for (const r of held) r.destroy();
    const freedAt = Date.now();
    for (;;) {
      const r = await deviceRequest(relay.port, SLUG, { path: '/api/status?after=cap' });
      if (r.status === 200) break;
      expect(r.status).toBe(503);
      expect(Date.now() - freedAt).toBeLessThan(10_000);
      await new Promise((res) => setTimeout(res, 50));
    }
    await survived(`stream cap (${STREAM_CAP} per device)`, `503 + Retry-After: 5, HTTP and WebSocket; free again ${Date.now() - freedAt} ms after the held exchanges ended`, refusedMs);
  }, 30_000);
});

describe('WebSocket abuse', () => {
  async function viewerCookie(): Promise<string> {
    const base = `http://localhost:${relay.port}`;
    const me = await owner.request(`${base}/api/me`);
    const csrf = me.json<{ csrf: string }>().csrf;
    const created = await owner.request(`${base}/api/devices/${device.id}/shares`, {
      method: 'POST',
      json: { expiresIn: '1h' },
      headers: { origin: base, 'x-csrf-token': csrf },
    });
    expect(created.status).toBe(201);
    const { Client } = await import('./src/client.js');
    const v = new Client(relay.port);
    await v.request(created.json<{ url: string }>().url, { follow: 0 });
    return [...v.cookies(`${SLUG}.localhost`)].map(([k, val]) => `${k}=${val}`).join('; ');
  }

  function openWs(url: string, headers: Record<string, string>, localAddress?: string): Promise<WebSocket> {
    const ws = new WebSocket(url, { headers, ...(localAddress !== undefined ? { localAddress } : {}) });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
  }

  function closed(ws: WebSocket): Promise<{ code: number; ms: number }> {
    const t = Date.now();
    return new Promise((resolve) => ws.once('close', (code) => resolve({ code, ms: Date.now() - t })));
  }

  it.each([
    ['a 300 KiB message', 1009, (ws: WebSocket) => ws.send('a'.repeat(300 * 1024))],
    ['a flood of 1,000 one-byte fragments', 1009, (ws: WebSocket) => {
      for (let i = 0; i < 1000; i++) ws.send('a', { fin: false });
    }],
    ['a binary message', 1008, (ws: WebSocket) => ws.send(Buffer.from([1, 2, 3]))],
    ['a write call', 1008, (ws: WebSocket) => ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'printer.gcode.script', params: { script: 'M104 S250' }, id: 9 }))],
  ])("a viewer's %s → close %i, nothing reaches the printer", async (name, code, attack) => {
    const ws = await openWs(`ws://127.0.0.1:${relay.port}/websocket`, { host, cookie: await viewerCookie() });
    const before = origin.wsMessages;
    const c = closed(ws);
    attack(ws);
    const { code: got, ms } = await c;
    expect(got).toBe(code);
    await new Promise((r) => setTimeout(r, 100));
    expect(origin.wsMessages).toBe(before);
    await survived(`viewer WebSocket: ${name}`, `close ${got}`, ms);
  });

  it.each([
    ['an unmasked frame', 1002, wsFrame(0x1, '{"id":1}', true, false)],
    ['a flood of 2,000 empty continuation frames', 1009, Buffer.concat([wsFrame(0x1, '', false), ...Array.from({ length: 2000 }, () => wsFrame(0x0, '', false))])],
  ])("a viewer's %s (raw bytes) → close %i", async (name, code, frames) => {
    const viewer = await viewerCookie();
    const before = origin.wsMessages;
    const r = await rawExchange(relay.port, (s) => {
      s.write(head('GET /websocket HTTP/1.1', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n').replace(`Cookie: ${cookie}`, `Cookie: ${viewer}`) + '\r\n');
      s.once('data', () => s.write(frames));
    });
    expect(r.status).toBe(101);
    const body = Buffer.from(r.text.slice(r.text.indexOf('\r\n\r\n') + 4), 'latin1');
    // The last frame the relay sent is a close frame with the code.
    const at = body.lastIndexOf(0x88);
    expect(at).toBeGreaterThanOrEqual(0);
    expect(body.readUInt16BE(at + 2)).toBe(code);
    expect(origin.wsMessages).toBe(before);
    await survived(`viewer WebSocket: ${name}`, `close ${code}`, r.ms);
  });

  it("an owner's WebSocket passes through: the printer's own limits and close codes apply, not the relay's", async () => {
    // The relay does not parse an operator's frames (the printer's server enforces its own
    // message limits); it holds at most the tunnel stream's window of them.
    const ws = await openWs(`ws://127.0.0.1:${relay.port}/websocket`, { host, cookie });
    const big = Buffer.alloc(4 * 1024 * 1024, 7);
    const echoed = new Promise<Buffer>((resolve) => ws.once('message', (d: Buffer) => resolve(d)));
    ws.send(big);
    expect((await echoed).equals(big)).toBe(true);
    const c = closed(ws);
    ws.send('__close 1009');
    const r = await c;
    expect(r.code).toBe(1009);
    await survived("owner WebSocket: a 4 MiB message, then the printer's 1009", 'echoed whole; the printer\'s close 1009 reached the phone', r.ms);
  });

  it('the agent endpoint gathers no WebSocket message: a frame declared 1 TiB long is read as it arrives, bad bytes in it end the tunnel', async () => {
    // The relay reads agent frames itself and hands their bytes to the tunnel as they arrive, so
    // there is no message to grow: a ping inside a frame whose length says 1 TiB is answered at
    // once (ws would have waited for the whole terabyte, or refused it with 1009 at 8 MiB), and
    // the first bytes that are not yamux end that tunnel with 1002.
    const headers = { host: `localhost:${relay.port}`, authorization: `Bearer ${spare.credential}`, 'porthole-hello': encodeHello(hello) };
    const url = `ws://127.0.0.1:${relay.port}/_porthole/agent`;
    const huge = await openWs(url, headers, '127.0.0.20');
    const socket = (huge as unknown as { _socket: Socket })._socket;
    const c1 = closed(huge);
    // The relay's frames, yamux headers (12 bytes) and any Data payloads, until our ping's answer.
    const answered = new Promise<string>((resolve) => {
      huge.on('message', (m: Buffer) => {
        for (let off = 0; off + 12 <= m.length; off += 12 + (m[off + 1] === 0 ? m.readUInt32BE(off + 8) : 0)) {
          const frame = m.subarray(off, off + 12).toString('hex');
          if (frame.startsWith('00020002')) resolve(frame); // Ping with ACK
        }
      });
    });
    const head = Buffer.alloc(14); // FIN + binary, masked with a zero key, 64-bit length 2^40
    head[0] = 0x82;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(1n << 40n, 2);
    const yamuxPing = Buffer.from([0, 2, 0, 1, 0, 0, 0, 0, 0x0b, 0xad, 0xf0, 0x0d]); // Ping, SYN, opaque 0x0badf00d
    socket.write(Buffer.concat([head, yamuxPing]));
    expect(await answered).toBe('00020002000000000badf00d'); // Ping, ACK, stream 0, our opaque value
    socket.write(Buffer.alloc(64 * 1024)); // zeros: a Data frame on stream 0, which is no stream
    const r1 = await c1;
    expect(r1.code).toBe(1002);
    await survived('agent endpoint: a frame declared 1 TiB long, a ping inside, then garbage', 'ping answered at once; close 1002', r1.ms);
    const flood = await openWs(url, headers, '127.0.0.21');
    const c2 = closed(flood);
    const piece = Buffer.alloc(1024);
    for (let i = 0; i < 9 * 1024; i++) flood.send(piece, { fin: false, binary: true });
    const r2 = await c2;
    expect(r2.code).toBe(1002);
    await survived('agent endpoint: 9,216 fragments of 1 KiB of zeros', 'close 1002 at the first frame', r2.ms);
  });

  it('yamux garbage from an authenticated agent ends only its own tunnel', async () => {
    const headers = { host: `localhost:${relay.port}`, authorization: `Bearer ${spare.credential}`, 'porthole-hello': encodeHello(hello) };
    const ws = await openWs(`ws://127.0.0.1:${relay.port}/_porthole/agent`, headers, '127.0.0.22');
    const c = closed(ws);
    ws.send(Buffer.from('this is not a yamux frame at all'));
    const r = await c;
    expect(r.code).not.toBe(1000);
    await survived('agent endpoint: garbage frames after a valid handshake', `tunnel closed (${r.code}); other tunnels unaffected`, r.ms);
  });
});

describe('the agent endpoint', () => {
  it('throttles a flood of bad credentials per address; a valid agent elsewhere still connects', async () => {
    const flood = (i: number) => rawRequest(relay.port, agentUpgrade(`bad-credential-${i}-${'x'.repeat(32)}`), { localAddress: '127.0.0.3' });
    const t = Date.now();
    const first = await Promise.all(Array.from({ length: 40 }, (_, i) => flood(i)));
    const statuses = first.map((r) => r.status);
    const refusedByCheck = statuses.filter((s) => s === 401).length;
    const throttled = first.filter((r) => r.status === 429);
    expect(refusedByCheck).toBeLessThanOrEqual(REFUSAL_BURST);
    expect(refusedByCheck + throttled.length).toBe(40);
    expect(throttled.length).toBeGreaterThanOrEqual(40 - REFUSAL_BURST);
    for (const r of throttled) expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    const floodMs = Date.now() - t;
    // During a second wave from the same address, the spare device connects from another one.
    const wave = Promise.all(Array.from({ length: 40 }, (_, i) => flood(100 + i)));
    const before = agentConnectedLines('spare');
    const ok = await rawRequest(relay.port, agentUpgrade(spare.credential), { localAddress: '127.0.0.2', untilAnswer: true });
    expect(ok.status, ok.text).toBe(101);
    await poll(() => agentConnectedLines('spare') === before + 1, 10_000, 'spare agent connected');
    // Still throttled (a token may have been earned back on a slow machine: at most one 401).
    expect((await wave).filter((r) => r.status !== 429).length).toBeLessThanOrEqual(1);
    await survived('agent endpoint: 40 bad credentials at once from one address', `${refusedByCheck}×401 then ${throttled.length}×429 + Retry-After; valid agent from another address: 101`, floodMs);
  });

  const garbage: [string, (cred: string) => string, number][] = [
    ['no credential', () => agentUpgrade('').replace(/Authorization: Bearer \r\n/, ''), 401],
    ['a malformed Sec-WebSocket-Key', (c) => agentUpgrade(c).replace('dGhlIHNhbXBsZSBub25jZQ==', 'not-a-key'), 400],
    ['a wrong Sec-WebSocket-Version', (c) => agentUpgrade(c).replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 12'), 400],
    ['a POST upgrade', (c) => agentUpgrade(c).replace('GET /_porthole', 'POST /_porthole'), 405],
    ['a plain GET, no upgrade', (c) => agentUpgrade(c).replace('Connection: Upgrade\r\nUpgrade: websocket\r\n', 'Connection: close\r\n'), 404],
    ['a bad hello', (c) => agentUpgrade(c).replace(/Porthole-Hello: [^\r]*/, 'Porthole-Hello: e30'), 400],
    ['huge headers', (c) => agentUpgrade(c, `X-Pad: ${'p'.repeat(40 * 1024)}\r\n`), 431],
    ['binary garbage', () => '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n', 400],
  ];
  it.each(garbage.map(([n, , s]) => [n, s] as const))('a garbage upgrade (%s) → %i, and no tunnel is made', async (name, status) => {
    const i = garbage.findIndex(([n]) => n === name);
    const before = agentConnectedLines('spare');
    const r = await rawRequest(relay.port, garbage[i]![1](spare.credential), { localAddress: `127.0.1.${10 + i}` });
    expect(r.status, r.text.slice(0, 200)).toBe(status);
    expect(r.ended).toBe('closed');
    await new Promise((res) => setTimeout(res, 100));
    expect(agentConnectedLines('spare')).toBe(before);
    await survived(`garbage agent upgrade: ${name}`, `${r.status}, no session`, r.ms);
  });
});
