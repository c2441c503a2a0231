// With TLS on, readiness includes the certificate and the metrics its expiry (tls 'files', a
// self-signed certificate the test trusts).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { freePorts, selfSignedCertificate } from '@porthole/e2e/pebble';
import { afterAll, describe, expect, it } from 'vitest';
import { startRelay, type RunningRelay } from '../src/server.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';
import { httpsGet } from './tls-helpers.js';

const DOMAIN = 'ops.test';
const tmp = tempDir('porthole-ops-tls-');
let relay: RunningRelay | undefined;

afterAll(async () => {
  await relay?.close();
  tmp.cleanup();
});

describe('readiness and metrics with TLS on', () => {
  it('/readyz reports the certificate; /metrics has its expiry', async () => {
    const cert = await selfSignedCertificate(tmp.dir, 'ops', [DOMAIN, `*.${DOMAIN}`], 30);
    const pem = readFileSync(cert.certFile, 'utf8');
    const notAfter = new Date(new X509Certificate(pem).validTo);
    const [port, httpPort] = (await freePorts(2)) as [number, number];
    relay = await startRelay(
      testConfig(path.join(tmp.dir, 'data'), { tls: 'files', domain: DOMAIN, host: '127.0.0.1', port, httpPort, tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile }),
      { log: memoryLogger().log },
    );
    const ready = await httpsGet(port, DOMAIN, '/readyz', { ca: pem });
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({
      ok: true,
      checks: { database: { ok: true }, certificate: { ok: true, detail: expect.stringMatching(/^valid until \S+ \((29|30) days\)$/) } },
    });
    const metrics = await httpsGet(port, DOMAIN, '/metrics', { ca: pem });
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain(`porthole_tls_certificate_expiry_timestamp_seconds ${Math.floor(notAfter.getTime() / 1000)}`);
  });
});
