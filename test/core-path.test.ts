// The core path, end to end with real processes on 127.0.0.1: a relay and an agent as child
// processes, a recording origin standing in for the printer, and ffmpeg as a real camera.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { deterministicBlocks, expectedSha256 } from './src/bytes.js';
import { startFfmpegCamera, type FfmpegCamera } from './src/camera.js';
import { collectFrames, isJpeg } from './src/mjpeg.js';
import { signInToDevice } from './src/auth.js';
import { startOrigin, type Origin, type RecordedRequest } from './src/origin.js';
import {
  addDevice,
  agentConfig,
  deviceHost,
  deviceRequest,
  deviceRequestOptions,
  deviceDefaults,
  deviceStream,
  freePort,
  relayCommand,
  startAgent,
  startRelay,
  stopAll,
  type AgentProcess,
  type DeviceInfo,
  type RelayProcess,
} from './src/procs.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SLUG = 'mk3s';

let origin: Origin;
let camera: FfmpegCamera;
let relay: RelayProcess;
let device: DeviceInfo;
let agent: AgentProcess;
let relayPort: number;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Samples a process's resident memory until stopped; returns the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssBytes(pid);
  const t = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      /* process gone */
    }
  }, 100);
  return {
    stop() {
      clearInterval(t);
      return peak;
    },
  };
}

/** Streams `n` deterministic bytes as a request body with backpressure; resolves with the response. */
function upload(
  path: string,
  n: number,
  opts: { chunked?: boolean; stopAfter?: number; seed?: string } = {},
): { req: http.ClientRequest; response: Promise<{ status: number; body: string }>; sent: () => number } {
  let sent = 0;
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (!opts.chunked) headers['content-length'] = String(n);
  const req = http.request({ ...deviceRequestOptions(relayPort, SLUG, { method: 'POST', path, headers }) });
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  const blocks = deterministicBlocks(n, opts.seed ?? 'up');
  const pump = () => {
    for (;;) {
      if (opts.stopAfter !== undefined && sent >= opts.stopAfter) return; // stall: the caller aborts
      const next = blocks.next();
      if (next.done === true) {
        req.end();
        return;
      }
      sent += next.value.length;
      if (!req.write(next.value)) {
        req.once('drain', pump);
        return;
      }
    }
  };
  pump();
  return { req, response, sent: () => sent };
}

/** Downloads and hashes a body without keeping it. */
async function download(path: string): Promise<{ status: number; bytes: number; sha256: string; header?: string }> {
  const res = await deviceStream(relayPort, SLUG, { path, timeoutMs: 120_000 });
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    h.update(c);
    bytes += c.length;
  }
  return { status: res.statusCode ?? 0, bytes, sha256: h.digest('hex'), header: res.headers['x-sha256'] as string | undefined };
}

/** Polls until the origin has received more than `bytes` of the upload at `url`. */
async function untilReceived(url: string, bytes: number, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if ((origin.find(url)[0]?.bodyBytes ?? 0) > bytes) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`origin did not receive ${bytes} bytes of ${url} within ${timeoutMs} ms`);
}

function waitForEvent(name: string, match: (r: RecordedRequest) => boolean, timeoutMs = 15_000): Promise<RecordedRequest> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${name} event within ${timeoutMs} ms`)), timeoutMs);
    const on = (r: RecordedRequest) => {
      if (!match(r)) return;
      clearTimeout(t);
      origin.events.off(name, on);
      resolve(r);
    };
    origin.events.on(name, on);
  });
}

async function startTheAgent(): Promise<AgentProcess> {
  return startAgent({
    config: agentConfig({ relay: relayPort, credential: device.credential, ui: origin.url, webcam: camera.url }),
  });
}

beforeAll(async () => {
  [origin, camera, relayPort] = await Promise.all([startOrigin(), startFfmpegCamera({ fps: 15 }), freePort()]);
  relay = await startRelay({ port: relayPort });
  await relayCommand(relay, ['user', 'add', '--username', 'maker', '--password-stdin'], 30_000, 'print all the benchies');
  device = await addDevice(relay, { name: 'Test MK3S', slug: SLUG, owner: 'maker' });
  agent = await startTheAgent();
  // Every request below is a signed-in owner's: the access rules have their own suite.
  const { cookie } = await signInToDevice(relay, { username: 'maker', password: 'print all the benchies', slug: SLUG });
  deviceDefaults.headers.cookie = cookie;
}, 60_000);

afterAll(async () => {
  await stopAll();
  await Promise.all([origin?.close(), camera?.close()]);
});

describe('HTTP through the tunnel', () => {
  it.each([0, 1 * MiB])('GET and POST with a body of %i bytes', async (n) => {
    const got = await download(`/bytes?n=${n}&seed=g${n}`);
    expect(got).toMatchObject({ status: 200, bytes: n, sha256: expectedSha256(n, `g${n}`) });
    const up = upload(`/upload?case=${n}`, n, { seed: `p${n}` });
    const res = await up.response;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ bytes: n, sha256: expectedSha256(n, `p${n}`) });
    expect(origin.find(`/upload?case=${n}`)[0]?.state).toBe('complete');
  });

  it('moves 1 GiB down and 1 GiB up with flat memory on relay and agent', async () => {
    const relayMem = sampleRss(relay.pid);
    const agentMem = sampleRss(agent.pid);
    const before = { relay: rssBytes(relay.pid), agent: rssBytes(agent.pid) };
    const got = await download(`/bytes?n=${GiB}&seed=big&sha=none`);
    expect(got.bytes).toBe(GiB);
    expect(got.sha256).toBe(expectedSha256(GiB, 'big'));
    const up = upload('/upload?case=gib', GiB, { seed: 'bigup' });
    const res = await up.response;
    expect(JSON.parse(res.body)).toEqual({ bytes: GiB, sha256: expectedSha256(GiB, 'bigup') });
    const peak = { relay: relayMem.stop(), agent: agentMem.stop() };
    // Streaming, not buffering: a gibibyte each way costs each process a few MiB, not hundreds.
    expect(peak.relay - before.relay).toBeLessThan(96 * MiB);
    expect(peak.agent - before.agent).toBeLessThan(96 * MiB);
  }, 180_000);

  it('carries a chunked upload as chunked, complete and intact', async () => {
    const up = upload('/upload?case=chunked', 3 * MiB + 17, { chunked: true, seed: 'ch' });
    const res = await up.response;
    expect(JSON.parse(res.body)).toEqual({ bytes: 3 * MiB + 17, sha256: expectedSha256(3 * MiB + 17, 'ch') });
    const rec = origin.find('/upload?case=chunked')[0]!;
    expect(rec.headers['transfer-encoding']).toBe('chunked');
    expect(rec.state).toBe('complete');
  });

  it('serves many parallel requests over reused streams', async () => {
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const results = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        deviceRequest(relayPort, SLUG, { path: `/bytes?n=${4096 + i}&seed=par${i}`, agent: keepAlive }),
      ),
    );
    keepAlive.destroy();
    results.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(createHash('sha256').update(r.body).digest('hex')).toBe(expectedSha256(4096 + i, `par${i}`));
    });
    // Relay-side keep-alive: far fewer connections reached the origin than requests were made.
    const conns = new Set(origin.find((r) => r.url.includes('seed=par')).map((r) => r.connectionId));
    expect(conns.size).toBeLessThan(60);
  });

  it('a stalled reader on one request does not delay another', async () => {
    const stalled = await deviceStream(relayPort, SLUG, { path: `/bytes?n=${256 * MiB}&seed=stall&sha=none` });
    stalled.pause(); // never read: its stream's window fills and stays full
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const other = await download(`/bytes?n=${16 * MiB}&seed=other`);
    expect(other.sha256).toBe(expectedSha256(16 * MiB, 'other'));
    const status = await deviceRequest(relayPort, SLUG, { path: '/api/status' });
    expect(status.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(10_000);
    stalled.destroy();
  });

  it('sets X-Forwarded-* and never forwards the relay cookies or Authorization', async () => {
    const r = await deviceRequest(relayPort, SLUG, {
      path: '/echo-headers',
      headers: { cookie: `porthole_session=secret; ${deviceDefaults.headers.cookie}; octo=1`, authorization: 'Bearer relay', 'x-forwarded-for': '6.6.6.6' },
    });
    const h = r.json<{ headers: Record<string, string> }>().headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe(deviceHost(relayPort, SLUG));
    expect(h.cookie).toBe('octo=1');
    expect(h.authorization).toBeUndefined();
  });
});

describe('aborts and failures', () => {
  it('a client that aborts mid-download aborts the response at the origin', async () => {
    const aborted = waitForEvent('response-aborted', (r) => r.url.includes('seed=cut'));
    const res = await deviceStream(relayPort, SLUG, { path: `/bytes?n=${GiB}&seed=cut&sha=none` });
    let got = 0;
    await new Promise<void>((resolve) => {
      res.on('data', (c: Buffer) => {
        got += c.length;
        if (got > 4 * MiB) {
          res.destroy();
          resolve();
        }
      });
    });
    const rec = await aborted;
    expect(rec.responseFinished).toBe(false);
    expect(rec.responseBytes).toBeLessThan(GiB);
  });

  it('a client that aborts mid-upload leaves an aborted, never complete, upload at the origin', async () => {
    const up = upload('/upload?case=client-abort', 64 * MiB, { stopAfter: 8 * MiB, seed: 'ca' });
    up.response.catch(() => undefined);
    await untilReceived('/upload?case=client-abort', 1 * MiB);
    up.req.destroy();
    const rec = await origin.waitFor('/upload?case=client-abort', { state: 'settled', timeoutMs: 15_000 });
    expect(rec.state).toBe('aborted');
    expect(rec.sha256).toBeUndefined();
  });

  it('a WebSocket echoes text and binary through the tunnel', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${relayPort}/websocket`, { headers: { host: deviceHost(relayPort, SLUG), ...deviceDefaults.headers } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const echo = (data: string | Buffer) =>
      new Promise<{ data: Buffer; binary: boolean }>((resolve) => {
        ws.once('message', (d: Buffer, binary: boolean) => resolve({ data: d, binary }));
        ws.send(data);
      });
    const text = await echo('{"jsonrpc":"2.0","method":"server.info","id":1}');
    expect(text.binary).toBe(false);
    expect(text.data.toString()).toBe('{"jsonrpc":"2.0","method":"server.info","id":1}');
    const bin = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i & 255));
    const got = await echo(bin);
    expect(got.binary).toBe(true);
    expect(got.data.equals(bin)).toBe(true);
    ws.close();
  });

  it('MJPEG from a real ffmpeg camera and from the printer arrives continuously, unbuffered', async () => {
    const cam = await collectFrames(deviceRequestOptions(relayPort, SLUG, { path: '/webcam/?action=stream' }), 20, 15_000);
    expect(cam.status).toBe(200);
    expect(cam.contentType).toMatch(/^multipart\/x-mixed-replace/);
    expect(cam.frames).toHaveLength(20);
    for (const f of cam.frames) expect(isJpeg(f.body)).toBe(true);
    expect(new Set(cam.frames.map((f) => createHash('sha1').update(f.body).digest('hex'))).size).toBeGreaterThan(15);
    // 20 frames of a 15 fps camera take about 1.3 s; buffering would show as a burst or a stall.
    expect(cam.spanMs).toBeGreaterThan(800);
    const ui = await collectFrames(deviceRequestOptions(relayPort, SLUG, { path: '/?action=stream' }), 5, 15_000);
    expect(ui.frames.every((f) => isJpeg(f.body))).toBe(true);
  });

  it('the agent killed mid-upload: the origin sees an aborted request, never a complete one', async () => {
    const up = upload('/upload?case=agent-killed', 256 * MiB, { stopAfter: 64 * MiB, seed: 'ak' });
    const outcome = up.response.then(
      (r) => r.status,
      () => 'error',
    );
    await untilReceived('/upload?case=agent-killed', 4 * MiB);
    agent.kill('SIGKILL');
    await agent.waitExit(5_000);
    const rec = await origin.waitFor('/upload?case=agent-killed', { state: 'settled', timeoutMs: 15_000 });
    expect(rec.state).toBe('aborted');
    expect(rec.bodyBytes).toBeLessThan(256 * MiB);
    up.req.destroy();
    const status = await outcome;
    expect(status === 'error' || (typeof status === 'number' && status >= 500)).toBe(true);
  });

  it('while the agent is away, the device gets an offline page with its name and since when', async () => {
    const r = await deviceRequest(relayPort, SLUG, { path: '/' });
    expect(r.status).toBe(503);
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.text()).toContain('Test MK3S is offline');
    expect(r.text()).toMatch(/Offline since \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    agent = await startTheAgent();
    const back = await deviceRequest(relayPort, SLUG, { path: '/api/status' });
    expect(back.status).toBe(200);
  });

  it('an unknown device gets a 404 page, not a byte from any printer', async () => {
    const r = await deviceRequest(relayPort, 'nosuch', { path: '/' });
    expect(r.status).toBe(404);
    expect(r.text()).toContain('No such printer');
  });

  it('the relay restarts and the agent is back within a few seconds', async () => {
    const dataDir = relay.dataDir;
    await relay.stop();
    relay = await startRelay({ port: relayPort, dataDir });
    const t0 = Date.now();
    await agent.waitForLog((l) => l.json?.msg === 'tunnel connected' && l.at > t0, 15_000);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const r = await deviceRequest(relayPort, SLUG, { path: '/api/status' });
    expect(r.status).toBe(200);
  });

  it('an agent with a bad credential is refused and stops retrying', async () => {
    const bad = await startAgent({
      config: agentConfig({ relay: relayPort, credential: `${device.credential.slice(0, -4)}${device.credential.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`, ui: origin.url }),
      waitFor: false,
    });
    const exit = await bad.waitExit(15_000);
    expect(exit.code).toBe(78);
    expect(bad.lines.some((l) => /credential/i.test(String(l.json?.msg ?? l.text)))).toBe(true);
    // The good agent is untouched.
    const r = await deviceRequest(relayPort, SLUG, { path: '/api/status' });
    expect(r.status).toBe(200);
  });
});
