// The relay's own HTTPS against Pebble (Let's Encrypt's test CA) and pebble-challtestsrv (its
// mock DNS), from Debian's `pebble` package, all on 127.0.0.1: HTTP-01 for the bare domain on the
// relay's HTTP port, DNS-01 for the wildcard through the challtestsrv provider, storage, restart,
// renewal driven by an injected clock, an unreachable CA, and the port-80 listener.
// The Pebble harness is @porthole/e2e's (test/src/pebble.ts): `npm run build` first, as npm test does.
import { statSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { freePorts, startPebble, type Pebble } from '@porthole/e2e/pebble';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayConfig } from '../src/config.js';
import { startRelay, type RunningRelay } from '../src/server.js';
import { ChalltestsrvDns } from '../src/tls/dns/index.js';
import type { DnsProvider } from '../src/tls/index.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';
import { httpGet, httpsGet, tlsPeer, until } from './tls-helpers.js';

const DOMAIN = 'porthole.test';
const FAST = { pollMinMs: 50, pollMaxMs: 250, pollAttempts: 40, requestRetries: 0, requestRetryDelayS: 0 };

let pebble: Pebble;
let httpsPort: number;
let httpPort: number;
let deadPort: number;
const data = tempDir('porthole-tls-');
/** The relay's wall clock runs `offset` ms ahead of the real one. */
let offset = 0;
const now = () => Date.now() + offset;
/** TXT records the relay published, by name. */
const published: string[] = [];

function recording(inner: DnsProvider): DnsProvider {
  return {
    name: inner.name,
    propagationMs: inner.propagationMs,
    createTxt: (name, value) => {
      published.push(name);
      return inner.createTxt(name, value);
    },
    removeTxt: (h) => inner.removeTxt(h),
  };
}

function config(overrides: Record<string, unknown> = {}, dir = data.dir): RelayConfig {
  return testConfig(dir, {
    tls: 'acme',
    domain: DOMAIN,
    host: '127.0.0.1',
    port: httpsPort,
    httpPort,
    acmeDirectoryUrl: pebble.directoryUrl,
    acmeCaFile: pebble.apiCaFile,
    dnsProvider: 'challtestsrv',
    challtestsrvUrl: pebble.challtestsrvUrl,
    ...overrides,
  });
}

async function start(cfg: RelayConfig = config()): Promise<{ relay: RunningRelay; lines: Record<string, unknown>[] }> {
  const { log, lines } = memoryLogger('debug');
  const relay = await startRelay(cfg, {
    log,
    tls: {
      now,
      retry: { baseMs: 100, maxMs: 400 },
      acmeTimings: FAST,
      dns: recording(new ChalltestsrvDns({ url: pebble.challtestsrvUrl })),
    },
  });
  return { relay, lines };
}

const messages = (lines: Record<string, unknown>[]) => lines.map((l) => String(l.msg));

beforeAll(async () => {
  [httpsPort, httpPort, deadPort] = (await freePorts(3)) as [number, number, number];
  pebble = await startPebble({ httpPort });
});

afterAll(async () => {
  await pebble?.close();
  data.cleanup();
});

describe('ACME certificates against Pebble', () => {
  let relay: RunningRelay | undefined;
  let lines: Record<string, unknown>[];
  let first: string;
  afterAll(async () => {
    await relay?.close(); // idempotent: a test that failed half-way leaves none behind
  });

  it('first start with no certificate: HTTP-01 for the domain, DNS-01 for the wildcard, served to a client trusting the CA', async () => {
    ({ relay, lines } = await start());
    const status = relay!.tls.status();
    expect(status).toMatchObject({ mode: 'acme', domain: DOMAIN, orders: 1, consecutiveFailures: 0, lastRenewalError: undefined, expiringSoon: false });
    expect([...status.names].sort()).toEqual(['*.porthole.test', 'porthole.test']);
    expect(pebble.orders()).toBe(1);
    // Pebble fetched the bare domain's answer from the relay's HTTP port; the wildcard went through DNS.
    expect(pebble.pebble.findLogs(new RegExp(`validate w/ HTTP: http://porthole\\.test:${httpPort}/\\.well-known/acme-challenge/`)).length).toBeGreaterThan(0);
    expect(published).toEqual(['_acme-challenge.porthole.test']);
    expect(messages(lines)).toContain('certificate obtained');

    for (const name of [DOMAIN, `mk3s.${DOMAIN}`]) {
      const peer = await tlsPeer(httpsPort, name, pebble.rootPem);
      expect(peer.authorized, `${name}: ${peer.authorizationError}`).toBe(true);
      expect(peer.names.sort()).toEqual(['*.porthole.test', 'porthole.test']);
    }
    // A name the certificate is not for does not verify.
    const other = await tlsPeer(httpsPort, 'porthole.example', pebble.rootPem);
    expect(other.authorized).toBe(false);
    // Without Pebble's root the chain does not verify either.
    expect((await tlsPeer(httpsPort, DOMAIN)).authorized).toBe(false);
    first = status.fingerprint256!;

    const res = await httpsGet(httpsPort, DOMAIN, '/healthz', { ca: pebble.rootPem });
    expect(res.status).toBe(200);
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(relay!.url).toMatch(/^https:\/\/127\.0\.0\.1:/);

    // Account key and certificate persist, 0600 in a 0700 folder.
    const dir = path.join(data.dir, 'tls');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of ['account-key.pem', 'certificate.json']) expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
  });

  it('port 80 answers ACME challenges and redirects everything else to HTTPS with the same path and query', async () => {
    relay!.tls.challenges.set('tok-123', 'tok-123.thumbprint');
    const answer = await httpGet(httpPort, DOMAIN, '/.well-known/acme-challenge/tok-123');
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('tok-123.thumbprint');
    relay!.tls.challenges.delete('tok-123');
    expect((await httpGet(httpPort, DOMAIN, '/.well-known/acme-challenge/tok-123')).status).toBe(404);

    const home = await httpGet(httpPort, `${DOMAIN}:${httpPort}`, '/login?next=%2Fdevices&x=1');
    expect(home.status).toBe(301);
    expect(home.headers.location).toBe(`https://${DOMAIN}:${httpsPort}/login?next=%2Fdevices&x=1`);
    const device = await httpGet(httpPort, `mk3s.${DOMAIN}`, '/webcam/?action=stream', 'HEAD');
    expect(device.status).toBe(301);
    expect(device.headers.location).toBe(`https://mk3s.${DOMAIN}:${httpsPort}/webcam/?action=stream`);
    // A Host that is not ours goes to the relay's own name, never elsewhere.
    const foreign = await httpGet(httpPort, 'evil.example', '//evil.example/x');
    expect(foreign.headers.location).toBe(`https://${DOMAIN}:${httpsPort}//evil.example/x`);
  });

  it('a restart reuses the stored certificate: no new order', async () => {
    await relay!.close();
    ({ relay, lines } = await start());
    const status = relay!.tls.status();
    expect(status.orders).toBe(0);
    expect(pebble.orders()).toBe(1);
    expect(status.fingerprint256).toBe(first);
    expect(messages(lines)).toContain('using the stored certificate');
    expect((await tlsPeer(httpsPort, DOMAIN, pebble.rootPem)).fingerprint256).toBe(first);
  });

  it('renews at two thirds of the lifetime (injected clock) and swaps the certificate without dropping open connections', async () => {
    const before = relay!.tls.status();
    const renewAt = before.renewAt!.getTime();
    expect(renewAt - before.notBefore!.getTime()).toBeCloseTo(((before.notAfter!.getTime() - before.notBefore!.getTime()) * 2) / 3, -3);

    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const open = await httpsGet(httpsPort, DOMAIN, '/healthz', { ca: pebble.rootPem, agent });
    expect(open.fingerprint256).toBe(first);

    offset = renewAt - 60_000 - Date.now();
    await relay!.tls.check();
    expect(relay!.tls.status().orders).toBe(0); // not due yet

    offset = renewAt + 60_000 - Date.now();
    await relay!.tls.check();
    const after = relay!.tls.status();
    expect(after.orders).toBe(1);
    expect(pebble.orders()).toBe(2);
    expect(after.fingerprint256).not.toBe(first);
    expect(after.lastRenewalError).toBeUndefined();
    expect(messages(lines)).toContain('certificate renewed');

    // New connections get the new certificate…
    const fresh = await tlsPeer(httpsPort, `mk3s.${DOMAIN}`, pebble.rootPem);
    expect(fresh.authorized).toBe(true);
    expect(fresh.fingerprint256).toBe(after.fingerprint256);
    // …and the connection opened before the swap keeps working, on the old one.
    const again = await httpsGet(httpsPort, DOMAIN, '/healthz', { ca: pebble.rootPem, agent });
    expect(again.status).toBe(200);
    expect(again.reused).toBe(true);
    expect(again.fingerprint256).toBe(first);
    agent.destroy();
    offset = 0;
  });

  it('ACME server unreachable: keeps serving the current certificate, logs, retries; a close expiry is logged loudly', async () => {
    const current = relay!.tls.status();
    await pebble.close(); // the CA is gone from here on
    offset = current.renewAt!.getTime() + 60_000 - Date.now();
    await relay!.tls.check();
    let status = relay!.tls.status();
    expect(status.consecutiveFailures).toBe(1);
    expect(status.lastRenewalError).toMatch(/ACME directory .* unreachable: connect ECONNREFUSED/);
    expect(status.nextAttemptAt).toBeDefined();
    expect(status.fingerprint256).toBe(current.fingerprint256);
    expect(lines.find((l) => l.msg === 'certificate renewal failed; still serving the current certificate, will retry')).toMatchObject({ level: 40, failures: 1 });

    // It retries on its own, with backoff.
    await until(() => relay!.tls.status().consecutiveFailures >= 3, 10_000, 'two retries');
    const peer = await tlsPeer(httpsPort, DOMAIN, pebble.rootPem);
    expect(peer.authorized).toBe(true);
    expect(peer.fingerprint256).toBe(current.fingerprint256);
    expect((await httpsGet(httpsPort, DOMAIN, '/healthz', { ca: pebble.rootPem })).status).toBe(200);

    // Into the last sixth of the lifetime without a renewal: loud, and visible in the status.
    expect(relay!.tls.status().expiringSoon).toBe(false);
    const lifetime = current.notAfter!.getTime() - current.notBefore!.getTime();
    offset = current.notAfter!.getTime() - lifetime / 12 - Date.now();
    await relay!.tls.check();
    status = relay!.tls.status();
    expect(status.expiringSoon).toBe(true);
    expect(status.expired).toBe(false);
    const alarm = lines.find((l) => String(l.msg).startsWith('TLS CERTIFICATE EXPIRES SOON'));
    expect(alarm).toMatchObject({ level: 50 });
    expect(String(alarm?.lastRenewalError)).toMatch(/unreachable/);
    await relay!.close();
    offset = 0;
  });

  it('first start with the CA unreachable: starts without a certificate, logs an error and keeps trying', async () => {
    const empty = tempDir('porthole-tls-empty-');
    try {
      const { relay: r, lines: l } = await start(config({ acmeDirectoryUrl: `https://127.0.0.1:${deadPort}/dir` }, empty.dir));
      try {
        expect(r.tls.status()).toMatchObject({ names: [], expiringSoon: true, consecutiveFailures: 1 });
        expect(l.find((x) => x.msg === 'could not obtain a certificate; will retry')).toMatchObject({ level: 50 });
        await expect(tlsPeer(httpsPort, DOMAIN)).rejects.toThrow();
        await until(() => r.tls.status().consecutiveFailures >= 2, 10_000, 'a retry');
      } finally {
        await r.close();
      }
    } finally {
      empty.cleanup();
    }
  });
});
