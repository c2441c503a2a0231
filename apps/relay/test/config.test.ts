import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULTS, ENV_VARS, loadConfig, sqliteFile } from '../src/config.js';
import { RelayError } from '../src/errors.js';
import { tempDir } from './db-helpers.js';

const cwd = '/srv/porthole';

describe('loadConfig', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.cleanup());

  const file = (content: unknown) => {
    const p = path.join(tmp.dir, 'relay.json');
    writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
    return p;
  };
  const invalid = (fn: () => unknown, ...fragments: string[]) => {
    let caught: unknown;
    try {
      fn();
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(RelayError);
    expect((caught as RelayError).code).toBe('RELAY_INVALID_CONFIG');
    for (const f of fragments) expect((caught as Error).message).toContain(f);
  };

  it('has the documented defaults, paths made absolute against cwd', () => {
    expect(loadConfig({ env: {}, cwd })).toEqual({
      dataDir: '/srv/porthole/data',
      databaseUrl: 'file:/srv/porthole/data/porthole.db',
      host: '127.0.0.1',
      port: 8080,
      domain: 'localhost',
      publicUrl: 'http://localhost:8080',
      logLevel: 'info',
      trustProxy: false,
      shutdownGraceMs: 10_000,
      loginDelayMs: 1_000,
      webcamGraceMs: 5_000,
      webcamViewerFps: 5,
      tls: 'off',
      httpPort: 80,
      acmeDirectoryUrl: 'https://acme-v02.api.letsencrypt.org/directory',
      keepAliveIntervalMs: 15_000,
      keepAliveTimeoutMs: 45_000,
      responseTimeoutMs: 60_000,
      maxUrlBytes: 8192,
      maxHeaderBytes: 16384,
      headersTimeoutMs: 30_000,
      bodyIdleTimeoutMs: 60_000,
      maxStreamsPerDevice: 128,
      agentRefusalBurst: 10,
      agentRefusalsPerMinute: 30,
    });
    expect(DEFAULTS.port).toBe(8080);
  });

  it('uses process.cwd() and process.env when not told otherwise', () => {
    const c = loadConfig({ env: {} });
    expect(c.dataDir).toBe(path.resolve('data'));
  });

  it('is deeply frozen', () => {
    const c = loadConfig({ env: {}, cwd });
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('reads every PORTHOLE_* variable', () => {
    const c = loadConfig({
      cwd,
      env: {
        PORTHOLE_DATA_DIR: '/var/lib/porthole',
        PORTHOLE_DATABASE_URL: 'file:db/relay.db',
        PORTHOLE_HOST: '0.0.0.0',
        PORTHOLE_PORT: '9000',
        PORTHOLE_DOMAIN: 'Relay.Example.COM',
        PORTHOLE_PUBLIC_URL: 'https://relay.example.com/',
        PORTHOLE_LOG_LEVEL: 'warn',
        PORTHOLE_TRUST_PROXY: 'true',
        PORTHOLE_SHUTDOWN_GRACE_MS: '2500',
        PORTHOLE_LOGIN_DELAY_MS: '50',
        PORTHOLE_WEBCAM_GRACE_MS: '1500',
        PORTHOLE_WEBCAM_VIEWER_FPS: '2',
        PORTHOLE_TLS: 'acme',
        PORTHOLE_HTTP_PORT: '8000',
        PORTHOLE_ACME_DIRECTORY_URL: 'staging',
        PORTHOLE_ACME_EMAIL: 'ops@relay.example.com',
        PORTHOLE_ACME_CA_FILE: 'ca.pem',
        PORTHOLE_DNS_PROVIDER: 'cloudflare',
        PORTHOLE_DNS_PROPAGATION_MS: '20000',
        PORTHOLE_CLOUDFLARE_API_TOKEN: 'cf-token',
        PORTHOLE_CLOUDFLARE_ZONE_ID: '0123456789abcdef0123456789abcdef',
        PORTHOLE_CHALLTESTSRV_URL: 'http://127.0.0.1:8055',
        PORTHOLE_TLS_CERT_FILE: 'tls/cert.pem',
        PORTHOLE_TLS_KEY_FILE: '/etc/tls/key.pem',
        PORTHOLE_KEEPALIVE_INTERVAL_MS: '1000',
        PORTHOLE_KEEPALIVE_TIMEOUT_MS: '3000',
        PORTHOLE_RESPONSE_TIMEOUT_MS: '2000',
        PORTHOLE_MAX_URL_BYTES: '4096',
        PORTHOLE_MAX_HEADER_BYTES: '8192',
        PORTHOLE_HEADERS_TIMEOUT_MS: '1500',
        PORTHOLE_BODY_IDLE_TIMEOUT_MS: '2500',
        PORTHOLE_MAX_STREAMS_PER_DEVICE: '8',
        PORTHOLE_AGENT_REFUSAL_BURST: '3',
        PORTHOLE_AGENT_REFUSALS_PER_MINUTE: '6',
      },
    });
    expect(c).toEqual({
      dataDir: '/var/lib/porthole',
      databaseUrl: 'file:/srv/porthole/db/relay.db',
      host: '0.0.0.0',
      port: 9000,
      domain: 'relay.example.com',
      publicUrl: 'https://relay.example.com',
      logLevel: 'warn',
      trustProxy: true,
      shutdownGraceMs: 2500,
      loginDelayMs: 50,
      webcamGraceMs: 1500,
      webcamViewerFps: 2,
      tls: 'acme',
      httpPort: 8000,
      acmeDirectoryUrl: 'https://acme-staging-v02.api.letsencrypt.org/directory',
      acmeEmail: 'ops@relay.example.com',
      acmeCaFile: '/srv/porthole/ca.pem',
      dnsProvider: 'cloudflare',
      dnsPropagationMs: 20000,
      cloudflareApiToken: 'cf-token',
      cloudflareZoneId: '0123456789abcdef0123456789abcdef',
      challtestsrvUrl: 'http://127.0.0.1:8055',
      tlsCertFile: '/srv/porthole/tls/cert.pem',
      tlsKeyFile: '/etc/tls/key.pem',
      keepAliveIntervalMs: 1000,
      keepAliveTimeoutMs: 3000,
      responseTimeoutMs: 2000,
      maxUrlBytes: 4096,
      maxHeaderBytes: 8192,
      headersTimeoutMs: 1500,
      bodyIdleTimeoutMs: 2500,
      maxStreamsPerDevice: 8,
      agentRefusalBurst: 3,
      agentRefusalsPerMinute: 6,
    });
    expect(Object.keys(ENV_VARS).sort()).toEqual(Object.keys(c).sort());
  });

  it('derives databaseUrl from dataDir and publicUrl from domain and port', () => {
    const c = loadConfig({ cwd, env: { PORTHOLE_DATA_DIR: 'state', PORTHOLE_DOMAIN: 'relay.example', PORTHOLE_PORT: '80' } });
    expect(c.databaseUrl).toBe('file:/srv/porthole/state/porthole.db');
    expect(sqliteFile(c)).toBe('/srv/porthole/state/porthole.db');
    expect(c.publicUrl).toBe('http://relay.example');
    expect(loadConfig({ cwd, env: { PORTHOLE_PORT: '9999' } }).publicUrl).toBe('http://localhost:9999');
  });

  it.each([
    ['1', true],
    ['yes', true],
    ['ON', true],
    ['0', false],
    ['false', false],
    ['off', false],
  ])('reads PORTHOLE_TRUST_PROXY=%s as %s', (text, want) => {
    expect(loadConfig({ cwd, env: { PORTHOLE_TRUST_PROXY: text } }).trustProxy).toBe(want);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ cwd, env: { PORTHOLE_PORT: '', PORTHOLE_HOST: '' } })).toMatchObject({ port: 8080, host: '127.0.0.1' });
  });

  it('merges defaults < file < environment < overrides', () => {
    const f = file({ port: 7000, host: '::', domain: 'file.example', logLevel: 'debug' });
    const c = loadConfig({
      cwd,
      file: f,
      env: { PORTHOLE_PORT: '7001', PORTHOLE_DOMAIN: 'env.example' },
      overrides: { port: 7002 },
    });
    expect(c).toMatchObject({ port: 7002, domain: 'env.example', host: '::', logLevel: 'debug', trustProxy: false });
  });

  it('finds the file through PORTHOLE_CONFIG, relative to cwd', () => {
    file({ port: 7100 });
    expect(loadConfig({ cwd: tmp.dir, env: { PORTHOLE_CONFIG: 'relay.json' } }).port).toBe(7100);
  });

  it('names the bad field and where it came from', () => {
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_PORT: 'eighty' } }), 'port (from PORTHOLE_PORT)', 'expected number');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_PORT: '70000' } }), 'port (from PORTHOLE_PORT)');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_TRUST_PROXY: 'maybe' } }), 'trustProxy (from PORTHOLE_TRUST_PROXY)');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_LOG_LEVEL: 'loud' } }), 'logLevel (from PORTHOLE_LOG_LEVEL)');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_DOMAIN: 'not a domain' } }), 'domain', 'DNS name');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_DOMAIN: '-x.example' } }), 'domain');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_PUBLIC_URL: 'ftp://x' } }), 'publicUrl', 'http: or https:');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_PUBLIC_URL: 'https://x.example/app' } }), 'publicUrl', 'origin only');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_PUBLIC_URL: 'nope' } }), 'publicUrl');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_DATABASE_URL: 'postgresql://db/porthole' } }), 'databaseUrl', 'SQLite');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_DATABASE_URL: 'file::memory:' } }), 'databaseUrl');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_SHUTDOWN_GRACE_MS: '-1' } }), 'shutdownGraceMs');
    invalid(() => loadConfig({ cwd, env: {}, overrides: { port: 1.5 } }), 'port (from overrides)');
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_KEEPALIVE_INTERVAL_MS: '10' } }), 'keepAliveIntervalMs (from PORTHOLE_KEEPALIVE_INTERVAL_MS)');
    invalid(
      () => loadConfig({ cwd, env: { PORTHOLE_KEEPALIVE_INTERVAL_MS: '5000', PORTHOLE_KEEPALIVE_TIMEOUT_MS: '5000' } }),
      'keepAliveTimeoutMs',
      'longer than keepAliveIntervalMs',
    );
  });

  it('lists every bad field at once', () => {
    invalid(() => loadConfig({ cwd, env: { PORTHOLE_PORT: 'x', PORTHOLE_LOG_LEVEL: 'y' } }), 'port', 'logLevel');
  });

  it('rejects unknown fields, bad JSON and missing files, naming the file', () => {
    invalid(() => loadConfig({ cwd, env: {}, file: file({ prot: 80 }) }), 'unknown field "prot"', 'relay.json');
    invalid(() => loadConfig({ cwd, env: {}, file: file({ port: '80' }) }), 'port (from config file', 'expected number');
    invalid(() => loadConfig({ cwd, env: {}, file: file('{ port: 80 }') }), 'not valid JSON', 'relay.json');
    invalid(() => loadConfig({ cwd, env: {}, file: file('[1]') }), 'must hold a JSON object');
    invalid(() => loadConfig({ cwd, env: {}, file: path.join(tmp.dir, 'missing.json') }), 'missing.json', 'no such file');
  });
});
