/** Shared test helpers: a naive reference codec, a manual clock, transports, stream readers. */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { SessionConfig } from '../src/config.js';
import type { FrameHeader } from '../src/frame.js';
import { memoryPair } from '../src/memory.js';
import type { Clock, Session, Transport } from '../src/session.js';
import type { Stream } from '../src/stream.js';
import { sessionOverWebSocket } from '../src/websocket.js';

/** Reference encoder: slow and obvious, byte by byte, big-endian, straight from the yamux spec. */
export function refEncodeHeader(h: FrameHeader): Buffer {
  const bytes: number[] = [];
  bytes.push(h.version & 0xff);
  bytes.push(h.type & 0xff);
  bytes.push(Math.floor(h.flags / 256) % 256, h.flags % 256);
  for (const v of [h.streamId, h.length]) {
    bytes.push(Math.floor(v / 2 ** 24) % 256, Math.floor(v / 2 ** 16) % 256, Math.floor(v / 2 ** 8) % 256, v % 256);
  }
  return Buffer.from(bytes);
}

/** Reference decoder for the same layout; no validation. */
export function refDecodeHeader(b: Uint8Array): FrameHeader {
  const u32 = (i: number) => b[i]! * 2 ** 24 + b[i + 1]! * 2 ** 16 + b[i + 2]! * 2 ** 8 + b[i + 3]!;
  return { version: b[0]!, type: b[1]! as FrameHeader['type'], flags: b[2]! * 256 + b[3]!, streamId: u32(4), length: u32(8) };
}

/** One raw frame: header (version 0 unless given) plus optional payload. */
export function rawFrame(type: number, flags: number, streamId: number, length: number, data?: Buffer, version = 0): Buffer {
  const head = refEncodeHeader({ version, type: type as FrameHeader['type'], flags, streamId, length });
  return data === undefined ? head : Buffer.concat([head, data]);
}

/** Splits a byte stream back into frames, naively; Data payloads included. */
export function parseFrames(bytes: Buffer): { header: FrameHeader; data?: Buffer }[] {
  const out: { header: FrameHeader; data?: Buffer }[] = [];
  let i = 0;
  while (i + 12 <= bytes.length) {
    const header = refDecodeHeader(bytes.subarray(i, i + 12));
    i += 12;
    if (header.type === 0) {
      out.push({ header, data: bytes.subarray(i, i + header.length) });
      i += header.length;
    } else {
      out.push({ header });
    }
  }
  return out;
}

/** A clock the test moves by hand. Timers fire only from `advance()`. */
export class ManualClock implements Clock {
  t = 1_000;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private nextId = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (next === undefined || next.at > end) break;
      this.timers.shift();
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }
  get pending(): number {
    return this.timers.length;
  }
}

/** A transport that keeps what the session writes. */
export class CaptureTransport implements Transport {
  chunks: Buffer[] = [];
  closed = false;
  closeErr: Error | undefined;
  write(chunk: Buffer): boolean {
    this.chunks.push(Buffer.from(chunk));
    return true;
  }
  close(err?: Error): void {
    this.closed = true;
    this.closeErr = err;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  frames(): { header: FrameHeader; data?: Buffer }[] {
    return parseFrames(this.bytes);
  }
}

export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Echo server: every inbound stream is piped back to itself. */
export function echo(session: Session): void {
  session.on('stream', (s: Stream) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
}

/** Writes `data` in `chunk`-sized pieces honouring backpressure, then ends. */
export async function writeAll(s: Stream, data: Buffer, chunk = 64 * 1024): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) {
    if (!s.write(data.subarray(off, off + chunk))) await once(s, 'drain');
  }
  s.end();
}

/** Reads a stream to its end. Rejects on 'error'. Unlike `for await`, it does not destroy the
 * stream when the readable side ends, so the writable side stays usable (half-close). */
export function readAll(s: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
    s.resume(); // also after an explicit pause()
  });
}

/** Resolves with the stream's error, or rejects if it ends cleanly (which a reset must never do). */
export function expectStreamError(s: Readable): Promise<Error & { code?: string }> {
  return new Promise((resolve, reject) => {
    s.on('end', () => reject(new Error('stream ended cleanly')));
    s.on('error', (e) => resolve(e as Error & { code?: string }));
    s.resume();
  });
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function pseudoRandomBytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export interface Pair {
  client: Session;
  server: Session;
  cleanup(): Promise<void>;
}

export function memPair(config: Partial<SessionConfig> = {}, serverConfig: Partial<SessionConfig> = {}): Promise<Pair> {
  const { client, server } = memoryPair({ config, serverConfig });
  return Promise.resolve({
    client,
    server,
    cleanup: async () => {
      client.close();
      server.close();
      await tick();
    },
  });
}

export interface WsPair extends Pair {
  clientWs: WebSocket;
  serverWs: WebSocket;
  wss: WebSocketServer;
}

/** A real ws server on 127.0.0.1 and a client dialling it; the agent side is the client. */
export async function wsPair(config: Partial<SessionConfig> = {}, serverConfig: Partial<SessionConfig> = {}): Promise<WsPair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const { port } = wss.address() as AddressInfo;
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
  const clientWs = new WebSocket(`ws://127.0.0.1:${port}`);
  await once(clientWs, 'open');
  const [serverWs] = await accepted;
  const client = sessionOverWebSocket(clientWs, { role: 'client', config });
  const server = sessionOverWebSocket(serverWs, { role: 'server', config: { ...config, ...serverConfig } });
  return {
    client,
    server,
    clientWs,
    serverWs,
    wss,
    cleanup: async () => {
      client.close();
      server.close();
      clientWs.terminate();
      serverWs.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}
