// Faults on the tunnel, end to end with real processes on 127.0.0.1: a relay and two agents as
// child processes, a recording origin for the printer, and the tests' own TCP fault proxy
// between one agent and the relay. Each fault is followed by proof that the relay still serves
// another user's printer, whose agent does not go through the proxy.
//
// Keep-alive runs at 1 s / 3 s on both sides here (the defaults are 15 s / 45 s), so a partition
// is detected in seconds, and the agents' backoff is capped at 2 s (default 60 s). Measured recovery times are printed at the end (docs/RELIABILITY.md).
import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deterministicBlocks } from './src/bytes.js';
import { signInToDevice } from './src/auth.js';
import { startFaultProxy, type FaultProxy } from './src/fault-proxy.js';
import { startOrigin, type Origin, type RecordedRequest } from './src/origin.js';
import {
  addDevice,
  deviceRequest,
  deviceRequestOptions,
  deviceStream,
  freePort,
  relayCommand,
  startAgent,
  startRelay,
  stopAll,
  tempDir,
  type AgentConfig,
  type AgentProcess,
  type DeviceResponse,
  type LogLine,
  type RelayProcess,
} from './src/procs.js';

const MiB = 1024 * 1024;
const KEEPALIVE = { intervalMs: 1_000, timeoutMs: 3_000 };
/** A short backoff cap (the default is 60 s), so repeated faults in one file stay bounded. */
const RECONNECT = { baseMs: 200, capMs: 2_000 };
const RESPONSE_TIMEOUT_MS = 3_000;
const RELAY_ENV = {
  PORTHOLE_KEEPALIVE_INTERVAL_MS: String(KEEPALIVE.intervalMs),
  PORTHOLE_KEEPALIVE_TIMEOUT_MS: String(KEEPALIVE.timeoutMs),
  PORTHOLE_RESPONSE_TIMEOUT_MS: String(RESPONSE_TIMEOUT_MS),
  PORTHOLE_SHUTDOWN_GRACE_MS: '1000',
};
const A = 'faulty'; // behind the fault proxy
const B = 'steady'; // another user's printer, straight to the relay

let origin: Origin;
let relay: RelayProcess;
let relayPort: number;
let dataDir: string;
let proxy: FaultProxy;
let agentA: AgentProcess;
let agentB: AgentProcess;
let cookieA: string;
let cookieB: string;
let resetServer: net.Server;
const figures: Record<string, number> = {};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function requestA(path: string, timeoutMs = 15_000): Promise<DeviceResponse> {
  return deviceRequest(relayPort, A, { path, headers: { cookie: cookieA }, timeoutMs });
}
function requestB(path: string, timeoutMs = 15_000): Promise<DeviceResponse> {
  return deviceRequest(relayPort, B, { path, headers: { cookie: cookieB }, timeoutMs });
}

/** The other user's printer answers normally: the fault did not leak past its own tunnel. */
async function otherUserServed(): Promise<void> {
  const r = await requestB('/api/status');
  expect(r.status).toBe(200);
  expect(r.json<{ state: unknown }>().state).toBeDefined();
}

/** Polls until `fn` resolves truthy; returns when (ms since epoch). */
async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 50): Promise<number> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      if (await fn()) return Date.now();
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
}

/** A request to A that answers 200 from the printer. */
const aWorks = async () => (await requestA('/api/status', 5_000)).status === 200;

function logAfter(msg: string, t: number, extra: (l: LogLine) => boolean = () => true) {
  return (l: LogLine) => l.json?.msg === msg && l.at >= t && extra(l);
}

function waitForOrigin(name: string, match: (r: RecordedRequest) => boolean, timeoutMs = 15_000): Promise<RecordedRequest> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      origin.events.off(name, on);
      reject(new Error(`origin: no ${name} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (r: RecordedRequest) => {
      if (!match(r)) return;
      clearTimeout(t);
      origin.events.off(name, on);
      resolve(r);
    };
    origin.events.on(name, on);
  });
}

async function restartRelay(): Promise<RelayProcess> {
  return startRelay({ port: relayPort, dataDir, env: RELAY_ENV });
}

function agentAConfig(downPort: number): AgentConfig {
  return {
    relay: proxy.wsUrl,
    credential: '',
    services: {
      ui: { url: origin.url },
      down: { url: `http://127.0.0.1:${downPort}` },
      reset: { url: `http://127.0.0.1:${(resetServer.address() as net.AddressInfo).port}` },
    },
    routes: [
      { path: '/', service: 'ui' },
      { path: '/down/', service: 'down', stripPrefix: true },
      { path: '/reset/', service: 'reset', stripPrefix: true },
    ],
    keepAlive: KEEPALIVE,
    reconnect: RECONNECT,
  };
}

beforeAll(async () => {
  [origin, relayPort, dataDir] = await Promise.all([startOrigin({ frames: 'tiny' }), freePort(), tempDir('porthole-faults-', true)]);
  // A local service that resets every connection as soon as a request arrives.
  resetServer = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.resetAndDestroy());
  });
  await new Promise<void>((r) => resetServer.listen(0, '127.0.0.1', r));
  relay = await restartRelay();
  proxy = await startFaultProxy({ targetPort: relayPort });
  await Promise.all([
    relayCommand(relay, ['user', 'add', '--username', 'maker', '--password-stdin'], 30_000, 'print all the benchies'),
    relayCommand(relay, ['user', 'add', '--username', 'neighbour', '--password-stdin'], 30_000, 'another printer entirely'),
  ]);
  const [devA, devB] = await Promise.all([
    addDevice(relay, { name: 'Faulty MK4', slug: A, owner: 'maker' }),
    addDevice(relay, { name: 'Steady Voron', slug: B, owner: 'neighbour' }),
  ]);
  const downPort = await freePort(); // nothing listens there
  [agentA, agentB] = await Promise.all([
    startAgent({ config: { ...agentAConfig(downPort), credential: devA.credential } }),
    startAgent({
      config: {
        relay: relay.wsUrl,
        credential: devB.credential,
        services: { ui: { url: origin.url } },
        routes: [{ path: '/', service: 'ui' }],
        keepAlive: KEEPALIVE,
        reconnect: RECONNECT,
      },
    }),
  ]);
  [cookieA, cookieB] = await Promise.all([
    signInToDevice(relay, { username: 'maker', password: 'print all the benchies', slug: A }).then((s) => s.cookie),
    signInToDevice(relay, { username: 'neighbour', password: 'another printer entirely', slug: B }).then((s) => s.cookie),
  ]);
}, 90_000);

afterAll(async () => {
  console.log(`fault figures (ms): ${JSON.stringify(figures)}`);
  await stopAll();
  await Promise.all([origin?.close(), proxy?.close(), new Promise((r) => (resetServer ? resetServer.close(r) : r(undefined)))]);
});

// A failed partition test must not leave the next ones partitioned.
afterEach(() => proxy?.heal());

describe('the local service fails, the tunnel does not', () => {
  it('a service that is down gets a clear 502 page; the tunnel stays up and other routes work', async () => {
    const since = Date.now();
    const r = await requestA('/down/anything');
    expect(r.status).toBe(502);
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.text()).toContain('is online, but its web service is not answering');
    expect((await requestA('/api/status')).status).toBe(200);
    expect(agentA.findLogs(logAfter('tunnel disconnected', since))).toHaveLength(0);
    await otherUserServed();
  });

  it('a service that resets the connection gets a 502 page, not a hang', async () => {
    const since = Date.now();
    const r = await requestA('/reset/api/job');
    expect(r.status).toBe(502);
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.text()).toMatch(/connection to Faulty MK4 was lost|not answering/);
    expect((await requestA('/api/status')).status).toBe(200);
    expect(agentA.findLogs(logAfter('tunnel disconnected', since))).toHaveLength(0);
    await otherUserServed();
  });

  it('a service slower than the response timeout gets a 504 page, and the rest keeps working meanwhile', async () => {
    const since = Date.now();
    const slow = requestA('/slow?ms=20000', 20_000);
    // While the slow request waits, the same printer's other routes answer.
    expect((await requestA('/api/status')).status).toBe(200);
    const r = await slow;
    const took = Date.now() - since;
    expect(r.status).toBe(504);
    expect(r.text()).toContain('did not answer in time');
    expect(took).toBeGreaterThanOrEqual(RESPONSE_TIMEOUT_MS - 100);
    figures.slowServiceAnsweredMs = took;
    // Asked once: a timed-out request is not retried behind the phone's back.
    const recs = origin.find((x) => x.url === '/slow?ms=20000');
    expect(recs).toHaveLength(1);
    expect((await requestA('/api/status')).status).toBe(200);
    expect(agentA.findLogs(logAfter('tunnel disconnected', since))).toHaveLength(0);
    await otherUserServed();
  });
});

describe('network partition between agent and relay', () => {
  it('both sides detect it within the keep-alive timeout, the device shows offline, the half-open connection is reaped, and it heals', async () => {
    await until('A serves before the partition', aWorks);
    const tunnelConn = proxy.live().at(-1);
    expect(tunnelConn).toBeDefined();
    const t0 = Date.now();
    proxy.blackHole();

    const relaySaw = await relay.waitForLog(logAfter('agent disconnected', t0, (l) => l.json?.device === A), 20_000);
    const agentSaw = await agentA.waitForLog(logAfter('tunnel disconnected', t0), 20_000);
    figures.partitionRelayDetectMs = relaySaw.at - t0;
    figures.partitionAgentDetectMs = agentSaw.at - t0;
    // Detection takes the keep-alive timeout (3 s) after the last byte: bounded, not a hang.
    // The slack is for a loaded 2-core machine.
    expect(relaySaw.at - t0).toBeLessThan(KEEPALIVE.timeoutMs + 4_000);
    expect(agentSaw.at - t0).toBeLessThan(KEEPALIVE.timeoutMs + 4_000);
    expect(String(agentSaw.json?.reason)).toMatch(/no data from peer|keep-?alive/i);

    // Both endpoints dropped their end of the dead connection on their own: nothing half-open left.
    await until('both ends of the partitioned connection closed', () => tunnelConn!.clientClosedAt !== undefined && tunnelConn!.upstreamClosedAt !== undefined, 10_000);
    expect(proxy.mode).toBe('black-hole');

    // Phones get the offline page while the printer is unreachable; the other printer is fine.
    const off = await requestA('/');
    expect(off.status).toBe(503);
    expect(off.text()).toContain('Faulty MK4 is offline');
    await otherUserServed();

    // The agent keeps trying (its dials vanish into the partition) and gets in once it heals.
    await sleep(1_000);
    const th = Date.now();
    proxy.heal();
    const back = await agentA.waitForLog(logAfter('tunnel connected', th), 30_000);
    const ok = await until('A serves after healing', aWorks);
    figures.partitionReconnectAfterHealMs = back.at - th;
    figures.partitionServingAfterHealMs = ok - th;
    await otherUserServed();
    // The other printer's tunnel never noticed.
    expect(agentB.findLogs(logAfter('tunnel disconnected', t0))).toHaveLength(0);
  });
});

/** Streams `n` deterministic bytes up to A with backpressure; stalls after `stopAfter` (ends when it is n). */
function upload(path: string, n: number, stopAfter: number): { req: http.ClientRequest; outcome: Promise<number | 'error'> } {
  const req = http.request(
    deviceRequestOptions(relayPort, A, { method: 'POST', path, headers: { cookie: cookieA, 'content-type': 'application/octet-stream', 'content-length': String(n) } }),
  );
  const outcome = new Promise<number | 'error'>((resolve) => {
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve('error'));
    });
    req.on('error', () => resolve('error'));
  });
  const blocks = deterministicBlocks(n, 'kill');
  let sent = 0;
  const pump = () => {
    while (sent < stopAfter) {
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
  return { req, outcome };
}

describe('the relay killed (SIGKILL) and restarted', () => {
  it('mid-download: the phone sees an error, the origin an aborted response; the agent reconnects and requests work again', async () => {
    const aborted = waitForOrigin('response-aborted', (r) => r.url.includes('seed=relaykill'));
    const res = await deviceStream(relayPort, A, { path: `/bytes?n=${1024 * MiB}&seed=relaykill&sha=none`, headers: { cookie: cookieA } });
    expect(res.statusCode).toBe(200);
    let got = 0;
    const ended = new Promise<'complete' | 'error'>((resolve) => {
      res.on('data', (c: Buffer) => {
        got += c.length;
      });
      res.on('end', () => resolve(res.complete ? 'complete' : 'error'));
      res.on('error', () => resolve('error'));
      res.on('close', () => resolve(res.complete ? 'complete' : 'error'));
    });
    await until('4 MiB downloaded', () => got > 4 * MiB, 15_000, 10);
    const tKill = Date.now();
    relay.kill('SIGKILL');
    await relay.waitExit(10_000);
    expect(await ended).toBe('error');
    expect(got).toBeLessThan(1024 * MiB);
    const rec = await aborted;
    expect(rec.responseFinished).toBe(false);
    await agentA.waitForLog(logAfter('tunnel disconnected', tKill), 15_000);

    relay = await restartRelay();
    const tUp = Date.now();
    const back = await agentA.waitForLog(logAfter('tunnel connected', tKill), 30_000);
    const ok = await until('A serves after the restart', aWorks);
    figures.relayKillDownloadRelayStartMs = tUp - tKill;
    figures.relayKillDownloadAgentBackAfterRelayUpMs = Math.max(0, back.at - tUp);
    figures.relayKillDownloadServingAfterKillMs = ok - tKill;
    await until('B serves after the restart', async () => (await requestB('/api/status', 5_000)).status === 200);
    await otherUserServed();
  });

  it('mid-upload: the origin sees an aborted upload, never a complete truncated one; then uploads work again', async () => {
    const n = 256 * MiB;
    const up = upload('/upload?case=relay-killed', n, 64 * MiB);
    await until('4 MiB uploaded', () => (origin.find('/upload?case=relay-killed')[0]?.bodyBytes ?? 0) > 4 * MiB, 15_000, 10);
    const tKill = Date.now();
    relay.kill('SIGKILL');
    await relay.waitExit(10_000);
    const rec = await origin.waitFor('/upload?case=relay-killed', { state: 'settled', timeoutMs: 15_000 });
    expect(rec.state).toBe('aborted');
    expect(rec.sha256).toBeUndefined();
    expect(rec.bodyBytes).toBeLessThan(n);
    up.req.destroy();
    const outcome = await up.outcome;
    expect(outcome === 'error' || (typeof outcome === 'number' && outcome >= 500)).toBe(true);

    relay = await restartRelay();
    const tUp = Date.now();
    const back = await agentA.waitForLog(logAfter('tunnel connected', tKill), 30_000);
    const ok = await until('A serves after the restart', aWorks);
    figures.relayKillUploadRelayStartMs = tUp - tKill;
    figures.relayKillUploadAgentBackAfterRelayUpMs = Math.max(0, back.at - tUp);
    figures.relayKillUploadServingAfterKillMs = ok - tKill;

    // A whole upload after recovery arrives complete.
    const small = 3 * MiB;
    const again = upload('/upload?case=after-kill', small, small + 1);
    expect(await again.outcome).toBe(200);
    expect(origin.find('/upload?case=after-kill')[0]?.state).toBe('complete');
    await until('B serves after the restart', async () => (await requestB('/api/status', 5_000)).status === 200);
    await otherUserServed();
  });

  it('a cut connection (RST from the network) is redialled, without a relay restart', async () => {
    await until('A serves', aWorks);
    const t0 = Date.now();
    proxy.cut();
    await agentA.waitForLog(logAfter('tunnel disconnected', t0), 15_000);
    const ok = await until('A serves after the cut', aWorks);
    figures.cutServingAfterMs = ok - t0;
    await otherUserServed();
    expect(agentB.findLogs(logAfter('tunnel disconnected', t0))).toHaveLength(0);
  });
});
