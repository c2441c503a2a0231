import { once } from 'node:events';
import net from 'node:net';
import { encodeOpenRequest, OpenStatus, readOpenReply, type Session, type Stream } from '@porthole/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { realClock, type Clock } from '../src/clock.js';
import { createAgent } from '../src/commands/run.js';
import { parseConfig } from '../src/config/index.js';
import type { SupervisorEvents } from '../src/supervisor/index.js';
import { captureLogger, closedPort, CREDENTIAL, FakeRelay, fastClock, readAll, until } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function startRelay(port = 0): Promise<FakeRelay> {
  const relay = await FakeRelay.start(port);
  cleanups.push(() => relay.close());
  return relay;
}

/** A local echo service on 127.0.0.1 (half-close aware). */
async function echoServer(): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

interface Recorded {
  connected: SupervisorEvents['connected'][0][];
  disconnected: SupervisorEvents['disconnected'][0][];
  reconnecting: SupervisorEvents['reconnecting'][0][];
}

function startAgent(
  relayUrl: string,
  opts: {
    credential?: string;
    clock?: Clock;
    random?: () => number;
    drainTimeoutMs?: number;
    echoPort?: number;
    keepAlive?: { intervalMs: number; timeoutMs: number };
  } = {},
) {
  const config = parseConfig({
    relay: relayUrl,
    credential: opts.credential ?? CREDENTIAL,
    ...(opts.keepAlive !== undefined ? { keepAlive: opts.keepAlive } : {}),
    services: { echo: { url: `http://127.0.0.1:${opts.echoPort ?? 9}` } },
    routes: [{ path: '/', service: 'echo' }],
  });
  const log = captureLogger('debug');
  const { supervisor } = createAgent(config, {
    logger: log.logger,
    supervisor: {
      clock: opts.clock ?? fastClock(),
      random: opts.random ?? (() => 0.999_999),
      ...(opts.drainTimeoutMs !== undefined ? { drainTimeoutMs: opts.drainTimeoutMs } : {}),
    },
  });
  const rec: Recorded = { connected: [], disconnected: [], reconnecting: [] };
  supervisor.on('connected', (e) => rec.connected.push(e));
  supervisor.on('disconnected', (e) => rec.disconnected.push(e));
  supervisor.on('reconnecting', (e) => rec.reconnecting.push(e));
  let exitCode: number | undefined;
  const done = supervisor.run().then((code) => (exitCode = code));
  cleanups.push(async () => {
    supervisor.shutdown('cleanup');
    supervisor.shutdown('cleanup'); // and at once
    await done;
  });
  return { supervisor, done, log, rec, exited: () => exitCode };
}

async function openEcho(session: Session): Promise<Stream> {
  const stream = session.openStream();
  stream.on('error', () => undefined);
  stream.write(encodeOpenRequest({ service: 'echo' }));
  const reply = await readOpenReply(stream, 5_000);
  expect(reply.status).toBe(OpenStatus.Ok);
  return stream;
}

async function roundTrip(stream: Stream, text: string): Promise<string> {
  stream.write(text);
  let got = '';
  while (got.length < text.length) {
    const [chunk] = (await once(stream, 'data')) as [Buffer];
    got += chunk.toString();
  }
  return got;
}

const msgs = (log: ReturnType<typeof captureLogger>) => log.lines().map((l) => l.msg);

describe('supervisor against a real relay endpoint', () => {
  it('dials with the bearer credential and the hello, and logs tunnel connected', async () => {
    const relay = await startRelay();
    const agent = startAgent(relay.url);
    const conn = await relay.nextConnection();
    await until(() => agent.rec.connected.length === 1);
    expect(conn.authorization).toBe(`Bearer ${CREDENTIAL}`);
    expect(conn.hello).toMatchObject({ v: 1, services: [{ name: 'echo' }], routes: [{ path: '/', service: 'echo' }] });
    expect(relay.upgrades[0]!.path).toBe('/_porthole/agent');
    const line = agent.log.lines().find((l) => l.msg === 'tunnel connected')!;
    expect(line).toMatchObject({ relay: relay.url, conn: 1 });
    expect(typeof line.rtt).toBe('number');
    expect(agent.log.text()).not.toContain(CREDENTIAL);
  });

  it('retries transient refusals with growing full-jitter backoff, then connects', async () => {
    const relay = await startRelay();
    relay.answers = [500, 503, 429, 502];
    const clock = fastClock();
    const agent = startAgent(relay.url, { clock });
    await until(() => agent.rec.connected.length === 1, 10_000);
    expect(relay.upgrades.map((u) => u.answer)).toEqual([500, 503, 429, 502, 'accept']);
    expect(agent.rec.reconnecting.map((r) => r.delayMs)).toEqual([499, 999, 1999, 3999]);
    expect(clock.delays).toEqual([499, 999, 1999, 3999]); // nothing slept through them
    const failed = agent.log.lines().filter((l) => l.msg === 'tunnel dial failed');
    expect(failed.map((l) => l.status)).toEqual([500, 503, 429, 502]);
    expect(msgs(agent.log)).toContain('reconnecting in 3999 ms');
    expect(agent.exited()).toBeUndefined();
  });

  it('honours Retry-After on a 503', async () => {
    const relay = await startRelay();
    relay.answers = [503];
    relay.retryAfter = '7';
    const agent = startAgent(relay.url);
    await until(() => agent.rec.connected.length === 1);
    expect(agent.rec.reconnecting.map((r) => r.delayMs)).toEqual([7_000]);
  });

  it('retries network errors until the relay comes up', async () => {
    const port = await closedPort();
    const clock = fastClock();
    const agent = startAgent(`ws://127.0.0.1:${port}`, { clock });
    await until(() => agent.rec.reconnecting.length >= 3);
    const failed = agent.log.lines().filter((l) => l.msg === 'tunnel dial failed');
    expect(failed[0]).toMatchObject({ code: 'ERR_NETWORK' });
    expect(String(failed[0]!.reason)).toContain('ECONNREFUSED');
    await startRelay(port);
    await until(() => agent.rec.connected.length === 1, 10_000);
    expect(agent.exited()).toBeUndefined();
  });

  it.each([
    [401, 'ERR_CREDENTIAL_UNKNOWN'],
    [403, 'ERR_CREDENTIAL_REVOKED'],
  ])('stops for good on HTTP %i and exits 78', async (status, code) => {
    const relay = await startRelay();
    const agent =
      status === 401 ? startAgent(relay.url, { credential: 'pdc_wrong' }) : (relay.answers.push(403), startAgent(relay.url));
    expect(await agent.done).toBe(78);
    await new Promise((r) => setTimeout(r, 100));
    expect(relay.upgrades.map((u) => u.answer)).toEqual([status]);
    expect(agent.rec.reconnecting).toEqual([]);
    const line = agent.log.lines().find((l) => l.msg === 'credential refused — not retrying')!;
    expect(line).toMatchObject({ level: 'error', status, code });
    expect(msgs(agent.log)).toContain('agent stopped');
    expect(agent.log.text()).not.toContain('pdc_wrong');
  });

  it('stops for good when the relay closes with 4001 (revoked)', async () => {
    const relay = await startRelay();
    relay.on('connection', (c) => setTimeout(() => c.ws.close(4001, 'credential revoked'), 20));
    const agent = startAgent(relay.url);
    expect(await agent.done).toBe(78);
    await new Promise((r) => setTimeout(r, 100));
    expect(relay.upgrades).toHaveLength(1);
    expect(agent.rec.connected).toHaveLength(1);
    expect(agent.log.lines().find((l) => l.msg === 'credential refused — not retrying')).toMatchObject({
      closeCode: 4001,
      code: 'ERR_CREDENTIAL_REVOKED',
    });
  });

  it('reconnects after backoff when replaced by a newer connection (4000)', async () => {
    const relay = await startRelay();
    relay.once('connection', (c) => setTimeout(() => c.ws.close(4000, 'replaced by a newer connection'), 20));
    const agent = startAgent(relay.url);
    await until(() => agent.rec.connected.length === 2);
    expect(agent.rec.disconnected[0]!.error.code).toBe('ERR_REPLACED');
    expect(agent.rec.reconnecting.map((r) => r.delayMs)).toEqual([499]); // a backoff, not a prompt redial
    const line = agent.log.lines().find((l) => l.msg === 'tunnel disconnected')!;
    expect(line).toMatchObject({ closeCode: 4000, level: 'warn' });
    expect(String(line.reason)).toContain('replaced');
  });

  it('reconnects at once when the relay goes away (1001)', async () => {
    const relay = await startRelay();
    relay.once('connection', (c) => setTimeout(() => c.ws.close(1001, 'relay shutting down'), 20));
    const agent = startAgent(relay.url);
    await until(() => agent.rec.connected.length === 2);
    expect(agent.rec.reconnecting.map((r) => r.delayMs)).toEqual([0]);
  });

  it('reconnects with backoff when an established tunnel just drops', async () => {
    const relay = await startRelay();
    relay.once('connection', (c) => setTimeout(() => c.ws.terminate(), 20));
    const agent = startAgent(relay.url);
    await until(() => agent.rec.connected.length === 2);
    expect(agent.rec.disconnected[0]!.error.code).toBe('ERR_TUNNEL_CLOSED');
    expect(agent.rec.reconnecting).toHaveLength(1);
  });

  it('notices a relay that went silent through keep-alive, and redials', async () => {
    const relay = await startRelay();
    const agent = startAgent(relay.url, { keepAlive: { intervalMs: 1_000, timeoutMs: 2_000 } });
    const first = await relay.nextConnection(0);
    await until(() => agent.rec.connected.length === 1);
    // The relay stops reading and writing: a half-dead link, no FIN, no RST.
    (first.ws as unknown as { _socket: net.Socket })._socket.pause();
    const silentSince = Date.now();
    await until(() => agent.rec.connected.length === 2, 10_000, 'the redial');
    expect(Date.now() - silentSince).toBeGreaterThanOrEqual(1_000);
    expect(agent.rec.disconnected[0]!.error.message).toMatch(/no data from peer/);
    expect(agent.log.lines().find((l) => l.msg === 'tunnel disconnected')).toMatchObject({ conn: 1 });
  });

  it('on GoAway dials a new tunnel at once while the old stream finishes', async () => {
    const echoPort = await echoServer();
    const relay = await startRelay();
    const agent = startAgent(relay.url, { echoPort });
    const first = await relay.nextConnection(0);
    await until(() => agent.rec.connected.length === 1);
    const old = await openEcho(first.session);
    expect(await roundTrip(old, 'before goaway')).toBe('before goaway');

    first.session.goAway();
    const second = await relay.nextConnection(1);
    await until(() => agent.rec.connected.length === 2);
    expect(agent.rec.reconnecting.map((r) => r.delayMs)).toEqual([0]);
    expect(msgs(agent.log)).toContain('tunnel draining');

    // The old tunnel still carries its stream…
    expect(first.session.closed).toBe(false);
    expect(await roundTrip(old, 'after goaway')).toBe('after goaway');
    // …and the new one carries new streams.
    const fresh = await openEcho(second.session);
    expect(await roundTrip(fresh, 'on the new tunnel')).toBe('on the new tunnel');

    old.end();
    await readAll(old);
    await until(() => first.session.closed, 5_000, 'the drained tunnel to close');
    expect(agent.supervisor.tunnel).toBeDefined();
    expect(second.session.closed).toBe(false);
    expect(agent.rec.connected).toHaveLength(2);
    expect(relay.upgrades).toHaveLength(2);
  });

  it('on shutdown sends GoAway, lets the open stream finish, then exits 0', async () => {
    const echoPort = await echoServer();
    const relay = await startRelay();
    const agent = startAgent(relay.url, { echoPort, clock: realClock, drainTimeoutMs: 5_000 });
    const conn = await relay.nextConnection();
    await until(() => agent.rec.connected.length === 1);
    const stream = await openEcho(conn.session);
    const goaway = once(conn.session, 'goaway');

    agent.supervisor.shutdown('SIGTERM');
    await goaway;
    expect(msgs(agent.log)).toContain('shutting down');
    await new Promise((r) => setTimeout(r, 50));
    expect(agent.exited()).toBeUndefined(); // still draining
    expect(await roundTrip(stream, 'still here')).toBe('still here');
    expect(() => conn.session.openStream()).toThrow(/going away/);

    stream.end();
    await readAll(stream);
    expect(await agent.done).toBe(0);
    expect(agent.log.lines().find((l) => l.msg === 'shutting down')).toMatchObject({ signal: 'SIGTERM', streams: 1 });
    expect(agent.log.lines().find((l) => l.msg === 'agent stopped')).toMatchObject({ exitCode: 0 });
    await until(() => conn.session.closed);
  });

  it('bounds the drain on shutdown: streams still open are reset', async () => {
    const echoPort = await echoServer();
    const relay = await startRelay();
    const agent = startAgent(relay.url, { echoPort, clock: realClock, drainTimeoutMs: 200 });
    const conn = await relay.nextConnection();
    await until(() => agent.rec.connected.length === 1);
    const stream = await openEcho(conn.session);
    const streamError = new Promise<Error>((resolve) => stream.once('error', resolve));
    const started = Date.now();
    agent.supervisor.shutdown('SIGTERM');
    expect(await agent.done).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(180);
    expect(msgs(agent.log)).toContain('drain timeout, resetting open streams');
    expect(await streamError).toBeInstanceOf(Error);
  });

  it('stops while waiting out a backoff, without another dial', async () => {
    const relay = await startRelay();
    relay.fallback = 503;
    // A clock whose timers never fire: the agent sits in its backoff.
    const frozen: Clock = { now: () => 0, setTimeout: () => ({}), clearTimeout: () => undefined };
    const agent = startAgent(relay.url, { clock: frozen });
    await until(() => agent.rec.reconnecting.length === 1);
    agent.supervisor.shutdown('SIGINT');
    expect(await agent.done).toBe(0);
    expect(relay.upgrades).toHaveLength(1);
  });
});
