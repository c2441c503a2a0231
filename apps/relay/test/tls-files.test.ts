// tls: 'files': the operator's certificate and key, served as they are and swapped when they
// change on disk (certbot renewing), without a restart or a dropped connection.
import { copyFile, mkdir } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { freePorts, selfSignedCertificate } from '@porthole/e2e/pebble';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRelayError } from '../src/errors.js';
import { startRelay, type RunningRelay } from '../src/server.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';
import { httpGet, httpsGet, tlsPeer, until } from './tls-helpers.js';

const DOMAIN = 'porthole.test';
/** What an agent without AES instructions offers (apps/agent/src/connection/ciphers.ts). */
const CHACHA_FIRST = 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';
const NAMES = [DOMAIN, `*.${DOMAIN}`];
const tmp = tempDir('porthole-tls-files-');
const live = path.join(tmp.dir, 'live');
const certFile = path.join(live, 'fullchain.pem');
const keyFile = path.join(live, 'privkey.pem');
let certs: Record<'a' | 'b' | 'c', { certFile: string; keyFile: string; pem: string }>;
let port: number;
let httpPort: number;
let relay: RunningRelay | undefined;
let lines: Record<string, unknown>[];

async function make(cn: string) {
  const c = await selfSignedCertificate(tmp.dir, cn, NAMES);
  return { ...c, pem: readFileSync(c.certFile, 'utf8') };
}

function config(overrides: Record<string, unknown> = {}) {
  return testConfig(path.join(tmp.dir, 'data'), { tls: 'files', domain: DOMAIN, host: '127.0.0.1', port, httpPort, tlsCertFile: certFile, tlsKeyFile: keyFile, ...overrides });
}

beforeAll(async () => {
  const [a, b, c] = await Promise.all([make('a'), make('b'), make('c')]);
  certs = { a, b, c };
  [port, httpPort] = (await freePorts(2)) as [number, number];
  await mkdir(live, { recursive: true });
  await copyFile(a.certFile, certFile);
  await copyFile(a.keyFile, keyFile);
});

afterAll(async () => {
  await relay?.close();
  tmp.cleanup();
});

describe('certificate files', () => {
  it('serves the files with HSTS, and port 80 redirects', async () => {
    const logger = memoryLogger();
    lines = logger.lines;
    relay = await startRelay(config(), { log: logger.log, tls: { filesPollMs: 50 } });
    const peer = await tlsPeer(port, `mk3s.${DOMAIN}`, certs.a.pem);
    expect(peer.authorized).toBe(true);
    expect(peer.names.sort()).toEqual(['*.porthole.test', 'porthole.test']);
    expect(relay.tls.status()).toMatchObject({ mode: 'files', names: NAMES, orders: 0, lastRenewalError: undefined, expiringSoon: false });
    const res = await httpsGet(port, DOMAIN, '/healthz', { ca: certs.a.pem });
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    const redirect = await httpGet(httpPort, DOMAIN, '/a/b?c=d');
    expect(redirect.status).toBe(301);
    expect(redirect.headers.location).toBe(`https://${DOMAIN}:${port}/a/b?c=d`);
  });

  it("gives ChaCha20 to a client that asks for it first (no AES instructions), else keeps the server's order", async () => {
    const chacha = await tlsPeer(port, DOMAIN, certs.a.pem, CHACHA_FIRST);
    expect(chacha.authorized).toBe(true);
    expect(chacha.cipher).toBe('TLS_CHACHA20_POLY1305_SHA256');
    expect((await tlsPeer(port, DOMAIN, certs.a.pem)).cipher).toBe('TLS_AES_256_GCM_SHA384');
    // ChaCha20 offered, but not first: the server's order (AES-256-GCM first) decides.
    const later = await tlsPeer(port, DOMAIN, certs.a.pem, 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256');
    expect(later.cipher).toBe('TLS_AES_256_GCM_SHA384');
  });

  it('reloads when the files change; open connections keep working', async () => {
    const ca = [certs.a.pem, certs.b.pem, certs.c.pem];
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const before = await httpsGet(port, DOMAIN, '/healthz', { ca, agent });
    const fingerprintA = before.fingerprint256;

    await copyFile(certs.b.keyFile, keyFile);
    await copyFile(certs.b.certFile, certFile);
    await until(() => relay!.tls.status().fingerprint256 !== fingerprintA && relay!.tls.status().lastRenewalError === undefined, 10_000, 'reload');
    const peer = await tlsPeer(port, DOMAIN, certs.b.pem);
    expect(peer.authorized).toBe(true);
    expect(peer.fingerprint256).toBe(relay!.tls.status().fingerprint256);
    // The swapped-in context keeps the cipher options (setSecureContext starts from scratch).
    expect((await tlsPeer(port, DOMAIN, certs.b.pem, CHACHA_FIRST)).cipher).toBe('TLS_CHACHA20_POLY1305_SHA256');
    expect(peer.cipher).toBe('TLS_AES_256_GCM_SHA384');
    expect(lines.map((l) => l.msg)).toContain('certificate files reloaded');

    const again = await httpsGet(port, DOMAIN, '/healthz', { ca, agent });
    expect(again.status).toBe(200);
    expect(again.reused).toBe(true);
    expect(again.fingerprint256).toBe(fingerprintA);
    agent.destroy();
  });

  it('keeps the current certificate while the pair on disk does not match, then takes the fixed pair', async () => {
    const servingB = relay!.tls.status().fingerprint256;
    await copyFile(certs.c.certFile, certFile); // key still B's
    await until(() => relay!.tls.status().lastRenewalError !== undefined, 10_000, 'the mismatch to be noticed');
    expect(relay!.tls.status().lastRenewalError).toMatch(/private key does not belong to the certificate/);
    expect((await tlsPeer(port, DOMAIN, certs.b.pem)).fingerprint256).toBe(servingB);

    await copyFile(certs.c.keyFile, keyFile);
    await until(() => relay!.tls.status().lastRenewalError === undefined, 10_000, 'the fixed pair');
    expect((await tlsPeer(port, DOMAIN, certs.c.pem)).authorized).toBe(true);
    await relay!.close();
  });

  it('does not start on files it cannot read', async () => {
    const err = await startRelay(config({ tlsKeyFile: path.join(live, 'missing.pem') }), { log: memoryLogger().log }).catch((e: unknown) => e);
    expect(isRelayError(err, 'RELAY_INVALID_CONFIG')).toBe(true);
    expect((err as Error).message).toMatch(/cannot read the key .*missing\.pem: ENOENT/);
  });
});
