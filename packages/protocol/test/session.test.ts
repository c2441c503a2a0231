import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { KiB, MiB, type SessionConfig } from '../src/config.js';
import { ErrorCode, SessionError } from '../src/errors.js';
import { FrameType, GoAwayCode } from '../src/frame.js';
import { memoryPair } from '../src/memory.js';
import { Session, type Transport } from '../src/session.js';
import { StreamState, type Stream } from '../src/stream.js';
import {
  CaptureTransport,
  echo,
  expectStreamError,
  memPair,
  pseudoRandomBytes,
  readAll,
  sleep,
  writeAll,
  wsPair,
  type Pair,
  type WsPair,
} from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function closed(session: Session): Promise<Error | undefined> {
  if (session.closed) return Promise.resolve(session.closeError);
  return new Promise((r) => session.once('close', r));
}

const transports: [string, (c?: Partial<SessionConfig>, s?: Partial<SessionConfig>) => Promise<Pair>][] = [
  ['memory pair', memPair],
  ['ws on 127.0.0.1', wsPair],
];

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
async function setup<P extends Pair>(
  make: (c?: Partial<SessionConfig>, s?: Partial<SessionConfig>) => Promise<P>,
  c?: Partial<SessionConfig>,
  s?: Partial<SessionConfig>,
): Promise<P> {
  const pair = await make(c, s);
  cleanups.push(pair.cleanup);
  return pair;
}

describe.each(transports)('session over %s', (_name, make) => {
  it('carries 200 concurrent echo streams with intact data', async () => {
    const { client, server } = await setup(make);
    echo(server);
    const jobs = Array.from({ length: 200 }, async (_, i) => {
      const size = (i * 7919) % (200 * KiB) + (i % 3 === 0 ? 0 : 1);
      const data = pseudoRandomBytes(size, i + 1);
      const s = client.openStream();
      expect(s.id % 2).toBe(1); // client ids are odd
      const back = readAll(s);
      await writeAll(s, data, 16 * KiB + i);
      const got = await back;
      expect(got.length).toBe(size);
      expect(sha(got)).toBe(sha(data));
    });
    await Promise.all(jobs);
    expect(client.closed).toBe(false);
    expect(server.closed).toBe(false);
    await sleep(20);
    expect(client.streamCount).toBe(0);
    expect(server.streamCount).toBe(0);
  });

  it('server-opened streams use even ids and work the same way', async () => {
    const { client, server } = await setup(make);
    echo(client);
    const s = server.openStream();
    expect(s.id).toBe(2);
    const data = pseudoRandomBytes(300 * KiB, 9);
    const back = readAll(s);
    await writeAll(s, data);
    expect((await back).equals(data)).toBe(true);
    const next = server.openStream();
    expect(next.id).toBe(4);
    next.end();
    await readAll(next); // the echo ends it too; nothing is left open
  });

  it('half-close: the side that ended still receives the other side’s data', async () => {
    const { client, server } = await setup(make);
    // client ends first, server keeps talking
    server.once('stream', (s) => {
      void (async () => {
        const req = await readAll(s); // resolves on the client's FIN
        s.write(Buffer.from(`got ${req.toString()};`));
        await sleep(20);
        s.write(Buffer.from('more after your end;'));
        await sleep(20);
        s.end(Buffer.from('bye'));
      })();
    });
    const c = client.openStream();
    c.end(Buffer.from('hello'));
    await once(c, 'finish');
    expect(c.writableFinished).toBe(true);
    expect((await readAll(c)).toString()).toBe('got hello;more after your end;bye');
  });

  it('half-close: the other way round, the server ends first and still receives', async () => {
    const { client, server } = await setup(make);
    const serverGot = new Promise<string>((resolve) => {
      server.once('stream', (s) => {
        s.end(Buffer.from('welcome')); // server is done talking at once
        void readAll(s).then((b) => resolve(b.toString()));
      });
    });
    const c = client.openStream();
    const welcome = await readAll(c); // ends on the server's FIN
    expect(welcome.toString()).toBe('welcome');
    expect(c.readableEnded).toBe(true);
    c.write('still ');
    await sleep(20);
    c.end('talking');
    expect(await serverGot).toBe('still talking');
  });

  it('reset mid-body: the reader gets ERR_STREAM_RESET, never a clean end', async () => {
    const { client, server } = await setup(make);
    const serverStream = new Promise<Stream>((r) => server.once('stream', r));
    const c = client.openStream();
    c.on('error', () => undefined);
    c.write(pseudoRandomBytes(100 * KiB, 1));
    const s = await serverStream;
    const outcome = expectStreamError(s);
    await sleep(10);
    c.reset(); // upload breaks mid-body
    const err = await outcome;
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe(ErrorCode.StreamReset);
    expect(s.readableEnded).toBe(false);
    expect(c.state).toBe(StreamState.Closed);
    expect(s.state).toBe(StreamState.Closed);
    // The session survives the reset.
    echo(server);
    const again = client.openStream();
    const back = readAll(again);
    again.end('ok');
    expect((await back).toString()).toBe('ok');
  });

  it('reset mid-body the other way: the server resets while the client reads a body', async () => {
    const { client, server } = await setup(make);
    server.once('stream', (s) => {
      s.on('error', () => undefined);
      s.write(pseudoRandomBytes(512 * KiB, 2));
      setTimeout(() => s.destroy(), 10);
    });
    const c = client.openStream();
    let seen = 0;
    c.on('data', (d: Buffer) => (seen += d.length));
    const err = await expectStreamError(c);
    expect(err.code).toBe(ErrorCode.StreamReset);
    expect(c.readableEnded).toBe(false);
    expect(seen).toBeLessThanOrEqual(512 * KiB);
  });

  it('a reset after FIN was sent still aborts the reader (never a clean end)', async () => {
    const { client, server } = await setup(make);
    const gotReset = new Promise<Error & { code?: string }>((resolve) => {
      server.once('stream', (s) => {
        s.pause(); // does not read: the FIN sits behind unread data
        s.on('error', resolve);
        s.on('end', () => resolve(new Error('clean end')));
      });
    });
    const c = client.openStream();
    c.on('error', () => undefined);
    c.end(pseudoRandomBytes(200 * KiB, 3));
    await sleep(20);
    c.destroy(); // not finished both ways (no FIN from the server): RST
    expect((await gotReset).code).toBe(ErrorCode.StreamReset);
  });

  it('GoAway: in-flight streams finish, new ones are refused, then the session closes', async () => {
    const { client, server } = await setup(make);
    echo(client); // the relay (server) opens streams to the agent (client)
    const serverGoAway = new Promise<number>((r) => client.once('goaway', r));
    const inflight = [0, 1, 2].map((i) => {
      const s = server.openStream();
      const data = pseudoRandomBytes(2 * MiB, 50 + i);
      const back = readAll(s);
      s.write(data.subarray(0, 1024));
      return { s, data, back };
    });
    await sleep(10);
    server.goAway();
    expect(server.goingAway).toBe(true);
    expect(() => server.openStream()).toThrow(expect.objectContaining({ code: ErrorCode.SessionClosing }));
    expect(await serverGoAway).toBe(GoAwayCode.Normal);
    expect(client.goingAway).toBe(true);
    let refused: unknown;
    try {
      client.openStream();
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(SessionError);
    expect((refused as SessionError).code).toBe(ErrorCode.GoAwayReceived);
    // In-flight streams carry on to the end.
    const serverClosed = closed(server);
    const clientClosed = closed(client);
    await sleep(20);
    expect(server.closed).toBe(false);
    for (const { s, data } of inflight) await writeAll(s, data.subarray(1024));
    for (const { back, data } of inflight) expect(sha(await back)).toBe(sha(data));
    expect(await serverClosed).toBeUndefined(); // graceful: no error
    const clientErr = await clientClosed;
    expect(clientErr === undefined || (clientErr as SessionError).code === ErrorCode.TransportClosed).toBe(true);
  });

  it('GoAway races a SYN already on the wire: that stream is reset, the session stays graceful', async () => {
    const { client, server } = await setup(make);
    echo(server);
    const keep = client.openStream(); // keeps the session open past the GoAway
    keep.write('x');
    await sleep(10);
    server.goAway();
    const late = client.openStream(); // sent before the client has seen the GoAway
    const err = await expectStreamError(late);
    expect(err.code).toBe(ErrorCode.StreamReset);
    const back = readAll(keep);
    keep.end();
    expect((await back).toString()).toBe('x');
    expect(await closed(server)).toBeUndefined();
  });

  it('a paused reader on one stream does not slow another stream', async () => {
    const { client, server } = await setup(make);
    const byId = new Map<number, Stream>();
    server.on('stream', (s) => byId.set(s.id, s));
    const slow = client.openStream();
    const fast = client.openStream();
    slow.on('error', () => undefined);
    const slowData = pseudoRandomBytes(8 * MiB, 11);
    const fastData = pseudoRandomBytes(16 * MiB, 12);
    const slowWriting = writeAll(slow, slowData);
    while (byId.size < 2) await sleep(1);
    const slowServer = byId.get(slow.id)!;
    slowServer.pause(); // the slow reader reads nothing
    const fastServer = byId.get(fast.id)!;
    const fastGot = readAll(fastServer);
    const t0 = performance.now();
    await writeAll(fast, fastData);
    expect(sha(await fastGot)).toBe(sha(fastData));
    const ms = performance.now() - t0;
    // Meanwhile the paused stream holds no more than its window and its writer is stuck.
    expect(slowServer.bufferedBytes).toBeLessThanOrEqual(slowServer.receiveWindowSize);
    expect(slowServer.bufferedBytes).toBeGreaterThan(0);
    expect(slow.writableFinished).toBe(false);
    expect(ms).toBeLessThan(15_000);
    // Resuming lets it finish intact.
    const slowGot = readAll(slowServer);
    await slowWriting;
    expect(sha(await slowGot)).toBe(sha(slowData));
    slowServer.end();
    fastServer.end();
    await Promise.all([readAll(slow), readAll(fast)]);
  });

  it('ping resolves with the round-trip time', async () => {
    // Keep-alive off: its own pings would race ours for `session.rtt`.
    const { client, server } = await setup(make, { keepAliveInterval: 0 });
    expect(client.rtt).toBeUndefined();
    const events: number[] = [];
    client.on('rtt', (ms) => events.push(ms));
    const rtt = await client.ping();
    expect(Number.isFinite(rtt)).toBe(true);
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(rtt).toBeLessThan(1000);
    expect(client.rtt).toBe(rtt);
    expect(events).toContain(rtt);
    const both = await Promise.all([server.ping(), server.ping(), client.ping()]);
    expect(both).toHaveLength(3);
  });

  it('maxConcurrentStreams: excess inbound SYNs are reset, the session survives', async () => {
    const { client, server } = await setup(make, {}, { maxConcurrentStreams: 3 });
    echo(server);
    const streams = Array.from({ length: 5 }, () => client.openStream());
    const outcomes = streams.map(
      (s) =>
        new Promise<string>((resolve) => {
          s.on('error', (e: SessionError) => resolve(e.code));
          s.on('end', () => resolve('end'));
          s.resume();
        }),
    );
    await sleep(20);
    for (const s of streams.slice(0, 3)) s.end('hi');
    expect(await Promise.all(outcomes)).toEqual(['end', 'end', 'end', ErrorCode.StreamReset, ErrorCode.StreamReset]);
    expect(client.closed).toBe(false);
    expect(server.closed).toBe(false);
    // Once the first three are done, new streams are accepted again.
    await sleep(20);
    const again = client.openStream();
    const back = readAll(again);
    again.end('again');
    expect((await back).toString()).toBe('again');
  });

  it('close() aborts open streams on both sides with an error, not a clean end', async () => {
    const { client, server } = await setup(make);
    const serverStream = new Promise<Stream>((r) => server.once('stream', r));
    const c = client.openStream();
    c.write('partial');
    const s = await serverStream;
    const serverOutcome = expectStreamError(s);
    const clientOutcome = expectStreamError(c);
    client.close();
    expect((await clientOutcome).code).toBe(ErrorCode.StreamAborted);
    expect((await serverOutcome).code).toBe(ErrorCode.StreamAborted);
    expect(await closed(server)).toBeDefined();
    expect(() => client.openStream()).toThrow(expect.objectContaining({ code: ErrorCode.SessionClosed }));
    await expect(client.ping()).rejects.toMatchObject({ code: ErrorCode.SessionClosed });
  });
});

describe('limits and transport backpressure', () => {
  it('openStream refuses beyond maxConcurrentStreams with ERR_TOO_MANY_STREAMS', async () => {
    const { client, server } = await setup(memPair, { maxConcurrentStreams: 2 });
    echo(server);
    const a = client.openStream();
    const b = client.openStream();
    expect(() => client.openStream()).toThrow(expect.objectContaining({ code: ErrorCode.TooManyStreams }));
    const back = readAll(a);
    a.end('done');
    await back;
    b.destroy();
    await sleep(10);
    expect(client.streamCount).toBe(0);
    const c = client.openStream(); // room again
    c.destroy();
  });

  it('goAway() on an idle session closes it gracefully', async () => {
    const { client, server } = await setup(memPair);
    const t0 = performance.now();
    server.goAway();
    expect(await closed(server)).toBeUndefined();
    expect(await closed(client)).toBeUndefined();
    expect(performance.now() - t0).toBeLessThan(500);
    // On its own too, without the peer's help.
    const transport = new CaptureTransport();
    const lone = new Session({ role: 'server', transport, config: { keepAliveInterval: 0 } });
    lone.goAway();
    expect(await closed(lone)).toBeUndefined();
    expect(transport.closed).toBe(true);
    expect(transport.frames().map((f) => f.header)).toEqual([
      { version: 0, type: FrameType.GoAway, flags: 0, streamId: 0, length: GoAwayCode.Normal },
    ]);
  });

  it('stops handing bytes to a blocked transport until it drains', async () => {
    // The peer granted plenty of window (40 streams x 256 KiB); the transport is the bottleneck.
    const held: Buffer[] = [];
    let heldBytes = 0;
    const transport: Transport = {
      write: (chunk) => {
        held.push(chunk);
        heldBytes += chunk.length;
        return false; // always "above the mark"
      },
      close: () => undefined,
    };
    const hwm = 64 * KiB;
    const session = new Session({ role: 'client', transport, config: { keepAliveInterval: 0, transportHighWaterMark: hwm } });
    cleanups.push(async () => session.close());
    const streams = Array.from({ length: 40 }, () => {
      const st = session.openStream();
      st.on('error', () => undefined);
      st.write(Buffer.alloc(256 * KiB));
      return st;
    });
    await sleep(20);
    const frameMax = session.config.maxSendFrameSize + 12;
    expect(heldBytes).toBeGreaterThan(0);
    expect(heldBytes).toBeLessThanOrEqual(hwm + frameMax + 40 * 12);
    // Each drain lets roughly one more high-water mark through, never everything at once.
    const before = heldBytes;
    session.transportDrained();
    await sleep(20);
    expect(heldBytes).toBeGreaterThan(before);
    expect(heldBytes - before).toBeLessThanOrEqual(hwm + frameMax + 40 * 12);
    expect(streams.every((st) => st.sendWindowSize >= 0)).toBe(true);
  });

  it('over a real WebSocket, a peer that stops reading caps what ws buffers at about transportHighWaterMark', async () => {
    const hwm = 256 * KiB;
    const pair = await setup(wsPair, { transportHighWaterMark: hwm, keepAliveInterval: 0 });
    const accepted: Stream[] = [];
    pair.server.on('stream', (st) => {
      accepted.push(st);
      st.on('error', () => undefined);
    });
    // 40 streams x 256 KiB of window: 10 MiB the session may send as far as flow control goes.
    const streams = Array.from({ length: 40 }, () => {
      const st = pair.client.openStream();
      st.on('error', () => undefined);
      return st;
    });
    await sleep(20);
    (pair.serverWs as unknown as { _socket: Socket })._socket.pause(); // the relay stops reading
    for (const st of streams) st.write(Buffer.alloc(256 * KiB));
    await sleep(300);
    // What the kernel did not take stays in ws, bounded by the mark (+ one write), not by the windows.
    expect(pair.clientWs.bufferedAmount).toBeLessThanOrEqual(hwm + 256 * KiB);
    const stuck = streams.reduce((a, st) => a + st.writableLength, 0);
    expect(stuck).toBeGreaterThan(0); // the rest waits in the streams, where backpressure belongs
    (pair.serverWs as unknown as { _socket: Socket })._socket.resume();
    await sleep(100);
    expect(accepted.length).toBe(40);
  });
});

describe('bulk transfer with bounded memory', () => {
  /** Sends `total` bytes cut from a random pool of odd size (so misordered frames change the bytes)
   * and checks every received byte against the pool, sampling memory while it runs. */
  async function bulk(pair: Pair, total: number) {
    const POOL = 1_000_003;
    const pool = pseudoRandomBytes(POOL, 77);
    const serverStream = new Promise<Stream>((r) => pair.server.once('stream', r));
    const c = pair.client.openStream();
    const base = process.memoryUsage();
    let peakRss = 0;
    let peakAb = 0;
    let peakBuffered = 0;
    let peakQueued = 0;
    const sample = () => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss - base.rss);
      peakAb = Math.max(peakAb, m.arrayBuffers - base.arrayBuffers);
    };
    const timer = setInterval(sample, 25);
    const writing = (async () => {
      let sent = 0;
      const CH = 200_000;
      while (sent < total) {
        const off = sent % POOL;
        const n = Math.min(CH, POOL - off, total - sent);
        sent += n;
        if (!c.write(pool.subarray(off, off + n))) await once(c, 'drain');
      }
      c.end();
    })();
    const s = await serverStream;
    let received = 0;
    let mismatches = 0;
    s.on('data', (d: Buffer) => {
      let i = 0;
      while (i < d.length) {
        const off = (received + i) % POOL;
        const n = Math.min(d.length - i, POOL - off);
        if (pool.compare(d, i, i + n, off, off + n) !== 0) mismatches++;
        i += n;
      }
      received += d.length;
      peakBuffered = Math.max(peakBuffered, s.bufferedBytes);
      peakQueued = Math.max(peakQueued, pair.client.queuedBytes);
    });
    const t0 = performance.now();
    await once(s, 'end');
    await writing;
    s.end();
    await readAll(c);
    clearInterval(timer);
    sample();
    return { received, mismatches, peakRss, peakAb, peakBuffered, peakQueued, window: s.receiveWindowSize, ms: performance.now() - t0 };
  }

  it('moves 1 GiB through one stream over a memory pair with flat memory', async () => {
    const pair = await setup(memPair);
    await pair.server.ping(); // an RTT lets the window grow
    const r = await bulk(pair, 1024 * MiB);
    expect(r.received).toBe(1024 * MiB);
    expect(r.mismatches).toBe(0);
    expect(r.peakBuffered).toBeLessThanOrEqual(r.window);
    expect(r.peakQueued).toBeLessThanOrEqual(pair.client.config.transportHighWaterMark + 256 * KiB);
    expect(r.peakAb).toBeLessThan(100 * MiB);
    expect(r.peakRss).toBeLessThan(100 * MiB);
  }, 60_000);

  it('moves 256 MiB through one stream over a real WebSocket with flat memory', async () => {
    const pair = await setup(wsPair);
    await pair.server.ping();
    const r = await bulk(pair, 256 * MiB);
    expect(r.received).toBe(256 * MiB);
    expect(r.mismatches).toBe(0);
    expect(r.peakBuffered).toBeLessThanOrEqual(r.window);
    expect(r.peakAb).toBeLessThan(100 * MiB);
    expect(r.peakRss).toBeLessThan(100 * MiB);
  }, 60_000);
});

describe('keep-alive', () => {
  /** A transport that delivers to a peer until told to go silent, then swallows every write. */
  function silentablePair(config: Partial<SessionConfig>) {
    let silent = false;
    const peers: { client?: Session; server?: Session } = {};
    const toServer: Transport = {
      write: (chunk) => {
        if (!silent) setImmediate(() => peers.server!.receive(chunk));
        return true;
      },
      close: () => undefined,
    };
    const toClient: Transport = {
      write: (chunk) => {
        setImmediate(() => peers.client!.receive(chunk));
        return true;
      },
      close: () => undefined,
    };
    const client = new Session({ role: 'client', transport: toServer, config });
    const server = new Session({ role: 'server', transport: toClient, config });
    peers.client = client;
    peers.server = server;
    cleanups.push(async () => {
      client.close();
      server.close();
    });
    return { client, server, goSilent: () => (silent = true) };
  }

  it('keeps a quiet but healthy session alive past the timeout', async () => {
    const { client, server } = memoryPair({ config: { keepAliveInterval: 50, keepAliveTimeout: 200 } });
    cleanups.push(async () => {
      client.close();
      server.close();
    });
    await sleep(600);
    expect(client.closed).toBe(false);
    expect(server.closed).toBe(false);
    expect(client.rtt).toBeDefined(); // keep-alive pings measured it
    expect(server.rtt).toBeDefined();
  });

  it('detects a peer that goes silent within keepAliveTimeout', async () => {
    const { server, goSilent } = silentablePair({ keepAliveInterval: 50, keepAliveTimeout: 200 });
    await sleep(120); // healthy for a while: pings flow both ways
    expect(server.closed).toBe(false);
    goSilent();
    const t0 = performance.now();
    const err = await closed(server);
    const waited = performance.now() - t0;
    expect(err).toBeInstanceOf(SessionError);
    expect((err as SessionError).code).toBe(ErrorCode.KeepAliveTimeout);
    // The last bytes arrived at most one ping interval (+ scheduling) before going silent.
    expect(waited).toBeGreaterThanOrEqual(200 - 50 - 10);
    expect(waited).toBeLessThan(200 + 100);
  });

  it('detects a silent peer over a real WebSocket and drops the socket without a close handshake', async () => {
    const pair: WsPair = await setup(wsPair, { keepAliveInterval: 50, keepAliveTimeout: 200 });
    const clientWsClosed = once(pair.clientWs, 'close') as Promise<[number, Buffer]>;
    await sleep(100);
    // The server stops reading its socket: from its side the agent went silent.
    (pair.serverWs as unknown as { _socket: Socket })._socket.pause();
    const t0 = performance.now();
    const err = await closed(pair.server);
    expect((err as SessionError).code).toBe(ErrorCode.KeepAliveTimeout);
    expect(performance.now() - t0).toBeLessThan(200 + 150);
    // terminate(): the agent sees an abnormal close (1006) at once, not a polite 1000 after a 30 s wait.
    const [code] = await clientWsClosed;
    expect(code).toBe(1006);
    expect((await closed(pair.client)) as SessionError).toMatchObject({ code: ErrorCode.TransportClosed });
  });

  it('sends pings on its own with the interval and answers the peer’s pings', async () => {
    const transport = new CaptureTransport();
    const session = new Session({ role: 'server', transport, config: { keepAliveInterval: 30, keepAliveTimeout: 10_000 } });
    cleanups.push(async () => session.close());
    await sleep(100);
    const pings = transport.frames().filter((f) => f.header.type === FrameType.Ping);
    expect(pings.length).toBeGreaterThanOrEqual(2);
    expect(pings.every((p) => p.header.flags === 1 && p.header.streamId === 0)).toBe(true);
    expect(new Set(pings.map((p) => p.header.length)).size).toBe(pings.length); // distinct opaque values
  });
});

describe('ws adapter', () => {
  it('closes with 1002 when the peer sends a text message', async () => {
    const pair = await setup(wsPair);
    const code = once(pair.clientWs, 'close') as Promise<[number, Buffer]>;
    pair.clientWs.send('hello', { binary: false });
    const err = await closed(pair.server);
    expect(err).toMatchObject({ code: ErrorCode.InvalidType });
    expect((await code)[0]).toBe(1002);
  });

  it('a protocol error on one side closes the WebSocket with 1002 and the peer learns the GoAway code', async () => {
    const pair = await setup(wsPair);
    const goaway = new Promise<number>((r) => pair.client.once('goaway', r));
    const code = once(pair.clientWs, 'close') as Promise<[number, Buffer]>;
    const bad = Buffer.alloc(12);
    bad[0] = 7; // version 7
    pair.clientWs.send(bad);
    expect(await closed(pair.server)).toMatchObject({ code: ErrorCode.InvalidVersion });
    expect(await goaway).toBe(GoAwayCode.ProtocolError);
    expect(await closed(pair.client)).toMatchObject({ code: ErrorCode.PeerProtocolError });
    expect((await code)[0]).toBe(1002);
  });

  it('a normal close() closes the WebSocket with 1000', async () => {
    const pair = await setup(wsPair);
    const code = once(pair.serverWs, 'close') as Promise<[number, Buffer]>;
    pair.client.close();
    expect((await code)[0]).toBe(1000);
    expect(pair.client.closed).toBe(true);
    expect(pair.client.closeError).toBeUndefined();
    await closed(pair.server); // the GoAway(Normal) that close() sent ends the idle peer gracefully
    expect(pair.server.closed).toBe(true);
  });
});
