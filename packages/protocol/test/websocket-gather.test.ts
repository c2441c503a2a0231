// The session's gathered writes over a real ws WebSocket: a batch of frames leaves as one binary
// message whose pieces are written with one writev (no copy), framed by our own header. ws's own
// Receiver and a real ws peer judge the framing; checksums judge the bytes.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Writable } from 'node:stream';
import * as ws from 'ws';
import { WebSocket, WebSocketServer } from 'ws';
import { KiB, MiB } from '../src/config.js';
import type { Session } from '../src/session.js';
import type { Stream } from '../src/stream.js';
import { frameHeader, sessionOverWebSocket } from '../src/websocket.js';
import { echo, pseudoRandomBytes, readAll, writeAll } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** ws's own frame parser (exported by ws, not described by @types/ws). */
const Receiver = (ws as unknown as { Receiver: new (opts: Record<string, unknown>) => Writable }).Receiver;

/** Feeds bytes to ws's own frame parser and returns the messages it yields (or its error). */
async function parseWithWs(bytes: Buffer[], isServer: boolean): Promise<Buffer[]> {
  const r = new Receiver({ isServer, binaryType: 'nodebuffer', maxPayload: 0 });
  const messages: Buffer[] = [];
  r.on('message', (data: Buffer, isBinary: boolean) => {
    expect(isBinary).toBe(true);
    messages.push(data);
  });
  const failed = new Promise<never>((_, reject) => r.on('error', reject));
  for (const b of bytes) r.write(b);
  r.end();
  await Promise.race([once(r, 'finish'), failed]);
  return messages;
}

describe('frameHeader', () => {
  // Around each of the three length encodings' edges (7-bit, 16-bit, 64-bit).
  const lengths = [0, 1, 125, 126, 127, 65535, 65536, 65537, 3 * MiB + 7];
  for (const masked of [false, true]) {
    it(`frames binary messages ws parses back exactly (${masked ? 'zero-masked, client to server' : 'unmasked, server to client'})`, async () => {
      for (const n of lengths) {
        const payload = pseudoRandomBytes(n, n + 1);
        const header = frameHeader(n, masked);
        expect(header.length).toBe(2 + (n < 126 ? 0 : n < 65536 ? 2 : 8) + (masked ? 4 : 0));
        // Split the payload in uneven pieces, as a gathered batch is.
        const pieces = [header, payload.subarray(0, n >> 2), payload.subarray(n >> 2)];
        const messages = await parseWithWs(pieces, masked);
        expect(messages).toHaveLength(1);
        expect(messages[0]!.length).toBe(n);
        expect(sha(messages[0]!)).toBe(sha(payload));
      }
    });
  }

  it('is refused by ws when the masking does not match the direction', async () => {
    // A server-side parser insists on masked frames, a client-side one on unmasked frames: the
    // header really carries the mask bit it claims.
    await expect(parseWithWs([frameHeader(3, false), Buffer.from('abc')], true)).rejects.toThrow(/MASK/);
    await expect(parseWithWs([frameHeader(3, true), Buffer.alloc(3)], false)).rejects.toThrow(/MASK/);
  });
});

interface Pair {
  client: Session;
  server: Session;
  clientMessages: () => number;
  serverMessages: () => number;
  /** Messages the client session handed to ws.send (the rest were gathered writes). */
  clientSends: () => number;
  cleanup(): Promise<void>;
}

/** A real ws server and client on 127.0.0.1 with the agent's client options (zero mask). */
async function pair(opts: { deflate?: boolean } = {}): Promise<Pair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: opts.deflate === true });
  await once(wss, 'listening');
  const { port } = wss.address() as AddressInfo;
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
  const clientWs = new WebSocket(`ws://127.0.0.1:${port}`, {
    perMessageDeflate: opts.deflate === true,
    generateMask: (m: Buffer) => {
      m.fill(0);
    },
  });
  await once(clientWs, 'open');
  const [serverWs] = await accepted;
  expect(clientWs.extensions).toBe(opts.deflate === true ? 'permessage-deflate' : '');
  let toClient = 0;
  let toServer = 0;
  clientWs.on('message', () => toClient++);
  serverWs.on('message', () => toServer++);
  let sends = 0;
  const send = clientWs.send.bind(clientWs);
  clientWs.send = ((...args: Parameters<WebSocket['send']>) => {
    sends++;
    send(...args);
  }) as WebSocket['send'];
  const config = { keepAliveInterval: 0 };
  const client = sessionOverWebSocket(clientWs, { role: 'client', config, zeroMask: true });
  const server = sessionOverWebSocket(serverWs, { role: 'server', config });
  return {
    client,
    server,
    clientMessages: () => toServer,
    serverMessages: () => toClient,
    clientSends: () => sends,
    cleanup: async () => {
      client.close();
      server.close();
      clientWs.terminate();
      serverWs.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('sessions over ws with gathered writes', () => {
  for (const deflate of [false, true]) {
    it(`echoes 16 parallel streams of mixed chunk sizes both ways, byte for byte${deflate ? ' (deflate negotiated: ws.send fallback)' : ''}`, async () => {
      const p = await pair({ deflate });
      cleanups.push(p.cleanup);
      echo(p.server);
      // Chunk sizes straddle the inline limit and the scratch buffer's size, so batches mix
      // headers, copied small payloads and payloads passed on as they are.
      const sizes = [7, 100, 1024, 1025, 5000, 16 * KiB, 64 * KiB, 200 * KiB];
      await Promise.all(
        Array.from({ length: 16 }, async (_, i) => {
          const chunk = sizes[i % sizes.length]!;
          const data = pseudoRandomBytes((chunk < 1024 ? 32 * KiB : 1 * MiB) + i * 37, i + 1);
          const s = p.client.openStream();
          const back = readAll(s);
          await writeAll(s, data, chunk);
          expect(sha(await back)).toBe(sha(data));
        }),
      );
      expect(p.client.closed || p.server.closed).toBe(false);
      // Batches of more than one piece went around ws.send, unless an extension forbids it.
      if (deflate) expect(p.clientSends()).toBeGreaterThanOrEqual(p.clientMessages());
      else expect(p.clientSends()).toBeLessThan(p.clientMessages() / 2);
    }, 30_000);
  }

  it('sends a batch of many small frames as one message, across scratch buffers', async () => {
    const p = await pair();
    cleanups.push(p.cleanup);
    const got = new Map<number, Promise<Buffer>>();
    p.server.on('stream', (s: Stream) => got.set(s.id, readAll(s)));
    const streams = Array.from({ length: 300 }, () => p.client.openStream().on('error', () => undefined));
    await new Promise((r) => setTimeout(r, 50));
    const before = p.clientMessages();
    // 300 frames of 100 bytes plus headers (~33 KiB) in one tick: more than one scratch buffer.
    for (const [i, s] of streams.entries()) s.end(pseudoRandomBytes(100, i + 1));
    for (let i = 0; i < 200 && got.size < 300; i++) await new Promise((r) => setTimeout(r, 10));
    expect(got.size).toBe(300);
    for (const [i, s] of streams.entries()) expect(sha(await got.get(s.id)!)).toBe(sha(pseudoRandomBytes(100, i + 1)));
    // Data and FIN of all 300 streams left in one message (a handful, allowing for a tick split).
    expect(p.clientMessages() - before).toBeLessThanOrEqual(3);
  }, 30_000);
});
