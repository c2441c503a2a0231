// Tests of the end-to-end fixtures themselves: the recording origin, the ffmpeg camera, the
// MJPEG reader and the process helpers. If these lie, every end-to-end test built on them does.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { deterministicBytes, expectedSha256, sha256 } from './src/bytes.js';
import { startFfmpegCamera } from './src/camera.js';
import type { FfmpegCamera } from './src/camera.js';
import { jpegStamp, splitJpegs, stampJpeg, tinyJpeg } from './src/jpeg.js';
import { MultipartParser, boundaryOf, collectFrames, isJpeg, jpegSize, openStream, readMjpeg } from './src/mjpeg.js';
import { startOrigin } from './src/origin.js';
import type { Origin } from './src/origin.js';
import {
  addDevice,
  agentConfig,
  deviceRequest,
  deviceRequestOptions,
  liveProcesses,
  spawnManaged,
  startAgent,
  startRelay,
  stopAll,
  tempDir,
  relayCommand,
} from './src/procs.js';
import { signInToDevice } from './src/auth.js';

/** The process no longer runs (exited, or a zombie nobody has reaped yet). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function post(port: number, path: string, body: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends a raw request head and part of its body on a bare socket, then destroys the socket. */
async function cutUpload(port: number, head: string, parts: Buffer[]): Promise<void> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  sock.write(head);
  for (const p of parts) {
    sock.write(p);
    await new Promise((r) => setTimeout(r, 20));
  }
  sock.destroy();
}

describe('origin', () => {
  let origin: Origin;
  beforeAll(async () => {
    origin = await startOrigin({ fps: 20 });
  });
  afterAll(async () => {
    await origin.close();
  });

  it('records a whole upload as complete, with its size and sha256', async () => {
    const body = deterministicBytes(3 * 1024 * 1024 + 17, 'up');
    const res = await post(origin.port, '/upload?name=benchy.gcode', body);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) });
    const rec = await origin.waitFor('/upload?name=benchy.gcode', { state: 'complete' });
    expect(rec.state).toBe('complete');
    expect(rec.bodyBytes).toBe(body.length);
    expect(rec.sha256).toBe(sha256(body));
    expect(rec.responseFinished).toBe(true);
  });

  it('records an upload cut mid-body (content-length) as aborted, never complete', async () => {
    const declared = 1024 * 1024;
    await cutUpload(
      origin.port,
      `POST /upload?cut=cl HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n`,
      [Buffer.alloc(100_000, 1), Buffer.alloc(100_000, 2)],
    );
    const rec = await origin.waitFor('/upload?cut=cl');
    expect(rec.state).toBe('aborted');
    expect(rec.bodyBytes).toBeLessThan(declared);
    expect(rec.bodyBytes).toBeGreaterThan(0);
    expect(rec.sha256).toBeUndefined();
    expect(rec.status).toBeUndefined(); // nothing was answered for a cut upload
  });

  it('records a chunked upload cut before its last chunk as aborted', async () => {
    const chunk = (b: Buffer) => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
    await cutUpload(
      origin.port,
      'PUT /upload?cut=chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
      [chunk(Buffer.alloc(50_000, 3)), chunk(Buffer.alloc(50_000, 4))],
    );
    const rec = await origin.waitFor('/upload?cut=chunked');
    expect(rec.state).toBe('aborted');
    expect(rec.bodyBytes).toBe(100_000);
  });

  it('records a chunked upload that ends with the zero chunk as complete', async () => {
    const sock = net.connect(origin.port, '127.0.0.1');
    const reply = new Promise<string>((resolve) => {
      let s = '';
      sock.on('data', (d: Buffer) => {
        s += d.toString();
        if (s.includes('}')) resolve(s);
      });
    });
    sock.write('POST /upload?chunked=whole HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    expect(await reply).toContain(`"sha256":"${sha256(Buffer.from('hello'))}"`);
    sock.destroy();
    const rec = await origin.waitFor('/upload?chunked=whole');
    expect(rec.state).toBe('complete');
    expect(rec.bodyBytes).toBe(5);
  });

  it('streams deterministic bytes whose x-sha256 the client can check', async () => {
    const n = 5 * 1024 * 1024 + 3;
    const res = await get(origin.port, `/bytes?n=${n}&seed=abc`);
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(n);
    expect(res.headers['content-length']).toBe(String(n));
    expect(res.headers['x-sha256']).toBe(sha256(res.body));
    expect(res.headers['x-sha256']).toBe(expectedSha256(n, 'abc'));
    expect(res.body.equals(deterministicBytes(n, 'abc'))).toBe(true);
    const other = await get(origin.port, `/bytes?n=1024&seed=xyz`);
    expect(other.body.equals(res.body.subarray(0, 1024))).toBe(false);
    const empty = await get(origin.port, '/bytes?n=0');
    expect(empty.body.length).toBe(0);
  });

  it('stops streaming bytes when the client goes away, and records the cut response', async () => {
    const res = await openStream({ host: '127.0.0.1', port: origin.port, path: '/bytes?n=1000000000&sha=none', agent: false });
    await new Promise((r) => res.once('data', r));
    res.destroy();
    const rec = (await origin.waitFor('/bytes?n=1000000000&sha=none', { state: 'complete' }));
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.responseFinished).toBe(false);
    expect(rec.responseBytes).toBeLessThan(1_000_000_000);
  });

  it('answers status, echo-headers, slow and 404', async () => {
    const status = await get(origin.port, '/api/status');
    expect(JSON.parse(status.body.toString())).toMatchObject({ temperature: { tool0: { target: 215 } } });
    const echo = await get(origin.port, '/echo-headers?x=1', { 'x-forwarded-host': 'mk3s.localhost:8080' });
    expect(JSON.parse(echo.body.toString())).toMatchObject({
      method: 'GET',
      url: '/echo-headers?x=1',
      headers: { 'x-forwarded-host': 'mk3s.localhost:8080' },
    });
    const t0 = performance.now();
    const slow = await get(origin.port, '/slow?ms=150');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(JSON.parse(slow.body.toString())).toEqual({ slept: 150 });
    expect((await get(origin.port, '/nope')).status).toBe(404);
  });

  it('stalls: sends the head and some bytes, then nothing', async () => {
    const res = await openStream({ host: '127.0.0.1', port: origin.port, path: '/stall?bytes=500', agent: false });
    expect(res.statusCode).toBe(200);
    let got = 0;
    res.on('data', (c: Buffer) => (got += c.length));
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toBe(500);
    expect(res.complete).toBe(false);
    res.destroy();
  });

  it('counts connections, so keep-alive reuse is visible', async () => {
    const before = origin.connections;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: origin.port, path: `/api/status?ka=${i}`, agent }, (res) => {
            res.resume();
            res.on('end', resolve);
          })
          .on('error', reject);
      });
    }
    agent.destroy();
    expect(origin.connections - before).toBe(1);
    const ids = new Set(origin.find(/\/api\/status\?ka=/).map((r) => r.connectionId));
    expect(ids.size).toBe(1);
  });

  it.each(['/websocket', '/sockjs/websocket'])('echoes WebSocket text and binary at %s', async (path) => {
    const ws = new WebSocket(`ws://127.0.0.1:${origin.port}${path}`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const received: { data: Buffer; binary: boolean }[] = [];
    const two = new Promise<void>((resolve) => {
      ws.on('message', (data: Buffer, binary: boolean) => {
        received.push({ data, binary });
        if (received.length === 2) resolve();
      });
    });
    ws.send('{"jsonrpc":"2.0","method":"printer.info","id":1}');
    const bin = deterministicBytes(200_000, 'ws');
    ws.send(bin);
    await two;
    expect(received[0]).toEqual({ data: Buffer.from('{"jsonrpc":"2.0","method":"printer.info","id":1}'), binary: false });
    expect(received[1]?.binary).toBe(true);
    expect(received[1]?.data.equals(bin)).toBe(true);
    const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
    ws.send('__close 4001');
    expect(await closed).toBe(4001);
    expect(origin.find(path).some((r) => r.upgrade && r.status === 101)).toBe(true);
  });

  it('serves an MJPEG stream of valid, distinct frames, at /webcam/ and at / (prefix stripped)', async () => {
    for (const path of ['/webcam/?action=stream', '/?action=stream']) {
      const { frames, contentType } = await collectFrames({ host: '127.0.0.1', port: origin.port, path, agent: false }, 6);
      expect(contentType).toMatch(/^multipart\/x-mixed-replace;\s*boundary=/);
      expect(frames).toHaveLength(6);
      for (const f of frames) {
        expect(isJpeg(f.body)).toBe(true);
        expect(f.headers['content-type']).toBe('image/jpeg');
      }
      const seqs = frames.map((f) => Number(jpegStamp(f.body)?.split(' ')[1]));
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1] as number);
      expect(new Set(frames.map((f) => sha256(f.body))).size).toBe(6);
    }
    const snap = await get(origin.port, '/webcam/?action=snapshot');
    expect(snap.headers['content-type']).toBe('image/jpeg');
    expect(isJpeg(snap.body)).toBe(true);
    expect(jpegSize(snap.body)).toEqual({ width: 320, height: 240 });
    await new Promise((r) => setTimeout(r, 50));
    expect(origin.mjpeg.clients).toBe(0);
  });

  it('waitFor rejects with what it did see', async () => {
    await expect(origin.waitFor('/never', { timeoutMs: 50 })).rejects.toThrow(/no request matching \/never/);
  });
});

describe('mjpeg reader', () => {
  const jpegs = [stampJpeg(tinyJpeg(), 'a'), stampJpeg(tinyJpeg(), 'bb'), stampJpeg(tinyJpeg(), 'ccc')];

  function multipart(withLength: boolean): Buffer {
    const parts: Buffer[] = [Buffer.from('preamble to ignore\r\n')];
    for (const j of jpegs) {
      parts.push(Buffer.from(`--frame\r\nContent-Type: image/jpeg\r\n${withLength ? `Content-Length: ${j.length}\r\n` : ''}\r\n`));
      parts.push(j, Buffer.from('\r\n'));
    }
    parts.push(Buffer.from('--frame--\r\nepilogue'));
    return Buffer.concat(parts);
  }

  it.each([true, false])('parses parts split at every byte (content-length: %s)', (withLength) => {
    const data = multipart(withLength);
    for (const step of [1, 7, 100, data.length]) {
      const p = new MultipartParser('frame');
      const out = [];
      for (let i = 0; i < data.length; i += step) out.push(...p.push(data.subarray(i, i + step)));
      expect(out.map((x) => x.body)).toEqual(jpegs);
      expect(out[0]?.headers['content-type']).toBe('image/jpeg');
    }
  });

  it('reads the boundary from content types', () => {
    expect(boundaryOf('multipart/x-mixed-replace;boundary=ffmpeg')).toBe('ffmpeg');
    expect(boundaryOf('multipart/x-mixed-replace; boundary="--a b"')).toBe('--a b');
    expect(boundaryOf('image/jpeg')).toBeUndefined();
  });

  it('checks JPEGs and reads their size', () => {
    expect(isJpeg(tinyJpeg())).toBe(true);
    expect(isJpeg(tinyJpeg().subarray(0, 100))).toBe(false);
    expect(jpegSize(tinyJpeg())).toEqual({ width: 16, height: 16 });
    expect(jpegStamp(stampJpeg(tinyJpeg(), 'hello'))).toBe('hello');
    expect(splitJpegs(Buffer.concat(jpegs))).toEqual(jpegs);
  });

  it('rejects a part that is not a JPEG, and a response that is not multipart', async () => {
    const server = http.createServer((req, res) => {
      if (req.url === '/bad') {
        res.writeHead(200, { 'content-type': 'multipart/x-mixed-replace;boundary=x' });
        res.end('--x\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n\r\nhello\r\n');
      } else {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html></html>');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const drain = async (path: string) => {
        const res = await openStream({ host: '127.0.0.1', port, path, agent: false });
        for await (const _f of readMjpeg(res)) {
          /* nothing */
        }
      };
      await expect(drain('/bad')).rejects.toThrow(/not a whole JPEG/);
      await expect(drain('/html')).rejects.toThrow(/not an MJPEG stream/);
    } finally {
      server.close();
    }
  });
});

describe('ffmpeg camera', () => {
  let cam: FfmpegCamera;
  beforeAll(async () => {
    cam = await startFfmpegCamera({ fps: 15, width: 640, height: 480 });
  });
  afterAll(async () => {
    await cam?.close();
  });

  it('yields valid, distinct 640×480 JPEG frames at about 15 fps to several clients at once', async () => {
    const count = 31;
    const [a, b] = await Promise.all([collectFrames(cam.streamUrl, count), collectFrames(cam.streamUrl, 10)]);
    for (const f of [...a.frames, ...b.frames]) {
      expect(isJpeg(f.body)).toBe(true);
      expect(jpegSize(f.body)).toEqual({ width: 640, height: 480 });
    }
    // testsrc draws a frame counter and a moving gradient: every frame differs
    const hashes = new Set(a.frames.map((f) => createHash('sha256').update(f.body).digest('hex')));
    expect(hashes.size).toBe(count);
    const fps = ((count - 1) * 1000) / a.spanMs;
    expect(fps).toBeGreaterThan(10);
    expect(fps).toBeLessThan(20);
    expect(a.contentType).toBe('multipart/x-mixed-replace;boundary=ffmpeg');
  });

  it('serves a snapshot', async () => {
    const snap = await get(cam.port, '/?action=snapshot');
    expect(isJpeg(snap.body)).toBe(true);
    expect(jpegSize(snap.body)).toEqual({ width: 640, height: 480 });
  });

  it('kills ffmpeg on close', async () => {
    const c = await startFfmpegCamera({ fps: 5, width: 160, height: 120 });
    const pid = c.ffmpeg.pid;
    await c.close();
    expect(c.ffmpeg.running).toBe(false);
    expect(gone(pid)).toBe(true);
  });
});

// A stand-in for the relay and agent CLIs that follows their contract, so the process
// helpers are tested on their own (the real programs are tested by the e2e suites).
const FAKE_CLI = `
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
const [cmd, ...rest] = process.argv.slice(2);
const log = (o) => process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), ...o }) + '\\n');
if (cmd === 'start') {
  log({ msg: 'starting', dataDir: process.env.PORTHOLE_DATA_DIR });
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ host: req.headers.host, url: req.url, method: req.method }));
  });
  server.listen(Number(process.env.PORTHOLE_PORT), process.env.PORTHOLE_HOST, () => {
    log({ msg: 'relay listening', url: 'http://' + process.env.PORTHOLE_HOST + ':' + server.address().port, domain: process.env.PORTHOLE_DOMAIN });
  });
  process.on('SIGTERM', () => { log({ msg: 'bye' }); process.exit(0); });
} else if (cmd === 'device') {
  log({ msg: 'opening database' });
  const slug = rest[rest.indexOf('--slug') + 1];
  process.stdout.write(JSON.stringify({ id: 'dev_1', slug, credential: 'cred-' + slug }, null, 2) + '\\n');
} else if (cmd === 'run') {
  const cfg = JSON.parse(readFileSync(rest[rest.indexOf('--config') + 1], 'utf8'));
  log({ msg: 'dialling', relay: cfg.relay });
  setTimeout(() => log({ msg: 'tunnel connected', relay: cfg.relay, credentialOk: cfg.credential === 'cred-demo' }), 50);
  setInterval(() => {}, 1000);
} else if (cmd === 'crash') {
  process.stderr.write('boom\\n');
  process.exit(3);
}
`;

describe('process helpers', () => {
  let dir: string;
  let cli: string;
  beforeAll(async () => {
    dir = await tempDir('porthole-fixtures-');
    cli = join(dir, 'fake-cli.mjs');
    await writeFile(cli, FAKE_CLI);
  });
  afterEach(async () => {
    await stopAll();
    expect(liveProcesses()).toHaveLength(0);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts a relay, adds a device, starts an agent and routes by Host', async () => {
    const relay = await startRelay({ cli });
    expect(relay.port).toBeGreaterThan(0);
    expect(relay.url).toBe(`http://127.0.0.1:${relay.port}`);
    const device = await addDevice(relay, { name: 'Demo', slug: 'demo' });
    expect(device).toEqual({ id: 'dev_1', slug: 'demo', credential: 'cred-demo' });
    const agent = await startAgent({
      cli,
      config: agentConfig({ relay, credential: device.credential, ui: 'http://127.0.0.1:1', webcam: 'http://127.0.0.1:2' }),
    });
    const line = agent.findLogs('tunnel connected')[0];
    expect(line?.json).toMatchObject({ relay: `ws://127.0.0.1:${relay.port}`, credentialOk: true });
    const config = JSON.parse(readFileSync(agent.configPath, 'utf8')) as unknown;
    expect(config).toEqual({
      relay: `ws://127.0.0.1:${relay.port}`,
      credential: 'cred-demo',
      services: { ui: { url: 'http://127.0.0.1:1' }, webcam: { url: 'http://127.0.0.1:2' } },
      routes: [
        { path: '/', service: 'ui' },
        { path: '/webcam/', service: 'webcam', stripPrefix: true },
      ],
    });
    const res = await deviceRequest(relay, 'demo', { path: '/api/status?x=1' });
    expect(res.json()).toEqual({ host: `demo.localhost:${relay.port}`, url: '/api/status?x=1', method: 'GET' });
    await agent.close();
    await relay.close();
    expect(relay.running).toBe(false);
    expect(agent.running).toBe(false);
    expect(relay.findLogs('bye')).toHaveLength(1);
  });

  it('fails fast with the log tail when a program exits before it is ready', async () => {
    const p = spawnManaged('crasher', process.execPath, [cli, 'crash']);
    await expect(p.waitForLog('relay listening', 5_000)).rejects.toThrow(/exited \(code 3[\s\S]*boom/);
    expect(p.exit).toEqual({ code: 3, signal: null });
  });

  it('kills a process that ignores SIGTERM, and whole process groups', async () => {
    const stubborn = spawnManaged('stubborn', process.execPath, ['-e', "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)"]);
    await stubborn.waitForLog('ready');
    expect((await stubborn.stop(200)).signal).toBe('SIGKILL');
    const group = spawnManaged('group', 'sh', ['-c', 'sleep 30 & echo child $!; wait'], { group: true });
    const line = await group.waitForLog(/^child \d+/);
    const child = Number(line.text.split(' ')[1]);
    await group.stop(1_000);
    await new Promise((r) => setTimeout(r, 100));
    expect(gone(child)).toBe(true);
  });

});

// The same helpers against the real, built programs: the contract the e2e suites rely on.
describe('process helpers with the real relay and agent', () => {
  afterEach(async () => {
    await stopAll();
  });

  it('start the relay, add a device, connect an agent, and reach the origin and camera through the tunnel', async () => {
    const origin = await startOrigin({ frames: 'tiny' });
    try {
      const relay = await startRelay();
      await relayCommand(relay, ['user', 'add', '--username', 'fixture-owner', '--password-stdin'], 30_000, 'a long enough passphrase');
      const device = await addDevice(relay, { name: 'Fixture printer', slug: 'fixture', owner: 'fixture-owner' });
      expect(device.slug).toBe('fixture');
      expect(device.credential.length).toBeGreaterThan(16);
      const agent = await startAgent({
        config: agentConfig({ relay, credential: device.credential, ui: origin.url, webcam: origin.url }),
      });
      expect(agent.running).toBe(true);
      const { cookie } = await signInToDevice(relay, { username: 'fixture-owner', password: 'a long enough passphrase', slug: 'fixture' });
      const res = await deviceRequest(relay, 'fixture', { path: '/echo-headers', headers: { cookie } });
      expect(res.status).toBe(200);
      expect(res.json()).toMatchObject({ headers: { host: `fixture.localhost:${relay.port}` } });
      const cam = await collectFrames(deviceRequestOptions(relay, 'fixture', { path: '/webcam/?action=stream', headers: { cookie } }), 3);
      expect(cam.frames.every((f) => isJpeg(f.body))).toBe(true);
      // stripPrefix: the camera service saw /?action=stream
      expect(origin.find('/?action=stream').length).toBeGreaterThan(0);
      await agent.close();
      await relay.close();
      expect(existsSync(relay.dataDir)).toBe(false);
    } finally {
      await origin.close();
    }
  });
});
