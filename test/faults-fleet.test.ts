// A relay restart with 200 agents connected: every one is back within the backoff cap, and
// their reconnects are spread out by the backoff's full jitter rather than arriving as one spike.
// The 200 agents are the agent's real supervisor, dialler and ingress, run in one child process
// (test/src/fleet.ts); the relay is the real one. A real agent process for another user's
// printer proves the relay serves it normally afterwards.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signInToDevice } from './src/auth.js';
import type { FleetSpec } from './src/fleet.js';
import { startOrigin, type Origin } from './src/origin.js';
import {
  addDevice,
  deviceRequest,
  freePort,
  relayCommand,
  repoRoot,
  spawnManaged,
  startAgent,
  startRelay,
  stopAll,
  tempDir,
  type ManagedProcess,
  type RelayProcess,
} from './src/procs.js';

const N = 200;
const BACKOFF = { baseMs: 500, capMs: 5_000 };
const fleetScript = join(repoRoot, 'test/dist/fleet.js');

let origin: Origin;
let relay: RelayProcess;
let relayPort: number;
let dataDir: string;
let fleet: ManagedProcess;
let cookieB: string;
/** connected events per agent index: when (child's clock, same machine). */
const connectedAt = new Map<number, number[]>();

async function metric(name: string): Promise<number> {
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: relayPort, path: '/metrics', headers: { host: `localhost:${relayPort}` }, agent: false }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (b += c));
      res.on('end', () => resolve(b));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('metrics timeout')));
    req.on('error', reject);
  });
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(body);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      if (await fn()) return Date.now();
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last: ${String(last)})` : ''}`);
}

/** Agents (by index) connected at or after `since`, with their first such time. */
function connectedSince(since: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const [i, times] of connectedAt) {
    const t = times.find((x) => x >= since);
    if (t !== undefined) out.set(i, t);
  }
  return out;
}

/** Inserts `n` devices straight into the relay's database, as `device add` would; returns their credentials. */
function insertDevices(n: number): string[] {
  const db = new Database(join(dataDir, 'porthole.db'), { timeout: 10_000 });
  try {
    // Same createdAt encoding as the relay's own rows.
    const sample = db.prepare('SELECT createdAt FROM Device LIMIT 1').get() as { createdAt: unknown };
    const insert = db.prepare('INSERT INTO Device (id, name, slug, credentialId, credentialHash, createdAt) VALUES (?, ?, ?, ?, ?, ?)');
    const creds: string[] = [];
    db.transaction(() => {
      for (let i = 0; i < n; i++) {
        const id = randomBytes(8).toString('hex');
        const secret = randomBytes(32).toString('base64url');
        insert.run(randomUUID(), `Fleet ${i}`, `fleet-${i}`, id, createHash('sha256').update(secret).digest('hex'), sample.createdAt);
        creds.push(`pdc_${id}_${secret}`);
      }
    })();
    return creds;
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  if (!existsSync(fleetScript)) throw new Error(`${fleetScript} not built (run npm run build)`);
  [origin, relayPort, dataDir] = await Promise.all([startOrigin({ frames: 'tiny' }), freePort(), tempDir('porthole-fleet-', true)]);
  relay = await startRelay({ port: relayPort, dataDir, env: { PORTHOLE_SHUTDOWN_GRACE_MS: '1000' } });
  await relayCommand(relay, ['user', 'add', '--username', 'neighbour', '--password-stdin'], 30_000, 'another printer entirely');
  const b = await addDevice(relay, { name: 'Steady Voron', slug: 'steady', owner: 'neighbour' });
  await startAgent({
    config: { relay: relay.wsUrl, credential: b.credential, services: { ui: { url: origin.url } }, routes: [{ path: '/', service: 'ui' }], reconnect: BACKOFF },
  });
  cookieB = (await signInToDevice(relay, { username: 'neighbour', password: 'another printer entirely', slug: 'steady' })).cookie;

  const spec: FleetSpec = {
    relay: relay.wsUrl,
    credentials: insertDevices(N),
    service: origin.url,
    backoff: BACKOFF,
    keepAlive: { intervalMs: 15_000, timeoutMs: 45_000 },
  };
  const specPath = join(dataDir, 'fleet.json');
  await writeFile(specPath, JSON.stringify(spec), { mode: 0o600 });
  fleet = spawnManaged('fleet', process.execPath, [fleetScript, specPath], { cwd: repoRoot, keepLines: 50 });
  fleet.onLine((l) => {
    if (l.json?.ev !== 'connected') return;
    const i = Number(l.json.i);
    const times = connectedAt.get(i) ?? [];
    times.push(Number(l.json.t));
    connectedAt.set(i, times);
  });
  await until(`all ${N} fleet agents connected`, () => connectedSince(0).size === N, 60_000);
}, 120_000);

afterAll(async () => {
  await stopAll();
  await origin?.close();
});

/** Restarts the relay with `signal`, waits for the whole fleet, checks and returns the spread. */
async function restartAndMeasure(signal: 'SIGKILL' | 'SIGTERM'): Promise<Record<string, number>> {
  expect(await metric('porthole_agents_connected')).toBe(N + 1);
  const tKill = Date.now();
  relay.kill(signal);
  await relay.waitExit(20_000);
  relay = await startRelay({ port: relayPort, dataDir, env: { PORTHOLE_SHUTDOWN_GRACE_MS: '1000' } });
  // When the relay itself says it listened (its log's timestamp), not when we read the line.
  const listening = relay.findLogs('relay listening')[0]!;
  const tUp = typeof listening.json?.time === 'string' ? Date.parse(listening.json.time) : listening.at;

  await until(`all ${N} agents back`, () => connectedSince(tKill).size === N, BACKOFF.capMs + 30_000);
  const back = [...connectedSince(tKill).values()].map((t) => Math.max(0, t - tUp)).sort((a, b) => a - b);
  const last = back[back.length - 1]!;
  // Each agent's pending backoff delay is at most the cap when the relay comes back; the
  // slack covers 200 handshakes on a loaded 2-core machine.
  expect(last).toBeLessThan(BACKOFF.capMs + 3_000);

  // Spread: 100 ms buckets after the relay came back. Without jitter every agent (all dropped
  // at the same instant, same schedule) would land in one bucket.
  const buckets = new Map<number, number>();
  for (const d of back) buckets.set(Math.floor(d / 100), (buckets.get(Math.floor(d / 100)) ?? 0) + 1);
  const busiest = Math.max(...buckets.values());
  const q = (p: number) => back[Math.min(back.length - 1, Math.floor(p * back.length))]!;
  const spread = { relayDownMs: tUp - tKill, p10: q(0.1), p50: q(0.5), p90: q(0.9), lastMs: last, busiest100msBucket: busiest, buckets: buckets.size };
  console.log(`fleet restart (${signal}) figures, ms after the relay listened again: ${JSON.stringify(spread)}`);
  expect(busiest).toBeLessThanOrEqual(N * 0.25);
  expect(buckets.size).toBeGreaterThanOrEqual(8);
  expect(q(0.9) - q(0.1)).toBeGreaterThanOrEqual(500);

  await until('the relay counts them all', async () => (await metric('porthole_agents_connected')) === N + 1, 30_000);
  const served = await until(
    'the other user is served',
    async () => (await deviceRequest(relayPort, 'steady', { path: '/api/status', headers: { cookie: cookieB }, timeoutMs: 5_000 })).status === 200,
    30_000,
  );
  expect(served).toBeGreaterThan(0);
  return spread;
}

describe(`a relay restart with ${N} agents connected`, () => {
  it('killed (SIGKILL): all are back within the backoff cap, reconnecting spread out (jitter), not in a spike', async () => {
    await restartAndMeasure('SIGKILL');
  });

  it('stopped (SIGTERM, GoAway to every agent): the same', async () => {
    await restartAndMeasure('SIGTERM');
  });

  it('the fleet stops cleanly on SIGTERM', async () => {
    fleet.kill('SIGTERM');
    const exit = await fleet.waitExit(20_000);
    expect(exit.code).toBe(0);
    await until('the relay sees them gone', async () => (await metric('porthole_agents_connected')) === 1, 20_000);
    const r = await deviceRequest(relayPort, 'steady', { path: '/api/status', headers: { cookie: cookieB } });
    expect(r.status).toBe(200);
  });
});
