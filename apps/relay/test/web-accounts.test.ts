import { createHmac } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditKind } from '../src/accounts/audit.js';
import { errorCode, PASSWORD, totpCode, webFixture, type WebFixture } from './web-helpers.js';

let f: WebFixture;
afterEach(async () => {
  await f?.close();
});

async function auditKinds(): Promise<string[]> {
  await f.deps.audit.flush();
  return (await f.deps.audit.list({ limit: 500 })).map((e) => e.kind);
}

describe('first-run setup', () => {
  beforeEach(async () => {
    f = await webFixture();
  });

  it('says setup is needed until the first user exists', async () => {
    const b = f.browser();
    expect(JSON.parse((await b.api('GET', '/api/setup/status')).body)).toEqual({ needsSetup: true });
    await f.users.create({ username: 'someone', password: PASSWORD });
    expect(JSON.parse((await b.api('GET', '/api/setup/status')).body)).toEqual({ needsSetup: false });
  });

  it('requires the token, uses it once, makes an admin and signs them in', async () => {
    const token = f.setup.current()!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(f.setup.setupUrl('http://relay.test:8080/')).toBe(`http://relay.test:8080/setup?token=${token}`);
    const b = f.browser();

    for (const wrong of ['', 'x', `${token}x`, token.slice(1)]) {
      const res = await b.api('POST', '/api/setup', { token: wrong, username: 'admin', password: PASSWORD });
      expect(res.statusCode).toBe(403);
      expect(errorCode(res)).toBe('RELAY_SETUP_TOKEN');
    }
    expect(await f.users.count()).toBe(0);

    // A weak password is refused without burning the token.
    const weak = await b.api('POST', '/api/setup', { token, username: 'admin', password: 'password123' });
    expect(weak.statusCode).toBe(400);
    expect(errorCode(weak)).toBe('RELAY_WEAK_PASSWORD');

    const ok = await b.api('POST', '/api/setup', { token, username: 'Admin', password: PASSWORD });
    expect(ok.statusCode).toBe(200);
    const body = JSON.parse(ok.body) as { user: { username: string; isAdmin: boolean }; csrf: string };
    expect(body.user).toMatchObject({ username: 'admin', isAdmin: true });
    expect(body.csrf).toBeTruthy();
    expect(b.cookie).toBeTruthy();
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);
    expect(f.setup.current()).toBeUndefined();

    // Once a user exists: refused, with or without the old token.
    const again = await f.browser().api('POST', '/api/setup', { token, username: 'eve', password: PASSWORD });
    expect(again.statusCode).toBe(409);
    expect(errorCode(again)).toBe('RELAY_SETUP_DONE');
    expect(await f.users.count()).toBe(1);
    expect(await auditKinds()).toContain(AuditKind.SetupCompleted);
  });

  it('is refused once a user exists even with the right token (made elsewhere, e.g. the CLI)', async () => {
    const token = f.setup.current()!;
    await f.users.create({ username: 'cli-admin', password: PASSWORD, isAdmin: true });
    const res = await f.browser().api('POST', '/api/setup', { token, username: 'eve', password: PASSWORD });
    expect(res.statusCode).toBe(409);
    expect(f.setup.current()).toBeUndefined();
  });

  it('lets only one of two racing requests with the same token through', async () => {
    const token = f.setup.current()!;
    const [a, b] = await Promise.all([
      f.browser().api('POST', '/api/setup', { token, username: 'first', password: PASSWORD }),
      f.browser().api('POST', '/api/setup', { token, username: 'second', password: PASSWORD }),
    ]);
    expect([a.statusCode, b.statusCode].sort()).toEqual([200, 403]);
    expect(await f.users.count()).toBe(1);
  });
});

describe('sign-in', () => {
  beforeEach(async () => {
    f = await webFixture({
      throttle: { account: { freeFailures: 2, baseDelayMs: 1_000, lockoutFailures: 4, lockoutMs: 15 * 60_000 } },
    });
    await f.users.create({ username: 'alice', password: PASSWORD });
  });

  it('signs in with the right password and sets a host-only, HttpOnly, SameSite=Lax cookie for 7 days', async () => {
    const b = f.browser();
    const res = await b.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    expect(res.statusCode).toBe(200);
    const body = JSON.parse(res.body) as { user: { username: string; totpEnabled: boolean }; csrf: string };
    expect(body.user).toMatchObject({ username: 'alice', totpEnabled: false });
    expect(body).not.toHaveProperty('user.passwordHash');
    const cookie = String(res.headers['set-cookie']);
    expect(cookie).toMatch(/^porthole_session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; /);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Lax');
    expect(cookie).toContain('Path=/');
    expect(cookie).toContain('Max-Age=604800');
    expect(cookie).not.toMatch(/Domain=/i);
    expect(cookie).not.toContain('Secure');
    const me = await b.api('GET', '/api/me');
    expect(JSON.parse(me.body)).toMatchObject({ user: { username: 'alice' }, csrf: body.csrf });
    expect(await auditKinds()).toContain(AuditKind.LoginSucceeded);
  });

  it('says the same thing whatever was wrong', async () => {
    const b = f.browser();
    const messages = new Set<string>();
    for (const [username, password] of [
      ['alice', 'wrong password 1234'],
      ['nobody', PASSWORD],
      ['x', 'y'],
      ['', ''],
    ] as const) {
      const res = await b.api('POST', '/api/login', { username, password });
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('RELAY_LOGIN_FAILED');
      messages.add(JSON.parse(res.body).error.message as string);
      expect(res.headers['set-cookie']).toBeUndefined();
      f.clock.advance(60_000);
    }
    expect([...messages]).toEqual(['Wrong username, password or code']);
    const events = (await (await f.deps.audit.flush(), f.deps.audit.list({}))).filter((e) => e.kind === AuditKind.LoginFailed);
    expect(events).toHaveLength(4);
    expect(events.every((e) => e.ip === '127.0.0.1')).toBe(true);
    expect(events.find((e) => (e.detail as { username?: string }).username === 'alice')?.userId).toBeTruthy();
  });

  it('refuses a malformed body with 400', async () => {
    const res = await f.browser().api('POST', '/api/login', { username: 'alice' });
    expect(res.statusCode).toBe(400);
    expect(errorCode(res)).toBe('RELAY_BAD_REQUEST');
  });

  it('throttles: a delay (429), then a lockout during which even the right password is refused', async () => {
    const b = f.browser();
    const wrong = () => b.api('POST', '/api/login', { username: 'alice', password: 'not the password!' });
    const right = () => b.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    expect((await wrong()).statusCode).toBe(401);
    expect((await wrong()).statusCode).toBe(401);

    const delayed = await right();
    expect(delayed.statusCode).toBe(429);
    expect(errorCode(delayed)).toBe('RELAY_TOO_MANY_ATTEMPTS');
    expect(delayed.headers['retry-after']).toBe('1');
    expect(JSON.parse(delayed.body).error.message).toBe('Too many attempts; try again in 1 second');
    expect(b.cookie).toBeUndefined();

    f.clock.advance(1_000);
    expect((await wrong()).statusCode).toBe(401);
    f.clock.advance(2_000);
    expect((await wrong()).statusCode).toBe(401); // the 4th failure locks the account

    const locked = await right();
    expect(locked.statusCode).toBe(429);
    expect(locked.headers['retry-after']).toBe(String(15 * 60));
    expect(JSON.parse(locked.body).error.message).toBe('Too many attempts; try again in 15 minutes');
    expect(b.cookie).toBeUndefined();
    expect(await auditKinds()).toContain(AuditKind.LoginLocked);

    f.clock.advance(14 * 60_000);
    expect((await right()).statusCode).toBe(429);
    f.clock.advance(60_000 + 1);
    expect((await right()).statusCode).toBe(200);
    expect(b.cookie).toBeTruthy();
  });

});

describe('two-factor sign-in', () => {
  beforeEach(async () => {
    f = await webFixture();
    await f.users.create({ username: 'alice', password: PASSWORD });
  });

  it('asks for the second factor only after the right password, accepts a code once and a recovery code once', async () => {
    const b = f.browser();
    await b.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    const setup = JSON.parse((await b.api('POST', '/api/totp/setup')).body) as { secret: string; uri: string };
    expect(setup.uri).toMatch(/^otpauth:\/\/totp\//);
    const badEnable = await b.api('POST', '/api/totp/enable', { code: '000000' });
    expect(badEnable.statusCode).toBe(400);
    const enabled = await b.api('POST', '/api/totp/enable', { code: totpCode(setup.secret, f.clock.now) });
    expect(enabled.statusCode).toBe(200);
    const { recoveryCodes } = JSON.parse(enabled.body) as { recoveryCodes: string[] };
    expect(recoveryCodes).toHaveLength(10);
    expect(JSON.parse((await b.api('GET', '/api/me')).body).user.totpEnabled).toBe(true);

    const c = f.browser();
    // Wrong password: the generic answer, not a hint that a code is needed.
    const wrongPw = await c.api('POST', '/api/login', { username: 'alice', password: 'not the password!' });
    expect(errorCode(wrongPw)).toBe('RELAY_LOGIN_FAILED');
    const noCode = await c.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    expect(noCode.statusCode).toBe(401);
    expect(errorCode(noCode)).toBe('RELAY_SECOND_FACTOR_REQUIRED');
    expect(c.cookie).toBeUndefined();
    const badCode = await c.api('POST', '/api/login', { username: 'alice', password: PASSWORD, code: '123456' });
    expect(errorCode(badCode)).toBe('RELAY_LOGIN_FAILED');
    expect(JSON.parse(badCode.body).error.message).toBe('Wrong username, password or code');

    f.clock.advance(30_000);
    const code = totpCode(setup.secret, f.clock.now);
    const ok = await c.api('POST', '/api/login', { username: 'alice', password: PASSWORD, code });
    expect(ok.statusCode).toBe(200);
    // The same code again (a replay) is refused.
    f.clock.advance(5_000);
    const replay = await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD, code });
    expect(errorCode(replay)).toBe('RELAY_LOGIN_FAILED');

    const recovery = recoveryCodes[0]!;
    f.clock.advance(5_000);
    const r1 = await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD, code: recovery });
    expect(r1.statusCode).toBe(200);
    f.clock.advance(5_000);
    const r2 = await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD, code: recovery });
    expect(errorCode(r2)).toBe('RELAY_LOGIN_FAILED');
    expect(await auditKinds()).toEqual(expect.arrayContaining([AuditKind.TotpEnabled, AuditKind.RecoveryCodeUsed]));

    // Turning it off needs the password.
    expect(errorCode(await c.api('POST', '/api/totp/disable', { password: 'nope nope nope' }))).toBe('RELAY_WRONG_PASSWORD');
    expect((await c.api('POST', '/api/totp/disable', { password: PASSWORD })).statusCode).toBe(200);
    f.clock.advance(5_000);
    expect((await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD })).statusCode).toBe(200);
  });

  it('enabling two-factor ends the other sessions', async () => {
    const a = f.browser();
    const other = f.browser();
    await a.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    await other.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    const { secret } = JSON.parse((await a.api('POST', '/api/totp/setup')).body) as { secret: string };
    expect((await a.api('POST', '/api/totp/enable', { code: totpCode(secret, f.clock.now) })).statusCode).toBe(200);
    expect((await a.api('GET', '/api/me')).statusCode).toBe(200);
    expect((await other.api('GET', '/api/me')).statusCode).toBe(401);
  });
});

describe('sessions', () => {
  beforeEach(async () => {
    f = await webFixture();
  });

  it('logout ends the session at once: the old cookie gets 401, and device sessions opened from it end too', async () => {
    const { user, b } = await f.signedIn('alice');
    const me = JSON.parse((await b.api('GET', '/api/me')).body) as { csrf: string };
    const cookie = b.cookie!;
    const dashboard = (await f.sessions.listForUser(user.id)).find((s) => s.kind === 'dashboard')!;
    const device = await f.sessions.issue({ kind: 'device', userId: user.id, deviceId: 'd1', parentId: dashboard.id, ttlMs: 3600_000 });

    const out = await b.api('POST', '/api/logout');
    expect(out.statusCode).toBe(200);
    expect(String(out.headers['set-cookie'])).toMatch(/^porthole_session=; .*Max-Age=0/);

    const replay = f.browser();
    replay.cookie = cookie;
    replay.csrf = me.csrf;
    const res = await replay.api('GET', '/api/me');
    expect(res.statusCode).toBe(401);
    expect(errorCode(res)).toBe('RELAY_UNAUTHENTICATED');
    expect(await f.sessions.verify(device.token)).toBeNull();
    expect(await auditKinds()).toContain(AuditKind.Logout);
  });

  it('a password change ends every other session and re-issues this one', async () => {
    const { user, b } = await f.signedIn('alice');
    const other = f.browser();
    await other.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    const oldCookie = b.cookie;

    const wrong = await b.api('POST', '/api/password', { old: 'not it at all', new: 'another good passphrase 7' });
    expect(wrong.statusCode).toBe(403);
    expect(errorCode(wrong)).toBe('RELAY_WRONG_PASSWORD');
    const weak = await b.api('POST', '/api/password', { old: PASSWORD, new: 'password1' });
    expect(errorCode(weak)).toBe('RELAY_WEAK_PASSWORD');

    f.clock.advance(1);
    const res = await b.api('POST', '/api/password', { old: PASSWORD, new: 'another good passphrase 7' });
    expect(res.statusCode).toBe(200);
    expect(b.cookie).toBeTruthy();
    expect(b.cookie).not.toBe(oldCookie);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);
    expect((await other.api('GET', '/api/me')).statusCode).toBe(401);
    const stale = f.browser();
    stale.cookie = oldCookie;
    expect((await stale.api('GET', '/api/me')).statusCode).toBe(401);
    expect((await f.sessions.listForUser(user.id)).length).toBe(1);
    // The new password signs in; the old one does not.
    expect((await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD })).statusCode).toBe(401);
    expect((await f.browser().api('POST', '/api/login', { username: 'alice', password: 'another good passphrase 7' })).statusCode).toBe(200);
  });

  it('a session older than the password is dead even if nobody revoked it (changed on the CLI)', async () => {
    const { user, b } = await f.signedIn('alice');
    f.clock.advance(1_000);
    await f.users.setPassword(user.id, 'another good passphrase 7');
    expect((await b.api('GET', '/api/me')).statusCode).toBe(401);
  });

  it('lists the user\'s own sessions and revokes only their own', async () => {
    const { b } = await f.signedIn('alice');
    const phone = f.browser();
    await phone.api('POST', '/api/login', { username: 'alice', password: PASSWORD }, { headers: { 'user-agent': 'Phone/1.0' } });
    const { b: bob } = await f.signedIn('bob');

    const list = JSON.parse((await b.api('GET', '/api/sessions')).body) as { id: string; current: boolean; userAgent: string | null; kind: string; ip: string }[];
    expect(list).toHaveLength(2);
    expect(list.filter((s) => s.current)).toHaveLength(1);
    expect(list.every((s) => s.kind === 'dashboard' && s.ip === '127.0.0.1')).toBe(true);
    const phoneSession = list.find((s) => s.userAgent === 'Phone/1.0')!;
    expect(phoneSession.current).toBe(false);

    // Bob cannot end Alice's session: 404, and it lives on.
    const bobTry = await bob.api('DELETE', `/api/sessions/${phoneSession.id}`);
    expect(bobTry.statusCode).toBe(404);
    expect((await phone.api('GET', '/api/me')).statusCode).toBe(200);

    expect((await b.api('DELETE', `/api/sessions/${phoneSession.id}`)).statusCode).toBe(200);
    expect((await phone.api('GET', '/api/me')).statusCode).toBe(401);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);

    const current = list.find((s) => s.current)!;
    const self = await b.api('DELETE', `/api/sessions/${current.id}`);
    expect(JSON.parse(self.body)).toEqual({ ok: true, current: true });
    expect((await b.api('GET', '/api/me')).statusCode).toBe(401);
  });

  it('refuses tampered tokens, alg:none tokens and tokens signed with another key', async () => {
    const { user, b } = await f.signedIn('alice');
    const token = b.cookie!;
    const [h, p, s] = token.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const other = await f.sessions.issue({ kind: 'dashboard', userId: user.id, ttlMs: 3600_000 });
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

    const forged: Record<string, string> = {
      flippedSignature: `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`,
      otherPayloadSameSignature: `${h}.${b64({ ...payload, sid: other.session.id })}.${s}`,
      algNone: `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`,
      algNoneWithSignature: `${b64({ alg: 'none', typ: 'JWT' })}.${p}.${s}`,
      hs512SameKey: `${b64({ alg: 'HS512', typ: 'JWT' })}.${p}.${createHmac('sha512', f.key).update(`${b64({ alg: 'HS512', typ: 'JWT' })}.${p}`).digest('base64url')}`,
      otherKey: await new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new Uint8Array(32).fill(7)),
      truncated: `${h}.${p}`,
      garbage: 'not-a-token',
    };
    for (const [name, t] of Object.entries(forged)) {
      const res = await f.browser().api('GET', '/api/me', undefined, { headers: { cookie: `porthole_session=${t}` } });
      expect(res.statusCode, name).toBe(401);
      // The dead cookie is cleared.
      expect(String(res.headers['set-cookie']), name).toMatch(/^porthole_session=; .*Max-Age=0/);
    }
    // The genuine one still works.
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);
  });

  it('re-issues an expired short-lived token while the session lives, as a new cookie', async () => {
    const { b } = await f.signedIn('alice');
    const before = b.cookie;
    f.clock.advance(11 * 60_000);
    const res = await b.api('GET', '/api/me');
    expect(res.statusCode).toBe(200);
    expect(String(res.headers['set-cookie'])).toMatch(/^porthole_session=.+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+$/);
    expect(b.cookie).not.toBe(before);
    f.clock.advance(8 * 24 * 3600_000);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(401);
  });

  it('ignores the dashboard cookie on any host but the relay\'s own', async () => {
    const { b } = await f.signedIn('alice');
    for (const host of ['evil.test', 'mk3s.relay.test:8080', '127.0.0.1:8080']) {
      expect((await b.api('GET', '/api/me', undefined, { host })).statusCode, host).toBe(401);
    }
  });
});

describe('administration', () => {
  beforeEach(async () => {
    f = await webFixture();
  });

  it('lets admins list, create and disable users (whose sessions end) and nobody else', async () => {
    const { b: admin } = await f.signedIn('root', { isAdmin: true });
    const { user: bob, b: bobB } = await f.signedIn('bob');

    expect((await bobB.api('GET', '/api/users')).statusCode).toBe(403);
    expect(errorCode(await bobB.api('POST', '/api/users', { username: 'eve', password: PASSWORD }))).toBe('RELAY_FORBIDDEN');
    expect((await f.browser().api('GET', '/api/users')).statusCode).toBe(401);

    const created = await admin.api('POST', '/api/users', { username: 'carol', password: PASSWORD });
    expect(created.statusCode).toBe(201);
    expect(JSON.parse(created.body)).toMatchObject({ username: 'carol', isAdmin: false });
    expect(errorCode(await admin.api('POST', '/api/users', { username: 'carol', password: PASSWORD }))).toBe('RELAY_USERNAME_TAKEN');
    const list = JSON.parse((await admin.api('GET', '/api/users')).body) as { username: string }[];
    expect(list.map((u) => u.username)).toEqual(['bob', 'carol', 'root']);
    expect(JSON.stringify(list)).not.toContain('argon2');

    expect((await bobB.api('GET', '/api/me')).statusCode).toBe(200);
    expect((await admin.api('POST', `/api/users/${bob.id}/disable`)).statusCode).toBe(200);
    expect((await bobB.api('GET', '/api/me')).statusCode).toBe(401);
    expect((await f.browser().api('POST', '/api/login', { username: 'bob', password: PASSWORD })).statusCode).toBe(401);
    expect(await auditKinds()).toEqual(expect.arrayContaining([AuditKind.UserCreated, AuditKind.UserDisabled]));
  });
});
