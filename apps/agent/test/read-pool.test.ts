// The ingress reads local-service sockets into pooled buffers and reuses each one only after the
// tunnel's transport wrote it. Real sockets throughout: a TCP service on 127.0.0.1, a ws tunnel
// between a relay-side and an agent-side session; a buffer reused too early would corrupt the
// bytes the relay side checks.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { encodeOpenRequest, OpenStatus, readOpenReply, sessionOverWebSocket, type Session, type Stream } from '@porthole/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { Ingress, ReadPool } from '../src/ingress/index.js';
import { captureLogger } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

const sha = (b: Buffer | Buffer[]) => {
  const h = createHash('sha256');
  for (const c of Array.isArray(b) ? b : [b]) h.update(c);
  return h.digest('hex');
};

/** Deterministic bytes (xorshift32), so a corrupted byte shows as a checksum mismatch. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

/** A service that answers every connection with `body` and then ends, and echoes nothing. */
async function service(body: Buffer): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

/** Relay (server role) and agent (client role, zero mask as the agent dials) over a real ws. */
async function tunnel(pool: ReadPool, port: number): Promise<{ relay: Session; relayWs: WebSocket }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
  const agentWs = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
    perMessageDeflate: false,
    generateMask: (m: Buffer) => {
      m.fill(0);
    },
  });
  await once(agentWs, 'open');
  const [relayWs] = await accepted;
  const config = { keepAliveInterval: 0 };
  const relay = sessionOverWebSocket(relayWs, { role: 'server', config });
  const agent = sessionOverWebSocket(agentWs, { role: 'client', config, zeroMask: true });
  const ingress = new Ingress({
    services: { ui: { name: 'ui', url: `http://127.0.0.1:${port}`, host: '127.0.0.1', port } },
    logger: captureLogger().logger,
    readPool: pool,
  });
  agent.on('stream', ingress.handle);
  cleanups.push(async () => {
    agent.close();
    relay.close();
    agentWs.terminate();
    relayWs.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  });
  return { relay, relayWs };
}

/** Opens a stream to the service and reads it to the end, optionally slowly (backpressure). */
async function fetchAll(relay: Session, slow: boolean): Promise<Buffer[]> {
  const s: Stream = relay.openStream();
  s.write(encodeOpenRequest({ service: 'ui', meta: {} }));
  const reply = await readOpenReply(s, 5_000);
  expect(reply.status).toBe(OpenStatus.Ok);
  s.end();
  const parts: Buffer[] = [];
  return new Promise((resolve, reject) => {
    s.on('error', reject);
    s.on('end', () => resolve(parts));
    s.on('data', (c: Buffer) => {
      // These bytes crossed a real socket: a read buffer the agent reused before the transport
      // wrote it would show here as a checksum mismatch.
      parts.push(c);
      if (slow && parts.length % 8 === 0) {
        s.pause();
        setTimeout(() => s.resume(), 2);
      }
    });
  });
}

describe('pooled reads from local services', () => {
  it('delivers every byte intact and reuses read buffers once the tunnel wrote them', async () => {
    const body = bytes(24 * 1024 * 1024, 7);
    const pool = new ReadPool(64 * 1024, 8);
    const { relay } = await tunnel(pool, await service(body));
    const got = await fetchAll(relay, false);
    expect(Buffer.concat(got).length).toBe(body.length);
    expect(sha(got)).toBe(sha(body));
    // 24 MiB in reads of at most 64 KiB is at least 384 reads; most reused a pooled buffer.
    expect(pool.allocated).toBeLessThan(64);
    expect(pool.allocated).toBeGreaterThan(0);
  }, 60_000);

  it('stays intact with a slow reader (the service is paused and resumed) and with parallel streams', async () => {
    const body = bytes(6 * 1024 * 1024, 11);
    const pool = new ReadPool(64 * 1024, 8);
    const { relay } = await tunnel(pool, await service(body));
    const results = await Promise.all([fetchAll(relay, true), fetchAll(relay, false), fetchAll(relay, true), fetchAll(relay, false)]);
    for (const got of results) expect(sha(got)).toBe(sha(body));
    expect(pool.allocated).toBeLessThan(4 * 96); // far fewer than the 4 × 96 reads a 6 MiB body takes
  }, 60_000);

  it('never reuses a buffer the transport still holds: the relay stops reading its socket for a while', async () => {
    // 64 streams keep far more in flight than the kernel's loopback buffers take while the
    // relay does not read, so the agent's socket writes queue up holding pooled buffers while
    // the agent keeps reading from the service into pooled buffers.
    const body = bytes(512 * 1024, 13);
    const pool = new ReadPool(64 * 1024, 256);
    const { relay, relayWs } = await tunnel(pool, await service(body));
    relayWs.pause();
    const all = Promise.all(Array.from({ length: 64 }, () => fetchAll(relay, false)));
    await new Promise((r) => setTimeout(r, 400));
    relayWs.resume();
    for (const got of await all) expect(sha(got)).toBe(sha(body));
    expect(pool.allocated).toBeLessThan(64 * 8);
  }, 60_000);

  it('keeps at most `keep` idle buffers', () => {
    const pool = new ReadPool(1024, 2);
    const taken = [pool.take(), pool.take(), pool.take()];
    for (const b of taken) pool.give(b);
    expect(pool.idle).toBe(2);
    pool.give(Buffer.alloc(10)); // not one of ours (wrong size): never pooled
    expect(pool.idle).toBe(2);
    expect(pool.allocated).toBe(3);
  });
});
