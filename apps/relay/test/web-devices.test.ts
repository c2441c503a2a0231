import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditKind } from '../src/accounts/audit.js';
import { hashShareToken } from '../src/accounts/shares.js';
import type { User } from '../src/accounts/users.js';
import type { Device } from '../src/devices.js';
import { errorCode, webFixture, type Browser, type WebFixture } from './web-helpers.js';

let f: WebFixture;
let device: Device;
let owner: { user: User; b: Browser };
let operator: { user: User; b: Browser };
let viewer: { user: User; b: Browser };
let stranger: { user: User; b: Browser };

beforeEach(async () => {
  f = await webFixture();
  ({ device } = await f.deps.devices.create({ name: 'Prusa MK3S', slug: 'mk3s' }));
  owner = await f.signedIn('olivia');
  operator = await f.signedIn('oscar');
  viewer = await f.signedIn('vera');
  stranger = await f.signedIn('sam');
  await f.db.prisma.membership.createMany({
    data: [
      { userId: owner.user.id, deviceId: device.id, role: 'owner' },
      { userId: operator.user.id, deviceId: device.id, role: 'operator' },
      { userId: viewer.user.id, deviceId: device.id, role: 'viewer' },
    ],
  });
});
afterEach(async () => {
  await f.close();
});

const json = <T = Record<string, unknown>>(res: { body: string }) => JSON.parse(res.body) as T;

describe('device list and details', () => {
  it('shows each member their devices with role, online state and URL; strangers see none', async () => {
    const since = new Date(f.clock.now - 60_000);
    f.online.set(device.id, { online: true, since });
    const list = json<Record<string, unknown>[]>(await viewer.b.api('GET', '/api/devices'));
    expect(list).toEqual([
      expect.objectContaining({
        id: device.id,
        name: 'Prusa MK3S',
        slug: 'mk3s',
        role: 'viewer',
        online: true,
        onlineSince: since.toISOString(),
        offlineSince: null,
        revoked: false,
        url: 'http://mk3s.relay.test:8080',
      }),
    ]);
    expect(JSON.stringify(list)).not.toMatch(/credential/i);
    expect(json(await stranger.b.api('GET', '/api/devices'))).toEqual([]);

    f.online.set(device.id, { online: false, since });
    const one = json(await owner.b.api('GET', `/api/devices/${device.id}`));
    expect(one).toMatchObject({ role: 'owner', online: false, offlineSince: since.toISOString(), onlineSince: null });
  });

  it('answers 404 to a non-member on every device route, exactly as for a device that does not exist', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    for (const id of [device.id, missing]) {
      for (const [method, url, body] of [
        ['GET', `/api/devices/${id}`],
        ['PATCH', `/api/devices/${id}`, { name: 'Mine now' }],
        ['POST', `/api/devices/${id}/revoke`],
        ['DELETE', `/api/devices/${id}`],
        ['POST', `/api/devices/${id}/open`, {}],
        ['GET', `/api/devices/${id}/members`],
        ['POST', `/api/devices/${id}/members`, { username: 'sam', role: 'owner' }],
        ['DELETE', `/api/devices/${id}/members/${owner.user.id}`],
        ['GET', `/api/devices/${id}/shares`],
        ['POST', `/api/devices/${id}/shares`, { expiresIn: '1h' }],
        ['DELETE', `/api/devices/${id}/shares/x`],
        ['GET', `/api/devices/${id}/audit`],
      ] as const) {
        const res = await stranger.b.api(method, url, body);
        expect(res.statusCode, `${method} ${url}`).toBe(404);
        expect(errorCode(res)).toBe('RELAY_DEVICE_NOT_FOUND');
      }
    }
    const after = await f.deps.devices.findById(device.id);
    expect(after).toMatchObject({ name: 'Prusa MK3S', revokedAt: null });
    expect(f.dropped).toEqual([]);
  });

  it('lets only the owner rename, revoke, delete, manage members and read the audit log', async () => {
    for (const who of [operator, viewer]) {
      for (const [method, url, body] of [
        ['PATCH', `/api/devices/${device.id}`, { name: 'Renamed' }],
        ['POST', `/api/devices/${device.id}/revoke`],
        ['DELETE', `/api/devices/${device.id}`],
        ['GET', `/api/devices/${device.id}/members`],
        ['POST', `/api/devices/${device.id}/members`, { username: 'sam', role: 'viewer' }],
        ['DELETE', `/api/devices/${device.id}/members/${owner.user.id}`],
        ['GET', `/api/devices/${device.id}/audit`],
      ] as const) {
        const res = await who.b.api(method, url, body);
        expect(res.statusCode, `${who.user.username}: ${method} ${url}`).toBe(403);
        expect(errorCode(res)).toBe('RELAY_FORBIDDEN');
      }
    }
    expect(json(await owner.b.api('PATCH', `/api/devices/${device.id}`, { name: '  Garage MK3S ' }))).toMatchObject({ name: 'Garage MK3S' });
    expect(errorCode(await owner.b.api('PATCH', `/api/devices/${device.id}`, { name: '' }))).toBe('RELAY_INVALID_NAME');
  });

  it('revoke cuts the tunnel and every session on the device; delete removes it', async () => {
    const dev = await f.sessions.issue({ kind: 'device', userId: viewer.user.id, deviceId: device.id, ttlMs: 3600_000 });
    const res = await owner.b.api('POST', `/api/devices/${device.id}/revoke`);
    expect(res.statusCode).toBe(200);
    expect(json(res)).toMatchObject({ revoked: true, online: false });
    expect(f.dropped).toEqual([{ deviceId: device.id, reason: 'revoked' }]);
    expect(await f.sessions.verify(dev.token)).toBeNull();
    expect((await f.deps.devices.authenticate('pdc_0000000000000000_' + 'a'.repeat(43))).ok).toBe(false);
    // A revoked device cannot be opened or shared.
    expect(errorCode(await owner.b.api('POST', `/api/devices/${device.id}/open`, {}))).toBe('RELAY_DEVICE_REVOKED');
    expect(errorCode(await owner.b.api('POST', `/api/devices/${device.id}/shares`, { expiresIn: '1h' }))).toBe('RELAY_DEVICE_REVOKED');

    expect((await owner.b.api('DELETE', `/api/devices/${device.id}`)).statusCode).toBe(200);
    expect(await f.deps.devices.findById(device.id)).toBeNull();
    expect(f.dropped.at(-1)).toEqual({ deviceId: device.id, reason: 'removed' });
    expect((await owner.b.api('GET', `/api/devices/${device.id}`)).statusCode).toBe(404);
    await f.deps.audit.flush();
    const kinds = (await f.deps.audit.list({ deviceId: device.id })).map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining([AuditKind.DeviceRevoked, AuditKind.DeviceRemoved]));
  });
});

describe('open', () => {
  it('gives any member a one-time handoff URL on the device origin, bound to this dashboard session', async () => {
    for (const who of [owner, operator, viewer]) {
      const res = await who.b.api('POST', `/api/devices/${device.id}/open`, { next: '/webcam/?action=stream' });
      expect(res.statusCode).toBe(200);
      const { url } = json<{ url: string }>(res);
      const u = new URL(url);
      expect(u.origin).toBe('http://mk3s.relay.test:8080');
      expect(u.pathname).toBe('/_porthole/handoff');
      const code = u.searchParams.get('code')!;
      expect(code.length).toBeGreaterThanOrEqual(32);

      const dashboard = (await f.sessions.listForUser(who.user.id)).find((s) => s.kind === 'dashboard')!;
      expect(f.deps.handoffs.take(code, 'some-other-device')).toBeUndefined();
      expect(f.deps.handoffs.take(code, device.id)).toBeUndefined();
      // A wrong-device attempt burns the code too: take() forgets it first.
      const res2 = await who.b.api('POST', `/api/devices/${device.id}/open`, {});
      const code2 = new URL(json<{ url: string }>(res2).url).searchParams.get('code')!;
      const h = f.deps.handoffs.take(code2, device.id);
      expect(h).toMatchObject({ userId: who.user.id, deviceId: device.id, parentSessionId: dashboard.id, next: '/' });
      expect(f.deps.handoffs.take(code2, device.id)).toBeUndefined();
    }
  });

  it('keeps `next` to a local path', async () => {
    for (const [next, want] of [
      ['/plugin/x?y=1', '/plugin/x?y=1'],
      ['//evil.example/', '/'],
      ['https://evil.example/', '/'],
      ['/\\evil.example', '/'],
    ]) {
      const { url } = json<{ url: string }>(await owner.b.api('POST', `/api/devices/${device.id}/open`, { next }));
      expect(f.deps.handoffs.take(new URL(url).searchParams.get('code')!, device.id)?.next).toBe(want);
    }
  });

  it('handoff codes expire after a minute', async () => {
    const { url } = json<{ url: string }>(await owner.b.api('POST', `/api/devices/${device.id}/open`, {}));
    f.clock.advance(61_000);
    expect(f.deps.handoffs.take(new URL(url).searchParams.get('code')!, device.id)).toBeUndefined();
  });
});

describe('share links', () => {
  it('owner and operator create, list and revoke; a viewer cannot', async () => {
    for (const [method, url, body] of [
      ['POST', `/api/devices/${device.id}/shares`, { expiresIn: '1d' }],
      ['GET', `/api/devices/${device.id}/shares`],
      ['DELETE', `/api/devices/${device.id}/shares/whatever`],
    ] as const) {
      const res = await viewer.b.api(method, url, body);
      expect(res.statusCode, `${method} ${url}`).toBe(403);
    }

    const created = await operator.b.api('POST', `/api/devices/${device.id}/shares`, { expiresIn: '1d', label: 'for grandma' });
    expect(created.statusCode).toBe(201);
    const share = json<{ id: string; url: string; expiresAt: string; label: string }>(created);
    expect(share.label).toBe('for grandma');
    expect(new Date(share.expiresAt).getTime()).toBe(f.clock.now + 24 * 3600_000);
    const m = /^http:\/\/mk3s\.relay\.test:8080\/_porthole\/share\/([A-Za-z0-9_-]{43})$/.exec(share.url);
    expect(m).not.toBeNull();
    const token = m![1]!;

    // Only the hash is stored.
    const row = await f.db.prisma.shareLink.findUniqueOrThrow({ where: { id: share.id } });
    expect(row.tokenHash).toBe(hashShareToken(token));
    expect(JSON.stringify(row)).not.toContain(token);
    expect((await f.deps.shares.findValidByToken(token, device.id))?.id).toBe(share.id);
    expect(await f.deps.shares.findValidByToken(token, 'another-device')).toBeNull();

    const never = json<{ expiresAt: string | null }>(await owner.b.api('POST', `/api/devices/${device.id}/shares`, { expiresIn: 'never' }));
    expect(never.expiresAt).toBeNull();
    expect(errorCode(await owner.b.api('POST', `/api/devices/${device.id}/shares`, { expiresIn: '1y' }))).toBe('RELAY_BAD_REQUEST');

    const list = json<{ id: string; active: boolean; uses: number }[]>(await owner.b.api('GET', `/api/devices/${device.id}/shares`));
    expect(list).toHaveLength(2);
    expect(list.every((l) => l.active)).toBe(true);
    expect(JSON.stringify(list)).not.toContain(token);
    expect(JSON.stringify(list)).not.toContain(row.tokenHash);

    // A visitor already watching through the link is cut when it is revoked.
    const visitor = await f.sessions.issue({ kind: 'share', shareLinkId: share.id, deviceId: device.id, ttlMs: 3600_000 });
    expect(await f.sessions.verify(visitor.token)).not.toBeNull();
    expect((await operator.b.api('DELETE', `/api/devices/${device.id}/shares/${share.id}`)).statusCode).toBe(200);
    expect(await f.sessions.verify(visitor.token)).toBeNull();
    expect(await f.deps.shares.findValidByToken(token, device.id)).toBeNull();
    const after = json<{ id: string; active: boolean; revokedAt: string | null }[]>(await owner.b.api('GET', `/api/devices/${device.id}/shares`));
    expect(after.find((l) => l.id === share.id)).toMatchObject({ active: false });

    await f.deps.audit.flush();
    const kinds = (await f.deps.audit.list({ deviceId: device.id })).map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining([AuditKind.ShareCreated, AuditKind.ShareRevoked]));
  });

  it('a share of one device cannot be revoked through another', async () => {
    const { device: other } = await f.deps.devices.create({ name: 'Voron', slug: 'voron' });
    await f.db.prisma.membership.create({ data: { userId: owner.user.id, deviceId: other.id, role: 'owner' } });
    const share = json<{ id: string }>(await owner.b.api('POST', `/api/devices/${device.id}/shares`, { expiresIn: '1h' }));
    const res = await owner.b.api('DELETE', `/api/devices/${other.id}/shares/${share.id}`);
    expect(res.statusCode).toBe(404);
    expect((await f.deps.shares.findById(share.id))?.revokedAt).toBeNull();
  });

  it('expired links stop working', async () => {
    const share = json<{ url: string }>(await owner.b.api('POST', `/api/devices/${device.id}/shares`, { expiresIn: '1h' }));
    const token = share.url.split('/').at(-1)!;
    expect(await f.deps.shares.findValidByToken(token, device.id)).not.toBeNull();
    f.clock.advance(3600_000);
    expect(await f.deps.shares.findValidByToken(token, device.id)).toBeNull();
  });
});

describe('members', () => {
  it('owner adds, changes and removes members; the last owner stays', async () => {
    const list = json<{ username: string; role: string }[]>(await owner.b.api('GET', `/api/devices/${device.id}/members`));
    expect(list.map((m) => [m.username, m.role])).toEqual([
      ['olivia', 'owner'],
      ['oscar', 'operator'],
      ['vera', 'viewer'],
    ]);
    expect(errorCode(await owner.b.api('POST', `/api/devices/${device.id}/members`, { username: 'nobody', role: 'viewer' }))).toBe(
      'RELAY_UNKNOWN_USERNAME',
    );
    expect(errorCode(await owner.b.api('POST', `/api/devices/${device.id}/members`, { username: 'sam', role: 'admin' }))).toBe('RELAY_BAD_REQUEST');

    const added = await owner.b.api('POST', `/api/devices/${device.id}/members`, { username: 'SAM', role: 'viewer' });
    expect(added.statusCode).toBe(201);
    expect((await stranger.b.api('GET', `/api/devices/${device.id}`)).statusCode).toBe(200);
    expect(errorCode(await stranger.b.api('POST', `/api/devices/${device.id}/shares`, { expiresIn: '1h' }))).toBe('RELAY_FORBIDDEN');

    // A role change ends the member's open device sessions.
    const dev = await f.sessions.issue({ kind: 'device', userId: viewer.user.id, deviceId: device.id, ttlMs: 3600_000 });
    expect((await owner.b.api('POST', `/api/devices/${device.id}/members`, { username: 'vera', role: 'operator' })).statusCode).toBe(200);
    expect(await f.sessions.verify(dev.token)).toBeNull();

    // The only owner cannot step down or be removed…
    expect(errorCode(await owner.b.api('DELETE', `/api/devices/${device.id}/members/${owner.user.id}`))).toBe('RELAY_LAST_OWNER');
    expect(errorCode(await owner.b.api('POST', `/api/devices/${device.id}/members`, { username: 'olivia', role: 'viewer' }))).toBe(
      'RELAY_LAST_OWNER',
    );
    // …until there is another.
    await owner.b.api('POST', `/api/devices/${device.id}/members`, { username: 'oscar', role: 'owner' });
    expect((await owner.b.api('DELETE', `/api/devices/${device.id}/members/${owner.user.id}`)).statusCode).toBe(200);
    expect((await owner.b.api('GET', `/api/devices/${device.id}`)).statusCode).toBe(404);

    const samSession = await f.sessions.issue({ kind: 'device', userId: stranger.user.id, deviceId: device.id, ttlMs: 3600_000 });
    expect((await operator.b.api('DELETE', `/api/devices/${device.id}/members/${stranger.user.id}`)).statusCode).toBe(200);
    expect(await f.sessions.verify(samSession.token)).toBeNull();
    expect((await stranger.b.api('GET', `/api/devices/${device.id}`)).statusCode).toBe(404);
    expect((await operator.b.api('DELETE', `/api/devices/${device.id}/members/${stranger.user.id}`)).statusCode).toBe(404);
  });

  it('audit log: the owner reads the device\'s recent events', async () => {
    await owner.b.api('POST', `/api/devices/${device.id}/open`, {});
    await f.deps.audit.flush();
    const events = json<{ kind: string; userId: string; ip: string }[]>(await owner.b.api('GET', `/api/devices/${device.id}/audit?limit=10`));
    expect(events[0]).toMatchObject({ kind: AuditKind.DeviceOpened, userId: owner.user.id, ip: '127.0.0.1' });
    expect(errorCode(await owner.b.api('GET', `/api/devices/${device.id}/audit?limit=100000`))).toBe('RELAY_BAD_REQUEST');
  });
});

describe('pairing', () => {
  it('shows a pending code, approves it with the caller as owner, and denies another', async () => {
    const started = f.pairing.start({ name: 'voron-pi', agent: '0.1.0', remote: '203.0.113.9' });
    const info = await owner.b.api('GET', `/api/pairing/${started.code.toLowerCase()}`);
    expect(info.statusCode).toBe(200);
    expect(json(info)).toMatchObject({ code: started.code, name: 'voron-pi', agent: '0.1.0', remote: '203.0.113.9' });
    expect(errorCode(await owner.b.api('GET', '/api/pairing/ZZZZ-ZZZZ'))).toBe('RELAY_PAIRING_NOT_FOUND');

    const poll = f.pairing.poll({ pairingId: started.pairingId, pollToken: started.pollToken, waitMs: 5_000 });
    const approved = await stranger.b.api('POST', '/api/pairing/approve', { code: started.code, name: 'Voron 2.4', slug: 'voron' });
    expect(approved.statusCode).toBe(201);
    const body = json<{ device: { id: string; slug: string; role: string; url: string } }>(approved);
    expect(body.device).toMatchObject({ slug: 'voron', role: 'owner', url: 'http://voron.relay.test:8080' });
    expect(await poll).toMatchObject({ status: 'approved', slug: 'voron' });
    expect(json<{ slug: string }[]>(await stranger.b.api('GET', '/api/devices')).map((d) => d.slug)).toEqual(['voron']);
    expect(errorCode(await stranger.b.api('POST', '/api/pairing/approve', { code: started.code }))).toBe('RELAY_PAIRING_NOT_FOUND');
    await f.deps.audit.flush();
    expect((await f.deps.audit.list({ deviceId: body.device.id })).map((e) => e.kind)).toContain(AuditKind.DevicePaired);

    const second = f.pairing.start({ name: 'ender', agent: '0.1.0', remote: '203.0.113.9' });
    expect((await owner.b.api('POST', '/api/pairing/deny', { code: second.code })).statusCode).toBe(200);
    expect(f.pairing.lookup(second.code)).toBeUndefined();
  });

  it('keeps a bad slug from burning the code', async () => {
    const started = f.pairing.start({ name: 'x-pi', agent: '0.1.0', remote: '203.0.113.9' });
    expect(errorCode(await owner.b.api('POST', '/api/pairing/approve', { code: started.code, slug: 'mk3s' }))).toBe('RELAY_SLUG_TAKEN');
    expect(errorCode(await owner.b.api('POST', '/api/pairing/approve', { code: started.code, slug: 'Bad Slug' }))).toBe('RELAY_INVALID_SLUG');
    expect((await owner.b.api('POST', '/api/pairing/approve', { code: started.code, slug: 'x-pi' })).statusCode).toBe(201);
  });
});
