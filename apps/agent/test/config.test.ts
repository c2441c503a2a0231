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

describe('parseConfig messages, in full', () => {
  // The exact lists, in order: fields in schema order (relay, credential, services, routes, caFile,
  // relayAddress, keepAlive, reconnect, logLevel), an object's unknown keys after its fields.
  const base = good as () => Record<string, unknown>;
  const TYPES = {
    relay: 'must be a string like wss://relay.example',
    credential: 'must be a string',
    services: 'must be an object of name → { url }',
    routes: 'must be a list of { path, service }',
    object: 'must be an object',
    ms: 'must be a number of milliseconds',
    bool: 'must be true or false',
    logLevel: 'must be one of fatal, error, warn, info, debug, trace, silent',
  };

  it('names the whole config when it is missing or not an object', () => {
    expect(errorsOf(undefined)).toEqual(['(config): required']);
    for (const v of [null, 'x', 5, true, [], [good()]]) expect(errorsOf(v)).toEqual(['(config): must be an object']);
  });

  it('reports every missing field of an empty object, and only the required ones', () => {
    expect(errorsOf({})).toEqual(['relay: required', 'credential: required', 'services: required', 'routes: required']);
  });

  it('reports a wrong type at every level, with what it must be', () => {
    expect(
      errorsOf({ relay: 5, credential: null, services: [], routes: {}, caFile: 7, relayAddress: false, keepAlive: [], reconnect: 'fast', logLevel: 3 }),
    ).toEqual([
      `relay: ${TYPES.relay}`,
      `credential: ${TYPES.credential}`,
      `services: ${TYPES.services}`,
      `routes: ${TYPES.routes}`,
      'caFile: must be a file path',
      'relayAddress: must be an IP address',
      `keepAlive: ${TYPES.object}`,
      `reconnect: ${TYPES.object}`,
      `logLevel: ${TYPES.logLevel}`,
    ]);
    // One message for a value of the wrong type, even when it has a length (zod also ran the
    // string's or list's length checks on it: "credential: must be a string", "credential: required").
    expect(errorsOf({ ...good(), credential: [], routes: '', caFile: [] })).toEqual([
      `credential: ${TYPES.credential}`,
      `routes: ${TYPES.routes}`,
      'caFile: must be a file path',
    ]);
    // null is a value of the wrong type, not a missing one: no default for it.
    expect(errorsOf({ ...good(), keepAlive: null, reconnect: null, logLevel: null })).toEqual([
      `keepAlive: ${TYPES.object}`,
      `reconnect: ${TYPES.object}`,
      `logLevel: ${TYPES.logLevel}`,
    ]);
    expect(errorsOf({ ...good(), services: { ui: 'http://127.0.0.1:5000', webcam: [] }, routes: [5, null, ['/']] })).toEqual([
      `services.ui: ${TYPES.object}`,
      `services.webcam: ${TYPES.object}`,
      `routes.0: ${TYPES.object}`,
      `routes.1: ${TYPES.object}`,
      `routes.2: ${TYPES.object}`,
    ]);
    expect(
      errorsOf({
        ...good(),
        services: { ui: { url: 5, hostHeader: 5, passAuthorization: 'yes', profile: 'octopi' } },
        routes: [{ path: 5, service: 5, stripPrefix: null }, {}],
        keepAlive: { intervalMs: '15000', timeoutMs: null },
        reconnect: { baseMs: true, capMs: {} },
      }),
    ).toEqual([
      'services.ui.url: must be a string like http://127.0.0.1:5000',
      'services.ui.hostHeader: must be a host name',
      `services.ui.passAuthorization: ${TYPES.bool}`,
      'services.ui.profile: must be one of generic, octoprint, moonraker, prusalink, camera',
      'routes.0.path: must be a path like /webcam/',
      'routes.0.service: must be a service name',
      `routes.0.stripPrefix: ${TYPES.bool}`,
      'routes.1.path: required',
      'routes.1.service: required',
      `keepAlive.intervalMs: ${TYPES.ms}`,
      `keepAlive.timeoutMs: ${TYPES.ms}`,
      `reconnect.baseMs: ${TYPES.ms}`,
      `reconnect.capMs: ${TYPES.ms}`,
    ]);
  });

  it('checks numbers: finite, integer, in range', () => {
    const at = (intervalMs: unknown) => errorsOf({ ...good(), keepAlive: { intervalMs } });
    expect(at(NaN)).toEqual([`keepAlive.intervalMs: ${TYPES.ms}`]);
    expect(at(Infinity)).toEqual([`keepAlive.intervalMs: ${TYPES.ms}`]);
    expect(at(-Infinity)).toEqual([`keepAlive.intervalMs: ${TYPES.ms}`]);
    // A fraction is reported alone, even when it is out of range too.
    expect(at(1500.5)).toEqual(['keepAlive.intervalMs: must be an integer']);
    expect(at(-0.5)).toEqual(['keepAlive.intervalMs: must be an integer']);
    // An integer too large to be exact is not an integer, and out of range.
    expect(at(1e20)).toEqual(['keepAlive.intervalMs: must be an integer', 'keepAlive.intervalMs: must be at most 600000']);
    expect(at(-(2 ** 53))).toEqual(['keepAlive.intervalMs: must be an integer', 'keepAlive.intervalMs: must be at least 1000']);
    expect(at(999)).toEqual(['keepAlive.intervalMs: must be at least 1000']);
    expect(at(600_001)).toEqual(['keepAlive.intervalMs: must be at most 600000']);
    expect(errorsOf({ ...good(), keepAlive: { timeoutMs: 3_600_001 }, reconnect: { baseMs: 99, capMs: 3_600_001 } })).toEqual([
      'keepAlive.timeoutMs: must be at most 3600000',
      'reconnect.baseMs: must be at least 100',
      'reconnect.capMs: must be at most 3600000',
    ]);
    const edges = parseConfig({ ...good(), keepAlive: { intervalMs: 1_000, timeoutMs: 3_600_000 }, reconnect: { baseMs: 60_000, capMs: 3_600_000 } });
    expect(edges.keepAlive).toEqual({ intervalMs: 1_000, timeoutMs: 3_600_000 });
    expect(edges.reconnect).toEqual({ baseMs: 60_000, capMs: 3_600_000 });
  });

  it('fills a default for each absent setting, also inside a partial object', () => {
    const c = parseConfig({ ...good(), keepAlive: { timeoutMs: 50_000 }, reconnect: {}, logLevel: undefined });
    expect(c.keepAlive).toEqual({ intervalMs: 15_000, timeoutMs: 50_000 });
    expect(c.reconnect).toEqual({ baseMs: 500, capMs: 60_000 });
    expect(c.logLevel).toBe('info');
    expect(parseConfig({ ...good(), logLevel: 'silent' }).logLevel).toBe('silent');
    expect(c).not.toHaveProperty('caFile');
    expect(c).not.toHaveProperty('relayAddress');
  });

  it('reports every failing check of a string, not just the first', () => {
    const path = (p: string) => errorsOf({ ...good(), routes: [{ path: p, service: 'ui' }] });
    expect(path('/../x')).toEqual([
      "routes.0.path: must start and end with '/' (e.g. / or /webcam/)",
      "routes.0.path: must not contain '.' or '..' segments",
    ]);
    expect(path(`/${'a'.repeat(300)}`)).toEqual([
      'routes.0.path: must be at most 256 characters',
      "routes.0.path: must start and end with '/' (e.g. / or /webcam/)",
    ]);
    expect(path(`/${'a/'.repeat(150)}../`)).toEqual([
      'routes.0.path: must be at most 256 characters',
      "routes.0.path: must not contain '.' or '..' segments",
    ]);
    expect(path('/./')).toEqual(["routes.0.path: must not contain '.' or '..' segments"]);
    expect(errorsOf({ ...good(), credential: ' '.repeat(1025) })).toEqual([
      'credential: must be at most 1024 characters',
      'credential: must be printable ASCII without spaces',
    ]);
    expect(parseConfig({ ...good(), credential: 'x'.repeat(1024) }).credential).toHaveLength(1024);
    expect(errorsOf({ ...good(), relayAddress: 'relay.example' })).toEqual([
      "relayAddress: must be an IP address such as 203.0.113.7 or 2001:db8::7 (the certificate is still checked for the relay URL's name)",
    ]);
    const longHostHeader = { ui: { url: 'http://127.0.0.1', hostHeader: 'a'.repeat(254) } };
    expect(errorsOf({ ...good(), services: longHostHeader, routes: [{ path: '/', service: 'ui' }] })).toEqual([
      'services.ui.hostHeader: must be a host name, optionally with :port',
    ]);
  });

  it('reports unknown keys at every level, after the fields of their object', () => {
    const c = base();
    c.zz = 1;
    c.services = { ui: { url: 'http://127.0.0.1:5000', uri: 'x', hostHeader: 'a b' } };
    c.routes = [{ path: '/', service: 'ui', strip: true }];
    c.keepAlive = { foo: 1, intervalMs: 'x' };
    c.reconnect = { capMS: 1 };
    c.aa = 2;
    expect(errorsOf(c)).toEqual([
      'services.ui.hostHeader: must be a host name, optionally with :port',
      'services.ui.uri: unknown field',
      'routes.0.strip: unknown field',
      `keepAlive.intervalMs: ${TYPES.ms}`,
      'keepAlive.foo: unknown field',
      'reconnect.capMS: unknown field',
      'zz: unknown field',
      'aa: unknown field',
    ]);
  });

  it('bounds the number of services and routes', () => {
    const services = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`s${i}`, { url: `http://127.0.0.1:${5000 + i}` }]));
    expect(Object.keys(parseConfig({ ...good(), services: services(32), routes: [{ path: '/', service: 's0' }] }).services)).toHaveLength(32);
    expect(errorsOf({ ...good(), services: services(33), routes: [{ path: '/', service: 's0' }] })).toEqual(['services: must list at most 32 services']);
    const routes = (n: number) => Array.from({ length: n }, (_, i) => ({ path: `/r${i}/`, service: 'ui' }));
    expect(parseConfig({ ...good(), routes: routes(64) }).routes).toHaveLength(64);
    expect(errorsOf({ ...good(), routes: routes(65) })).toEqual(['routes: must list at most 64 routes']);
    // A list that is too long is not looked into: one message, whatever (and however much) it holds.
    expect(errorsOf({ ...good(), routes: new Array(1_000_000).fill('junk') })).toEqual(['routes: must list at most 64 routes']);
    expect(errorsOf({ ...good(), routes: new Array(64).fill(0) })).toHaveLength(64);
  });

  it('names the variable for a bad override, and only for the field it overrode', () => {
    expect(errorsOf({ ...good(), relay: 5, credential: 5 }, { PORTHOLE_RELAY: 'ws://r.example', PORTHOLE_CREDENTIAL: 'a b' })).toEqual([
      'credential (from PORTHOLE_CREDENTIAL): must be printable ASCII without spaces',
    ]);
    expect(errorsOf({ ...good(), relay: 'ftp://x' }, { PORTHOLE_RELAY: '', PORTHOLE_CREDENTIAL: 'x'.repeat(1025) })).toEqual([
      'relay: must be wss://host (or ws://, https://, http://)',
      'credential (from PORTHOLE_CREDENTIAL): must be at most 1024 characters',
    ]);
  });

  it('is not fooled by __proto__, constructor or other names from Object.prototype', () => {
    const hostile = JSON.parse(
      '{"__proto__": {"polluted": true}, "relay": "wss://relay.example", "credential": "pdc_x",' +
        ' "services": {"__proto__": {"url": "http://127.0.0.1:1"}, "ui": {"url": "http://127.0.0.1:2", "__proto__": {"x": 1}}},' +
        ' "routes": [{"path": "/", "service": "ui", "__proto__": {"stripPrefix": true}}]}',
    ) as unknown;
    expect(errorsOf(hostile)).toEqual([
      'services.ui.__proto__: unknown field',
      'routes.0.__proto__: unknown field',
      '__proto__: unknown field',
    ]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // A service named __proto__ is a name like any other, and not a valid one.
    const named = JSON.parse(
      '{"relay": "wss://relay.example", "credential": "pdc_x",' +
        ' "services": {"__proto__": {"url": "http://127.0.0.1:1"}, "ui": {"url": "http://127.0.0.1:2"}},' +
        ' "routes": [{"path": "/", "service": "ui"}]}',
    ) as unknown;
    expect(errorsOf(named)).toEqual([
      "services.__proto__: invalid service name (a-z, 0-9, '-' and '_', starting with a letter or digit, at most 63)",
    ]);
    // Fields are never read through the prototype, and a route cannot name an inherited property.
    expect(errorsOf({ ...good(), routes: [{ path: '/', service: 'toString' }, { path: '/x/', service: 'constructor' }] })).toEqual([
      'routes.0.service: no service named "toString" in services',
      'routes.1.service: no service named "constructor" in services',
    ]);
    const c = parseConfig({ ...good(), services: { constructor: { url: 'http://127.0.0.1:3' } }, routes: [{ path: '/', service: 'constructor' }] });
    expect(c.services.constructor).toMatchObject({ name: 'constructor', port: 3 });
    expect(Object.getPrototypeOf(c.services)).toBe(Object.prototype);
  });

  it('throws nothing but ConfigError, whatever JSON it is given', () => {
    const junk: unknown[] = [null, true, 0, -1, 1.5, '', 'x', '__proto__', [], [null], [[[]]], {}, { length: 0 }, { a: { b: { c: {} } } }];
    // Every slot of the config: each field of each object, and each map or list entry.
    type Loose = { [k: string]: unknown; services: { [k: string]: unknown; ui: Record<string, unknown> }; routes: [Record<string, unknown>] };
    const slots: Array<(c: Loose, v: unknown) => void> = [
      ...['relay', 'credential', 'services', 'routes', 'caFile', 'relayAddress', 'keepAlive', 'reconnect', 'logLevel', 'extra'].map(
        (k) => (c: Loose, v: unknown) => (c[k] = v),
      ),
      ...['url', 'hostHeader', 'passAuthorization', 'profile', 'extra'].map((k) => (c: Loose, v: unknown) => (c.services.ui[k] = v)),
      ...['path', 'service', 'stripPrefix', 'extra'].map((k) => (c: Loose, v: unknown) => (c.routes[0][k] = v)),
      (c, v) => ((c.services as Record<string, unknown>).ui = v),
      (c, v) => ((c.routes as unknown[])[0] = v),
      (c, v) => (c.keepAlive = { intervalMs: v, timeoutMs: v }),
      (c, v) => (c.reconnect = { baseMs: v, capMs: v }),
    ];
    let accepted = 0;
    let refused = 0;
    for (const v of junk) {
      for (const put of slots) {
        const c = good() as unknown as Loose;
        put(c, v);
        try {
          parseConfig(JSON.parse(JSON.stringify(c)));
          accepted++; // e.g. passAuthorization: true
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          expect((e as ConfigError).errors.length).toBeGreaterThan(0);
          refused++;
        }
      }
    }
    expect(accepted + refused).toBe(junk.length * slots.length);
    expect(refused).toBeGreaterThan(accepted);
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
