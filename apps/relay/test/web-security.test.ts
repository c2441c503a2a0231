import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { contentSecurityPolicy } from '../src/web/security.js';
import { errorCode, HOST, ORIGIN, PASSWORD, webFixture, type WebFixture } from './web-helpers.js';

let f: WebFixture;
afterEach(async () => {
  await f?.close();
});

describe('CSRF and same-origin checks', () => {
  it('refuses a signed-in state change without the CSRF token, or with a wrong one, and the session lives on', async () => {
    f = await webFixture();
    const { b } = await f.signedIn('alice');
    for (const headers of [{}, { 'x-csrf-token': 'wrong' }, { 'x-csrf-token': `${b.csrf}x` }, { 'x-csrf-token': '' }] as Record<string, string>[]) {
      const res = await b.api('POST', '/api/logout', undefined, { noCsrf: true, headers });
      expect(res.statusCode).toBe(403);
      expect(errorCode(res)).toBe('RELAY_CSRF');
    }
    // Another session's token does not work either.
    const other = f.browser();
    await other.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    expect(other.csrf).not.toBe(b.csrf);
    const crossed = await b.api('POST', '/api/logout', undefined, { noCsrf: true, headers: { 'x-csrf-token': other.csrf! } });
    expect(crossed.statusCode).toBe(403);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);
    expect((await b.api('POST', '/api/logout')).statusCode).toBe(200);
  });

  it.each([
    ['another site', 'https://evil.example'],
    ['a printer UI on a device subdomain', 'http://mk3s.relay.test:8080'],
    ['the right host over the wrong scheme', 'https://relay.test:8080'],
    ['the right host on another port', 'http://relay.test:9090'],
    ['an opaque origin', 'null'],
  ])('refuses a POST whose Origin is %s, signed in or not', async (_what, origin) => {
    f = await webFixture();
    await f.users.create({ username: 'alice', password: PASSWORD });
    const anon = await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD }, { headers: { origin } });
    expect(anon.statusCode).toBe(403);
    expect(errorCode(anon)).toBe('RELAY_CSRF');
    expect(anon.headers['set-cookie']).toBeUndefined();
    const b = f.browser();
    await b.api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    expect((await b.api('POST', '/api/logout', undefined, { headers: { origin } })).statusCode).toBe(403);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);
  });

  it('refuses what the browser marks as coming from another site (Sec-Fetch-Site)', async () => {
    f = await webFixture();
    await f.users.create({ username: 'alice', password: PASSWORD });
    for (const site of ['same-site', 'cross-site']) {
      const res = await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD }, { headers: { 'sec-fetch-site': site } });
      expect(res.statusCode, site).toBe(403);
    }
    const ok = await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD }, { headers: { 'sec-fetch-site': 'same-origin' } });
    expect(ok.statusCode).toBe(200);
  });

  it('takes only JSON bodies on the API: form and text bodies get 415 before anything is checked', async () => {
    f = await webFixture();
    await f.users.create({ username: 'alice', password: PASSWORD });
    const b = f.browser();
    for (const [type, payload] of [
      ['application/x-www-form-urlencoded', `username=alice&password=${encodeURIComponent(PASSWORD)}`],
      ['text/plain', JSON.stringify({ username: 'alice', password: PASSWORD })],
      ['multipart/form-data; boundary=x', '--x\r\ncontent-disposition: form-data; name="username"\r\n\r\nalice\r\n--x--\r\n'],
    ]) {
      const res = await b.send('POST', '/api/login', { host: HOST, origin: ORIGIN, 'content-type': type! }, payload);
      expect(res.statusCode, type).toBe(415);
      expect(errorCode(res)).toBe('RELAY_UNSUPPORTED_MEDIA_TYPE');
    }
    const noType = await b.send('POST', '/api/login', { host: HOST, origin: ORIGIN }, JSON.stringify({ username: 'alice', password: PASSWORD }));
    expect(noType.statusCode).toBe(415);
    expect(b.cookie).toBeUndefined();
  });

  it('refuses bad JSON and oversized bodies with catalogue errors', async () => {
    f = await webFixture();
    const b = f.browser();
    const bad = await b.send('POST', '/api/login', { host: HOST, origin: ORIGIN, 'content-type': 'application/json' }, '{"username":');
    expect(bad.statusCode).toBe(400);
    expect(errorCode(bad)).toBe('RELAY_BAD_REQUEST');
    const big = await b.send('POST', '/api/login', { host: HOST, origin: ORIGIN, 'content-type': 'application/json' }, JSON.stringify({ username: 'a', password: 'x'.repeat(100_000) }));
    expect(big.statusCode).toBe(413);
    expect(errorCode(big)).toBe('RELAY_PAYLOAD_TOO_LARGE');
  });

  it('checks forms on pages the same way: the _csrf field, the Origin, the content type', async () => {
    f = await webFixture();
    const { b } = await f.signedIn('alice');
    const noToken = await b.page('POST', '/logout', {}, { noCsrf: true });
    expect(noToken.statusCode).toBe(403);
    expect(noToken.headers['content-type']).toMatch(/^text\/html/);
    expect(noToken.body).toContain('cross-site');
    const wrongToken = await b.page('POST', '/logout', { _csrf: 'nope' }, { noCsrf: true });
    expect(wrongToken.statusCode).toBe(403);
    const wrongOrigin = await b.page('POST', '/logout', {}, { headers: { origin: 'http://mk3s.relay.test:8080' } });
    expect(wrongOrigin.statusCode).toBe(403);
    const json = await b.send('POST', '/logout', { host: HOST, origin: ORIGIN, 'content-type': 'application/json' }, JSON.stringify({ _csrf: b.csrf }));
    expect(json.statusCode).toBe(415);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);
    const ok = await b.page('POST', '/logout', {});
    expect(ok.statusCode).toBe(303);
    expect(ok.headers.location).toBe('/login');
    expect((await b.api('GET', '/api/me')).statusCode).toBe(401);
  });

  it('answers 401 JSON on the API and a redirect to sign-in on pages when not signed in', async () => {
    f = await webFixture();
    await f.users.create({ username: 'alice', password: PASSWORD });
    const b = f.browser();
    for (const [method, url] of [
      ['GET', '/api/me'],
      ['GET', '/api/devices'],
      ['GET', '/api/sessions'],
      ['POST', '/api/logout'],
      ['POST', '/api/password'],
      ['POST', '/api/totp/setup'],
      ['GET', '/api/users'],
      ['POST', '/api/devices/x/open'],
      ['GET', '/api/pairing/ABCD-EFGH'],
    ] as const) {
      const res = await b.api(method, url, method === 'POST' ? {} : undefined);
      expect(res.statusCode, `${method} ${url}`).toBe(401);
      expect(errorCode(res)).toBe('RELAY_UNAUTHENTICATED');
    }
    const page = await b.page('GET', '/account');
    expect(page.statusCode).toBe(302);
    expect(page.headers.location).toBe('/login?next=%2Faccount');
    const post = await b.page('POST', '/devices/x/open', {});
    expect(post.statusCode).toBe(303);
    expect(post.headers.location).toBe('/login?next=%2F');
  });

  it('answers unknown API routes with a JSON 404', async () => {
    f = await webFixture();
    const res = await f.browser().api('GET', '/api/nope');
    expect(res.statusCode).toBe(404);
    expect(errorCode(res)).toBe('RELAY_NOT_FOUND');
  });
});

describe('over a real socket', () => {
  function request(port: number, method: string, path: string, headers: Record<string, string>, body?: string) {
    return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path, headers: { host: HOST, ...headers } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  it('signs in, uses the cookie and the CSRF token, and signs out on 127.0.0.1', async () => {
    f = await webFixture();
    await f.users.create({ username: 'alice', password: PASSWORD });
    await f.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (f.app.server.address() as AddressInfo).port;
    const json = { 'content-type': 'application/json', origin: ORIGIN };

    const login = await request(port, 'POST', '/api/login', json, JSON.stringify({ username: 'alice', password: PASSWORD }));
    expect(login.status).toBe(200);
    const setCookie = login.headers['set-cookie'] ?? [];
    expect(setCookie).toHaveLength(1);
    const cookie = setCookie[0]!.split(';')[0]!;
    const { csrf } = JSON.parse(login.body) as { csrf: string };

    const me = await request(port, 'GET', '/api/me', { cookie });
    expect(me.status).toBe(200);
    expect(me.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect((await request(port, 'POST', '/api/logout', { cookie, origin: ORIGIN })).status).toBe(403);
    expect((await request(port, 'POST', '/api/logout', { cookie, origin: ORIGIN, 'x-csrf-token': csrf })).status).toBe(200);
    expect((await request(port, 'GET', '/api/me', { cookie })).status).toBe(401);
  });
});

describe('security headers', () => {
  const expectCommon = (h: Record<string, unknown>) => {
    const csp = String(h['content-security-policy']);
    for (const d of [
      "default-src 'self'",
      "script-src 'self'",
      "img-src 'self' data: blob:",
      "connect-src 'self'",
      "frame-ancestors 'none'",
      "base-uri 'none'",
      "form-action 'self' http://*.relay.test:8080",
      "object-src 'none'",
    ]) {
      expect(csp).toContain(d);
    }
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    expect(h['x-content-type-options']).toBe('nosniff');
    expect(h['x-frame-options']).toBe('DENY');
    expect(h['referrer-policy']).toBe('no-referrer');
  };

  it('are on API answers, pages, errors, 404s and the app\'s own routes; no HSTS without TLS', async () => {
    f = await webFixture();
    const b = f.browser();
    for (const res of [
      await b.api('GET', '/api/setup/status'),
      await b.api('GET', '/api/me'),
      await b.api('GET', '/api/nope'),
      await b.page('GET', '/login'),
      await b.page('GET', '/nope'),
      await b.page('GET', '/healthz'),
      await b.api('POST', '/api/login', { username: 'x', password: 'y' }, { headers: { origin: 'https://evil.example' } }),
    ]) {
      expectCommon(res.headers);
      expect(res.headers['strict-transport-security']).toBeUndefined();
    }
    expect((await b.api('GET', '/api/setup/status')).headers['cache-control']).toBe('no-store');
    expect((await b.api('GET', '/api/me')).headers['cache-control']).toBe('no-store');
    expect((await b.page('GET', '/login')).headers['cache-control']).toBe('no-store');
  });

  it('add HSTS and make the cookie Secure and __Host- over TLS', async () => {
    f = await webFixture({ secureCookies: true });
    const res = await f.browser().api('GET', '/api/setup/status');
    expectCommon(res.headers);
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    const { b } = await f.signedIn('alice');
    expect(b.cookie).toBeTruthy();
    const login = await f.browser().api('POST', '/api/login', { username: 'alice', password: PASSWORD });
    const cookie = String(login.headers['set-cookie']);
    expect(cookie).toMatch(/^__Host-porthole_session=/);
    expect(cookie).toContain('; Secure');
    expect(cookie).toContain('Path=/');
    expect(cookie).not.toMatch(/Domain=/i);
    // The plain-name cookie is not read over TLS.
    const plain = await f.browser().api('GET', '/api/me', undefined, { headers: { cookie: `porthole_session=${b.cookie}` } });
    expect(plain.statusCode).toBe(401);
    expect((await b.api('GET', '/api/me')).statusCode).toBe(200);
  });

  it('CSP takes the scheme and port of the public URL for device origins', () => {
    expect(contentSecurityPolicy({ publicUrl: 'https://relay.example', domain: 'relay.example' })).toMatch(
      /form-action 'self' https:\/\/\*\.relay\.example(;|$)/,
    );
  });
});
