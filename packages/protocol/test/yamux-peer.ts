/**
 * Test harness joining our Session to an independent yamux implementation,
 * @chainsafe/libp2p-yamux (the one js-libp2p ships), through an in-memory byte pipe.
 *
 * - Our Transport.write() delivers bytes to their connection's onData() on a later macrotask.
 * - Their connection's sendData() delivers bytes to our session.receive() the same way.
 * Both directions have a byte limit in flight and signal backpressure (our `transportDrained()`,
 * their 'drain' event), so neither side can run ahead of the other unbounded.
 *
 * A wire tap parses the 12-byte headers of every frame in both directions with a parser of its
 * own (not ours), so tests can assert what actually crossed the wire.
 */
import { yamux, type YamuxMuxerInit } from '@chainsafe/libp2p-yamux';
import type { YamuxStream } from '@chainsafe/libp2p-yamux/stream';
import { defaultLogger } from '@libp2p/logger';
import { AbstractMessageStream, type SendResult } from '@libp2p/utils';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { Uint8ArrayList } from 'uint8arraylist';
import { Session, type Role, type SessionConfig, type Stream } from '../src/index.js';

// @chainsafe/libp2p-yamux and @libp2p/utils call Promise.withResolvers (ES2024, Node >= 22).
// Node 20 lacks it. They only call it at run time (ping, onDrain), never while their modules load,
// so installing it when this module is evaluated, before any test runs, is early enough.
type Resolvers<T> = { promise: Promise<T>; resolve: (v: T | PromiseLike<T>) => void; reject: (e?: unknown) => void };
const PromiseCtor = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> };
if (typeof PromiseCtor.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>(): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve'];
      let reject!: Resolvers<T>['reject'];
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}

export type TheirMuxer = ReturnType<ReturnType<ReturnType<typeof yamux>>['createStreamMuxer']>;
export type TheirStream = YamuxStream;

export const FrameTypeNo = { Data: 0, WindowUpdate: 1, Ping: 2, GoAway: 3 } as const;
export const FlagBit = { SYN: 1, ACK: 2, FIN: 4, RST: 8 } as const;

/** One frame header as seen on the wire, in the order it was written. */
export interface WireFrame {
  from: 'ours' | 'theirs';
  type: number;
  flags: number;
  streamId: number;
  length: number;
}

/** Incremental header parser, independent of src/decode.ts. */
class WireTap {
  private readonly head = Buffer.alloc(12);
  private headFill = 0;
  private skip = 0;
  constructor(
    private readonly from: WireFrame['from'],
    private readonly log: WireFrame[],
  ) {}

  feed(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - off);
        this.skip -= n;
        off += n;
        continue;
      }
      const n = Math.min(12 - this.headFill, chunk.length - off);
      this.head.set(chunk.subarray(off, off + n), this.headFill);
      this.headFill += n;
      off += n;
      if (this.headFill < 12) return;
      this.headFill = 0;
      if (this.head[0] !== 0) throw new Error(`wire tap: ${this.from} sent version ${this.head[0]}`);
      const f: WireFrame = {
        from: this.from,
        type: this.head[1]!,
        flags: this.head.readUInt16BE(2),
        streamId: this.head.readUInt32BE(4),
        length: this.head.readUInt32BE(8),
      };
      this.log.push(f);
      if (f.type === FrameTypeNo.Data) this.skip = f.length;
    }
  }
}

/** Their end of the byte pipe: a libp2p message stream whose bytes go to our session. */
class PipeEnd extends AbstractMessageStream {
  private inFlight = 0;
  private needsDrain = false;
  constructor(
    direction: 'inbound' | 'outbound',
    private readonly deliver: (bytes: Buffer) => void,
    private readonly closeRemote: (err?: Error) => void,
    private readonly tap: WireTap,
    private readonly highWaterMark: number,
  ) {
    super({ log: defaultLogger().forComponent(`interop:theirs:${direction}`), direction });
  }

  sendData(data: Uint8ArrayList): SendResult {
    // Copy: the list may reference the writer's own buffers and delivery is asynchronous.
    const bytes = Buffer.from(data.subarray());
    this.tap.feed(bytes);
    this.inFlight += bytes.length;
    setImmediate(() => {
      this.inFlight -= bytes.length;
      this.deliver(bytes);
      if (this.needsDrain && this.inFlight <= this.highWaterMark / 2) {
        this.needsDrain = false;
        this.safeDispatchEvent('drain');
      }
    });
    const canSendMore = this.inFlight <= this.highWaterMark;
    if (!canSendMore) this.needsDrain = true;
    return { sentBytes: bytes.length, canSendMore };
  }

  sendReset(err: Error): void {
    setImmediate(() => this.closeRemote(err));
  }

  sendPause(): void {}
  sendResume(): void {}

  async close(): Promise<void> {
    setImmediate(() => this.closeRemote());
    this.onTransportClosed();
  }
}

/** A stream their side accepted, with a reader attached the moment it appeared. */
export interface TheirAccepted {
  stream: TheirStream;
  reader: TheirReader;
}

export interface InteropPair {
  ours: Session;
  theirs: TheirMuxer;
  /** Every frame header written by either side, in order. */
  wire: WireFrame[];
  /** Resolves with the next stream their side accepts (in order of arrival). */
  acceptTheirs(): Promise<TheirAccepted>;
  /** Tears both ends down. */
  shutdown(): Promise<void>;
}

export interface ConnectOptions {
  /** Our session's role; theirs takes the other one. */
  ourRole: Role;
  ourConfig?: Partial<SessionConfig>;
  theirInit?: YamuxMuxerInit;
  /** Bytes in flight per direction above which the writer is told to wait. */
  highWaterMark?: number;
}

export function connect(opts: ConnectOptions): InteropPair {
  const hwm = opts.highWaterMark ?? 1024 * 1024;
  const wire: WireFrame[] = [];
  const ourTap = new WireTap('ours', wire);
  const theirTap = new WireTap('theirs', wire);

  // Their end first: its callbacks reach `ours` only on later macrotasks, once it exists.
  const conn = new PipeEnd(
    opts.ourRole === 'client' ? 'inbound' : 'outbound',
    (bytes) => ours.receive(bytes),
    (err) => ours.transportClosed(err),
    theirTap,
    hwm,
  );
  let inFlight = 0;
  let blocked = false;
  const ours: Session = new Session({
    role: opts.ourRole,
    config: { keepAliveInterval: 0, ...opts.ourConfig },
    transport: {
      write(chunk: Buffer): boolean {
        ourTap.feed(chunk);
        inFlight += chunk.length;
        setImmediate(() => {
          inFlight -= chunk.length;
          if (conn.status === 'open') conn.onData(chunk);
          if (blocked && inFlight <= hwm / 2) {
            blocked = false;
            ours.transportDrained();
          }
        });
        if (inFlight > hwm) blocked = true;
        return !blocked;
      },
      close(): void {
        setImmediate(() => {
          if (conn.status === 'open') conn.onTransportClosed();
        });
      },
    },
  });
  const theirs = yamux({ enableKeepAlive: false, ...opts.theirInit })().createStreamMuxer(conn);
  // Their stream buffers bytes that arrive with no 'message' listener and may see the FIN in the
  // same chunk as its SYN, so the reader is attached synchronously in the 'stream' event.
  const accepted: TheirAccepted[] = [];
  const waiting: ((a: TheirAccepted) => void)[] = [];
  theirs.addEventListener('stream', (evt) => {
    const a = { stream: evt.detail, reader: collectTheirs(evt.detail) };
    const w = waiting.shift();
    if (w !== undefined) w(a);
    else accepted.push(a);
  });
  return {
    ours,
    theirs,
    wire,
    acceptTheirs() {
      const a = accepted.shift();
      return a !== undefined ? Promise.resolve(a) : new Promise((resolve) => waiting.push(resolve));
    },
    async shutdown() {
      ours.close();
      theirs.abort(new Error('test over'));
      await new Promise((r) => setImmediate(r));
    },
  };
}

// ---- reading and writing on both sides ----

export interface TheirReadResult {
  data: Buffer;
  /** The peer half-closed (FIN) the stream. */
  remoteFin: boolean;
  /** The error the stream closed with, if it did (e.g. StreamResetError on a peer RST). */
  error: Error | undefined;
}

export interface TheirReader {
  /** Bytes received so far. */
  readonly bytes: number;
  /** Settles at the peer's FIN or the stream's close, whichever comes first. */
  result: Promise<TheirReadResult>;
}

/**
 * Collects what their stream receives until the peer's FIN or the stream's close.
 * Attach right when the stream appears (acceptTheirs does) or right after creating it.
 */
export function collectTheirs(s: TheirStream): TheirReader {
  const parts: Buffer[] = [];
  let bytes = 0;
  const result = new Promise<TheirReadResult>((resolve) => {
    const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }) => {
      const b = Buffer.from(evt.data.subarray());
      parts.push(b);
      bytes += b.length;
    };
    const done = (remoteFin: boolean, error: Error | undefined) => {
      s.removeEventListener('message', onMessage);
      resolve({ data: Buffer.concat(parts), remoteFin, error });
    };
    s.addEventListener('message', onMessage);
    s.addEventListener('remoteCloseWrite', () => done(true, undefined), { once: true });
    s.addEventListener('close', (evt) => done(false, evt.error), { once: true });
  });
  return {
    get bytes() {
      return bytes;
    },
    result,
  };
}

/** Writes `data` through their stream in `chunk`-sized sends, honouring their backpressure. */
export async function sendTheirs(s: TheirStream, data: Buffer, chunk = 64 * 1024): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) {
    if (!s.send(data.subarray(off, off + chunk))) await s.onDrain();
  }
}

export interface OurReadResult {
  data: Buffer;
  ended: boolean;
  error: (Error & { code?: string }) | undefined;
}

/** Collects what our stream receives until 'end' (FIN) or an error. */
export function collectOurs(s: Stream): Promise<OurReadResult> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.once('end', () => resolve({ data: Buffer.concat(parts), ended: true, error: undefined }));
    s.once('error', (e: Error) => resolve({ data: Buffer.concat(parts), ended: false, error: e }));
  });
}

/** Writes `data` to a Node writable in `chunk`-sized writes, waiting for 'drain'; ends it if asked. */
export async function writeOurs(w: Writable, data: Buffer, opts: { chunk?: number; end?: boolean } = {}): Promise<void> {
  const chunk = opts.chunk ?? 64 * 1024;
  for (let off = 0; off < data.length; off += chunk) {
    if (!w.write(data.subarray(off, off + chunk))) await once(w, 'drain');
  }
  if (opts.end ?? true) w.end();
}

/** Resolves on the next stream our session accepts. */
export function nextOurStream(session: Session): Promise<Stream> {
  return new Promise((resolve) => session.once('stream', resolve));
}

/** Polls until `cond` holds (for state that settles a few ticks after the bytes). */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
