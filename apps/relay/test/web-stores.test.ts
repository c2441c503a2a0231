import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SetupTokens } from '../src/accounts/setup.js';
import { hashShareToken, shareIsActive, ShareLinkStore } from '../src/accounts/shares.js';
import { openDatabase, type Database } from '../src/db/index.js';
import { DeviceStore } from '../src/devices.js';
import { RelayError } from '../src/errors.js';
import { deviceOrigin } from '../src/web/deps.js';
import { formatWait, safeEqual, toProblem } from '../src/web/http.js';
import { html } from '../src/web/html.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';

describe('SetupTokens', () => {
  it('makes one random token, checks it in constant time, and gives it out once', () => {
    const s = new SetupTokens();
    const t = s.current()!;
    expect(t).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(s.current()).toBe(t);
    expect(new SetupTokens().current()).not.toBe(t);
    for (const wrong of [undefined, null, 42, '', 'x', t.toUpperCase() === t ? `${t}x` : t.toUpperCase(), `${t} `, 'y'.repeat(1000)]) {
      expect(s.check(wrong)).toBe(false);
      expect(s.consume(wrong)).toBe(false);
    }
    expect(s.check(t)).toBe(true);
    expect(s.consume(t)).toBe(true);
    expect(s.consume(t)).toBe(false);
    expect(s.current()).toBeUndefined();
    expect(s.setupUrl('https://relay.example')).toBeUndefined();
  });

  it('can give a used token back after a failed setup, but not after close()', () => {
    const s = new SetupTokens();
    const t = s.current()!;
    expect(s.consume(t)).toBe(true);
    expect(s.check(t)).toBe(false);
    s.restore('something else');
    expect(s.current()).toBeUndefined();
    s.restore(t);
    expect(s.current()).toBe(t);
    expect(s.setupUrl('https://relay.example/')).toBe(`https://relay.example/setup?token=${t}`);
    expect(s.consume(t)).toBe(true);
    s.close();
    s.restore(t);
    expect(s.check(t)).toBe(false);
    expect(s.current()).toBeUndefined();
  });
});

describe('ShareLinkStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let db: Database;
  let t: number;
  let shares: ShareLinkStore;
  let deviceId: string;

  beforeEach(async () => {
    tmp = tempDir();
    db = await openDatabase(testConfig(tmp.dir), memoryLogger('warn').log);
    t = Date.parse('2026-11-23T10:00:00Z');
    shares = new ShareLinkStore({ prisma: db.prisma, now: () => new Date(t) });
    deviceId = (await new DeviceStore(db).create({ name: 'MK3S', slug: 'mk3s' })).device.id;
  });
  afterEach(async () => {
    await db.close();
    tmp.cleanup();
  });

  it('creates a link whose 32-byte token is stored only as its SHA-256', async () => {
    const { link, token } = await shares.create({ deviceId, createdById: null, expiresIn: '1w', label: '  grandma  ' });
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token, 'base64url')).toHaveLength(32);
    expect(link).toMatchObject({ deviceId, label: 'grandma', uses: 0, revokedAt: null });
    expect(link.expiresAt?.getTime()).toBe(t + 7 * 24 * 3600_000);
    expect(link).not.toHaveProperty('tokenHash');
    const row = await db.prisma.shareLink.findUniqueOrThrow({ where: { id: link.id } });
    expect(row.tokenHash).toBe(hashShareToken(token));
    expect(row.tokenHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('finds a valid link by token for its device only, until it expires or is revoked', async () => {
    const { link, token } = await shares.create({ deviceId, expiresIn: '1h' });
    expect((await shares.findValidByToken(token, deviceId))?.id).toBe(link.id);
    expect(await shares.findValidByToken(token, 'other')).toBeNull();
    // One character changed, never to itself (a fixed 'A' left 1 token in 64 unchanged).
    const tampered = `${token[0] === 'A' ? 'B' : 'A'}${token.slice(1)}`;
    expect(await shares.findValidByToken(tampered, deviceId)).toBeNull();
    expect(await shares.findValidByToken(undefined, deviceId)).toBeNull();
    expect(await shares.findValidByToken('short', deviceId)).toBeNull();
    expect(await shares.findValidByToken(token, deviceId, new Date(t + 3600_000 - 1))).not.toBeNull();
    expect(await shares.findValidByToken(token, deviceId, new Date(t + 3600_000))).toBeNull();

    const forever = await shares.create({ deviceId, expiresIn: 'never' });
    expect(forever.link.expiresAt).toBeNull();
    expect(await shares.findValidByToken(forever.token, deviceId, new Date(t + 10 * 365 * 24 * 3600_000))).not.toBeNull();
    expect(await shares.revoke(forever.link.id)).toBe(true);
    expect(await shares.findValidByToken(forever.token, deviceId)).toBeNull();
    const first = (await shares.findById(forever.link.id))!.revokedAt;
    t += 1000;
    await shares.revoke(forever.link.id);
    expect((await shares.findById(forever.link.id))!.revokedAt).toEqual(first);
    expect(await shares.revoke('nope')).toBe(false);
  });

  it('counts uses, lists newest first, and refuses bad input', async () => {
    const a = await shares.create({ deviceId, expiresIn: '1d' });
    t += 1000;
    const b = await shares.create({ deviceId, expiresIn: '1h', label: '' });
    await shares.recordUse(a.link.id);
    t += 5000;
    await shares.recordUse(a.link.id);
    const list = await shares.list(deviceId);
    expect(list.map((l) => l.id)).toEqual([b.link.id, a.link.id]);
    expect(list[1]).toMatchObject({ uses: 2, lastUsedAt: new Date(t) });
    expect(list[0]!.label).toBeNull();
    expect(shareIsActive(list[0]!, new Date(t))).toBe(true);
    expect(shareIsActive(list[0]!, new Date(t + 3600_000))).toBe(false);

    await expect(shares.create({ deviceId, expiresIn: '1y' as '1h' })).rejects.toThrow(RelayError);
    await expect(shares.create({ deviceId, expiresIn: 'toString' as '1h' })).rejects.toThrow(RelayError);
    await expect(shares.create({ deviceId, expiresIn: '1h', label: 'x'.repeat(101) })).rejects.toThrow(RelayError);
    await expect(shares.create({ deviceId, expiresIn: '1h', label: 'a\u202eb' })).rejects.toThrow(RelayError);
  });
});

describe('web helpers', () => {
  it('formats waits for people', () => {
    expect(formatWait(1)).toBe('1 second');
    expect(formatWait(45_000)).toBe('45 seconds');
    expect(formatWait(60_000)).toBe('1 minute');
    expect(formatWait(15 * 60_000)).toBe('15 minutes');
    expect(formatWait(14 * 60_000 + 1)).toBe('15 minutes');
    expect(formatWait(5 * 3600_000)).toBe('5 hours');
  });

  it('compares secrets without caring about type or length', () => {
    expect(safeEqual('abc', 'abc')).toBe(true);
    expect(safeEqual('abd', 'abc')).toBe(false);
    expect(safeEqual('ab', 'abc')).toBe(false);
    expect(safeEqual(undefined, 'abc')).toBe(false);
    expect(safeEqual(['abc'], 'abc')).toBe(false);
    expect(safeEqual('', '')).toBe(false);
  });

  it('never shows an unexpected error to the client', () => {
    const p = toProblem(new Error('SQLITE_CORRUPT at /var/lib/porthole/porthole.db'));
    expect(p).toMatchObject({ status: 500, code: 'RELAY_INTERNAL', internal: true });
    expect(p.message).not.toContain('SQLITE');
    expect(toProblem(new RelayError('RELAY_LOGIN_FAILED'))).toMatchObject({ status: 401, code: 'RELAY_LOGIN_FAILED' });
  });

  it('escapes everything put into html`` unless it is html itself', () => {
    const name = `<img src=x onerror="alert('x')">&`;
    expect(html`<p title="${name}">${name}</p>${html`<b>ok</b>`}${[name, html`<i>`]}${null}${undefined}`.text).toBe(
      '<p title="&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;">&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;</p><b>ok</b>&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;<i>',
    );
  });

  it('derives device origins from the public URL', () => {
    expect(deviceOrigin({ publicUrl: 'https://relay.example', domain: 'relay.example' }, 'mk3s')).toBe('https://mk3s.relay.example');
    expect(deviceOrigin({ publicUrl: 'http://localhost:8080', domain: 'localhost' }, 'mk3s')).toBe('http://mk3s.localhost:8080');
  });
});
