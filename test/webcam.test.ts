// Webcam fan-out end to end: a real ffmpeg camera behind a real agent, a real relay, and many
// phones. One upstream pull per camera however many watch; fresh frames for everyone; a stalled
// phone costs the relay about one frame; placeholders while the camera is away.
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signInToDevice } from './src/auth.js';
import { startFfmpegCamera, type FfmpegCamera } from './src/camera.js';
import { Client } from './src/client.js';
import { collectFrames, isJpeg, jpegSize, readMjpeg, type MjpegFrame } from './src/mjpeg.js';
import { startOrigin, type Origin } from './src/origin.js';
import {
  addDevice,
  agentConfig,
  deviceDefaults,
  deviceRequest,
  deviceRequestOptions,
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

const SLUG = 'cam';
const FPS = 15;
const GRACE_MS = 1_000;
const PASSWORD = 'print all the benchies';
const STREAM = '/webcam/?action=stream';

let camera: FfmpegCamera;
let origin: Origin; // the printer's UI
let relay: RelayProcess;
let device: DeviceInfo;
let agent: AgentProcess;
let relayPort: number;
let noisyPort: number;
let owner: Client;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

interface CameraStats {
  service: string;
  state: string;
  viewers: number;
  upstreamFps: number;
  framesIn: number;
  dropped: number;
  frameBytes: number;
  perViewer: { delivered: number; dropped: number; heldBytes: number; fps: number | null }[];
}

/** The owner's view of the device's cameras (`/_porthole/webcam`). */
async function webcamStats(): Promise<CameraStats[]> {
  const r = await deviceRequest(relayPort, SLUG, { path: '/_porthole/webcam' });
  expect(r.status).toBe(200);
  return r.json<{ cameras: CameraStats[] }>().cameras;
}

/** A phone reading a stream in the background: every part, with its headers and arrival time. */
interface Phone {
  frames: MjpegFrame[];
  error: Error | undefined;
  res: IncomingMessage;
  close(): void;
}

async function phone(path = STREAM, headers: Record<string, string> = {}): Promise<Phone> {
  const res = await deviceStream(relayPort, SLUG, { path, headers });
  expect(res.statusCode).toBe(200);
  const p: Phone = { frames: [], error: undefined, res, close: () => res.destroy() };
  void (async () => {
    try {
      for await (const f of readMjpeg(res)) p.frames.push(f);
    } catch (e) {
      if (!res.destroyed) p.error = e as Error;
    }
  })();
  return p;
}

const placeholderOf = (f: MjpegFrame) => f.headers['x-porthole-placeholder'];

/** The printer: its UI, its webcam at /webcam/, and a second (noisy) camera at /noisy/. */
function theAgentConfig() {
  const c = agentConfig({ relay: relayPort, credential: device.credential, ui: origin.url, webcam: camera.url });
  c.services.noisy = { url: `http://127.0.0.1:${noisyPort}` };
  c.routes!.push({ path: '/noisy/', service: 'noisy', stripPrefix: true });
  return c;
}

beforeAll(async () => {
  [camera, origin, relayPort, noisyPort] = await Promise.all([startFfmpegCamera({ fps: FPS }), startOrigin({ frames: 'tiny' }), freePort(), freePort()]);
  relay = await startRelay({ port: relayPort, env: { PORTHOLE_WEBCAM_GRACE_MS: String(GRACE_MS), PORTHOLE_LOGIN_DELAY_MS: '20' } });
  await relayCommand(relay, ['user', 'add', '--username', 'maker', '--password-stdin'], 30_000, PASSWORD);
  device = await addDevice(relay, { name: 'Camera printer', slug: SLUG, owner: 'maker' });
  agent = await startAgent({ config: theAgentConfig() });
  const signedIn = await signInToDevice(relay, { username: 'maker', password: PASSWORD, slug: SLUG });
  owner = signedIn.client;
  deviceDefaults.headers.cookie = signedIn.cookie;
}, 60_000);

afterAll(async () => {
  await stopAll();
  await Promise.all([camera?.close(), origin?.close()]);
});

describe('webcam fan-out', () => {
  it('20 phones at once: the camera sees one upstream client, every phone gets whole JPEG frames', async () => {
    let maxClients = 0;
    const sampler = setInterval(() => (maxClients = Math.max(maxClients, camera.clients)), 10);
    // Different cache busters, as printer UIs add them, and one fps-capped phone: still one pull.
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        collectFrames(deviceRequestOptions(relayPort, SLUG, { path: `${STREAM}&${Date.now() + i}` }), 15, 20_000),
      ),
    );
    const during = await webcamStats();
    clearInterval(sampler);
    expect(maxClients).toBe(1);
    for (const r of results) {
      expect(r.contentType).toMatch(/^multipart\/x-mixed-replace/);
      expect(r.frames).toHaveLength(15);
      for (const f of r.frames) {
        expect(isJpeg(f.body)).toBe(true);
        expect(jpegSize(f.body)).toEqual({ width: 640, height: 480 });
      }
      // Live pictures, not one frame repeated: 15 frames at 15 fps take about a second.
      expect(r.spanMs).toBeGreaterThan(600);
    }
    expect(during).toHaveLength(1);
    expect(during[0]!.upstreamFps).toBeGreaterThan(FPS * 0.8);
  });

  it('one phone stops reading: the others keep the source rate, the stalled one holds about one frame', async () => {
    // A noisy camera: ~350 KB frames, ~5 MB/s, so the kernel's socket buffers (a few MiB) fill
    // within a second or two and the relay itself must hold back.
    const noisy = await startFfmpegCamera({ fps: FPS, port: noisyPort, noise: 40, quality: 3 });
    const path = '/noisy/?action=stream';
    const stalled = await deviceStream(relayPort, SLUG, { path });
    stalled.pause(); // never read again
    const live = await Promise.all([phone(path), phone(path), phone(path)]);
    const stats = async () => (await webcamStats()).find((c) => c.service === 'noisy')!;
    try {
      const rssBefore = rssBytes(relay.pid);
      await until('the relay to drop frames for the stalled phone', async () => (await stats()).dropped > 3, 20_000);
      const s0 = await stats();
      const cam0 = noisy.frames;
      const live0 = live.map((p) => p.frames.length);
      const stalled0 = Math.min(...s0.perViewer.map((v) => v.delivered));
      let maxHeld = 0;
      let maxFrame = 0;
      let rssPeak = 0;
      const t0 = Date.now();
      while (Date.now() - t0 < 3_000) {
        const s = await stats();
        maxFrame = Math.max(maxFrame, s.frameBytes);
        for (const v of s.perViewer) maxHeld = Math.max(maxHeld, v.heldBytes);
        rssPeak = Math.max(rssPeak, rssBytes(relay.pid));
        await sleep(100);
      }
      const s1 = await stats();
      const arrived = s1.framesIn - s0.framesIn;
      // The camera's rate reaches the relay (one pull, never slowed by the stalled phone)…
      expect(arrived).toBeGreaterThanOrEqual(Math.floor((noisy.frames - cam0) * 0.9));
      expect(arrived).toBeGreaterThanOrEqual(FPS * 3 * 0.85);
      // …and every reading phone gets it.
      live.forEach((p, i) => {
        expect(p.error).toBeUndefined();
        expect(p.frames.length - live0[i]!).toBeGreaterThanOrEqual(Math.floor(arrived * 0.95) - 1);
      });
      // The stalled phone got (almost) nothing meanwhile, and the relay held about one frame for it.
      expect(Math.min(...s1.perViewer.map((v) => v.delivered)) - stalled0).toBeLessThanOrEqual(2);
      expect(maxFrame).toBeGreaterThan(100_000);
      expect(maxHeld).toBeLessThanOrEqual(2.2 * maxFrame);
      // A loose sanity bound only (maxHeld above is the exact one; a relay that held every frame
      // would never drop, and the wait for drops would fail): each 350 KB frame is a Buffer outside
      // V8's heap, and V8 collects those only every ~64 MiB of growth, so RSS swings by that much
      // with no leak (it went 0.5 MiB over a 48 MiB bound once on a CI run).
      expect(rssPeak - rssBefore).toBeLessThan(96 * 1024 * 1024);
      expect(noisy.clients).toBe(1);
    } finally {
      stalled.destroy();
      for (const p of live) p.close();
      await noisy.close();
    }
  }, 40_000);

  it('?fps=2 delivers about 2 frames a second; a share link defaults to the viewer cap (5)', async () => {
    const capped = collectFrames(deviceRequestOptions(relayPort, SLUG, { path: `${STREAM}&fps=2` }), 7, 15_000);
    // A share link: a viewer session, no account.
    const me = await owner.request(`http://localhost:${relayPort}/api/me`);
    const csrf = me.json<{ csrf: string }>().csrf;
    const created = await owner.request(`http://localhost:${relayPort}/api/devices/${device.id}/shares`, {
      method: 'POST',
      json: { expiresIn: '1h' },
      headers: { origin: `http://localhost:${relayPort}`, 'x-csrf-token': csrf },
    });
    expect(created.status).toBe(201);
    const guest = new Client(relayPort);
    await guest.request(created.json<{ url: string }>().url, { follow: 1 });
    const cookie = [...guest.cookies(`${SLUG}.localhost`)].map(([k, v]) => `${k}=${v}`).join('; ');
    const shared = await collectFrames(deviceRequestOptions(relayPort, SLUG, { path: STREAM, headers: { cookie } }), 11, 15_000);
    const c = await capped;
    const rate = (r: { frames: unknown[]; spanMs: number }) => ((r.frames.length - 1) * 1000) / r.spanMs;
    expect(rate(c)).toBeGreaterThan(1.7);
    expect(rate(c)).toBeLessThan(2.3);
    expect(rate(shared)).toBeGreaterThan(4.2);
    expect(rate(shared)).toBeLessThan(5.8);
    expect(camera.clients).toBe(1);
  });

  it('the last phone leaves: the upstream closes after the grace period, and reopens on demand', async () => {
    const p = await phone();
    await until('a frame', () => p.frames.length > 0);
    await until('only this phone', async () => (await webcamStats()).find((c) => c.service === 'webcam')?.viewers === 1);
    const left = Date.now();
    p.close();
    await sleep(GRACE_MS / 2);
    expect(camera.clients).toBe(1);
    await until('the camera to lose its client', () => camera.clients === 0, GRACE_MS + 5_000);
    const after = Date.now() - left;
    expect(after).toBeGreaterThanOrEqual(GRACE_MS - 100);
    expect((await webcamStats()).filter((c) => c.service === 'webcam')).toEqual([]);
    const again = await collectFrames(deviceRequestOptions(relayPort, SLUG, { path: STREAM }), 3, 10_000);
    expect(again.frames.every((f) => isJpeg(f.body))).toBe(true);
  });

  it('snapshots: from the camera when nobody watches, from the live stream when someone does', async () => {
    await until('no upstream', () => camera.clients === 0, GRACE_MS + 5_000);
    for (const path of ['/webcam/?action=snapshot', '/_porthole/snapshot']) {
      const before = camera.snapshots;
      const cold = await deviceRequest(relayPort, SLUG, { path });
      expect(cold.status).toBe(200);
      expect(cold.headers['content-type']).toBe('image/jpeg');
      expect(cold.headers['x-porthole-snapshot']).toBeUndefined();
      expect(jpegSize(cold.body)).toEqual({ width: 640, height: 480 });
      expect(camera.snapshots).toBe(before + 1);
    }
    const p = await phone();
    await until('frames', () => p.frames.length >= 2);
    const before = camera.snapshots;
    for (const path of ['/webcam/?action=snapshot', '/_porthole/snapshot']) {
      const warm = await deviceRequest(relayPort, SLUG, { path });
      expect(warm.status).toBe(200);
      expect(warm.headers['x-porthole-snapshot']).toBe('live');
      expect(isJpeg(warm.body)).toBe(true);
      expect(jpegSize(warm.body)).toEqual({ width: 640, height: 480 });
    }
    expect(camera.snapshots).toBe(before);
    p.close();
  });

  it('the camera goes away: phones get a placeholder, and the picture comes back with the camera', async () => {
    const phones = await Promise.all([phone(), phone()]);
    await until('frames', () => phones.every((p) => p.frames.length >= 2));
    const port = camera.port;
    await camera.close();
    await until('placeholders', () => phones.every((p) => p.frames.some((f) => placeholderOf(f) === 'camera')), 10_000);
    for (const p of phones) {
      const ph = p.frames.find((f) => placeholderOf(f) === 'camera')!;
      expect(isJpeg(ph.body)).toBe(true);
      expect(jpegSize(ph.body)).toEqual({ width: 640, height: 480 });
    }
    const n = phones.map((p) => p.frames.length);
    camera = await startFfmpegCamera({ fps: FPS, port });
    await until(
      'live frames again',
      () => phones.every((p, i) => p.frames.slice(n[i]).filter((f) => placeholderOf(f) === undefined).length >= 5),
      15_000,
    );
    for (const p of phones) expect(p.error).toBeUndefined();
    expect(camera.clients).toBe(1);
    for (const p of phones) p.close();
  }, 30_000);

  it('the printer goes away: a printer-offline placeholder, then the picture again when the agent is back', async () => {
    const p = await phone();
    await until('frames', () => p.frames.length >= 2);
    await agent.stop();
    await until('a printer-offline placeholder', () => p.frames.some((f) => placeholderOf(f) === 'device'), 10_000);
    const n = p.frames.length;
    agent = await startAgent({ config: theAgentConfig() });
    await until('live frames again', () => p.frames.slice(n).filter((f) => placeholderOf(f) === undefined).length >= 5, 15_000);
    expect(p.error).toBeUndefined();
    p.close();
  }, 30_000);
});
