import { describe, expect, it } from 'vitest';
import { checkedPath, classifyHost } from '../src/proxy/host.js';

describe('classifyHost', () => {
  const cases: [string | undefined, string | undefined, string, ReturnType<typeof classifyHost>][] = [
    ['relay.example', '/', 'relay.example', { kind: 'relay' }],
    ['RELAY.example:443', '/', 'relay.example', { kind: 'relay' }],
    ['mk3s.relay.example', '/', 'relay.example', { kind: 'device', slug: 'mk3s' }],
    ['mk3s.relay.example.', '/', 'relay.example', { kind: 'device', slug: 'mk3s' }],
    ['mk3s.localhost:8080', '/x', 'localhost', { kind: 'device', slug: 'mk3s' }],
    ['a.b.relay.example', '/', 'relay.example', { kind: 'unknown' }],
    ['-bad.relay.example', '/', 'relay.example', { kind: 'unknown' }],
    ['evil-relay.example', '/', 'relay.example', { kind: 'unknown' }],
    ['127.0.0.1:8080', '/', 'localhost', { kind: 'unknown' }],
    [undefined, '/', 'localhost', { kind: 'invalid', reason: 'missing Host header' }],
    ['a.localhost', 'http://b.localhost/', 'localhost', { kind: 'invalid', reason: 'request target and Host disagree' }],
    ['a.localhost', 'http://a.localhost:9/x', 'localhost', { kind: 'device', slug: 'a' }],
    ['a.localhost', 'http://[bad', 'localhost', { kind: 'invalid', reason: 'malformed request target' }],
  ];
  it.each(cases)('Host %s, target %s under %s', (host, url, domain, want) => {
    expect(classifyHost(host, url, domain)).toEqual(want);
  });
});

describe('checkedPath', () => {
  it.each([
    ['/', { path: '/', query: '' }],
    ['/webcam/?action=stream', { path: '/webcam/', query: '?action=stream' }],
    ['/api/files/local/x%20y.gcode', { path: '/api/files/local/x%20y.gcode', query: '' }],
    ['http://a.localhost/p?q=1', { path: '/p', query: '?q=1' }],
  ])('accepts %s', (url, want) => {
    expect(checkedPath(url)).toEqual(want);
  });
  it.each([
    '/webcam/../api/printer',
    '/webcam/%2e%2e/api',
    '/webcam/%2E%2E/api',
    '/./x',
    '/a%2fb',
    '/a%5cb',
    '/a\\b',
    '/a%00',
    '/bad%zz',
    'relative',
    '*',
  ])('refuses %s', (url) => {
    expect(checkedPath(url)).toBeUndefined();
  });
});
