// `porthole-agent doctor` against real sockets: a fake printer service, a fake relay, a TLS relay
// with a self-signed certificate, a name under .invalid. Each failure kind says what it is.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runDoctor, type CheckResult } from '../src/doctor/index.js';
import { main, type CommandContext } from '../src/main.js';
import { closedPort, CREDENTIAL, FakeRelay } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'porthole-doctor-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

let n = 0;
function configFile(content: unknown, mode = 0o600): string {
  const file = join(dir, `agent-${++n}.json`);
  writeFileSync(file, JSON.stringify(content), { mode });
  chmodSync(file, mode);
  return file;
}

async function printerService(): Promise<number> {
  const s = http.createServer((_req, res) => res.writeHead(200, { server: 'FakePrint/1.0', 'content-type': 'text/html' }).end('<title>OctoPrint</title>'));
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  cleanups.push(() => {
    s.closeAllConnections();
    return new Promise((r) => s.close(r));
  });
  return (s.address() as net.AddressInfo).port;
}

function context() {
  const out: string[] = [];
  const ctx: CommandContext = { env: {}, stdout: (t) => out.push(t), stderr: (t) => out.push(t), onSignal: () => () => undefined };
  return { ctx, out: () => out.join('') };
}

const config = (relay: string, services: Record<string, { url: string }>, extra: Record<string, unknown> = {}) => ({
  relay,
  credential: CREDENTIAL,
  services,
  routes: Object.keys(services).map((name, i) => ({ path: i === 0 ? '/' : `/${name}/`, service: name })),
  ...extra,
});

const byCode = (results: CheckResult[], code: string) => results.filter((r) => r.code === code);

/** A self-signed certificate for 127.0.0.1 (and only that). */
function selfSigned(days = 1): { key: Buffer; cert: Buffer; certFile: string } {
  const key = join(dir, `key-${++n}.pem`);
  const cert = join(dir, `cert-${n}.pem`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', String(days),
    '-subj', '/CN=porthole doctor test', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { key: readFileSync(key), cert: readFileSync(cert), certFile: cert };
}

/** A TLS "relay" that refuses every agent upgrade with `status`, recording what reached it. */
async function tlsRelay(tlsFiles: { key: Buffer; cert: Buffer }, status: number) {
  const upgrades: Array<string | undefined> = [];
  const server = https.createServer({ key: tlsFiles.key, cert: tlsFiles.cert }, (_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket) => {
    upgrades.push(req.headers.authorization);
    socket.end(`HTTP/1.1 ${status} Refused\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return { port: (server.address() as net.AddressInfo).port, upgrades };
}

describe('porthole-agent doctor', () => {
  it('all good: config, a service that answers, a relay that accepts the credential (exit 0)', async () => {
    const relay = await FakeRelay.start();
    cleanups.push(() => relay.close());
    const svc = await printerService();
    const file = configFile(config(relay.url, { ui: { url: `http://127.0.0.1:${svc}` } }));
    const c = context();
    expect(await main(['doctor', '--config', file], c.ctx)).toBe(0);
    expect(c.out()).toContain(`Config ${file}`);
    expect(c.out()).toContain('mode 0600: only its owner can read the credential');
    expect(c.out()).toContain(`ui (http://127.0.0.1:${svc}, at /): answers GET / with 200 OK, Server: FakePrint/1.0`);
    expect(c.out()).toContain('the relay accepts this printer\'s credential');
    expect(c.out()).toMatch(/All good\.\n$/);
    expect(c.out()).not.toContain('FAIL');
    // It asked with the check header and the agent's own credential and hello.
    expect(relay.upgrades).toHaveLength(1);
    expect(relay.upgrades[0]).toMatchObject({ authorization: `Bearer ${CREDENTIAL}`, hello: expect.any(String) });
  });

  it('service down: names the service and says nothing listens (exit 1)', async () => {
    const relay = await FakeRelay.start();
    cleanups.push(() => relay.close());
    const up = await printerService();
    const down = await closedPort();
    const file = configFile(config(relay.url, { ui: { url: `http://127.0.0.1:${up}` }, webcam: { url: `http://127.0.0.1:${down}` } }));
    const c = context();
    expect(await main(['doctor', '--config', file], c.ctx)).toBe(1);
    expect(c.out()).toContain(`FAIL  webcam (http://127.0.0.1:${down}, at /webcam/): nothing is listening there (connection refused). Is it running?`);
    expect(c.out()).toMatch(/ok {4}ui /);
    expect(c.out()).toMatch(/1 problem found\.\n$/);
  });

  it('config readable by others, missing, or invalid', async () => {
    const relay = await FakeRelay.start();
    cleanups.push(() => relay.close());
    const svc = await printerService();
    const open = configFile(config(relay.url, { ui: { url: `http://127.0.0.1:${svc}` } }), 0o644);
    const r1 = await runDoctor({ configPath: open, timeoutMs: 2_000 });
    expect(byCode(r1, 'config.mode')).toEqual([expect.objectContaining({ status: 'fail', text: expect.stringContaining(`chmod 600 ${open}`) })]);

    const r2 = await runDoctor({ configPath: join(dir, 'nope.json') });
    expect(r2).toEqual([expect.objectContaining({ code: 'config.missing', status: 'fail', text: expect.stringContaining('pair this printer first') })]);

    const bad = configFile({ relay: relay.url, credential: CREDENTIAL, services: { ui: { url: 'http://example.com:80' } }, routes: [{ path: '/', service: 'ui' }] });
    const r3 = await runDoctor({ configPath: bad });
    expect(r3).toEqual([expect.objectContaining({ code: 'config.invalid', status: 'fail', text: expect.stringContaining('services.ui.url') })]);
  });

  it('relay unresolvable: says the name does not resolve and checks nothing further', async () => {
    const svc = await printerService();
    const file = configFile(config('wss://relay.porthole-test.invalid', { ui: { url: `http://127.0.0.1:${svc}` } }));
    const c = context();
    expect(await main(['doctor', '--config', file, '--timeout', '5000'], c.ctx)).toBe(1);
    expect(c.out()).toMatch(/FAIL {2}DNS: relay\.porthole-test\.invalid (does not resolve|cannot be resolved)/);
    expect(c.out()).toContain('skip  connection, TLS and credential not checked');
  });

  it('relay port closed: says so', async () => {
    const svc = await printerService();
    const port = await closedPort();
    const r = await runDoctor({ configPath: configFile(config(`ws://127.0.0.1:${port}`, { ui: { url: `http://127.0.0.1:${svc}` } })) });
    expect(byCode(r, 'relay.tcp')).toEqual([expect.objectContaining({ status: 'fail', text: expect.stringContaining(`cannot connect to 127.0.0.1 port ${port}: nothing is listening`) })]);
  });

  it('TLS failure: a self-signed certificate is not trusted, and the credential is never sent', async () => {
    const svc = await printerService();
    const t = selfSigned();
    const relay = await tlsRelay(t, 403);
    const file = configFile(config(`wss://127.0.0.1:${relay.port}`, { ui: { url: `http://127.0.0.1:${svc}` } }));
    const c = context();
    expect(await main(['doctor', '--config', file], c.ctx)).toBe(1);
    expect(c.out()).toContain('FAIL  TLS: the relay presents a self-signed certificate, which this Pi does not trust');
    expect(c.out()).toContain('skip  credential not checked');
    expect(relay.upgrades).toEqual([]);

    // The wrong name: the certificate is for 127.0.0.1, not localhost.
    const named = await runDoctor({ configPath: configFile(config(`wss://localhost:${relay.port}`, { ui: { url: `http://127.0.0.1:${svc}` } }, { caFile: t.certFile })) });
    expect(byCode(named, 'relay.tls')).toEqual([expect.objectContaining({ status: 'fail', text: expect.stringContaining('for other names, not localhost (it names IP Address:127.0.0.1)') })]);
    expect(relay.upgrades).toEqual([]);
  });

  it('TLS trusted through caFile; a revoked credential is reported as such', async () => {
    const svc = await printerService();
    const t = selfSigned(30);
    const relay = await tlsRelay(t, 403);
    const file = configFile(config(`wss://127.0.0.1:${relay.port}`, { ui: { url: `http://127.0.0.1:${svc}` } }, { caFile: t.certFile }));
    const r = await runDoctor({ configPath: file });
    expect(byCode(r, 'relay.tls')).toEqual([expect.objectContaining({ status: 'ok', text: expect.stringMatching(/certificate for 127\.0\.0\.1 valid until \d{4}-\d\d-\d\d \((29|30) days\)/) })]);
    expect(byCode(r, 'relay.credential-revoked')).toEqual([expect.objectContaining({ status: 'fail', text: expect.stringContaining('it was revoked (HTTP 403)') })]);
    expect(relay.upgrades).toEqual([`Bearer ${CREDENTIAL}`]);
    // Close to expiry is worth a warning, not a failure.
    const soon = await runDoctor({ configPath: file, expiryWarnDays: 60 });
    expect(byCode(soon, 'relay.tls-expiry')).toEqual([expect.objectContaining({ status: 'warn', text: expect.stringContaining('renewal is due') })]);
  });
});
