// Operations pieces on their own: readiness checks, who may scrape /metrics, the metrics' own
// bookkeeping, the metrics token setting.
import { EventEmitter } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { AuditKind } from '../src/accounts/audit.js';
import { loadConfig } from '../src/config.js';
import { RelayError } from '../src/errors.js';
import { agentDownloadRoutes, defaultAgentFiles } from '../src/ops/agent-download.js';
import { certificateCheck, databaseCheck, HealthChecks } from '../src/ops/health.js';
import { countAuditEvents, RelayMetrics, requestTarget } from '../src/ops/metrics.js';
import { opsRoutes } from '../src/ops/routes.js';
import { TunnelRegistry } from '../src/tunnel/registry.js';

const DAY = 86_400_000;

async function app(opts: { token?: string; health?: HealthChecks } = {}) {
  const health = opts.health ?? new HealthChecks(200);
  const metrics = new RelayMetrics({ tunnels: new TunnelRegistry(), webcam: () => ({ cameras: 2, viewers: 5 }) });
  const a = Fastify();
  await a.register(opsRoutes, { health, metrics, ...(opts.token !== undefined ? { metricsToken: opts.token } : {}) });
  await a.ready();
  return { a, health, metrics };
}

describe('readiness', () => {
  it('is ready when every check passes; a failing, throwing or hanging check makes it 503', async () => {
    const { a, health } = await app();
    expect((await a.inject('/readyz')).json()).toEqual({ ok: true, checks: {} });
    health.register('database', () => ({ ok: true }));
    let r = await a.inject('/readyz');
    expect(r.statusCode).toBe(200);
    expect(r.headers['cache-control']).toBe('no-store');
    const off = health.register('certificate', () => ({ ok: false, detail: 'no certificate yet' }));
    health.register('thrower', () => {
      throw new Error('boom\nsecond line');
    });
    health.register('hang', () => new Promise(() => undefined));
    r = await a.inject('/readyz');
    expect(r.statusCode).toBe(503);
    expect(r.json()).toEqual({
      ok: false,
      checks: {
        database: { ok: true },
        certificate: { ok: false, detail: 'no certificate yet' },
        thrower: { ok: false, detail: 'boom' },
        hang: { ok: false, detail: 'no answer within 200 ms' },
      },
    });
    off();
    expect(health.names).toEqual(['database', 'thrower', 'hang']);
  });

  it('the database check hides the error from the public and hands it to the log', async () => {
    const logged: unknown[] = [];
    const check = databaseCheck(() => Promise.reject(new Error('SQLITE_CANTOPEN /var/lib/porthole/porthole.db')), (e) => logged.push(e));
    expect(await check()).toEqual({ ok: false, detail: 'the database does not answer (see the relay log)' });
    expect(logged).toHaveLength(1);
    expect(await databaseCheck(() => Promise.resolve(1), () => undefined)()).toEqual({ ok: true });
  });

  it('the certificate check: none, expired, valid, renewal overdue', () => {
    const now = Date.parse('2026-03-01T00:00:00Z');
    const state = (notAfter: Date | undefined, extra: Partial<{ expired: boolean; expiringSoon: boolean; lastRenewalError: string }> = {}) =>
      certificateCheck(() => ({ notAfter, expired: false, expiringSoon: false, lastRenewalError: undefined, ...extra }), () => now)();
    expect(state(undefined)).toEqual({ ok: false, detail: 'no certificate yet' });
    expect(state(new Date(now - 1000))).toMatchObject({ ok: false, detail: expect.stringContaining('expired') });
    expect(state(new Date(now + 40 * DAY))).toEqual({ ok: true, detail: 'valid until 2026-04-10T00:00:00.000Z (40 days)' });
    expect(state(new Date(now + 5 * DAY), { expiringSoon: true, lastRenewalError: 'DNS' })).toEqual({
      ok: true,
      detail: 'valid until 2026-03-06T00:00:00.000Z (5 days); renewal overdue (the last attempt failed)',
    });
  });
});

describe('/metrics access', () => {
  it('without a token: loopback only, and never a forwarded request', async () => {
    const { a } = await app();
    const ok = await a.inject({ url: '/metrics', remoteAddress: '127.0.0.1' });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('porthole_webcam_viewers 5');
    expect(ok.body).toContain('porthole_webcam_cameras 2');
    expect((await a.inject({ url: '/metrics', remoteAddress: '::1' })).statusCode).toBe(200);
    expect((await a.inject({ url: '/metrics', remoteAddress: '203.0.113.7' })).statusCode).toBe(403);
    expect((await a.inject({ url: '/metrics', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '203.0.113.7' } })).statusCode).toBe(403);
    expect((await a.inject({ url: '/metrics', remoteAddress: '127.0.0.1', headers: { forwarded: 'for=203.0.113.7' } })).statusCode).toBe(403);
  });

  it('with a token: the bearer token from anywhere, loopback without it refused', async () => {
    const token = 'a-long-enough-token-42';
    const { a } = await app({ token });
    expect((await a.inject({ url: '/metrics', remoteAddress: '203.0.113.7', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200);
    const refused = await a.inject({ url: '/metrics', remoteAddress: '127.0.0.1' });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['www-authenticate']).toBe('Bearer realm="metrics"');
    expect((await a.inject({ url: '/metrics', headers: { authorization: `Bearer ${token}x` } })).statusCode).toBe(401);
    expect((await a.inject({ url: '/metrics', headers: { authorization: token } })).statusCode).toBe(401);
  });

  it('PORTHOLE_METRICS_TOKEN is read, and a short one refused', () => {
    expect(loadConfig({ env: { PORTHOLE_METRICS_TOKEN: 'a-long-enough-token-42' } }).metricsToken).toBe('a-long-enough-token-42');
    expect(loadConfig({ env: {} }).metricsToken).toBeUndefined();
    expect(() => loadConfig({ env: { PORTHOLE_METRICS_TOKEN: 'short' } })).toThrow(RelayError);
  });
});

describe('RelayMetrics', () => {
  const text = async (m: RelayMetrics) => (await m.render()).body;

  it('times requests by target and status class when they finish', async () => {
    const m = new RelayMetrics({ tunnels: new TunnelRegistry() });
    const res = (status: number) => Object.assign(new EventEmitter(), { statusCode: status }) as unknown as ServerResponse;
    const a = res(200);
    const b = res(503);
    const c = res(404);
    m.timeRequest(a, 'device');
    m.timeRequest(b, 'device');
    m.timeRequest(c, 'relay');
    a.emit('finish');
    b.emit('finish');
    c.emit('finish');
    res(200).emit('finish'); // not timed: ignored
    const t = await text(m);
    expect(t).toContain('porthole_http_request_duration_seconds_count{target="device",code="2xx"} 1');
    expect(t).toContain('porthole_http_request_duration_seconds_count{target="device",code="5xx"} 1');
    expect(t).toContain('porthole_http_request_duration_seconds_count{target="relay",code="4xx"} 1');
  });

  it('tells device hosts from the relay\'s own', () => {
    const req = (host: string) => ({ headers: { host } }) as IncomingMessage;
    expect(requestTarget(req('mk3s.relay.example'), 'relay.example')).toBe('device');
    expect(requestTarget(req('MK3S.relay.example:8443'), 'relay.example')).toBe('device');
    expect(requestTarget(req('relay.example:8443'), 'relay.example')).toBe('relay');
    expect(requestTarget(req('evilrelay.example'), 'relay.example')).toBe('relay');
  });

  it('counts tunnel socket bytes while open and after they close', async () => {
    const m = new RelayMetrics({ tunnels: new TunnelRegistry() });
    const sock = Object.assign(new EventEmitter(), { bytesRead: 1000, bytesWritten: 300 });
    m.trackTunnelSocket(sock as never);
    expect(await text(m)).toContain('porthole_tunnel_bytes_total{direction="from_agent"} 1000');
    sock.bytesRead = 1500;
    sock.emit('close');
    sock.bytesRead = 9999; // after close it no longer counts
    const t = await text(m);
    expect(t).toContain('porthole_tunnel_bytes_total{direction="from_agent"} 1500');
    expect(t).toContain('porthole_tunnel_bytes_total{direction="to_agent"} 300');
  });

  it('counts auth failures and lockouts from audit events; the certificate expiry once watched', async () => {
    const m = new RelayMetrics({ tunnels: new TunnelRegistry() });
    const count = countAuditEvents(m);
    for (const k of [AuditKind.LoginFailed, AuditKind.LoginFailed, AuditKind.ShareRefused, AuditKind.LoginLocked, AuditKind.LoginSucceeded]) count(k);
    m.authFailure('agent');
    let t = await text(m);
    expect(t).toContain('porthole_auth_failures_total{kind="login"} 2');
    expect(t).toContain('porthole_auth_failures_total{kind="share"} 1');
    expect(t).toContain('porthole_auth_failures_total{kind="agent"} 1');
    expect(t).toContain('porthole_login_lockouts_total 1');
    expect(t).not.toContain('porthole_tls_certificate_expiry_timestamp_seconds');
    const served: { notAfter: Date | undefined } = { notAfter: undefined };
    m.watchCertificate(() => served);
    expect(await text(m)).toMatch(/^porthole_tls_certificate_expiry_timestamp_seconds 0$/m);
    served.notAfter = new Date('2026-05-01T00:00:00Z');
    t = await text(m);
    expect(t).toContain(`porthole_tls_certificate_expiry_timestamp_seconds ${Date.parse('2026-05-01T00:00:00Z') / 1000}`);
    expect(() => m.watchCertificate(() => undefined)).toThrow();
  });
});

describe('agent downloads', () => {
  it('serves the installer, the unit and the bundle; nothing else; says when the agent is not built', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'porthole-dl-'));
    writeFileSync(join(dir, 'install.sh'), '#!/bin/sh\necho hi\n');
    const a = Fastify();
    await a.register(agentDownloadRoutes, {
      files: {
        'install.sh': { path: join(dir, 'install.sh'), type: 'text/x-shellscript; charset=utf-8' },
        'porthole-agent.cjs': { path: join(dir, 'missing.cjs'), type: 'text/javascript; charset=utf-8' },
      },
    });
    const ok = await a.inject('/download/agent/install.sh');
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toBe('#!/bin/sh\necho hi\n');
    expect(ok.headers['content-type']).toBe('text/x-shellscript; charset=utf-8');
    expect(ok.headers['x-content-type-options']).toBe('nosniff');
    expect((await a.inject('/download/agent/porthole-agent.cjs')).json()).toEqual({ error: { code: 'RELAY_NOT_FOUND', message: 'Not found: this relay was built without the agent (npm run build)' } });
    for (const p of ['/download/agent/..%2F..%2Fpackage.json', '/download/agent/constructor', '/download/agent/agent.json']) {
      expect((await a.inject(p)).statusCode).toBe(404);
    }
  });

  it('points at the repository\'s files', () => {
    const files = defaultAgentFiles();
    expect(Object.keys(files).sort()).toEqual(['install.sh', 'porthole-agent.cjs', 'porthole-agent.service']);
    expect(files['install.sh']!.path).toMatch(/\/deploy\/agent\/install\.sh$/);
    expect(files['porthole-agent.cjs']!.path).toMatch(/\/apps\/agent\/dist\/porthole-agent\.cjs$/);
  });
});

describe('the example relay config', () => {
  it('is valid (with its secret from the environment)', () => {
    const file = join(import.meta.dirname, '../../../deploy/relay/relay.example.json');
    const c = loadConfig({ file, env: { PORTHOLE_CLOUDFLARE_API_TOKEN: 'token-from-the-environment' } });
    expect(c).toMatchObject({ domain: 'relay.example.com', tls: 'acme', port: 443, httpPort: 80, publicUrl: 'https://relay.example.com', dataDir: '/var/lib/porthole' });
  });
});
