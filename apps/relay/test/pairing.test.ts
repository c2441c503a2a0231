import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, lstatSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/index.js';
import { DeviceStore } from '../src/devices.js';
import { RelayError, type RelayErrorCode } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { adminRequest, adminSocketPath, AdminSocketUnavailable, startAdminSocket, type AdminSocket } from '../src/pairing/admin-socket.js';
import { CODE_ALPHABET, generateCode, normalizeCode } from '../src/pairing/code.js';
import { PAIR_BODY_LIMIT, PAIR_POLL_PATH, PAIR_START_PATH, pairingRoutes } from '../src/pairing/routes.js';
import {
  PAIRING_DEFAULTS,
  PairingService,
  remoteKey,
  type PairingClock,
  type PairingLimits,
  type PollResult,
} from '../src/pairing/service.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';

// ---- helpers -------------------------------------------------------------------------------

/** A wall clock that moves only when told; due timers fire in order as it moves. */
function fakeClock(start = Date.parse('2030-01-02T03:04:05.000Z')): PairingClock & { advance(ms: number): void; timers(): number } {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(h) {
      timers.delete(h as number);
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next: [number, { at: number; fn: () => void }] | undefined;
        for (const e of timers) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e;
        if (next === undefined) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = end;
    },
    timers: () => timers.size,
  };
}

async function rejects(p: Promise<unknown> | (() => unknown), code: RelayErrorCode): Promise<RelayError> {
  let e: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    e = err;
  }
  expect(e, `expected ${code}`).toBeInstanceOf(RelayError);
  expect((e as RelayError).code).toBe(code);
  return e as RelayError;
}

/** Resolves on the next turn, so a promise that settled synchronously is seen as settled. */
const tick = () => new Promise<void>((r) => setImmediate(r));

function settled<T>(p: Promise<T>): { done: () => boolean; value: () => T | undefined } {
  let value: T | undefined;
  let done = false;
  void p.then((v) => {
    value = v;
    done = true;
  });
  return { done: () => done, value: () => value };
}

interface Env {
  tmp: ReturnType<typeof tempDir>;
  db: Database;
  devices: DeviceStore;
  log: Logger;
  lines: Record<string, unknown>[];
  aliceId: string;
}

async function openEnv(): Promise<Env> {
  const tmp = tempDir();
  const { log, lines } = memoryLogger();
  const db = await openDatabase(testConfig(path.join(tmp.dir, 'data')), log);
  const devices = new DeviceStore(db);
  const alice = await db.prisma.user.create({ data: { username: 'alice', passwordHash: '$argon2id$placeholder' } });
  return { tmp, db, devices, log, lines, aliceId: alice.id };
}

async function closeEnv(env: Env | undefined): Promise<void> {
  if (env === undefined) return;
  await env.db.close();
  env.tmp.cleanup();
}

const PUBLIC_URL = 'https://relay.example';

function service(env: Env, clock: PairingClock, limits: Partial<PairingLimits> = {}): PairingService {
  return new PairingService({ devices: env.devices, prisma: env.db.prisma, log: env.log, publicUrl: PUBLIC_URL, clock, limits });
}

const start = (svc: PairingService, remote = '203.0.113.7', name = 'Prusa MK3S') => svc.start({ name, agent: '0.1.0', remote });

// ---- codes ---------------------------------------------------------------------------------

describe('pairing codes', () => {
  it('are 8 unambiguous characters shown as XXXX-XXXX', () => {
    expect(CODE_ALPHABET).toHaveLength(32);
    expect(CODE_ALPHABET).not.toMatch(/[ILOU]/);
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const c = generateCode();
      expect(c).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
      seen.add(c);
    }
    expect(seen.size).toBe(500);
  });

  it('uses the whole alphabet', () => {
    const chars = new Set(Array.from({ length: 400 }, generateCode).join('').replace(/-/g, ''));
    expect(chars.size).toBe(32);
  });

  it.each([
    ['ABCD-EFGH', 'ABCD-EFGH'],
    ['abcd-efgh', 'ABCD-EFGH'],
    ['abcdefgh', 'ABCD-EFGH'],
    [' ab cd  ef-gh ', 'ABCD-EFGH'],
    ['AB-CD-EF-GH', 'ABCD-EFGH'],
    ['o0il-1LI0', '0011-1110'],
    ['7XKQ-M2PZ', '7XKQ-M2PZ'],
  ])('normalises %j to %j', (input, code) => {
    expect(normalizeCode(input)).toBe(code);
  });

  it.each(['', 'ABCD-EFG', 'ABCD-EFGHJ', 'ABCD-EFGU', 'ABCD_EFGH', 'ÄBCD-EFGH', 'ABCD-EFG!', 'x'.repeat(100)])('refuses %j', (input) => {
    expect(normalizeCode(input)).toBeUndefined();
  });
});

describe('remoteKey', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:aaaa::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
  ])('%s counts as %s', (remote, key) => {
    expect(remoteKey(remote)).toBe(key);
  });
});

// ---- the service ---------------------------------------------------------------------------

describe('PairingService', () => {
  let env: Env;
  let clock: ReturnType<typeof fakeClock>;
  let svc: PairingService;

  beforeEach(async () => {
    env = await openEnv();
    clock = fakeClock();
    svc = service(env, clock);
  });
  afterEach(async () => {
    await svc.close();
    await closeEnv(env);
  });

  it('starts a pairing: a code, a poll token, an expiry ten minutes out and an approve link', () => {
    const r = start(svc);
    expect(r.pairingId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(r.code).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
    expect(Buffer.from(r.pollToken, 'base64url')).toHaveLength(32);
    expect(r.pollToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(r.expiresAt.getTime()).toBe(clock.now() + 10 * 60_000);
    expect(r.approveUrl).toBe(`https://relay.example/app/pair?code=${r.code}`);
    expect(svc.size).toBe(1);
  });

  it('looks a pending code up however it is typed', () => {
    const r = start(svc, '198.51.100.4', '  Garage MK4  ');
    const want = {
      code: r.code,
      name: 'Garage MK4',
      agent: '0.1.0',
      remote: '198.51.100.4',
      createdAt: new Date(clock.now()),
      expiresAt: r.expiresAt,
    };
    expect(svc.lookup(r.code)).toEqual(want);
    expect(svc.lookup(r.code.toLowerCase())).toEqual(want);
    expect(svc.lookup(r.code.replace('-', ''))).toEqual(want);
    expect(svc.lookup(` ${r.code.slice(0, 2)} ${r.code.slice(2)} `)).toEqual(want);
    expect(svc.lookup('ZZZZ-ZZZZ')).toBeUndefined();
    expect(svc.lookup('not a code')).toBeUndefined();
    expect(svc.list()).toEqual([want]);
  });

  it('refuses names and versions it could not show safely', async () => {
    await rejects(() => svc.start({ name: '   ', agent: '0.1.0', remote: '1.2.3.4' }), 'RELAY_INVALID_NAME');
    await rejects(() => svc.start({ name: 'x'.repeat(101), agent: '0.1.0', remote: '1.2.3.4' }), 'RELAY_INVALID_NAME');
    await rejects(() => svc.start({ name: 'evil\u202Egnp.exe', agent: '0.1.0', remote: '1.2.3.4' }), 'RELAY_INVALID_NAME');
    await rejects(() => svc.start({ name: 'a\nb', agent: '0.1.0', remote: '1.2.3.4' }), 'RELAY_INVALID_NAME');
    await rejects(() => svc.start({ name: 'ok', agent: '<script>', remote: '1.2.3.4' }), 'RELAY_BAD_REQUEST');
    expect(svc.size).toBe(0);
  });

  it('hands the credential to the waiting poll once, creates the device with its owner, and forgets it', async () => {
    const r = start(svc);
    const waiting = svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken });
    const { device } = await svc.approve({ code: r.code.toLowerCase(), ownerUserId: env.aliceId, slug: 'mk3s' });
    const got = await waiting;
    expect(got).toEqual({ status: 'approved', credential: expect.stringMatching(/^pdc_/), slug: 'mk3s', name: 'Prusa MK3S', deviceId: device.id });
    const credential = (got as Extract<PollResult, { status: 'approved' }>).credential;

    const auth = await env.devices.authenticate(credential);
    expect(auth.ok && auth.device.id).toBe(device.id);
    const memberships = await env.db.prisma.membership.findMany({ where: { deviceId: device.id } });
    expect(memberships).toEqual([expect.objectContaining({ userId: env.aliceId, deviceId: device.id, role: 'owner' })]);

    // Once: the pairing is gone.
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toEqual({ status: 'unknown' });
    expect(svc.lookup(r.code)).toBeUndefined();
    expect(svc.size).toBe(0);
    await rejects(svc.approve({ code: r.code, ownerUserId: env.aliceId }), 'RELAY_PAIRING_NOT_FOUND');

    // Nothing in clear: not in the database (file and WAL), not in the logs.
    const secret = credential.split('_')[2]!;
    const dataDir = path.dirname(env.db.file);
    for (const f of readdirSync(dataDir)) expect(readFileSync(path.join(dataDir, f)).includes(secret), f).toBe(false);
    const logText = JSON.stringify(env.lines);
    expect(logText).not.toContain(secret);
    expect(logText).not.toContain(r.pollToken);
    expect(logText).not.toContain(r.code);
    expect(env.lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['pairing started', 'pairing approved', 'credential handed to the agent']));
  });

  it('keeps an approved credential for the next poll when none is waiting', async () => {
    const r = start(svc);
    await svc.approve({ code: r.code, ownerUserId: env.aliceId, name: 'Renamed' });
    const got = await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken });
    expect(got).toMatchObject({ status: 'approved', name: 'Renamed', slug: 'renamed' });
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toEqual({ status: 'unknown' });
  });

  it('answers a wrong token or an unknown pairing alike, and gives nothing away', async () => {
    const r = start(svc);
    await svc.approve({ code: r.code, ownerUserId: env.aliceId });
    const other = start(svc).pollToken;
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: other })).toEqual({ status: 'unknown' });
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: '' })).toEqual({ status: 'unknown' });
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: `${r.pollToken}x` })).toEqual({ status: 'unknown' });
    expect(await svc.poll({ pairingId: '00000000-0000-4000-8000-000000000000', pollToken: r.pollToken })).toEqual({ status: 'unknown' });
    // The right token still collects it.
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toMatchObject({ status: 'approved' });
  });

  it('long-polls: "pending" after the wait, a second poll answers the first', async () => {
    const r = start(svc);
    const first = settled(svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken }));
    clock.advance(PAIRING_DEFAULTS.pollWaitMs - 1);
    await tick();
    expect(first.done()).toBe(false);
    clock.advance(1);
    await tick();
    expect(first.value()).toEqual({ status: 'pending' });

    const a = settled(svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken }));
    const b = settled(svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken }));
    await tick();
    expect(a.value()).toEqual({ status: 'pending' });
    expect(b.done()).toBe(false);
    await svc.approve({ code: r.code, ownerUserId: env.aliceId });
    await tick();
    expect(b.value()).toMatchObject({ status: 'approved' });
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken, waitMs: 0 })).toEqual({ status: 'unknown' });
  });

  it('stops waiting when the client goes away, and keeps the credential for its next poll', async () => {
    const r = start(svc);
    const gone = new AbortController();
    const p = svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken, signal: gone.signal });
    gone.abort();
    expect(await p).toEqual({ status: 'pending' });
    await svc.approve({ code: r.code, ownerUserId: env.aliceId });
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toMatchObject({ status: 'approved' });
  });

  it('expires after ten minutes: the waiting poll hears it, later polls get "expired", then nothing', async () => {
    const r = start(svc);
    clock.advance(PAIRING_DEFAULTS.ttlMs - 20_000);
    const waiting = settled(svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken }));
    clock.advance(20_000 - 1);
    await tick();
    expect(waiting.done()).toBe(false);
    expect(svc.lookup(r.code)).toBeDefined();
    clock.advance(1);
    await tick();
    expect(waiting.value()).toEqual({ status: 'expired' });
    expect(svc.lookup(r.code)).toBeUndefined();
    expect(svc.list()).toEqual([]);
    await rejects(svc.approve({ code: r.code, ownerUserId: env.aliceId }), 'RELAY_PAIRING_NOT_FOUND');
    await rejects(async () => svc.deny(r.code), 'RELAY_PAIRING_NOT_FOUND');
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toEqual({ status: 'expired' });
    expect(svc.size).toBe(0);

    clock.advance(PAIRING_DEFAULTS.tombstoneMs);
    svc.sweep();
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toEqual({ status: 'unknown' });
    expect(await env.db.prisma.device.count()).toBe(0);
  });

  it('sweeps on its own timer', async () => {
    const r = start(svc);
    clock.advance(PAIRING_DEFAULTS.ttlMs + PAIRING_DEFAULTS.tombstoneMs + PAIRING_DEFAULTS.sweepIntervalMs);
    expect(svc.size).toBe(0);
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toEqual({ status: 'unknown' });
  });

  it('denies: the waiting poll and later ones answer "denied"; the code cannot be approved', async () => {
    const r = start(svc, '192.0.2.9', 'Not mine');
    const waiting = svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken });
    expect(svc.deny(r.code.toLowerCase())).toMatchObject({ code: r.code, name: 'Not mine', remote: '192.0.2.9' });
    expect(await waiting).toEqual({ status: 'denied' });
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toEqual({ status: 'denied' });
    await rejects(svc.approve({ code: r.code, ownerUserId: env.aliceId }), 'RELAY_PAIRING_NOT_FOUND');
    await rejects(async () => svc.deny(r.code), 'RELAY_PAIRING_NOT_FOUND');
    expect(svc.size).toBe(0);
  });

  it('limits pairings per address (IPv6 per /64) and in total; expired ones free their place', async () => {
    const small = service(env, clock, { maxPending: 8, maxPendingPerRemote: 3 });
    try {
      for (let i = 0; i < 3; i++) start(small, '203.0.113.7');
      const e = await rejects(() => start(small, '203.0.113.7'), 'RELAY_PAIRING_LIMIT');
      expect(e.statusCode).toBe(429);
      await rejects(() => start(small, '::ffff:203.0.113.7'), 'RELAY_PAIRING_LIMIT');
      start(small, '203.0.113.8');

      start(small, '2001:db8:1:2::1');
      start(small, '2001:db8:1:2::2');
      start(small, '2001:db8:1:2:ffff::3');
      await rejects(() => start(small, '2001:db8:1:2::4'), 'RELAY_PAIRING_LIMIT');
      start(small, '2001:db8:1:3::1');

      expect(small.size).toBe(8);
      await rejects(() => start(small, '198.51.100.1'), 'RELAY_PAIRING_LIMIT');

      clock.advance(PAIRING_DEFAULTS.ttlMs);
      start(small, '203.0.113.7');
      expect(small.size).toBe(1);
    } finally {
      await small.close();
    }
  });

  it('holds at most the default number of pairings', async () => {
    for (let i = 0; i < PAIRING_DEFAULTS.maxPending; i++) start(svc, `10.0.${i >> 8}.${i & 255}`);
    await rejects(() => start(svc, '10.9.9.9'), 'RELAY_PAIRING_LIMIT');
    expect(new Set(svc.list().map((p) => p.code)).size).toBe(PAIRING_DEFAULTS.maxPending);
  });

  it('keeps the code pending when approval fails, so it can be approved again', async () => {
    await env.devices.create({ name: 'Other', slug: 'mk3s' });
    const r = start(svc);
    const waiting = settled(svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken }));
    await rejects(svc.approve({ code: r.code, ownerUserId: env.aliceId, slug: 'mk3s' }), 'RELAY_SLUG_TAKEN');
    await rejects(svc.approve({ code: r.code, ownerUserId: env.aliceId, slug: 'Bad Slug' }), 'RELAY_INVALID_SLUG');
    await rejects(svc.approve({ code: r.code, ownerUserId: 'no-such-user' }), 'RELAY_PAIRING_OWNER');
    const bob = await env.db.prisma.user.create({ data: { username: 'bob', passwordHash: 'x', disabledAt: new Date() } });
    await rejects(svc.approve({ code: r.code, ownerUserId: bob.id }), 'RELAY_PAIRING_OWNER');
    expect(await env.db.prisma.device.count()).toBe(1);
    expect(waiting.done()).toBe(false);
    expect(svc.lookup(r.code)).toBeDefined();

    const { device } = await svc.approve({ code: r.code, ownerUserId: env.aliceId, slug: 'mk3s-2' });
    await tick();
    expect(waiting.value()).toMatchObject({ status: 'approved', slug: 'mk3s-2', deviceId: device.id });
  });

  it('approves a code once when two people approve it at the same time', async () => {
    const r = start(svc);
    const results = await Promise.allSettled([
      svc.approve({ code: r.code, ownerUserId: env.aliceId }),
      svc.approve({ code: r.code, ownerUserId: env.aliceId }),
    ]);
    expect(results.filter((x) => x.status === 'fulfilled')).toHaveLength(1);
    const failed = results.find((x) => x.status === 'rejected');
    expect((failed?.reason as RelayError).code).toBe('RELAY_PAIRING_NOT_FOUND');
    expect(await env.db.prisma.device.count()).toBe(1);
  });

  it('removes a device whose agent never collected its credential', async () => {
    const r = start(svc);
    const { device } = await svc.approve({ code: r.code, ownerUserId: env.aliceId });
    clock.advance(PAIRING_DEFAULTS.ttlMs - 1);
    svc.sweep();
    expect(await env.devices.findById(device.id)).not.toBeNull();
    clock.advance(1);
    svc.sweep();
    await tick();
    await new Promise((res) => setTimeout(res, 50));
    expect(await env.devices.findById(device.id)).toBeNull();
    expect(await env.db.prisma.membership.count()).toBe(0);
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toEqual({ status: 'unknown' });
    expect(env.lines.map((l) => l.msg)).toContain('approved device never collected its credential; removing it');
  });

  it('gives an approval late in the window time to be collected', async () => {
    const r = start(svc);
    clock.advance(PAIRING_DEFAULTS.ttlMs - 1_000);
    await svc.approve({ code: r.code, ownerUserId: env.aliceId });
    clock.advance(PAIRING_DEFAULTS.collectGraceMs - 1_000);
    svc.sweep();
    expect(await svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken })).toMatchObject({ status: 'approved' });
  });

  it('answers waiting polls and forgets everything on close', async () => {
    const r = start(svc);
    const waiting = svc.poll({ pairingId: r.pairingId, pollToken: r.pollToken });
    const r2 = start(svc);
    const { device } = await svc.approve({ code: r2.code, ownerUserId: env.aliceId });
    await svc.close();
    expect(await waiting).toEqual({ status: 'pending' });
    expect(svc.size).toBe(0);
    expect(await env.devices.findById(device.id)).toBeNull();
    await rejects(() => start(svc), 'RELAY_PAIRING_LIMIT');
    expect(clock.timers()).toBe(0);
  });
});

// ---- the HTTP routes -----------------------------------------------------------------------

describe('pairing routes', () => {
  let env: Env;
  let svc: PairingService;
  let app: FastifyInstance;
  let base: string;

  beforeEach(async () => {
    env = await openEnv();
    svc = new PairingService({
      devices: env.devices,
      prisma: env.db.prisma,
      log: env.log,
      publicUrl: PUBLIC_URL,
      limits: { pollWaitMs: 300, maxPendingPerRemote: 3 },
    });
    app = Fastify({ loggerInstance: env.log as FastifyBaseLogger });
    await app.register(pairingRoutes, { pairing: svc });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    await svc.close();
    await app.close();
    await closeEnv(env);
  });

  const post = async (url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) => {
    const res = await fetch(`${base}${url}`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
  };

  const startPairing = async () => {
    const r = await post(PAIR_START_PATH, { name: 'Prusa MK3S', agent: '0.1.0' });
    expect(r.status).toBe(201);
    return r.body as { pairingId: string; code: string; pollToken: string; expiresAt: string; approveUrl: string };
  };

  it('starts a pairing and answers exactly the documented fields', async () => {
    const r = await post(PAIR_START_PATH, { name: 'Prusa MK3S', agent: '0.1.0' });
    expect(r.status).toBe(201);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(Object.keys(r.body).sort()).toEqual(['approveUrl', 'code', 'expiresAt', 'pairingId', 'pollToken']);
    expect(r.body.code).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
    expect(new Date(r.body.expiresAt as string).toISOString()).toBe(r.body.expiresAt);
    expect(r.body.approveUrl).toBe(`${PUBLIC_URL}/app/pair?code=${String(r.body.code)}`);
    expect(svc.lookup(r.body.code as string)).toMatchObject({ name: 'Prusa MK3S', agent: '0.1.0', remote: '127.0.0.1' });
  });

  it('long-polls, then hands over the credential once', async () => {
    const p = await startPairing();
    const pending = await post(PAIR_POLL_PATH, { pairingId: p.pairingId, pollToken: p.pollToken });
    expect(pending).toMatchObject({ status: 200, body: { status: 'pending' } });

    const waiting = post(PAIR_POLL_PATH, { pairingId: p.pairingId, pollToken: p.pollToken });
    await new Promise((r) => setTimeout(r, 50));
    const { device } = await svc.approve({ code: p.code, ownerUserId: env.aliceId, slug: 'mk3s' });
    const got = await waiting;
    expect(got.status).toBe(200);
    expect(got.headers.get('cache-control')).toBe('no-store');
    expect(got.body).toEqual({ status: 'approved', credential: expect.stringMatching(/^pdc_/), slug: 'mk3s', name: 'Prusa MK3S', deviceId: device.id });
    expect((await env.devices.authenticate(got.body.credential as string)).ok).toBe(true);

    const again = await post(PAIR_POLL_PATH, { pairingId: p.pairingId, pollToken: p.pollToken });
    expect(again.status).toBe(404);
    expect(again.body.status).toBe('unknown');
  });

  it('answers 404 to a wrong poll token, 403 when denied, 410 when expired', async () => {
    const p = await startPairing();
    const wrong = await post(PAIR_POLL_PATH, { pairingId: p.pairingId, pollToken: 'A'.repeat(43) });
    expect(wrong).toMatchObject({ status: 404, body: { status: 'unknown' } });

    svc.deny(p.code);
    expect(await post(PAIR_POLL_PATH, { pairingId: p.pairingId, pollToken: p.pollToken })).toMatchObject({
      status: 403,
      body: { status: 'denied' },
    });

    const clock = fakeClock(Date.now());
    const timed = new PairingService({ devices: env.devices, prisma: env.db.prisma, log: env.log, publicUrl: PUBLIC_URL, clock });
    const app2 = Fastify();
    await app2.register(pairingRoutes, { pairing: timed });
    try {
      const s = await app2.inject({ method: 'POST', url: PAIR_START_PATH, payload: { name: 'x', agent: '1' } });
      const started = s.json<{ pairingId: string; pollToken: string }>();
      clock.advance(PAIRING_DEFAULTS.ttlMs);
      const res = await app2.inject({ method: 'POST', url: PAIR_POLL_PATH, payload: started });
      expect(res.statusCode).toBe(410);
      expect(res.json()).toEqual({ status: 'expired' });
    } finally {
      await timed.close();
      await app2.close();
    }
  });

  it.each([
    ['missing name', { agent: '0.1.0' }],
    ['empty name', { name: '', agent: '0.1.0' }],
    ['long name', { name: 'x'.repeat(101), agent: '0.1.0' }],
    ['object name', { name: { a: 1 }, agent: '0.1.0' }],
    ['bad agent', { name: 'x', agent: 'a b' }],
    ['control characters', { name: 'a\u0000b', agent: '0.1.0' }],
    ['an array', [1, 2]],
  ])('refuses a start with %s (400)', async (_what, body) => {
    const r = await post(PAIR_START_PATH, body);
    expect(r.status).toBe(400);
    expect(r.body.code).toMatch(/^RELAY_(BAD_REQUEST|INVALID_NAME)$/);
    expect(typeof r.body.message).toBe('string');
    expect(svc.size).toBe(0);
  });

  it.each([
    ['missing token', { pairingId: '00000000-0000-4000-8000-000000000000' }],
    ['bad id', { pairingId: '../../etc', pollToken: 'A'.repeat(43) }],
    ['short token', { pairingId: '00000000-0000-4000-8000-000000000000', pollToken: 'A' }],
  ])('refuses a poll with %s (400)', async (_what, body) => {
    const r = await post(PAIR_POLL_PATH, body);
    expect(r).toMatchObject({ status: 400, body: { code: 'RELAY_BAD_REQUEST' } });
  });

  it('refuses bodies that are too large, not JSON, or malformed', async () => {
    const big = await post(PAIR_START_PATH, { name: 'x', agent: '0.1.0', pad: 'x'.repeat(PAIR_BODY_LIMIT) });
    expect(big.status).toBe(413);
    const form = await post(PAIR_START_PATH, 'name=x', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form.status).toBe(415);
    const broken = await post(PAIR_START_PATH, '{"name":', { 'content-type': 'application/json' });
    expect(broken.status).toBe(400);
    expect(svc.size).toBe(0);
  });

  it('ignores unknown fields', async () => {
    const r = await post(PAIR_START_PATH, { name: 'x', agent: '0.1.0', future: true });
    expect(r.status).toBe(201);
  });

  it('limits pairings per address with 429 and Retry-After', async () => {
    for (let i = 0; i < 3; i++) await startPairing();
    const r = await post(PAIR_START_PATH, { name: 'x', agent: '0.1.0' });
    expect(r.status).toBe(429);
    expect(r.body.code).toBe('RELAY_PAIRING_LIMIT');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('answers only POST on its two paths', async () => {
    expect((await fetch(`${base}${PAIR_START_PATH}`)).status).toBe(404);
    expect((await fetch(`${base}/_porthole/pair/approve`, { method: 'POST' })).status).toBe(404);
  });

  it('stops waiting when the agent hangs up, so the credential waits for its next poll', async () => {
    const long = new PairingService({ devices: env.devices, prisma: env.db.prisma, log: env.log, publicUrl: PUBLIC_URL });
    const app2 = Fastify({ forceCloseConnections: true });
    await app2.register(pairingRoutes, { pairing: long });
    await app2.listen({ host: '127.0.0.1', port: 0 });
    try {
      const p2 = await (
        await fetch(`http://127.0.0.1:${(app2.server.address() as AddressInfo).port}${PAIR_START_PATH}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'x', agent: '1' }),
        })
      ).json() as { pairingId: string; pollToken: string; code: string };
      const ctl = new AbortController();
      const hung = fetch(`http://127.0.0.1:${(app2.server.address() as AddressInfo).port}${PAIR_POLL_PATH}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ pairingId: p2.pairingId, pollToken: p2.pollToken }),
        signal: ctl.signal,
      }).catch((e: Error) => e);
      await new Promise((r) => setTimeout(r, 100));
      ctl.abort();
      await hung;
      await new Promise((r) => setTimeout(r, 100));
      await long.approve({ code: p2.code, ownerUserId: env.aliceId });
      expect(await long.poll({ pairingId: p2.pairingId, pollToken: p2.pollToken, waitMs: 0 })).toMatchObject({ status: 'approved' });
    } finally {
      await long.close();
      await app2.close();
    }
  });
});

// ---- the admin socket ----------------------------------------------------------------------

describe('admin socket', () => {
  let env: Env;
  let svc: PairingService;
  let sock: AdminSocket | undefined;
  let file: string;
  let audited: Array<{ kind: string; fields: unknown }>;

  beforeEach(async () => {
    env = await openEnv();
    svc = new PairingService({ devices: env.devices, prisma: env.db.prisma, log: env.log, publicUrl: PUBLIC_URL });
    file = adminSocketPath(path.dirname(env.db.file));
    audited = [];
    const audit = { record: (kind: string, fields: unknown) => void audited.push({ kind, fields }) };
    sock = await startAdminSocket({ path: file, pairing: svc, prisma: env.db.prisma, log: env.log, audit });
  });
  afterEach(async () => {
    await sock?.close();
    await svc.close();
    await closeEnv(env);
  });

  it('listens on <dataDir>/admin.sock, mode 0600, and removes it on close', async () => {
    expect(file).toBe(path.join(path.dirname(env.db.file), 'admin.sock'));
    const st = statSync(file);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    await sock!.close();
    expect(() => lstatSync(file)).toThrow();
    sock = undefined;
  });

  it('approves a code for an owner named by username', async () => {
    const p = svc.start({ name: 'Garage MK4', agent: '0.1.0', remote: '203.0.113.7' });
    const waiting = svc.poll({ pairingId: p.pairingId, pollToken: p.pollToken });

    expect(await adminRequest(file, { op: 'pair.list' })).toEqual({
      ok: true,
      pairings: [expect.objectContaining({ code: p.code, name: 'Garage MK4', remote: '203.0.113.7', expiresAt: p.expiresAt.toISOString() })],
    });
    expect(await adminRequest(file, { op: 'pair.lookup', code: p.code.toLowerCase() })).toMatchObject({ ok: true, pairing: { code: p.code } });

    const r = await adminRequest(file, { op: 'pair.approve', code: p.code.replace('-', ' '), owner: 'Alice', slug: 'mk4' });
    expect(r).toEqual({ ok: true, device: { id: expect.any(String), slug: 'mk4', name: 'Garage MK4' } });
    expect(await waiting).toMatchObject({ status: 'approved', slug: 'mk4' });
    const owner = await env.db.prisma.membership.findFirst({ where: { role: 'owner' }, include: { user: true } });
    expect(owner?.user.username).toBe('alice');
    expect(audited).toEqual([
      {
        kind: 'device.paired',
        fields: {
          userId: env.aliceId,
          deviceId: (r as { device: { id: string } }).device.id,
          detail: { slug: 'mk4', name: 'Garage MK4', agent: '0.1.0', agentAddress: '203.0.113.7', via: 'admin-socket' },
        },
      },
    ]);
    expect(await adminRequest(file, { op: 'pair.lookup', code: p.code })).toEqual({ ok: true, pairing: null });
  });

  it('reports errors as codes and messages', async () => {
    const p = svc.start({ name: 'x', agent: '0.1.0', remote: '1.2.3.4' });
    expect(await adminRequest(file, { op: 'pair.approve', code: p.code, owner: 'mallory' })).toEqual({
      ok: false,
      code: 'RELAY_PAIRING_OWNER',
      message: expect.stringContaining('no such user'),
    });
    expect(await adminRequest(file, { op: 'pair.approve', code: 'ZZZZ-ZZZZ', owner: 'alice' })).toMatchObject({
      ok: false,
      code: 'RELAY_PAIRING_NOT_FOUND',
    });
    expect(await adminRequest(file, { op: 'pair.deny', code: p.code })).toMatchObject({ ok: true, pairing: { code: p.code } });
    expect(await adminRequest(file, { op: 'pair.deny', code: p.code })).toMatchObject({ ok: false, code: 'RELAY_PAIRING_NOT_FOUND' });
    expect(await adminRequest(file, { op: 'nope' } as never)).toMatchObject({ ok: false, code: 'RELAY_BAD_REQUEST' });
  });

  it('answers garbage and oversized requests with an error and hangs up', async () => {
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const c = net.connect(file);
        let buf = '';
        c.setEncoding('utf8');
        c.on('data', (d: string) => (buf += d));
        c.on('end', () => resolve(buf));
        c.on('error', reject);
        c.write(text);
      });
    expect(JSON.parse(await raw('not json\n'))).toMatchObject({ ok: false, code: 'RELAY_BAD_REQUEST' });
    expect(JSON.parse(await raw('x'.repeat(20_000)))).toMatchObject({ ok: false, code: 'RELAY_BAD_REQUEST' });
  });

  it('replaces a stale socket, refuses a live one and a file that is not a socket', async () => {
    await expect(startAdminSocket({ path: file, pairing: svc, prisma: env.db.prisma, log: env.log })).rejects.toThrow(/already using/);

    // A relay that died leaves its socket file behind.
    await sock!.close();
    sock = undefined;
    const dead = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(file)}, () => console.log('up'))`]);
    await once(dead.stdout, 'data');
    dead.kill('SIGKILL');
    await once(dead, 'exit');
    expect(lstatSync(file).isSocket()).toBe(true);
    sock = await startAdminSocket({ path: file, pairing: svc, prisma: env.db.prisma, log: env.log });
    expect(await adminRequest(file, { op: 'pair.list' })).toEqual({ ok: true, pairings: [] });
    await sock.close();
    sock = undefined;

    writeFileSync(file, 'not a socket');
    await expect(startAdminSocket({ path: file, pairing: svc, prisma: env.db.prisma, log: env.log })).rejects.toThrow(/not a socket/);
  });

  it('is what `porthole-relay pair` talks to', async () => {
    const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
    if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build -w @porthole/relay first`);
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [cli, ...args], {
          env: { PATH: process.env.PATH ?? '', PORTHOLE_DATA_DIR: path.dirname(env.db.file), PORTHOLE_LOG_LEVEL: 'warn' },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });

    expect(await run(['pair', 'list'])).toMatchObject({ code: 0, stdout: expect.stringContaining('No pairing codes waiting') });
    const a = svc.start({ name: 'Garage MK4', agent: '0.1.0', remote: '203.0.113.7' });
    const b = svc.start({ name: 'Stranger', agent: '0.1.0', remote: '198.51.100.9' });
    const listed = await run(['pair', 'list']);
    expect(listed.stdout).toMatch(new RegExp(`^CODE +NAME +FROM +AGENT +EXPIRES\n${a.code} +Garage MK4 +203\\.0\\.113\\.7 +0\\.1\\.0 +`));

    expect(await run(['pair', 'approve', a.code])).toMatchObject({ code: 2, stderr: expect.stringContaining('--owner USERNAME') });
    expect(await run(['pair', 'approve', a.code, '--owner', 'nobody'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('Cannot make "nobody" the owner'),
    });
    const ok = await run(['pair', 'approve', a.code.toLowerCase(), '--owner', 'alice', '--name', 'MK4', '--slug', 'mk4']);
    expect(ok.stderr).toBe('');
    expect(ok).toMatchObject({ code: 0, stdout: expect.stringContaining('"MK4" is paired as mk4 (http://mk4.localhost:8080), owned by alice') });
    expect(await svc.poll({ pairingId: a.pairingId, pollToken: a.pollToken })).toMatchObject({ status: 'approved', slug: 'mk4' });

    expect(await run(['pair', 'deny', b.code])).toMatchObject({ code: 0, stdout: `Denied ${b.code} ("Stranger" from 198.51.100.9).\n` });
    expect(await run(['pair', 'deny', b.code])).toMatchObject({ code: 1, stderr: expect.stringContaining('No pending pairing') });
    expect(await run(['pair', 'list', '--json'])).toMatchObject({ code: 0, stdout: '[]\n' });
    expect(await run(['pair', 'frobnicate'])).toMatchObject({ code: 2 });
  });

  it('says clearly when no relay is listening', async () => {
    const e = await adminRequest(path.join(env.tmp.dir, 'nothing.sock'), { op: 'pair.list' }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(AdminSocketUnavailable);
    expect((e as Error).message).toContain('the relay is not running');
  });
});
