import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { forwardHeaders, requestHead, responseHeaders, stripRelayCookies } from '../src/proxy/headers.js';

function fakeReq(raw: string[], remote = '203.0.113.9'): IncomingMessage {
  const socket = new Socket();
  Object.defineProperty(socket, 'remoteAddress', { value: `::ffff:${remote}` });
  const req = new IncomingMessage(socket);
  req.rawHeaders = raw;
  return req;
}

describe('forwardHeaders', () => {
  const service = { name: 'ui' };
  it('drops hop-by-hop, Connection-listed, relay cookies and Authorization; sets X-Forwarded-*', () => {
    const h = forwardHeaders(
      fakeReq([
        'Host', 'mk3s.relay.example',
        'Connection', 'keep-alive, X-Secret-Hop',
        'X-Secret-Hop', '1',
        'Keep-Alive', 'timeout=5',
        'TE', 'trailers',
        'Transfer-Encoding', 'chunked',
        'Authorization', 'Bearer relay-token',
        'Cookie', 'porthole_dev=abc; session_P5000=octo',
        'Cookie', '__Host-porthole=zzz',
        'X-Forwarded-For', '6.6.6.6',
        'X-Forwarded-Host', 'evil.example',
        'Forwarded', 'for=6.6.6.6',
        'X-Api-Key', 'printer-key',
      ]),
      { service, trustProxy: false },
    );
    expect(h).toEqual({
      host: 'mk3s.relay.example',
      cookie: 'session_P5000=octo',
      'x-api-key': 'printer-key',
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'mk3s.relay.example',
    });
  });
  it('passes Authorization only for a service that asks, and uses its Host header', () => {
    const h = forwardHeaders(fakeReq(['Host', 'p.localhost', 'Authorization', 'Digest x']), {
      service: { name: 'ui', passAuthorization: true, hostHeader: '127.0.0.1:8080' },
      trustProxy: false,
    });
    expect(h.authorization).toBe('Digest x');
    expect(h.host).toBe('127.0.0.1:8080');
    expect(h['x-forwarded-host']).toBe('p.localhost');
  });
  it('appends to a trusted proxy chain', () => {
    const h = forwardHeaders(fakeReq(['Host', 'p.localhost', 'X-Forwarded-For', '198.51.100.1', 'X-Forwarded-Proto', 'https'], '10.0.0.2'), {
      service,
      trustProxy: true,
    });
    expect(h['x-forwarded-for']).toBe('198.51.100.1, 10.0.0.2');
    expect(h['x-forwarded-proto']).toBe('https');
  });
  it('keeps Upgrade for a WebSocket handshake only', () => {
    const raw = ['Host', 'p.localhost', 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'];
    expect(forwardHeaders(fakeReq(raw), { service, trustProxy: false }).upgrade).toBeUndefined();
    const up = forwardHeaders(fakeReq(raw), { service, trustProxy: false, upgrade: true });
    expect(up.upgrade).toBe('websocket');
    expect(up.connection).toBe('Upgrade');
    expect(up['sec-websocket-key']).toBe('k');
  });
});

describe('responseHeaders', () => {
  it('removes hop-by-hop and makes cookies host-only', () => {
    expect(
      responseHeaders([
        'Content-Type', 'text/html',
        'Connection', 'close, X-Hop',
        'X-Hop', 'a',
        'Transfer-Encoding', 'chunked',
        'Set-Cookie', 'a=1; Domain=relay.example; Path=/; HttpOnly',
        'Set-Cookie', 'b=2; domain=.localhost',
      ]),
    ).toEqual(['Content-Type', 'text/html', 'Set-Cookie', 'a=1; Path=/; HttpOnly', 'Set-Cookie', 'b=2']);
  });
});

describe('stripRelayCookies', () => {
  it('keeps only the printer cookies', () => {
    expect(stripRelayCookies('porthole_s=1;a=2; PORTHOLE_x=3 ;b=4')).toBe('a=2; b=4');
    expect(stripRelayCookies('porthole=1')).toBe('');
  });
});

describe('requestHead', () => {
  it('serialises and never emits a header containing CR/LF', () => {
    expect(requestHead('GET', '/ws', { host: 'h', a: ['1', '2'], bad: 'x\r\ninjected: 1' })).toBe(
      'GET /ws HTTP/1.1\r\nhost: h\r\na: 1\r\na: 2\r\n\r\n',
    );
  });
});
