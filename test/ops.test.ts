// Operating the relay: /healthz, /readyz and Prometheus /metrics answer with the expected series
// after real traffic through a real agent; a failed migration stops the start and leaves the
// database as it was.
import { execFile } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signInToDevice } from './src/auth.js';
import { deterministicBytes } from './src/bytes.js';
import { startOrigin, type Origin } from './src/origin.js';
import {
  addDevice,
  agentConfig,
  deviceDefaults,
  deviceRequest,
  relayCommand,
  startAgent,
  startRelay,
  stopAll,
  tempDir,
  type RelayProcess,
} from './src/procs.js';

const SLUG = 'opsbox';
const PASSWORD = 'metrics and health';
let origin: Origin;
let relay: RelayProcess;

/** A GET to the relay's own domain, from this machine, with extra headers. */
function relayGet(path: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: relay.port, path, agent: false, headers: { host: `localhost:${relay.port}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
  });
}

function login(username: string, password: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ username, password });
    const base = `http://localhost:${relay.port}`;
    const req = http.request(
      { host: '127.0.0.1', port: relay.port, method: 'POST', path: '/api/login', agent: false, headers: { host: `localhost:${relay.port}`, origin: base, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `name{labels}` → value, from the exposition text. */
function series(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    m.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return m;
}

async function scrape(): Promise<Map<string, number>> {
  const r = await relayGet('/metrics');
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
  return series(r.text);
}

beforeAll(async () => {
  origin = await startOrigin({ frames: 'tiny' });
  // Fast throttle delays, so a lockout takes milliseconds.
  relay = await startRelay({ env: { PORTHOLE_LOGIN_DELAY_MS: '1' } });
  await relayCommand(relay, ['user', 'add', '--username', 'maker', '--password-stdin'], 30_000, PASSWORD);
  const device = await addDevice(relay, { name: 'Ops printer', slug: SLUG, owner: 'maker' });
  await startAgent({ config: agentConfig({ relay, credential: device.credential, ui: origin.url }) });
  deviceDefaults.headers.cookie = (await signInToDevice(relay, { username: 'maker', password: PASSWORD, slug: SLUG })).cookie;
}, 60_000);

afterAll(async () => {
  deviceDefaults.headers = {};
  await stopAll();
  await origin?.close();
});

describe('health and metrics', () => {
  it('/healthz says the process is up; /readyz that the database answers', async () => {
    expect(await relayGet('/healthz')).toMatchObject({ status: 200, text: '{"ok":true}' });
    const ready = await relayGet('/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.text)).toEqual({ ok: true, checks: { database: { ok: true } } });
  });

  it('counts agents, streams, bytes both ways, latency, auth failures and lockouts after traffic', async () => {
    const before = await scrape();
    const MiB = 1024 * 1024;
    for (let i = 0; i < 3; i++) {
      const r = await deviceRequest(relay, SLUG, { path: `/bytes?n=${MiB}&seed=m${i}` });
      expect(r.status).toBe(200);
    }
    const up = await deviceRequest(relay, SLUG, { method: 'POST', path: '/upload?case=metrics', body: deterministicBytes(MiB, 'mu'), headers: { 'content-type': 'application/octet-stream' } });
    expect(up.status).toBe(200);
    expect((await deviceRequest(relay, SLUG, { path: '/no-such-page' })).status).toBe(404);

    // Two wrong passwords, then an account locked out.
    expect(await login('maker', 'not the password')).toBe(401);
    expect(await login('maker', 'still not it')).toBe(401);
    let failures = 0;
    for (let i = 0; i < 200 && failures < 10; i++) {
      const status = await login('victim', `guess ${i}`);
      if (status === 401) failures++;
      else if (status === 429) await new Promise((r) => setTimeout(r, 25));
      else throw new Error(`login answered ${status}`);
    }
    expect(failures).toBe(10);

    // An agent whose credential the relay does not know is refused (and exits 78).
    const stranger = await startAgent({ config: agentConfig({ relay, credential: 'pdc_unknown_credential_000', ui: origin.url }), waitFor: false });
    expect((await stranger.waitExit(15_000)).code).toBe(78);

    const m = await scrape();
    expect(m.get('porthole_agents_connected')).toBe(1);
    expect(m.has('porthole_streams_open')).toBe(true);
    const delta = (k: string) => (m.get(k) ?? NaN) - (before.get(k) ?? 0);
    expect(delta('porthole_tunnel_bytes_total{direction="from_agent"}')).toBeGreaterThan(3 * MiB);
    expect(delta('porthole_tunnel_bytes_total{direction="to_agent"}')).toBeGreaterThan(MiB);
    expect(delta('porthole_http_request_duration_seconds_count{target="device",code="2xx"}')).toBe(4);
    expect(delta('porthole_http_request_duration_seconds_count{target="device",code="4xx"}')).toBe(1);
    expect(m.get('porthole_http_request_duration_seconds_bucket{le="+Inf",target="device",code="2xx"}')).toBe(m.get('porthole_http_request_duration_seconds_count{target="device",code="2xx"}'));
    expect(m.get('porthole_http_request_duration_seconds_count{target="relay",code="2xx"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('porthole_http_request_duration_seconds_count{target="relay",code="4xx"}')).toBeGreaterThanOrEqual(12);
    expect(m.get('porthole_auth_failures_total{kind="login"}')).toBe(12);
    expect(m.get('porthole_auth_failures_total{kind="agent"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('porthole_auth_failures_total{kind="share"}')).toBe(0);
    expect(m.get('porthole_login_lockouts_total')).toBe(1);
    expect(m.get('porthole_webcam_viewers')).toBe(0);
    expect(m.get('process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('/metrics is for this machine only: a forwarded request is refused', async () => {
    const r = await relayGet('/metrics', { 'x-forwarded-for': '203.0.113.9' });
    expect(r.status).toBe(403);
    expect(r.text).toContain('PORTHOLE_METRICS_TOKEN');
  });

  it('with PORTHOLE_METRICS_TOKEN, /metrics needs the bearer token, from anywhere', async () => {
    const token = 'scrape-token-0123456789abcdef';
    const r2 = await startRelay({ env: { PORTHOLE_METRICS_TOKEN: token } });
    const get = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: r2.port, path: '/metrics', agent: false, headers: { host: `localhost:${r2.port}`, ...headers } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
    expect(await get({})).toBe(401);
    expect(await get({ authorization: 'Bearer wrong-token-0123456789abcdef' })).toBe(401);
    expect(await get({ authorization: `Bearer ${token}`, 'x-forwarded-for': '203.0.113.9' })).toBe(200);
    await r2.close();
  });
});

/** The schema and the migration records: what "the database as it was" means. */
function schemaOf(file: string): { schema: string[]; migrations: string[] } {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    return {
      schema: (db.prepare("SELECT type || ' ' || name || ': ' || coalesce(sql, '') AS s FROM sqlite_master ORDER BY type, name").all() as Array<{ s: string }>).map((r) => r.s),
      migrations: (db.prepare('SELECT migration_name, checksum, finished_at FROM _prisma_migrations ORDER BY migration_name').all() as Array<Record<string, string>>).map((r) => JSON.stringify(r)),
    };
  } finally {
    db.close();
  }
}

describe('upgrades', () => {
  it('a migration that fails stops the start with a clear message and leaves the database as it was', async () => {
    const dataDir = await tempDir('porthole-migrate-', true);
    const env = { ...relay.env, PORTHOLE_DATA_DIR: dataDir };
    const cli = (args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(process.execPath, [relay.cli, ...args], { env, timeout: 30_000 }, (err, _out, stderr) => resolve({ code: err === null ? 0 : Number(err.code), stderr }));
      });
    expect((await cli(['migrate'])).code).toBe(0);
    const file = join(dataDir, 'porthole.db');
    // Forget that the last migration was applied: applying it again fails on what it already made.
    const db = new BetterSqlite3(file);
    const last = (db.prepare('SELECT migration_name AS name FROM _prisma_migrations ORDER BY migration_name DESC LIMIT 1').get() as { name: string }).name;
    db.prepare('DELETE FROM _prisma_migrations WHERE migration_name = ?').run(last);
    db.close();
    const before = schemaOf(file);

    const start = await cli(['start']);
    expect(start.code).toBe(1);
    expect(start.stderr).toContain(`porthole-relay: Database migration failed: ${last}:`);
    expect(start.stderr).toContain('Rolled back: the database is as it was before it');
    expect(schemaOf(file)).toEqual(before);
    // `migrate` says the same, and still changes nothing.
    const migrate = await cli(['migrate']);
    expect(migrate.code).toBe(1);
    expect(migrate.stderr).toContain(`Database migration failed: ${last}:`);
    expect(schemaOf(file)).toEqual(before);
  });
});
