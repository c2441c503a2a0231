import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PASSWORD, totpCode, webFixture, type WebFixture } from './web-helpers.js';

let f: WebFixture;
beforeEach(async () => {
  f = await webFixture();
});
afterEach(async () => {
  await f.close();
});

/** Every page: a whole document, phone viewport, no script of any kind, labelled inputs. */
function expectPlainPage(body: string): void {
  expect(body).toMatch(/^<!doctype html><html lang="en">/);
  expect(body).toContain('<meta name="viewport" content="width=device-width,initial-scale=1">');
  expect(body).not.toMatch(/<script/i);
  expect(body).not.toMatch(/\son[a-z]+=/i); // no inline event handlers
  expect(body).not.toMatch(/javascript:/i);
  for (const m of body.matchAll(/<input ([^>]*)>/g)) {
    const attrs = m[1]!;
    if (/type="hidden"|\shidden(\s|$)/.test(attrs)) continue;
    const id = /id="([^"]+)"/.exec(attrs)?.[1];
    expect(id, attrs).toBeTruthy();
    expect(body).toContain(`<label for="${id}">`);
  }
}

const csrfIn = (body: string) => /name="_csrf" value="([^"]+)"/.exec(body)?.[1];

describe('first run and sign-in pages', () => {
  it('sends a stranger to setup while there is no user, then to sign-in', async () => {
    const b = f.browser();
    const home = await b.page('GET', '/');
    expect(home.statusCode).toBe(302);
    expect(home.headers.location).toBe('/setup');
    expect((await b.page('GET', '/login')).headers.location).toBe('/setup');

    const token = f.setup.current()!;
    const setup = await b.page('GET', `/setup?token=${token}`);
    expect(setup.statusCode).toBe(200);
    expectPlainPage(setup.body);
    expect(setup.body).toContain(`<input type="hidden" name="token" value="${token}">`);

    const mismatch = await b.page('POST', '/setup', { token, username: 'admin', password: PASSWORD, confirm: 'other' });
    expect(mismatch.statusCode).toBe(400);
    expect(mismatch.body).toContain('the two passwords differ');
    const wrong = await b.page('POST', '/setup', { token: 'nope', username: 'admin', password: PASSWORD, confirm: PASSWORD });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.body).toContain('The setup link is not valid');

    const done = await b.page('POST', '/setup', { token, username: 'admin', password: PASSWORD, confirm: PASSWORD });
    expect(done.statusCode).toBe(303);
    expect(done.headers.location).toBe('/');
    expect(b.cookie).toBeTruthy();
    const printers = await b.page('GET', '/');
    expect(printers.statusCode).toBe(200);
    expect(printers.body).toContain('No printers yet');

    const stranger = f.browser();
    expect((await stranger.page('GET', '/')).headers.location).toBe('/login');
    expect((await stranger.page('GET', `/setup?token=${token}`)).headers.location).toBe('/login');
  });

  it('signs in with the form, shows the generic error, the code field and the lockout message', async () => {
    await f.users.create({ username: 'alice', password: PASSWORD });
    const b = f.browser();
    const form = await b.page('GET', '/login?next=%2Faccount');
    expect(form.statusCode).toBe(200);
    expectPlainPage(form.body);
    expect(form.body).toContain('name="next" value="/account"');
    expect(form.body).toContain('autocomplete="current-password"');
    expect(form.body).not.toContain('name="code"');

    const bad = await b.page('POST', '/login', { username: 'alice', password: 'wrong wrong wrong', next: '/account' });
    expect(bad.statusCode).toBe(401);
    expect(bad.body).toContain('Wrong username, password or code');
    expect(bad.body).toContain('value="alice"');
    expect(bad.body).not.toContain('wrong wrong wrong');

    const ok = await b.page('POST', '/login', { username: 'alice', password: PASSWORD, next: '//evil.example/' });
    expect(ok.statusCode).toBe(303);
    expect(ok.headers.location).toBe('/');
    expect(b.cookie).toBeTruthy();
    expect((await b.page('GET', '/login?next=%2Faccount')).headers.location).toBe('/account');

    // Two-factor: the form asks for the code after the right password.
    const { secret } = await f.users.beginTotp((await f.users.findByUsername('alice'))!.id);
    await f.users.enableTotp((await f.users.findByUsername('alice'))!.id, totpCode(secret, f.clock.now));
    f.clock.advance(30_000);
    const c = f.browser();
    const needCode = await c.page('POST', '/login', { username: 'alice', password: PASSWORD, next: '/' });
    expect(needCode.statusCode).toBe(401);
    expect(needCode.body).toContain('name="code"');
    expect(needCode.body).toContain('authenticator app');
    const withCode = await c.page('POST', '/login', { username: 'alice', password: PASSWORD, code: totpCode(secret, f.clock.now), next: '/' });
    expect(withCode.statusCode).toBe(303);

    // Lockout: the page says how long.
    const d = f.browser();
    for (let i = 0; i < 10; i++) {
      await d.page('POST', '/login', { username: 'alice', password: 'wrong wrong wrong', next: '/' });
      f.clock.advance(61_000);
    }
    const locked = await d.page('POST', '/login', { username: 'alice', password: PASSWORD, next: '/' });
    expect(locked.statusCode).toBe(429);
    expect(locked.headers['retry-after']).toBeDefined();
    expect(locked.body).toMatch(/Too many attempts; try again in \d+ minutes/);
    expect(d.cookie).toBeUndefined();
  });

  it('signs out with a POST form; GET /logout only shows the form', async () => {
    const { b } = await f.signedIn('alice');
    const page = await b.page('GET', '/logout');
    expect(page.statusCode).toBe(200);
    expectPlainPage(page.body);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);
    b.csrf = csrfIn(page.body);
    const out = await b.page('POST', '/logout', {});
    expect(out.statusCode).toBe(303);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(401);
  });
});

describe('printers page', () => {
  it('lists the user\'s printers with state and an Open button that redirects to the handoff URL', async () => {
    const { user, b } = await f.signedIn('alice');
    const { device } = await f.deps.devices.create({ name: 'Prusa <MK3S>', slug: 'mk3s' });
    const { device: other } = await f.deps.devices.create({ name: 'Not mine', slug: 'other' });
    await f.db.prisma.membership.create({ data: { userId: user.id, deviceId: device.id, role: 'operator' } });
    f.online.set(device.id, { online: false, since: new Date(f.clock.now - 3_600_000) });

    const page = await b.page('GET', '/');
    expect(page.statusCode).toBe(200);
    expectPlainPage(page.body);
    expect(page.body).toContain('Prusa &lt;MK3S&gt;');
    expect(page.body).not.toContain('Prusa <MK3S>');
    expect(page.body).not.toContain('Not mine');
    expect(page.body).toContain('Offline');
    expect(page.body).toContain('60 minutes ago');
    expect(page.body).toContain(`action="/devices/${device.id}/open"`);
    const csrf = csrfIn(page.body);
    expect(csrf).toBe(b.csrf);

    const open = await b.page('POST', `/devices/${device.id}/open`, {});
    expect(open.statusCode).toBe(303);
    const url = new URL(String(open.headers.location));
    expect(url.origin).toBe('http://mk3s.relay.test:8080');
    expect(f.deps.handoffs.take(url.searchParams.get('code')!, device.id)).toMatchObject({ userId: user.id });

    const notMine = await b.page('POST', `/devices/${other.id}/open`, {});
    expect(notMine.statusCode).toBe(404);
    expect(notMine.headers['content-type']).toMatch(/^text\/html/);
    const noToken = await b.page('POST', `/devices/${device.id}/open`, {}, { noCsrf: true });
    expect(noToken.statusCode).toBe(403);
  });
});

describe('pairing page', () => {
  it('shows what is pairing and approves or denies it', async () => {
    const { b } = await f.signedIn('alice');
    expect((await f.browser().page('GET', '/pair?code=ABCD-EFGH')).headers.location).toBe('/login?next=%2Fpair%3Fcode%3DABCD-EFGH');

    const started = f.pairing.start({ name: '<b>voron</b>', agent: '0.1.0', remote: '203.0.113.9' });
    const page = await b.page('GET', `/pair?code=${started.code}`);
    expect(page.statusCode).toBe(200);
    expectPlainPage(page.body);
    expect(page.body).toContain('&lt;b&gt;voron&lt;/b&gt;');
    expect(page.body).toContain('203.0.113.9');
    expect(page.body).toContain('value="approve"');
    expect(page.body).toContain('value="deny"');

    const missing = await b.page('GET', '/pair?code=ZZZZ-ZZZZ');
    expect(missing.statusCode).toBe(404);
    expect(missing.body).toContain('No pending pairing');

    const taken = await b.page('POST', '/pair', { code: started.code, name: 'Voron', slug: 'admin', action: 'approve' });
    expect(taken.statusCode).toBe(400);
    expect(taken.body).toContain('reserved');
    const ok = await b.page('POST', '/pair', { code: started.code, name: 'Voron', slug: 'voron', action: 'approve' });
    expect(ok.statusCode).toBe(201);
    expect(ok.body).toContain('http://voron.relay.test:8080');

    const second = f.pairing.start({ name: 'ender', agent: '0.1.0', remote: '203.0.113.9' });
    const denied = await b.page('POST', '/pair', { code: second.code, action: 'deny' });
    expect(denied.statusCode).toBe(200);
    expect(denied.body).toContain('Pairing denied');
    expect(f.pairing.lookup(second.code)).toBeUndefined();
  });
});

describe('account page', () => {
  it('changes the password, ends a session and turns two-factor on and off', async () => {
    const { b } = await f.signedIn('alice');
    const phone = f.browser();
    await phone.api('POST', '/api/login', { username: 'alice', password: PASSWORD }, { headers: { 'user-agent': 'PhoneBrowser/2' } });

    const page = await b.page('GET', '/account');
    expect(page.statusCode).toBe(200);
    expectPlainPage(page.body);
    expect(page.body).toContain('PhoneBrowser/2');
    expect(page.body).toContain('(this one)');

    // End the phone's session.
    const phoneId = (await f.sessions.listForUser((await f.users.findByUsername('alice'))!.id)).find((s) => s.userAgent === 'PhoneBrowser/2')!.id;
    const ended = await b.page('POST', '/account/sessions/revoke', { id: phoneId });
    expect(ended.statusCode).toBe(303);
    expect(ended.headers.location).toBe('/account?done=session');
    expect((await phone.api('GET', '/api/me')).statusCode).toBe(401);

    // Password: mismatch, then right.
    const mismatch = await b.page('POST', '/account/password', { old: PASSWORD, new: 'another good passphrase 7', confirm: 'x' });
    expect(mismatch.statusCode).toBe(400);
    const changed = await b.page('POST', '/account/password', { old: PASSWORD, new: 'another good passphrase 7', confirm: 'another good passphrase 7' });
    expect(changed.statusCode).toBe(303);
    expect(changed.headers.location).toBe('/account?done=password');
    const after = await b.page('GET', '/account?done=password');
    expect(after.statusCode).toBe(200);
    expect(after.body).toContain('Password changed');
    b.csrf = csrfIn(after.body);

    // Two-factor on: the key is shown, a code turns it on, recovery codes shown once.
    const setup = await b.page('POST', '/account/totp/setup', {});
    expect(setup.statusCode).toBe(200);
    expectPlainPage(setup.body);
    const secret = /name="secret" value="([A-Z2-7]+)"/.exec(setup.body)![1]!;
    expect(setup.body).toContain('href="otpauth://totp/');
    const wrongCode = await b.page('POST', '/account/totp/enable', { code: '000000', secret });
    expect(wrongCode.statusCode).toBe(400);
    expect(wrongCode.body).toContain(secret.slice(0, 4));
    const on = await b.page('POST', '/account/totp/enable', { code: totpCode(secret, f.clock.now), secret });
    expect(on.statusCode).toBe(200);
    expect(on.body.match(/<li>[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}<\/li>/g)).toHaveLength(10);
    expect((await b.page('GET', '/account')).body).toContain('Two-factor sign-in is <strong>on</strong>');

    const off = await b.page('POST', '/account/totp/disable', { password: 'another good passphrase 7' });
    expect(off.statusCode).toBe(303);
    expect((await b.page('GET', '/account')).body).toContain('Two-factor sign-in is <strong>off</strong>');
  });
});
