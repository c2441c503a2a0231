import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpPortServer, Http01Challenges, redirectTarget } from '../src/tls/http-port.js';
import { httpGet } from './tls-helpers.js';

const opts = { domain: 'relay.example', publicUrl: 'https://relay.example' };

describe('redirectTarget', () => {
  it.each([
    ['relay.example', '/', 'https://relay.example/'],
    ['Relay.Example:80', '/login?next=/x', 'https://relay.example/login?next=/x'],
    ['mk3s.relay.example', '/webcam/?action=stream', 'https://mk3s.relay.example/webcam/?action=stream'],
    ['mk3s.relay.example.', '/a', 'https://mk3s.relay.example/a'],
    ['other.example', '/a?b', 'https://relay.example/a?b'],
    ['xrelay.example', '/', 'https://relay.example/'],
    ['bad_label.relay.example', '/', 'https://relay.example/'],
    [undefined, '/', 'https://relay.example/'],
    ['203.0.113.7', '/p', 'https://relay.example/p'],
  ])('Host %s, %s → %s', (host, target, want) => {
    expect(redirectTarget(host, target, opts)).toBe(want);
  });

  it('names the public HTTPS port when it is not 443', () => {
    expect(redirectTarget('relay.example:8080', '/x', { domain: 'relay.example', publicUrl: 'https://relay.example:8443' })).toBe('https://relay.example:8443/x');
  });
});

describe('the port-80 listener', () => {
  const challenges = new Http01Challenges();
  const server = createHttpPortServer({ challenges, ...opts });
  let port: number;
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('answers a pending challenge (GET and HEAD) and nothing else under the challenge path', async () => {
    challenges.set('abc_DEF-1', 'abc_DEF-1.key');
    const get = await httpGet(port, 'relay.example', '/.well-known/acme-challenge/abc_DEF-1');
    expect(get).toMatchObject({ status: 200, body: 'abc_DEF-1.key' });
    expect(get.headers['content-type']).toBe('text/plain');
    const head = await httpGet(port, 'relay.example', '/.well-known/acme-challenge/abc_DEF-1', 'HEAD');
    expect(head).toMatchObject({ status: 200, body: '' });
    expect((await httpGet(port, 'relay.example', '/.well-known/acme-challenge/abc_DEF-1', 'POST')).status).toBe(404);
    expect((await httpGet(port, 'relay.example', '/.well-known/acme-challenge/other')).status).toBe(404);
    expect((await httpGet(port, 'relay.example', '/.well-known/acme-challenge/../x')).status).toBe(404);
    challenges.delete('abc_DEF-1');
    expect(challenges.size).toBe(0);
  });

  it('redirects a WebSocket upgrade too, then closes', async () => {
    const head = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.write('GET /_porthole/agent HTTP/1.1\r\nHost: relay.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      });
      let text = '';
      s.setEncoding('utf8');
      s.on('data', (c: string) => (text += c));
      s.on('end', () => resolve(text));
      s.on('error', reject);
    });
    expect(head).toMatch(/^HTTP\/1\.1 301 /);
    expect(head).toContain('location: https://relay.example/_porthole/agent\r\n');
  });
});
