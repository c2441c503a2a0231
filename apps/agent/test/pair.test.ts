// `porthole-agent pair` end to end against the relay's real pairing side (PairingService, its
// Fastify routes, a SQLite file) running in this process on 127.0.0.1.
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createPairCommand, EXIT_FAILED, type PairDeps } from '../src/commands/pair.js';
import { loadConfig } from '../src/config/index.js';
import { propose, type Detection } from '../src/detect/index.js';
import { main, type CommandContext } from '../src/main.js';
import { PairingError, pollPairing, relayUrls, startPairing, type PairingEndpoint } from '../src/pairing/client.js';
import { AGENT_VERSION } from '../src/version.js';
import { closedPort, until } from './helpers.js';

// ---- the relay side, imported from the relay's sources at run time -------------------------
// (a static import would pull the relay's sources into the agent's type check; the shapes used
// here are declared below and checked by what the tests assert).

interface PairingInfo {
  code: string;
  name: string;
  agent: string;
  remote: string;
}
interface Harness {
  readonly url: string;
  readonly port: number;
  readonly pairing: {
    approve(input: { code: string; ownerUserId: string; name?: string; slug?: string }): Promise<{ device: { id: string; slug: string } }>;
    deny(code: string): unknown;
    lookup(code: string): PairingInfo | undefined;
    readonly size: number;
  };
  readonly ownerId: string;
  authenticate(credential: string): Promise<{ ok: boolean; slug?: string }>;
  owners(deviceId: string): Promise<string[]>;
  waitForCode(timeoutMs?: number): Promise<string>;
  restart(): Promise<void>;
  stop(): Promise<void>;
  close(): Promise<void>;
}
interface HarnessOptions {
  limits?: Record<string, number>;
  tls?: { key: Buffer; cert: Buffer };
}

const HARNESS = new URL('../../relay/test/pairing-harness.ts', import.meta.url).href;

async function startRelay(opts: HarnessOptions = {}): Promise<Harness> {
  const m = (await import(/* @vite-ignore */ HARNESS)) as { startPairingHarness(o: HarnessOptions): Promise<Harness> };
  const h = await m.startPairingHarness(opts);
  cleanups.push(() => h.close());
  return h;
}

// ---- helpers -------------------------------------------------------------------------------

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

const root = mkdtempSync(join(tmpdir(), 'porthole-agent-pair-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
/** A fresh directory; the config goes in a sub-directory that does not exist yet. */
const freshConfigPath = () => join(root, `case-${++n}`, 'porthole', 'agent.json');

function context(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const handlers = new Map<string, (s: NodeJS.Signals) => void>();
  const ctx: CommandContext = {
    env,
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    onSignal: (signals, handler) => {
      for (const s of signals) handlers.set(s, handler);
      return () => {
        for (const s of signals) handlers.delete(s);
      };
    },
  };
  return { ctx, out: () => out.join(''), err: () => err.join(''), signal: (s: NodeJS.Signals) => handlers.get(s)?.(s), handlers };
}

/** Detection finds nothing here unless a test says otherwise (this machine's ports are not a printer's). */
const NOTHING_DETECTED = async (): Promise<Detection> => ({ host: '127.0.0.1', ports: [], findings: [], proposal: undefined });
const FAST: PairDeps = { minPollIntervalMs: 20, retryBaseMs: 20, retryCapMs: 100, hostname: () => 'octopi', detect: NOTHING_DETECTED };
const pair = (args: string[], ctx: CommandContext, deps: PairDeps = FAST) => createPairCommand(deps).main(args, ctx);

/** Runs the command until it shows a code, approves that code, and returns the exit code. */
async function pairAndApprove(relay: Harness, args: string[], approve: { name?: string; slug?: string } = {}) {
  const c = context();
  const running = pair(args, c.ctx);
  const code = await relay.waitForCode();
  await until(() => c.out().includes(code), 5_000, 'the code on stdout');
  const { device } = await relay.pairing.approve({ code, ownerUserId: relay.ownerId, ...approve });
  const exit = await running;
  return { exit, code, device, out: c.out(), err: c.err() };
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;

// ---- tests ---------------------------------------------------------------------------------

describe('relayUrls', () => {
  it.each([
    ['https://relay.example', 'https://relay.example', 'wss://relay.example'],
    ['https://relay.example/', 'https://relay.example', 'wss://relay.example'],
    ['wss://relay.example:8443/porthole/', 'https://relay.example:8443/porthole', 'wss://relay.example:8443/porthole'],
    ['http://127.0.0.1:8080', 'http://127.0.0.1:8080', 'ws://127.0.0.1:8080'],
    ['ws://[::1]:8080', 'http://[::1]:8080', 'ws://[::1]:8080'],
  ])('%s pairs at %s and connects to %s', (raw, http, ws) => {
    expect(relayUrls(raw)).toEqual({ http, ws });
  });

  it.each(['ftp://relay.example', 'relay.example', 'https://u:p@relay.example', 'https://relay.example/?x=1'])('refuses %s', (raw) => {
    expect(relayUrls(raw)).toHaveProperty('error');
  });
});

describe('porthole-agent pair', () => {
  it('is a command of porthole-agent, with help', async () => {
    const c = context();
    expect(await main(['pair', '--help'], c.ctx)).toBe(0);
    expect(c.out()).toContain('Usage: porthole-agent pair --relay URL');
    const h = context();
    expect(await main(['--help'], h.ctx)).toBe(0);
    expect(h.out()).toMatch(/\n {2}pair +pair this printer with a relay/);
  });

  it.each([
    ['no --relay', []],
    ['a bad relay URL', ['--relay', 'ftp://relay.example']],
    ['a service without a URL', ['--relay', 'http://127.0.0.1:1', '--service', 'ui']],
    ['a service given twice', ['--relay', 'http://127.0.0.1:1', '--service', 'ui=http://127.0.0.1:1', '--service', 'ui=http://127.0.0.1:2']],
    ['a route without a service', ['--relay', 'http://127.0.0.1:1', '--route', '/webcam/']],
    ['an unknown route flag', ['--relay', 'http://127.0.0.1:1', '--route', '/webcam/=webcam,sprit']],
    ['an unknown option', ['--relay', 'http://127.0.0.1:1', '--bogus']],
    ['a positional argument', ['--relay', 'http://127.0.0.1:1', 'extra']],
    ['an empty name', ['--relay', 'http://127.0.0.1:1', '--name', ' ']],
  ])('exits 64 on %s', async (_what, args) => {
    const c = context();
    expect(await pair([...args, '--config', freshConfigPath()], c.ctx)).toBe(64);
    expect(c.err()).toContain('Usage: porthole-agent pair');
  });

  it('pairs: shows the code, gets the credential once approved, writes a 0600 config the agent accepts', async () => {
    const relay = await startRelay();
    const file = freshConfigPath();
    const r = await pairAndApprove(
      relay,
      [
        '--relay', relay.url,
        '--config', file,
        '--name', 'Garage MK3S',
        '--service', 'ui=http://127.0.0.1:5000',
        '--service', 'webcam=http://127.0.0.1:8080',
        '--route', '/=ui',
        '--route', '/webcam/=webcam,strip',
      ],
      { slug: 'mk3s' },
    );
    expect(r.err).toBe('');
    expect(r.exit).toBe(0);
    expect(r.out).toContain(`Open https://relay.example/app/pair?code=${r.code} and enter ${r.code}`);
    expect(r.out).toContain(`|  ${r.code}  |`);
    expect(r.out).toContain('Paired: this printer is "Garage MK3S" (mk3s)');

    // The file: 0600 in a new 0700 directory, nothing else left there, and it is the agent's config.
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(file, '..')).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(file, '..'))).toEqual(['agent.json']);
    const config = loadConfig(file);
    expect(config.relay).toBe(`ws://127.0.0.1:${relay.port}`);
    expect(config.services).toMatchObject({ ui: { host: '127.0.0.1', port: 5000 }, webcam: { port: 8080 } });
    expect(config.routes).toEqual([
      { path: '/', service: 'ui', stripPrefix: false },
      { path: '/webcam/', service: 'webcam', stripPrefix: true },
    ]);
    expect(readJson(file)).not.toHaveProperty('caFile');

    // The relay: the credential is the device's, its owner is the approver, the pairing is gone.
    expect(await relay.authenticate(config.credential)).toEqual({ ok: true, slug: 'mk3s' });
    expect(await relay.owners(r.device.id)).toEqual([relay.ownerId]);
    expect(relay.pairing.size).toBe(0);
  });

  it('tells the relay its name (the host name by default) and version', async () => {
    const relay = await startRelay();
    const c = context();
    const running = pair(['--relay', relay.url, '--config', freshConfigPath()], c.ctx);
    const code = await relay.waitForCode();
    expect(relay.pairing.lookup(code)).toMatchObject({ name: 'octopi', agent: AGENT_VERSION, remote: '127.0.0.1' });
    relay.pairing.deny(code);
    expect(await running).toBe(EXIT_FAILED);
  });

  it('writes a default service when none is given, and says to adjust it', async () => {
    const relay = await startRelay();
    const file = freshConfigPath();
    const r = await pairAndApprove(relay, ['--relay', relay.url, '--config', file]);
    expect(r.exit).toBe(0);
    expect(readJson(file)).toMatchObject({
      services: { ui: { url: 'http://127.0.0.1:80' } },
      routes: [{ path: '/', service: 'ui' }],
    });
    expect(r.out).toContain('That is a default: edit "services"');
    expect(r.out).toContain(`porthole-agent run --config ${file}`);
  });

  it('uses what detection finds when no service is given, profiles included', async () => {
    const relay = await startRelay();
    const file = freshConfigPath();
    const findings = [
      { port: 5000, kind: 'octoprint' as const, detail: 'OctoPrint 1.10.2' },
      { port: 8080, kind: 'mjpeg' as const, detail: 'mjpg-streamer' },
    ];
    let asked = 0;
    const detect = async (): Promise<Detection> => {
      asked++;
      return { host: '127.0.0.1', ports: [5000, 8080], findings, proposal: propose('127.0.0.1', findings) };
    };
    const c = context();
    const running = pair(['--relay', relay.url, '--config', file], c.ctx, { ...FAST, detect });
    const code = await relay.waitForCode();
    await relay.pairing.approve({ code, ownerUserId: relay.ownerId });
    expect(await running).toBe(0);
    expect(asked).toBe(1);
    expect(c.out()).toContain('Found on this machine: OctoPrint with a webcam (mjpg-streamer)');
    expect(c.out()).not.toContain('That is a default');
    expect(readJson(file)).toMatchObject({
      services: {
        octoprint: { url: 'http://127.0.0.1:5000', profile: 'octoprint' },
        webcam: { url: 'http://127.0.0.1:8080', profile: 'camera' },
      },
      routes: [
        { path: '/', service: 'octoprint' },
        { path: '/webcam/', service: 'webcam', stripPrefix: true },
      ],
    });
    // Services given on the command line: no detection.
    const c2 = context();
    const running2 = pair(['--relay', relay.url, '--config', freshConfigPath(), '--service', 'ui=http://127.0.0.1:5000'], c2.ctx, { ...FAST, detect });
    relay.pairing.deny(await relay.waitForCode());
    expect(await running2).toBe(EXIT_FAILED);
    expect(asked).toBe(1);
  });

  it('keeps the services of a config that has no credential yet', async () => {
    const relay = await startRelay();
    const file = freshConfigPath();
    mkdirSync(join(file, '..'), { recursive: true });
    const template = {
      services: { mainsail: { url: 'http://127.0.0.1:80' }, moonraker: { url: 'http://127.0.0.1:7125' } },
      routes: [
        { path: '/', service: 'mainsail' },
        { path: '/websocket/', service: 'moonraker' },
      ],
      logLevel: 'debug',
    };
    writeFileSync(file, JSON.stringify(template), { mode: 0o644 });
    const r = await pairAndApprove(relay, ['--relay', relay.url, '--config', file]);
    expect(r.exit).toBe(0);
    expect(readJson(file)).toMatchObject({ ...template, relay: `ws://127.0.0.1:${relay.port}`, credential: expect.stringMatching(/^pdc_/) });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(r.out).not.toContain('That is a default');
  });

  it('refuses to replace a config that has a credential, unless --force', async () => {
    const relay = await startRelay();
    const file = freshConfigPath();
    mkdirSync(join(file, '..'), { recursive: true });
    const old = {
      relay: 'wss://old.example',
      credential: 'pdc_old',
      services: { ui: { url: 'http://127.0.0.1:5000' } },
      routes: [{ path: '/', service: 'ui' }],
    };
    writeFileSync(file, JSON.stringify(old), { mode: 0o600 });

    const c = context();
    expect(await pair(['--relay', relay.url, '--config', file], c.ctx)).toBe(78);
    expect(c.err()).toContain('already has a credential');
    expect(c.err()).toContain('--force');
    expect(relay.pairing.size).toBe(0);
    expect(readJson(file)).toEqual(old);

    const r = await pairAndApprove(relay, ['--relay', relay.url, '--config', file, '--force']);
    expect(r.exit).toBe(0);
    const now = readJson(file);
    expect(now.credential).not.toBe('pdc_old');
    expect(now.relay).toBe(`ws://127.0.0.1:${relay.port}`);
    expect(now.services).toEqual(old.services);
  });

  it.each([
    ['a service outside the LAN', ['--service', 'ui=http://example.com:80'], 'local network'],
    ['a route to a missing service', ['--service', 'ui=http://127.0.0.1:5000', '--route', '/=nope'], 'no service named'],
    ['a bad route path', ['--service', 'ui=http://127.0.0.1:5000', '--route', 'webcam=ui'], "must start and end with '/'"],
    ['an unreadable CA file', ['--ca', '/nonexistent/ca.pem'], 'cannot read the CA file'],
  ])('exits 78 before contacting the relay on %s', async (_what, args, message) => {
    const relay = await startRelay();
    const c = context();
    expect(await pair(['--relay', relay.url, '--config', freshConfigPath(), ...args], c.ctx)).toBe(78);
    expect(c.err()).toContain(message);
    expect(relay.pairing.size).toBe(0);
  });

  it('exits 78 when the config directory cannot be made', async () => {
    const relay = await startRelay();
    // A file where the directory should be: fails for root too.
    const blocker = join(root, `blocker-${++n}`);
    writeFileSync(blocker, '');
    const c = context();
    expect(await pair(['--relay', relay.url, '--config', join(blocker, 'porthole', 'agent.json')], c.ctx)).toBe(78);
    expect(c.err()).toContain('cannot write');
    expect(c.err()).toContain('ENOTDIR');
    expect(relay.pairing.size).toBe(0);
  });

  it('exits 1 and writes nothing when the owner denies the code', async () => {
    const relay = await startRelay();
    const file = freshConfigPath();
    const c = context();
    const running = pair(['--relay', relay.url, '--config', file], c.ctx);
    relay.pairing.deny(await relay.waitForCode());
    expect(await running).toBe(1);
    expect(c.err()).toContain('denied');
    expect(() => statSync(file)).toThrow();
  });

  it('exits 1 when the code expires', async () => {
    const relay = await startRelay({ limits: { ttlMs: 600, pollWaitMs: 200 } });
    const file = freshConfigPath();
    const c = context();
    const code = await pair(['--relay', relay.url, '--config', file], c.ctx);
    expect(code).toBe(1);
    expect(c.err()).toContain('expired');
    expect(() => statSync(file)).toThrow();
  });

  it('starts over with a new code when the relay restarts, and rides out the outage', async () => {
    const relay = await startRelay({ limits: { pollWaitMs: 200 } });
    const file = freshConfigPath();
    const c = context();
    const running = pair(['--relay', relay.url, '--config', file], c.ctx);
    const first = await relay.waitForCode();
    await until(() => c.out().includes(first), 5_000, 'first code shown');

    await relay.stop();
    await until(() => c.err().includes('still trying'), 5_000, 'the agent noticing the outage');
    await relay.restart();
    const second = await relay.waitForCode();
    expect(second).not.toBe(first);
    await until(() => c.out().includes(second), 5_000, 'second code shown');
    expect(c.out()).toContain('Starting over with a new code');
    expect(relay.pairing.lookup(first)).toBeUndefined();

    await relay.pairing.approve({ code: second, ownerUserId: relay.ownerId });
    expect(await running).toBe(0);
    expect(await relay.authenticate(loadConfig(file).credential)).toMatchObject({ ok: true });
  });

  it('exits 1 when the relay cannot be reached', async () => {
    const port = await closedPort();
    const c = context();
    expect(await pair(['--relay', `http://127.0.0.1:${port}`, '--config', freshConfigPath()], c.ctx)).toBe(1);
    expect(c.err()).toContain('cannot reach the relay');
  });

  it('exits 1 when the relay does not pair devices (404)', async () => {
    const relay = await startRelay();
    const c = context();
    // A path prefix the relay does not serve stands in for an old relay.
    expect(await pair(['--relay', `${relay.url}/old`, '--config', freshConfigPath()], c.ctx)).toBe(1);
    expect(c.err()).toContain('recent enough to pair devices');
  });

  it('cancels on Ctrl-C: exits 1, writes nothing, and the relay-side wait ends', async () => {
    const relay = await startRelay();
    const file = freshConfigPath();
    const c = context();
    const running = pair(['--relay', relay.url, '--config', file], c.ctx);
    await relay.waitForCode();
    await until(() => c.handlers.has('SIGINT'), 5_000, 'signal handler');
    c.signal('SIGINT');
    expect(await running).toBe(1);
    expect(c.err()).toContain('cancelled');
    expect(c.handlers.size).toBe(0);
    expect(() => statSync(file)).toThrow();
  });

  it('pairs over HTTPS with a private CA given by --ca, and records it as caFile', async () => {
    const dir = join(root, `tls-${++n}`);
    mkdirSync(dir);
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=porthole test relay', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });
    const relay = await startRelay({ tls: { key: readFileSync(key), cert: readFileSync(cert) } });
    expect(relay.url).toMatch(/^https:/);

    const untrusted = context();
    expect(await pair(['--relay', relay.url, '--config', freshConfigPath()], untrusted.ctx)).toBe(1);
    expect(untrusted.err()).toMatch(/cannot reach the relay \(.*(certificate|self.signed)/i);

    const file = freshConfigPath();
    const r = await pairAndApprove(relay, ['--relay', relay.url, '--config', file, '--ca', cert]);
    expect(r.exit).toBe(0);
    const config = loadConfig(file);
    expect(config.relay).toBe(`wss://127.0.0.1:${relay.port}`);
    expect(config.caFile).toBe(cert);
  });

  it('warns when the relay is plain HTTP on another host', async () => {
    const c = context();
    // Nothing listens there: only the warning matters.
    const port = await closedPort();
    await pair(['--relay', `http://printer-relay.localdomain.invalid:${port}`, '--config', freshConfigPath()], c.ctx);
    expect(c.err()).toContain('is not HTTPS: the credential will cross the network in clear');
  });
});

describe('the pairing client reads only answers of the expected shape', () => {
  /** A relay that answers every request with this status and JSON body. */
  async function cannedRelay(status: number, body: unknown): Promise<PairingEndpoint> {
    const server = createServer((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  const started = {
    pairingId: '0123abcd-0123-4567-89ab-0123456789ab',
    code: 'ABCD-1234',
    pollToken: 'a'.repeat(43),
    expiresAt: '2030-01-01T00:00:00.000Z',
    approveUrl: 'https://relay.example/app/pair?code=ABCD-1234',
  };
  const approved = { status: 'approved', credential: 'pdc_x', slug: 'mk3s', name: 'Garage', deviceId: 'd1' };
  const input = { name: 'octopi', agent: AGENT_VERSION };
  const poll = { pairingId: started.pairingId, pollToken: started.pollToken };

  it('takes a start answer with every field right, and keeps only the known fields', async () => {
    const r = await startPairing(await cannedRelay(201, { ...started, extra: 'x' }), input);
    expect(Object.keys(r).sort()).toEqual(['approveUrl', 'code', 'expiresAt', 'pairingId', 'pollToken', 'ttlMs']);
    expect(r.expiresAt.toISOString()).toBe(started.expiresAt);
  });

  it.each([
    ['not an object', ['x']],
    ['a missing field', { ...started, code: undefined }],
    ['a pairing id of the wrong shape', { ...started, pairingId: 'x' }],
    ['a code with a letter not in the alphabet', { ...started, code: 'ABCI-1234' }],
    ['a short poll token', { ...started, pollToken: 'a'.repeat(42) }],
    ['a number for a string', { ...started, pollToken: 43 }],
    ['an expiry that is not a date', { ...started, expiresAt: 'soon' }],
    ['an approve URL that is not http(s)', { ...started, approveUrl: 'javascript:alert(1)' }],
    ['an approve URL with a control character', { ...started, approveUrl: 'https://relay.example/\n' }],
    ['an approve URL over 2048 characters', { ...started, approveUrl: `https://relay.example/${'a'.repeat(2048)}` }],
  ])('refuses a start answer with %s', async (_what, body) => {
    const err = await startPairing(await cannedRelay(201, body), input).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PairingError);
    expect(err).toMatchObject({ message: 'the relay sent an unexpected answer to the pairing request', transient: false, status: 201 });
  });

  it('takes each poll answer, with only its known fields', async () => {
    expect(await pollPairing(await cannedRelay(200, { status: 'pending', extra: 1 }), poll)).toEqual({ status: 'pending' });
    expect(await pollPairing(await cannedRelay(200, { ...approved, extra: 1 }), poll)).toEqual(approved);
    expect(await pollPairing(await cannedRelay(410, { status: 'expired' }), poll)).toEqual({ status: 'expired' });
    expect(await pollPairing(await cannedRelay(403, { status: 'denied' }), poll)).toEqual({ status: 'denied' });
    // 403 and 410 say what happened by themselves, whatever the body.
    expect(await pollPairing(await cannedRelay(403, { status: 'approved' }), poll)).toEqual({ status: 'denied' });
    expect(await pollPairing(await cannedRelay(410, 'gone'), poll)).toEqual({ status: 'expired' });
  });

  it.each([
    ['an unknown status', { status: 'maybe' }],
    ['no status', {}],
    ['a status that does not fit a 200', { status: 'denied' }],
    ['an approval without a credential', { ...approved, credential: undefined }],
    ['a credential with a space', { ...approved, credential: 'pdc x' }],
    ['an upper-case slug', { ...approved, slug: 'MK3S' }],
    ['an empty name', { ...approved, name: '' }],
    ['a name over 200 characters', { ...approved, name: 'n'.repeat(201) }],
    ['a device id over 100 characters', { ...approved, deviceId: 'd'.repeat(101) }],
    ['a list', [approved]],
  ])('refuses a poll answer with %s', async (_what, body) => {
    const err = await pollPairing(await cannedRelay(200, body), poll).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PairingError);
    expect(err).toMatchObject({ message: 'the relay sent an unexpected answer to a poll', transient: false, status: 200 });
  });
});
