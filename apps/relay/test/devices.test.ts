import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/index.js';
import {
  DeviceStore,
  hashSecret,
  newCredential,
  parseCredential,
  RESERVED_SLUGS,
  slugify,
  slugProblem,
} from '../src/devices.js';
import { RelayError, type RelayErrorCode } from '../src/errors.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';

async function rejects(p: Promise<unknown>, code: RelayErrorCode): Promise<RelayError> {
  const e = await p.then(
    () => {
      throw new Error(`expected ${code}`);
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RelayError);
  expect((e as RelayError).code).toBe(code);
  return e as RelayError;
}

describe('slugs', () => {
  it.each(['a', 'mk3s', 'prusa-mk4', '3d', 'a'.repeat(63), 'x-1-y'])('accepts %s', (slug) => {
    expect(slugProblem(slug)).toBeNull();
  });

  it.each([
    ['', 'empty'],
    ['a'.repeat(64), 'at most 63'],
    ['MK3S', 'lowercase'],
    ['mk3s.garage', 'lowercase'],
    ['mk_3s', 'lowercase'],
    ['prüsa', 'lowercase'],
    ['-mk3s', 'start or end'],
    ['mk3s-', 'start or end'],
    ['xn--mk3s', 'IDNA'],
    ['www', 'reserved'],
    ['api', 'reserved'],
    ['admin', 'reserved'],
    ['relay', 'reserved'],
  ])('refuses %j (%s)', (slug, why) => {
    expect(slugProblem(slug)).toContain(why);
  });

  it('reserves only valid labels', () => {
    for (const s of RESERVED_SLUGS) expect(/^[a-z0-9-]+$/.test(s)).toBe(true);
  });

  it.each([
    ['Prusa MK3S+ (garage)', 'prusa-mk3s-garage'],
    ['  Ender 3 V2  ', 'ender-3-v2'],
    ['Créalité Ñ', 'crealite-n'],
    ['---', 'printer'],
    ['🖨️', 'printer'],
    ['x'.repeat(70), 'x'.repeat(63)],
    [`${'a'.repeat(62)} b`, 'a'.repeat(62)],
  ])('slugify(%j) = %j', (name, slug) => {
    expect(slugify(name)).toBe(slug);
    expect(slugProblem(slugify(name))).toBeNull();
  });
});

describe('credentials', () => {
  it('have the pdc_<id>_<secret> shape and parse back', () => {
    const c = newCredential();
    expect(c.credential).toMatch(/^pdc_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(parseCredential(c.credential)).toEqual({ credentialId: c.credentialId, secret: c.secret });
    expect(c.hash).toBe(hashSecret(c.secret));
    expect(c.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(Buffer.from(c.secret, 'base64url')).toHaveLength(32);
  });

  it('are all different', () => {
    const seen = new Set(Array.from({ length: 200 }, () => newCredential().credential));
    expect(seen.size).toBe(200);
  });

  it.each([
    '',
    'pdc_',
    'pdc_0123456789abcdef',
    'pdc_0123456789abcdef_',
    'pdc_0123456789ABCDEF_' + 'a'.repeat(43),
    'pdc_0123456789abcdef_' + 'a'.repeat(42),
    'pdc_0123456789abcdef_' + 'a'.repeat(44),
    'pdx_0123456789abcdef_' + 'a'.repeat(43),
    'pdc_0123456789abcdef_' + 'a'.repeat(42) + '=',
    ' pdc_0123456789abcdef_' + 'a'.repeat(43),
  ])('refuses malformed %j', (text) => {
    expect(parseCredential(text)).toBeNull();
  });
});

describe('DeviceStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let db: Database;
  let store: DeviceStore;
  let clock: Date;

  beforeEach(async () => {
    tmp = tempDir();
    db = await openDatabase(testConfig(path.join(tmp.dir, 'data')), memoryLogger().log);
    clock = new Date('2026-01-02T03:04:05.000Z');
    store = new DeviceStore(db, { now: () => clock });
  });
  afterEach(async () => {
    await db.close();
    tmp.cleanup();
  });

  it('creates a device with a credential it can authenticate, storing only the hash', async () => {
    const { device, credential } = await store.create({ name: ' Prusa MK3S ', slug: 'mk3s' });
    expect(device).toMatchObject({ name: 'Prusa MK3S', slug: 'mk3s', createdAt: clock, lastSeenAt: null, revokedAt: null });
    expect(device).not.toHaveProperty('credentialHash');
    expect(device.id).toMatch(/^[0-9a-f-]{36}$/);

    const parsed = parseCredential(credential)!;
    expect(device.credentialId).toBe(parsed.credentialId);
    const raw = new BetterSqlite3(db.file, { readonly: true });
    const row = raw.prepare('SELECT * FROM "Device"').get() as Record<string, unknown>;
    raw.close();
    expect(row.credentialHash).toBe(hashSecret(parsed.secret));
    expect(JSON.stringify(row)).not.toContain(parsed.secret);

    const auth = await store.authenticate(credential);
    expect(auth).toEqual({ ok: true, device });
  });

  it('refuses malformed, unknown and wrong credentials alike, and says revoked only with the right secret', async () => {
    const { device, credential } = await store.create({ name: 'A', slug: 'a' });
    const { credentialId, secret } = parseCredential(credential)!;
    const other = newCredential();

    expect(await store.authenticate('')).toEqual({ ok: false, reason: 'malformed' });
    expect(await store.authenticate(undefined)).toEqual({ ok: false, reason: 'malformed' });
    expect(await store.authenticate(`Bearer ${credential}`)).toEqual({ ok: false, reason: 'malformed' });
    expect(await store.authenticate(other.credential)).toEqual({ ok: false, reason: 'unknown' });
    const wrongSecret = `pdc_${credentialId}_${other.secret}`;
    expect(await store.authenticate(wrongSecret)).toEqual({ ok: false, reason: 'unknown' });
    const flipped = `pdc_${credentialId}_${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    expect(await store.authenticate(flipped)).toEqual({ ok: false, reason: 'unknown' });

    clock = new Date('2026-02-01T00:00:00.000Z');
    const revoked = await store.revoke(device.id);
    expect(revoked.revokedAt).toEqual(clock);
    expect(await store.authenticate(credential)).toEqual({ ok: false, reason: 'revoked' });
    expect(await store.authenticate(wrongSecret)).toEqual({ ok: false, reason: 'unknown' });

    // Revoking again keeps the first time.
    clock = new Date('2026-03-01T00:00:00.000Z');
    expect((await store.revoke(device.id)).revokedAt).toEqual(new Date('2026-02-01T00:00:00.000Z'));
  });

  it('validates slugs and names', async () => {
    const slug = await rejects(store.create({ name: 'A', slug: 'www' }), 'RELAY_INVALID_SLUG');
    expect(slug.message).toContain('reserved');
    expect(slug.statusCode).toBe(400);
    await rejects(store.create({ name: 'A', slug: 'Bad_Slug' }), 'RELAY_INVALID_SLUG');
    await rejects(store.create({ name: '   ' }), 'RELAY_INVALID_NAME');
    await rejects(store.create({ name: 'a\u0007b' }), 'RELAY_INVALID_NAME');
    await rejects(store.create({ name: 'x'.repeat(101) }), 'RELAY_INVALID_NAME');
    expect(await store.list()).toEqual([]);
  });

  it('refuses a taken slug, and derives free ones from the name', async () => {
    await store.create({ name: 'Ender 3', slug: 'ender-3' });
    const e = await rejects(store.create({ name: 'Another', slug: 'ender-3' }), 'RELAY_SLUG_TAKEN');
    expect(e.statusCode).toBe(409);

    expect((await store.create({ name: 'Ender 3' })).device.slug).toBe('ender-3-2');
    expect((await store.create({ name: 'Ender 3' })).device.slug).toBe('ender-3-3');
    expect((await store.create({ name: 'Admin' })).device.slug).toBe('admin-2');
    expect((await store.create({ name: '!!!' })).device.slug).toBe('printer');
  });

  it('finds, lists, renames and removes', async () => {
    const a = (await store.create({ name: 'A', slug: 'a' })).device;
    clock = new Date(clock.getTime() + 1000);
    const b = (await store.create({ name: 'B', slug: 'b' })).device;

    expect(await store.findBySlug('a')).toEqual(a);
    expect(await store.findBySlug('zzz')).toBeNull();
    expect(await store.findById(b.id)).toEqual(b);
    expect((await store.list()).map((d) => d.slug)).toEqual(['a', 'b']);

    expect(await store.rename(a.id, ' Alpha ')).toEqual({ ...a, name: 'Alpha' });
    await rejects(store.rename(a.id, ''), 'RELAY_INVALID_NAME');
    await rejects(store.rename('missing', 'x'), 'RELAY_DEVICE_NOT_FOUND');
    await rejects(store.revoke('missing'), 'RELAY_DEVICE_NOT_FOUND');

    await store.remove(a.id);
    expect(await store.findBySlug('a')).toBeNull();
    await rejects(store.remove(a.id), 'RELAY_DEVICE_NOT_FOUND');
    expect((await store.list()).map((d) => d.slug)).toEqual(['b']);
  });

  it('records a tunnel coming and going', async () => {
    const { device } = await store.create({ name: 'A', slug: 'a' });
    const up = new Date('2026-05-01T10:00:00.000Z');
    const down = new Date('2026-05-01T11:00:00.000Z');

    expect(await store.markSeen(device.id, true, up)).toBe(true);
    expect(await store.findById(device.id)).toMatchObject({ lastSeenAt: up, offlineSince: null });
    expect(await store.markSeen(device.id, false, down)).toBe(true);
    expect(await store.findById(device.id)).toMatchObject({ lastSeenAt: down, offlineSince: down });
    expect(await store.markSeen(device.id, true, up)).toBe(true);
    expect(await store.findById(device.id)).toMatchObject({ lastSeenAt: up, offlineSince: null });

    await store.remove(device.id);
    expect(await store.markSeen(device.id, false, down)).toBe(false);
  });

  it('keeps millisecond timestamps exactly', async () => {
    clock = new Date('2026-06-07T08:09:10.123Z');
    const { device } = await store.create({ name: 'A', slug: 'a' });
    expect((await store.findById(device.id))!.createdAt.toISOString()).toBe('2026-06-07T08:09:10.123Z');
  });
});
