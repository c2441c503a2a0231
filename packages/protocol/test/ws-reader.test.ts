// The agent reads the relay's WebSocket frames itself (ws-reader.ts), and the relay the agent's:
// payloads go to the session as the socket delivers them, control frames to ws's receiver. Real ws
// servers and clients on 127.0.0.1 are the relay and the agent; raw bytes written to a socket are
// the hostile peer.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { KiB, MiB } from '../src/config.js';
import { ErrorCode } from '../src/errors.js';
import { Flag, FrameType } from '../src/frame.js';
import type { Session } from '../src/session.js';
import { sessionOverWebSocket } from '../src/websocket.js';
import { FrameReader } from '../src/ws-reader.js';
import { echo, parseFrames, pseudoRandomBytes, rawFrame, readAll, writeAll } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * A frame's bytes: FIN and opcode, the length in 7, 16 or 64 bits; `mask: true` sets the mask bit
 * with an all-zero key (the agent's), a Buffer masks the payload with that key (any ws client's).
 */
function wsFrame(opcode: number, payload: Buffer, opts: { fin?: boolean; rsv?: number; mask?: boolean | Buffer } = {}): Buffer {
  const n = payload.length;
  const ext = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const masked = opts.mask !== undefined && opts.mask !== false;
  const h = Buffer.alloc(2 + ext + (masked ? 4 : 0));
  h[0] = (opts.fin === false ? 0 : 0x80) | ((opts.rsv ?? 0) << 4) | opcode;
  h[1] = (masked ? 0x80 : 0) | (ext === 0 ? n : ext === 2 ? 126 : 127);
  if (ext === 2) h.writeUInt16BE(n, 2);
  if (ext === 8) h.writeUIntBE(n, 4, 6);
  if (!Buffer.isBuffer(opts.mask)) return Buffer.concat([h, payload]);
  const key = opts.mask;
  key.copy(h, 2 + ext);
  return Buffer.concat([h, Buffer.from(payload.map((byte, i) => byte ^ key[i & 3]!))]);
}
const serverFrame = (opcode: number, payload: Buffer, opts: { fin?: boolean; rsv?: number; mask?: boolean } = {}) => wsFrame(opcode, payload, opts);

/** Feeds `bytes` to a FrameReader in reads of `chunk` bytes, fresh buffers as a socket's are (it may unmask them in place). */
function readFrames(bytes: Buffer, chunk: number, from: 'server' | 'client'): { data: Buffer; control: Buffer[]; errors: string[]; reads: Buffer[]; handed: Buffer[] } {
  const handed: Buffer[] = [];
  const control: Buffer[] = [];
  const errors: string[] = [];
  const reads: Buffer[] = [];
  const r = new FrameReader(
    (b) => handed.push(b),
    (f) => control.push(Buffer.from(f)),
    (e) => errors.push(`${e.code}: ${e.message}`),
    from,
  );
  for (let off = 0; off < bytes.length; off += chunk) {
    const read = Buffer.from(bytes.subarray(off, off + chunk));
    reads.push(read);
    r.write(read);
  }
  return { data: Buffer.concat(handed), control, errors, reads, handed };
}

/** A 256 KiB payload read in 64 KiB reads comes out as views of those reads, not copies. */
function expectViews(frame: (payload: Buffer) => Buffer, from: 'server' | 'client'): void {
  const big = pseudoRandomBytes(256 * KiB, 4);
  const got = readFrames(frame(big), 64 * KiB, from);
  expect(got.errors).toEqual([]);
  expect(sha(got.data)).toBe(sha(big));
  for (const h of got.handed) expect(got.reads.some((read) => read.buffer === h.buffer)).toBe(true);
}

/** Each of `refusals`, followed by a good frame with 'after' in it, read a byte at a time. */
function itRefusesEach(refusals: [string, Buffer, RegExp][], after: Buffer, from: 'server' | 'client'): void {
  for (const [what, bytes, message] of refusals) {
    it(`refuses ${what}, once, and reads nothing after it`, () => {
      const got = readFrames(Buffer.concat([bytes, after]), 1, from);
      expect(got.errors).toHaveLength(1);
      expect(got.errors[0]).toMatch(message);
      expect(got.data.toString()).not.toContain('after');
    });
  }
}

describe('FrameReader, reading a server', () => {
  const read = (bytes: Buffer, chunk: number) => readFrames(bytes, chunk, 'server');

  const a = pseudoRandomBytes(100, 1);
  const b = pseudoRandomBytes(70_000, 2); // 64-bit length
  const c = pseudoRandomBytes(300, 3); // 16-bit length
  const ping = serverFrame(0x9, Buffer.from('are you there'));
  const wire = Buffer.concat([
    serverFrame(0x2, a),
    ping,
    serverFrame(0x2, c.subarray(0, 10), { fin: false }),
    serverFrame(0xa, Buffer.alloc(0)), // a pong between fragments, as RFC 6455 allows
    serverFrame(0x0, c.subarray(10, 200), { fin: false }),
    serverFrame(0x0, c.subarray(200), { fin: true }),
    serverFrame(0x2, b),
    serverFrame(0x2, Buffer.alloc(0)),
  ]);

  for (const chunk of [1, 2, 3, 7, 13, 4096, wire.length]) {
    it(`hands on exactly the binary payload bytes and each control frame whole (reads of ${chunk} bytes)`, () => {
      const got = read(wire, chunk);
      expect(got.errors).toEqual([]);
      expect(sha(got.data)).toBe(sha(Buffer.concat([a, c, b])));
      expect(got.control.map((f) => f.toString('hex'))).toEqual([ping.toString('hex'), serverFrame(0xa, Buffer.alloc(0)).toString('hex')]);
    });
  }

  it('passes a large payload on as views of the reads it came in, not copies', () => {
    expectViews((payload) => serverFrame(0x2, payload), 'server');
  });

  const refusals: [string, Buffer, RegExp][] = [
    ['a text message', serverFrame(0x1, Buffer.from('hi')), /text message/],
    ['a masked frame', serverFrame(0x2, Buffer.from('hi'), { mask: true }), /masked/],
    ['RSV bits', serverFrame(0x2, Buffer.from('hi'), { rsv: 4 }), /RSV/],
    ['a continuation with no message', serverFrame(0x0, Buffer.from('hi')), /continuation/],
    ['a new message inside a fragmented one', Buffer.concat([serverFrame(0x2, a, { fin: false }), serverFrame(0x2, a)]), /inside a fragmented/],
    ['an unknown data opcode', serverFrame(0x3, a), /unknown opcode 3/],
    ['an unknown control opcode', serverFrame(0xb, a), /unknown control opcode/],
    ['a fragmented control frame', serverFrame(0x9, Buffer.from('x'), { fin: false }), /control frame/],
    ['an oversized control frame', serverFrame(0x9, Buffer.alloc(126)), /control frame/],
    ['a length beyond 2^53', Buffer.from([0x82, 127, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), /2\^53/],
  ];
  itRefusesEach(refusals, serverFrame(0x2, Buffer.from('after')), 'server');

  it('reads nothing after a close frame', () => {
    const close = serverFrame(0x8, Buffer.from([0x03, 0xe8]));
    const got = read(Buffer.concat([serverFrame(0x2, a), close, serverFrame(0x2, Buffer.from('late'))]), 5);
    expect(got.errors).toEqual([]);
    expect(got.data.equals(a)).toBe(true);
    expect(got.control).toHaveLength(1);
  });
});

describe('FrameReader, reading a client', () => {
  const read = (bytes: Buffer, chunk: number) => readFrames(bytes, chunk, 'client');

  const a = pseudoRandomBytes(100, 11);
  const b = pseudoRandomBytes(70_000, 12); // 64-bit length
  const c = pseudoRandomBytes(301, 13); // 16-bit length, not a multiple of the key's 4 bytes
  const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  const zero = true;
  const ping = wsFrame(0x9, Buffer.from('are you there'), { mask: key });
  const pong = wsFrame(0xa, Buffer.alloc(0), { mask: zero });
  const wire = Buffer.concat([
    wsFrame(0x2, a, { mask: key }),
    ping,
    wsFrame(0x2, c.subarray(0, 10), { fin: false, mask: zero }),
    pong,
    wsFrame(0x0, c.subarray(10, 203), { fin: false, mask: Buffer.from([1, 2, 3, 4]) }),
    wsFrame(0x0, c.subarray(203), { fin: true, mask: key }),
    wsFrame(0x2, b, { mask: key }),
    wsFrame(0x2, b.subarray(0, 5000), { mask: zero }),
    wsFrame(0x2, Buffer.alloc(0), { mask: key }),
  ]);

  for (const chunk of [1, 2, 3, 5, 7, 13, 4096, wire.length]) {
    it(`unmasks and hands on exactly the binary payload bytes, each control frame whole and still masked (reads of ${chunk} bytes)`, () => {
      const got = read(wire, chunk);
      expect(got.errors).toEqual([]);
      expect(sha(got.data)).toBe(sha(Buffer.concat([a, c, b, b.subarray(0, 5000)])));
      expect(got.control.map((f) => f.toString('hex'))).toEqual([ping.toString('hex'), pong.toString('hex')]);
    });
  }

  it("passes the agent's zero-masked payload on as views of the reads it came in, not copies", () => {
    expectViews((payload) => wsFrame(0x2, payload, { mask: zero }), 'client');
  });

  const refusals: [string, Buffer, RegExp][] = [
    ['an unmasked frame', wsFrame(0x2, Buffer.from('hi')), /unmasked frame from the client/],
    ['an unmasked control frame', wsFrame(0x9, Buffer.from('hi')), /unmasked frame from the client/],
    ['a text message', wsFrame(0x1, Buffer.from('hi'), { mask: key }), /text message/],
    ['RSV bits', wsFrame(0x2, Buffer.from('hi'), { rsv: 2, mask: key }), /RSV/],
    ['a continuation with no message', wsFrame(0x0, Buffer.from('hi'), { mask: key }), /continuation/],
    ['a fragmented control frame', wsFrame(0x9, Buffer.from('x'), { fin: false, mask: key }), /control frame/],
    ['an oversized control frame', wsFrame(0x9, Buffer.alloc(126), { mask: key }), /control frame/],
    ['a length beyond 2^53', Buffer.from([0x82, 0x80 | 127, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3, 4]), /2\^53/],
  ];
  itRefusesEach(refusals, wsFrame(0x2, Buffer.from('after'), { mask: key }), 'client');
});

interface Pair {
  client: Session;
  server: Session | undefined;
  clientWs: WebSocket;
  serverWs: WebSocket;
  /** 'message' events ws emitted on the client: none once the session reads directly. */
  clientMessages: () => number;
  cleanup(): Promise<void>;
}

/** A ws server (with a session, or bare for raw frames) and the agent's kind of client. */
async function pair(opts: { serverSession?: boolean; deflate?: boolean } = {}): Promise<Pair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: opts.deflate === true });
  await once(wss, 'listening');
  const { port } = wss.address() as AddressInfo;
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
  const clientWs = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: opts.deflate === true, generateMask: (m: Buffer) => void m.fill(0) });
  let messages = 0;
  const opened = once(clientWs, 'open');
  let client: Session | undefined;
  clientWs.once('open', () => {
    // As the agent does: the session takes over in the 'open' event.
    client = sessionOverWebSocket(clientWs, { role: 'client', config: { keepAliveInterval: 0 }, zeroMask: true, readDirect: true });
    clientWs.on('message', () => messages++);
  });
  await opened;
  const [serverWs] = await accepted;
  const server = opts.serverSession === false ? undefined : sessionOverWebSocket(serverWs, { role: 'server', config: { keepAliveInterval: 0 } });
  return {
    client: client!,
    server,
    clientWs,
    serverWs,
    clientMessages: () => messages,
    cleanup: async () => {
      client!.close();
      server?.close();
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

/** `echoer` echoes every stream it accepts; `count` streams opened from `opener` each carry 2 MiB and more there and back, written in pieces of four sizes, byte for byte. */
async function echoParallel(opener: Session, echoer: Session, seed: number, count = 8): Promise<void> {
  echo(echoer);
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const data = pseudoRandomBytes(2 * MiB + i * 4099, seed + i);
      const s = opener.openStream();
      const back = readAll(s);
      await writeAll(s, data, [1000, 16 * KiB, 64 * KiB, 300 * KiB][i % 4]!);
      expect(sha(await back)).toBe(sha(data));
    }),
  );
}

describe('a client session that reads the server frames directly', () => {
  it('carries 8 parallel streams both ways byte for byte, with no ws message events at all', async () => {
    const p = await pair();
    cleanups.push(p.cleanup);
    await echoParallel(p.client, p.server!, 1);
    expect(p.clientMessages()).toBe(0);
    expect(p.client.closed || p.server!.closed).toBe(false);
  }, 30_000);

  it('leaves reading to ws when an extension was negotiated (compressed frames are not ours to parse)', async () => {
    const p = await pair({ deflate: true });
    cleanups.push(p.cleanup);
    expect(p.clientWs.extensions).toContain('permessage-deflate');
    echo(p.server!);
    const data = pseudoRandomBytes(300 * KiB, 9);
    const s = p.client.openStream();
    const back = readAll(s);
    await writeAll(s, data, 16 * KiB);
    expect(sha(await back)).toBe(sha(data));
    expect(p.clientMessages()).toBeGreaterThan(0);
  });

  it("answers the server's WebSocket pings and takes its close code, through ws's own receiver", async () => {
    const p = await pair();
    cleanups.push(p.cleanup);
    const pong = once(p.serverWs, 'pong');
    p.serverWs.ping(Buffer.from('still there?'));
    expect((await pong)[0].toString()).toBe('still there?');
    const closed = once(p.clientWs, 'close');
    p.serverWs.close(4000, 'relay restarting');
    const [code, reason] = await closed;
    expect(code).toBe(4000);
    expect(reason.toString()).toBe('relay restarting');
    expect(p.client.closed).toBe(true);
  });

  it('takes yamux frames split over fragments with a ping between them', async () => {
    const p = await pair({ serverSession: false });
    cleanups.push(p.cleanup);
    const socket = (p.serverWs as unknown as { _socket: Socket })._socket;
    // A yamux ping (SYN) in three pieces over a fragmented binary message, a WebSocket ping inside.
    const yamuxPing = rawFrame(FrameType.Ping, Flag.SYN, 0, 0x1234_5678);
    const answer = once(p.serverWs, 'message') as Promise<[Buffer, boolean]>;
    const wsPong = once(p.serverWs, 'pong');
    socket.write(serverFrame(0x2, yamuxPing.subarray(0, 5), { fin: false }));
    socket.write(serverFrame(0x9, Buffer.from('ws ping')));
    socket.write(serverFrame(0x0, yamuxPing.subarray(5, 6), { fin: false }));
    socket.write(serverFrame(0x0, yamuxPing.subarray(6), { fin: true }));
    const [msg] = await answer;
    expect(parseFrames(msg)).toEqual([{ header: { version: 0, type: FrameType.Ping, flags: Flag.ACK, streamId: 0, length: 0x1234_5678 } }]);
    expect((await wsPong)[0].toString()).toBe('ws ping');
  });

  for (const [what, bytes, code] of [
    ['a text message', serverFrame(0x1, Buffer.from('{"hello":1}')), ErrorCode.InvalidType],
    ['a masked frame', serverFrame(0x2, rawFrame(FrameType.Ping, Flag.SYN, 0, 1), { mask: true }), ErrorCode.InvalidWebSocketFrame],
  ] as const) {
    it(`ends the session on ${what} and drops the connection`, async () => {
      const p = await pair({ serverSession: false });
      cleanups.push(p.cleanup);
      const closed = once(p.clientWs, 'close');
      (p.serverWs as unknown as { _socket: Socket })._socket.write(bytes);
      await closed;
      expect(p.client.closed).toBe(true);
      expect((p.client.closeError as { code?: string } | undefined)?.code).toBe(code);
    });
  }
});

interface ServerPair {
  server: Session;
  client: Session | undefined;
  clientWs: WebSocket;
  serverWs: WebSocket;
  /** 'message' events ws emitted on the server: none once the session reads directly. */
  serverMessages: () => number;
  cleanup(): Promise<void>;
}

/**
 * The relay's kind of server (a session that reads the client's frames itself, taking over in
 * ws's connection callback as the relay does) and a client: the agent's (zero mask key), any ws
 * client's (a random key per frame), or bare for raw frames.
 */
async function serverPair(client: 'agent' | 'random-mask' | 'bare', tls?: { key: Buffer; cert: Buffer }): Promise<ServerPair> {
  // Over TLS the socket under ws is a TLSSocket, whose reads are 16 KiB records: the relay's case.
  const server = tls === undefined ? undefined : https.createServer({ key: tls.key, cert: tls.cert });
  if (server !== undefined) {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  }
  const wss =
    server === undefined ? new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false }) : new WebSocketServer({ server, perMessageDeflate: false });
  if (server === undefined) await once(wss, 'listening');
  const { port } = (server ?? wss).address() as AddressInfo;
  let session: Session | undefined;
  let messages = 0;
  const accepted = new Promise<WebSocket>((resolve) => {
    wss.once('connection', (ws: WebSocket) => {
      session = sessionOverWebSocket(ws, { role: 'server', config: { keepAliveInterval: 0 }, readDirect: true });
      ws.on('message', () => messages++);
      resolve(ws);
    });
  });
  const clientWs = new WebSocket(`${tls === undefined ? 'ws' : 'wss'}://127.0.0.1:${port}`, {
    perMessageDeflate: false,
    ...(tls !== undefined ? { ca: tls.cert, servername: 'localhost' } : {}),
    ...(client === 'agent' ? { generateMask: (m: Buffer) => void m.fill(0) } : {}),
  });
  await once(clientWs, 'open');
  const clientSession =
    client === 'bare'
      ? undefined
      : sessionOverWebSocket(clientWs, { role: 'client', config: { keepAliveInterval: 0 }, zeroMask: client === 'agent', readDirect: true });
  const serverWs = await accepted;
  return {
    server: session!,
    client: clientSession,
    clientWs,
    serverWs,
    serverMessages: () => messages,
    cleanup: async () => {
      clientSession?.close();
      session!.close();
      clientWs.terminate();
      serverWs.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
      if (server !== undefined) await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe("a server session that reads the client's frames directly", () => {
  let tlsFiles: { key: Buffer; cert: Buffer } | undefined;
  const tls = () => {
    if (tlsFiles === undefined) {
      const dir = mkdtempSync(join(tmpdir(), 'porthole-ws-reader-'));
      try {
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
          '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
        tlsFiles = { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return tlsFiles;
  };

  it("reads the agent's frames itself over TLS too, where they arrive in 16 KiB records", async () => {
    const p = await serverPair('agent', tls());
    cleanups.push(p.cleanup);
    await echoParallel(p.server, p.client!, 31, 4);
    expect(p.serverMessages()).toBe(0);
  }, 30_000);

  for (const kind of ['agent', 'random-mask'] as const) {
    it(`carries 8 parallel streams both ways byte for byte from ${kind === 'agent' ? "the agent's zero-masked" : "a ws client's randomly masked"} frames, with no ws message events`, async () => {
      const p = await serverPair(kind);
      cleanups.push(p.cleanup);
      await echoParallel(p.server, p.client!, 21);
      expect(p.serverMessages()).toBe(0);
      expect(p.client!.closed || p.server.closed).toBe(false);
    }, 30_000);
  }

  it("answers the client's WebSocket pings and takes its close code, through ws's own receiver", async () => {
    const p = await serverPair('random-mask');
    cleanups.push(p.cleanup);
    const pong = once(p.clientWs, 'pong');
    p.clientWs.ping(Buffer.from('relay?'));
    expect((await pong)[0].toString()).toBe('relay?');
    const closed = once(p.serverWs, 'close');
    p.clientWs.close(4001, 'agent stopping');
    const [code, reason] = await closed;
    expect(code).toBe(4001);
    expect(reason.toString()).toBe('agent stopping');
    expect(p.server.closed).toBe(true);
  });

  for (const [what, bytes, code] of [
    ['an unmasked frame', wsFrame(0x2, rawFrame(FrameType.Ping, Flag.SYN, 0, 1)), ErrorCode.InvalidWebSocketFrame],
    ['a text message', wsFrame(0x1, Buffer.from('{"hello":1}'), { mask: Buffer.from([9, 8, 7, 6]) }), ErrorCode.InvalidType],
    ['RSV bits with no extension', wsFrame(0x2, rawFrame(FrameType.Ping, Flag.SYN, 0, 1), { rsv: 4, mask: true }), ErrorCode.InvalidWebSocketFrame],
  ] as const) {
    it(`ends the session on ${what} from the client and drops the connection`, async () => {
      const p = await serverPair('bare');
      cleanups.push(p.cleanup);
      const closed = once(p.clientWs, 'close');
      (p.clientWs as unknown as { _socket: Socket })._socket.write(bytes);
      await closed;
      expect(p.server.closed).toBe(true);
      expect((p.server.closeError as { code?: string } | undefined)?.code).toBe(code);
    });
  }

  it('takes a yamux ping split over masked fragments with a WebSocket ping between them', async () => {
    const p = await serverPair('bare');
    cleanups.push(p.cleanup);
    const socket = (p.clientWs as unknown as { _socket: Socket })._socket;
    const yamuxPing = rawFrame(FrameType.Ping, Flag.SYN, 0, 0x0a0b_0c0d);
    const answer = once(p.clientWs, 'message') as Promise<[Buffer, boolean]>;
    const wsPong = once(p.clientWs, 'pong');
    socket.write(wsFrame(0x2, yamuxPing.subarray(0, 3), { fin: false, mask: Buffer.from([1, 2, 3, 4]) }));
    socket.write(wsFrame(0x9, Buffer.from('ws ping'), { mask: Buffer.from([5, 6, 7, 8]) }));
    socket.write(wsFrame(0x0, yamuxPing.subarray(3, 9), { fin: false, mask: true }));
    socket.write(wsFrame(0x0, yamuxPing.subarray(9), { fin: true, mask: Buffer.from([0xff, 0, 0xff, 0]) }));
    const [msg] = await answer;
    expect(parseFrames(msg)).toEqual([{ header: { version: 0, type: FrameType.Ping, flags: Flag.ACK, streamId: 0, length: 0x0a0b_0c0d } }]);
    expect((await wsPong)[0].toString()).toBe('ws ping');
  });
});
