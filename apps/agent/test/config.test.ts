import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeHello, encodeHello } from '@porthole/protocol';
import { describe, expect, it } from 'vitest';
import { ConfigError, helloFor, isLanHost, loadConfig, parseConfig, readCa } from '../src/config/index.js';

const good = () => ({
  relay: 'wss://relay.example',
  credential: 'pdc_abc123',
  services: {
    ui: { url: 'http://127.0.0.1:5000', hostHeader: 'octopi.local' },
    webcam: { url: 'http://127.0.0.1:8080' },
  },
  routes: [
    { path: '/', service: 'ui' },
    { path: '/webcam/', service: 'webcam', stripPrefix: true },
  ],
});

function errorsOf(raw: unknown, env: Record<string, string> = {}): readonly string[] {
  try {
    parseConfig(raw, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).errors;
  }
  throw new Error('config was accepted');
}

type Mutate = (c: ReturnType<typeof good> & Record<string, unknown>) => void;

describe('parseConfig', () => {
  it('accepts a good config, fills defaults, and deep-freezes it', () => {
    const c = parseConfig(good());
    expect(c.relay).toBe('wss://relay.example');
    expect(c.services.ui).toEqual({ name: 'ui', url: 'http://127.0.0.1:5000', host: '127.0.0.1', port: 5000, hostHeader: 'octopi.local' });
    expect(c.services.webcam!.port).toBe(8080);
    expect(c.routes).toEqual([
      { path: '/', service: 'ui', stripPrefix: false },
      { path: '/webcam/', service: 'webcam', stripPrefix: true },
    ]);
    expect(c.keepAlive).toEqual({ intervalMs: 15_000, timeoutMs: 45_000 });
    expect(c.reconnect).toEqual({ baseMs: 500, capMs: 60_000 });
    expect(c.logLevel).toBe('info');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.services)).toBe(true);
    expect(Object.isFrozen(c.services.ui)).toBe(true);
    expect(Object.isFrozen(c.routes)).toBe(true);
    expect(Object.isFrozen(c.routes[0])).toBe(true);
    expect(Object.isFrozen(c.keepAlive)).toBe(true);
    expect(() => {
      (c.services.ui as { port: number }).port = 22;
    }).toThrow(TypeError);
  });

  it('maps http(s) relay URLs to ws(s) and drops the trailing slash', () => {
    expect(parseConfig({ ...good(), relay: 'https://relay.example/' }).relay).toBe('wss://relay.example');
    expect(parseConfig({ ...good(), relay: 'http://127.0.0.1:8080' }).relay).toBe('ws://127.0.0.1:8080');
    expect(parseConfig({ ...good(), relay: 'wss://example.org/porthole/' }).relay).toBe('wss://example.org/porthole');
  });

  it('defaults a service port to 80 and accepts LAN hosts', () => {
    const c = parseConfig({
      ...good(),
      services: {
        ui: { url: 'http://octopi.local' },
        a: { url: 'http://192.168.1.20:7125' },
        b: { url: 'http://[::1]:5000' },
        c: { url: 'http://localhost:5000/' },
        d: { url: 'http://printer:80' },
      },
      routes: [{ path: '/', service: 'ui' }],
    });
    expect(c.services.ui).toMatchObject({ host: 'octopi.local', port: 80 });
    expect(c.services.b).toMatchObject({ host: '::1', port: 5000 });
    expect(c.services.c).toMatchObject({ host: 'localhost', port: 5000 });
  });

  it('applies PORTHOLE_RELAY and PORTHOLE_CREDENTIAL over the file', () => {
    const c = parseConfig(good(), { PORTHOLE_RELAY: 'https://other.example', PORTHOLE_CREDENTIAL: 'pdc_from_env' });
    expect(c.relay).toBe('wss://other.example');
    expect(c.credential).toBe('pdc_from_env');
    const { relay: _r, credential: _c, ...rest } = good();
    expect(parseConfig(rest, { PORTHOLE_RELAY: 'wss://r.example', PORTHOLE_CREDENTIAL: 'pdc_x' }).credential).toBe('pdc_x');
    expect(errorsOf(good(), { PORTHOLE_RELAY: 'ftp://x' })).toEqual([
      'relay (from PORTHOLE_RELAY): must be wss://host (or ws://, https://, http://)',
    ]);
  });

  const bad: Array<[string, Mutate, string]> = [
    ['missing relay', (c) => delete (c as Record<string, unknown>).relay, 'relay: required'],
    ['relay of the wrong scheme', (c) => (c.relay = 'ftp://relay.example'), 'relay: must be wss://host'],
    ['relay with a query', (c) => (c.relay = 'wss://relay.example/?x=1'), 'relay: must be wss://host (or ws://, https://, http://) (no query or fragment)'],
    ['relay with user info', (c) => (c.relay = 'wss://me:pw@relay.example'), 'relay: must be wss://host (or ws://, https://, http://) (no user:password@'],
    ['relay not a string', (c) => ((c as Record<string, unknown>).relay = 5), 'relay: must be a string'],
    ['missing credential', (c) => delete (c as Record<string, unknown>).credential, 'credential: required'],
    ['empty credential', (c) => (c.credential = ''), 'credential: required'],
    ['credential with a space', (c) => (c.credential = 'pdc abc'), 'credential: must be printable ASCII without spaces'],
    ['credential with CRLF', (c) => (c.credential = 'pdc\r\nX-Evil: 1'), 'credential: must be printable ASCII without spaces'],
    ['service url of the wrong scheme', (c) => (c.services.webcam.url = 'https://127.0.0.1:8080'), 'services.webcam.url: must be http://host:port'],
    ['service url not a url', (c) => (c.services.webcam.url = 'localhost:8080'), 'services.webcam.url: must be http://host:port'],
    ['service url with a path', (c) => (c.services.webcam.url = 'http://127.0.0.1:8080/webcam'), 'services.webcam.url: must be http://host:port (no path'],
    ['service url to a public host', (c) => (c.services.webcam.url = 'http://example.com:8080'), 'services.webcam.url: must be http://host:port on this machine or the local network (example.com is not)'],
    ['service url to a public IP', (c) => (c.services.webcam.url = 'http://8.8.8.8:80'), 'services.webcam.url: must be http://host:port on this machine or the local network'],
    ['service url with credentials', (c) => (c.services.webcam.url = 'http://u:p@127.0.0.1:8080'), 'services.webcam.url: must be http://host:port (no user:password@)'],
    ['service url missing', (c) => delete (c.services.webcam as Record<string, unknown>).url, 'services.webcam.url: required'],
    ['bad hostHeader', (c) => (c.services.ui.hostHeader = 'a b\r\n'), 'services.ui.hostHeader: must be a host name'],
    ['bad service name', (c) => ((c.services as Record<string, unknown>)['Web Cam'] = { url: 'http://127.0.0.1:1' }), 'services.Web Cam: invalid service name'],
    ['unknown service field', (c) => ((c.services.ui as Record<string, unknown>).uri = 'x'), 'services.ui.uri: unknown field'],
    ['no services', (c) => ((c as Record<string, unknown>).services = {}), 'services: must list at least one service'],
    ['route to a missing service', (c) => (c.routes[1]!.service = 'cam'), 'routes.1.service: no service named "cam" in services'],
    ['route path without a trailing slash', (c) => (c.routes[1]!.path = '/webcam'), "routes.1.path: must start and end with '/'"],
    ['route path without a leading slash', (c) => (c.routes[1]!.path = 'webcam/'), "routes.1.path: must start and end with '/'"],
    ['route path with ..', (c) => (c.routes[1]!.path = '/a/../'), "routes.1.path: must not contain '.' or '..' segments"],
    ['duplicate route path', (c) => (c.routes[1]!.path = '/'), 'routes.1.path: duplicate path /'],
    ['stripPrefix not boolean', (c) => ((c.routes[1] as Record<string, unknown>).stripPrefix = 'yes'), 'routes.1.stripPrefix: must be true or false'],
    ['no routes', (c) => ((c as Record<string, unknown>).routes = []), 'routes: must list at least one route'],
    ['keepAlive timeout not above interval', (c) => (c.keepAlive = { intervalMs: 15_000, timeoutMs: 10_000 }), 'keepAlive.timeoutMs: must be longer than keepAlive.intervalMs'],
    ['keepAlive interval too small', (c) => (c.keepAlive = { intervalMs: 10 }), 'keepAlive.intervalMs: must be at least 1000'],
    ['reconnect cap below base', (c) => (c.reconnect = { baseMs: 5_000, capMs: 2_000 }), 'reconnect.capMs: must be at least reconnect.baseMs'],
    ['reconnect base too small', (c) => (c.reconnect = { baseMs: 1 }), 'reconnect.baseMs: must be at least 100'],
    ['keepAlive interval not an integer', (c) => (c.keepAlive = { intervalMs: 1500.5 }), 'keepAlive.intervalMs: must be an integer'],
    ['bad log level', (c) => (c.logLevel = 'loud'), 'logLevel: must be one of fatal, error, warn, info, debug, trace, silent'],
    ['empty caFile', (c) => (c.caFile = ''), 'caFile: must be a file path'],
    ['unknown top-level field', (c) => (c.servcies = {}), 'servcies: unknown field'],
  ];

  it.each(bad)('names the bad field: %s', (_name, mutate, expected) => {
    const c = good() as ReturnType<typeof good> & Record<string, unknown>;
    mutate(c);
    const errors = errorsOf(c);
    expect(errors.some((e) => e.startsWith(expected)), `got: ${JSON.stringify(errors)}`).toBe(true);
  });

  it('reports every bad field at once', () => {
    const c = good() as ReturnType<typeof good> & Record<string, unknown>;
    c.relay = 'nope';
    c.credential = '';
    c.services.webcam.url = 'http://8.8.8.8';
    const errors = errorsOf(c);
    expect(errors.map((e) => e.split(':')[0])).toEqual(['relay', 'credential', 'services.webcam.url']);
  });

  it('rejects something that is not an object', () => {
    expect(errorsOf([1, 2])).toEqual(['(config): must be an object']);
  });

  it('builds a hello the relay accepts', () => {
    const c = parseConfig({ ...good(), services: { ...good().services, prusa: { url: 'http://127.0.0.1:80', passAuthorization: true } } });
    const hello = helloFor(c, '1.2.3');
    expect(decodeHello(encodeHello(hello))).toEqual({
      v: 1,
      agent: '1.2.3',
      services: [{ name: 'ui', hostHeader: 'octopi.local' }, { name: 'webcam' }, { name: 'prusa', passAuthorization: true }],
      routes: [
        { path: '/', service: 'ui' },
        { path: '/webcam/', service: 'webcam', stripPrefix: true },
      ],
    });
    expect(hello.routes[0]).toEqual({ path: '/', service: 'ui', stripPrefix: false });
  });
});

describe('isLanHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['172.32.0.1', false],
    ['192.168.0.10', true],
    ['169.254.1.1', true],
    ['100.100.1.1', true],
    ['8.8.8.8', false],
    ['::1', true],
    ['fd00::1', true],
    ['fe80::1', true],
    ['2001:db8::1', false],
    ['::ffff:192.168.1.1', true],
    ['::ffff:8.8.8.8', false],
    ['localhost', true],
    ['octopi', true],
    ['octopi.local', true],
    ['printer.lan', true],
    ['printer.home.arpa', true],
    ['example.com', false],
    ['evil.local.example.com', false],
  ])('%s → %s', (host, expected) => {
    expect(isLanHost(host)).toBe(expected);
  });
});

describe('loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'porthole-agent-config-'));

  it('reads a file', () => {
    const path = join(dir, 'good.json');
    writeFileSync(path, JSON.stringify(good()));
    expect(loadConfig(path).services.ui!.port).toBe(5000);
  });

  it('names the file when it is missing or not JSON, and the field when a value is bad', () => {
    expect(() => loadConfig(join(dir, 'missing.json'))).toThrow(/cannot read config file .*missing\.json: ENOENT/);
    const notJson = join(dir, 'bad.json');
    writeFileSync(notJson, '{ "relay": ');
    expect(() => loadConfig(notJson)).toThrow(/bad\.json is not valid JSON/);
    const badField = join(dir, 'badfield.json');
    writeFileSync(badField, JSON.stringify({ ...good(), services: { ...good().services, webcam: { url: 'ftp://x' } } }));
    expect(() => loadConfig(badField)).toThrow(/badfield\.json:\n {2}services\.webcam\.url: must be http:\/\/host:port/);
  });

  it('reads caFile, and names it when it cannot', () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n');
    expect(readCa(parseConfig({ ...good(), caFile: ca }))?.toString()).toContain('BEGIN CERTIFICATE');
    expect(readCa(parseConfig(good()))).toBeUndefined();
    expect(() => readCa(parseConfig({ ...good(), caFile: join(dir, 'nope.pem') }))).toThrow(/caFile: cannot read .*nope\.pem: ENOENT/);
  });
});
