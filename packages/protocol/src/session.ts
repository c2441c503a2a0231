import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { verifyConfig, type SessionConfig } from './config.js';
import { Decoder } from './decode.js';
import { encodeHeader } from './encode.js';
import { ErrorCode, ProtocolError, SessionError } from './errors.js';
import { Flag, FrameType, GoAwayCode, HEADER_LENGTH, PROTOCOL_VERSION, type Frame, type FrameHeader } from './frame.js';
import { Stream } from './stream.js';

/** Room for the headers and small payloads of a batch; a new one is taken when it is full. */
const SCRATCH_SIZE = 16 * 1024;
/** Payloads up to this size are copied next to their header; larger ones are passed on as they are. */
const INLINE_PAYLOAD = 1024;

/** Pongs and refusals a blocked transport still gets, for a peer that is not reading. */
const MAX_ANSWERS_WHILE_BLOCKED = 256;

/** What a session writes to: a WebSocket, a TCP socket, an in-memory pipe. */
export interface Transport {
  /** Sends bytes in order. Returns false when the transport's own buffer is above its mark;
   * the owner then calls `session.transportDrained()` once it has room again. */
  /** `written`, when given, is called once these bytes have left (handed to the kernel), in
   * the order of the writes; only transports that set `reportsWritten` are given one. */
  write(chunk: Buffer, written?: () => void): boolean;
  /** Optional: sends `chunks` (in order, `bytes` in all) as one message without joining them
   * first, e.g. one WebSocket frame written with one writev. Same return and `written` as
   * `write`. The buffers are not modified afterwards; the transport holds them until written. */
  writev?(chunks: Buffer[], bytes: number, written?: () => void): boolean;
  /** The session is over; release the transport. */
  close(err?: Error): void;
  /** True when the transport calls `written` for every write that succeeds. */
  readonly reportsWritten?: boolean;
}

/** Time, injectable so tests decide it. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export type Role = 'client' | 'server';

export interface SessionOptions {
  role: Role;
  transport: Transport;
  config?: Partial<SessionConfig>;
  clock?: Clock;
}

export interface SessionEvents {
  stream: [stream: Stream];
  goaway: [code: number];
  rtt: [ms: number];
  close: [err?: Error];
}

/**
 * A yamux session: bytes in through `receive()`, frames out through the transport.
 * It never throws out of `receive()` and never emits 'error': a protocol violation sends GoAway
 * with the matching code, ends every stream and emits 'close' with the error.
 */
export class Session extends EventEmitter<SessionEvents> {
  readonly role: Role;
  readonly config: Readonly<SessionConfig>;
  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly decoder: Decoder;
  private readonly streams = new Map<number, Stream>();
  private nextStreamId: number;
  private lastInboundId = 0;

  private out: Buffer[] = [];
  private outBytes = 0;
  // Headers and small payloads are written into a scratch buffer, each batch's part of it sealed
  // into `out` as one piece; large payloads go to `out` as they are (no copy, no per-frame alloc).
  private scratch: Buffer = Buffer.allocUnsafe(SCRATCH_SIZE);
  private scratchStart = 0;
  private scratchEnd = 0;
  private flushScheduled = false;
  // whenWritten(): batches are numbered as they are flushed; the transport reports them written.
  private flushedBatches = 0;
  private writtenBatches = 0;
  private readonly writtenWaiters: { batch: number; fn: () => void }[] = [];
  private transportBlocked = false;
  private drainWaiters = new Set<Stream>();

  private growthReserved = 0;
  /** Answers (pongs, refusals) queued since the transport stopped taking bytes; see mayAnswer(). */
  private answersWhileBlocked = 0;

  private _rtt: number | undefined;
  private nextPingId = 1;
  private readonly pings = new Map<number, { sentAt: number; resolve: (rtt: number) => void; reject: (e: Error) => void }>();
  private lastReceivedAt: number;
  private keepAliveTimer: unknown;
  private watchdogTimer: unknown;

  private localGoAway = false;
  private remoteGoAway = false;
  private _closed = false;
  private _closeError: Error | undefined;

  constructor(opts: SessionOptions) {
    super();
    this.role = opts.role;
    this.config = verifyConfig(opts.config);
    this.transport = opts.transport;
    this.clock = opts.clock ?? systemClock;
    // Piece mode: a payload reaches its stream as views of the chunks it arrived in, not copied
    // into one buffer first (transports may hand over a socket's reads as they come).
    this.decoder = new Decoder(this.config.maxFrameSize, (h) => this.checkDataHeader(h), true);
    this.nextStreamId = this.role === 'client' ? 1 : 2;
    this.lastReceivedAt = this.clock.now();
    if (this.config.keepAliveInterval > 0) {
      this.scheduleKeepAlive(0);
      this.scheduleWatchdog(this.config.keepAliveTimeout);
    }
  }

  // ---- public API ----

  get closed(): boolean {
    return this._closed;
  }
  get closeError(): Error | undefined {
    return this._closeError;
  }
  /** Latest measured round-trip time in ms, once a ping has been answered. */
  get rtt(): number | undefined {
    return this._rtt;
  }
  get streamCount(): number {
    return this.streams.size;
  }
  /** True once either side said go away: no new streams. */
  get goingAway(): boolean {
    return this.localGoAway || this.remoteGoAway;
  }
  /** Bytes queued to the transport and not yet handed over. */
  get queuedBytes(): number {
    return this.outBytes;
  }
  now(): number {
    return this.clock.now();
  }

  /** Opens an outbound stream; the peer learns of it at once (SYN). */
  openStream(): Stream {
    if (this._closed) throw new SessionError(ErrorCode.SessionClosed, 'session is closed');
    if (this.remoteGoAway) throw new SessionError(ErrorCode.GoAwayReceived, 'peer is going away');
    if (this.localGoAway) throw new SessionError(ErrorCode.SessionClosing, 'session is going away');
    if (this.streams.size >= this.config.maxConcurrentStreams) {
      throw new SessionError(ErrorCode.TooManyStreams, `at most ${this.config.maxConcurrentStreams} streams`);
    }
    if (this.nextStreamId > 0xffff_ffff) throw new SessionError(ErrorCode.SessionClosing, 'stream ids exhausted');
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = this.createStream(id, false);
    stream.announce();
    return stream;
  }

  /** Sends a ping and resolves with the round-trip time in ms. */
  ping(): Promise<number> {
    if (this._closed) return Promise.reject(new SessionError(ErrorCode.SessionClosed, 'session is closed'));
    const id = this.nextPingId;
    this.nextPingId = (this.nextPingId + 1) >>> 0 || 1;
    return new Promise<number>((resolve, reject) => {
      this.pings.set(id, { sentAt: this.clock.now(), resolve, reject });
      this.sendFrame(FrameType.Ping, Flag.SYN, 0, id);
    });
  }

  /**
   * Calls `fn` once every frame queued so far has been written by the transport, so buffers
   * handed to streams can be reused. Never called if the session ends first (the transport
   * may still hold them), nor by a transport that does not report writes.
   */
  whenWritten(fn: () => void): void {
    if (this._closed || this.transport.reportsWritten !== true) return;
    const queued = this.out.length > 0 || this.scratchEnd > this.scratchStart;
    const batch = this.flushedBatches + (queued ? 1 : 0);
    if (batch <= this.writtenBatches) fn();
    else this.writtenWaiters.push({ batch, fn });
  }

  /** Graceful shutdown: tell the peer, accept no new streams, close once the open ones finish. */
  goAway(code: GoAwayCode = GoAwayCode.Normal): void {
    if (this._closed || this.localGoAway) return;
    this.localGoAway = true;
    this.sendFrame(FrameType.GoAway, 0, 0, code);
    this.closeIfIdle();
  }

  /** Ends the session now: every open stream is aborted. */
  close(err?: Error): void {
    if (this._closed) return;
    if (!this.localGoAway) {
      this.localGoAway = true;
      const code =
        err instanceof ProtocolError ? err.goAwayCode : err === undefined ? GoAwayCode.Normal : GoAwayCode.InternalError;
      if (!(err instanceof SessionError && err.code === ErrorCode.TransportClosed)) {
        this.sendFrame(FrameType.GoAway, 0, 0, code);
      }
    }
    this.flush();
    this.finish(err);
    this.transport.close(err);
  }

  // ---- transport side ----

  /** Feed bytes from the peer. Never throws. */
  receive(chunk: Buffer): void {
    if (this._closed) return;
    this.lastReceivedAt = this.clock.now();
    try {
      for (const frame of this.decoder.write(chunk)) {
        this.handle(frame);
        if (this._closed) return;
      }
    } catch (e) {
      // Anything but a ProtocolError came from our own code or an application handler.
      this.close(e instanceof ProtocolError ? e : new ProtocolError(ErrorCode.Internal, String(e), GoAwayCode.InternalError));
    }
  }

  /** The transport has room again. */
  transportDrained(): void {
    if (!this.transportBlocked) return;
    this.transportBlocked = false;
    this.wakeWriters();
  }

  /** The transport is gone (socket closed, errored). */
  transportClosed(err?: Error): void {
    if (this._closed) return;
    this.finish(err ?? new SessionError(ErrorCode.TransportClosed, 'connection closed'));
  }

  // ---- used by streams ----

  /** @internal */
  canSend(): boolean {
    return !this.transportBlocked && this.outBytes < this.config.transportHighWaterMark;
  }

  /** @internal */
  waitForDrain(stream: Stream): void {
    this.drainWaiters.add(stream);
  }

  /** @internal queues one frame; frames written in the same tick leave in one transport write. */
  sendFrame(type: FrameType, flags: number, streamId: number, length: number, data?: Buffer): void {
    if (this._closed) return;
    const size = data === undefined ? 0 : data.length;
    const inline = size <= INLINE_PAYLOAD;
    const need = HEADER_LENGTH + (inline ? size : 0);
    if (this.scratchEnd + need > this.scratch.length) {
      this.sealScratch();
      // Sealed pieces may still be queued in the transport: never write over them, start afresh.
      this.scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
      this.scratchStart = this.scratchEnd = 0;
    }
    encodeHeader({ version: PROTOCOL_VERSION, type, flags, streamId, length }, this.scratch, this.scratchEnd);
    this.scratchEnd += HEADER_LENGTH;
    if (size > 0) {
      if (inline) {
        data!.copy(this.scratch, this.scratchEnd);
        this.scratchEnd += size;
      } else {
        this.sealScratch();
        this.out.push(data!);
      }
    }
    this.outBytes += HEADER_LENGTH + size;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // The first batch of an event-loop turn leaves at the end of this callback, so the peer
      // starts on it at once; later ones in the same turn wait for the turn's end and leave
      // together. Always waiting for the turn's end (setImmediate) made fewer writes but moved
      // requests through relay, agent and printer in convoys and cut req/s; always leaving at
      // once cost a ws message and a syscall per request under load (bench/proxy).
      if (this.turnFlushed) setImmediate(this.flushNow);
      else process.nextTick(this.flushNow);
    }
  }

  /** @internal takes up to `want` bytes of window growth from the session budget. */
  reserveGrowth(want: number): number {
    const got = Math.max(0, Math.min(want, this.config.maxSessionReceiveWindow - this.growthReserved));
    this.growthReserved += got;
    return got;
  }

  /** @internal a stream is done: release its id and its window growth. */
  forget(stream: Stream): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.drainWaiters.delete(stream);
    const grown = stream.receiveWindowSize - this.config.initialStreamWindow;
    this.growthReserved = Math.max(0, this.growthReserved - grown);
    this.closeIfIdle();
  }

  // ---- internals ----

  private createStream(id: number, inbound: boolean): Stream {
    const hwm = Math.min(this.config.maxSendFrameSize, 64 * 1024);
    const stream = new Stream(this, id, inbound, this.config.initialStreamWindow, hwm);
    this.streams.set(id, stream);
    return stream;
  }

  private handle(frame: Frame): void {
    const { header, data } = frame;
    const { type, flags, streamId, length } = header;
    if (type === FrameType.Ping) {
      if (streamId !== 0) throw new ProtocolError(ErrorCode.InvalidStreamId, 'ping on a stream id');
      if (flags & Flag.SYN) {
        if (this.mayAnswer()) this.sendFrame(FrameType.Ping, Flag.ACK, 0, length);
      }
      else if (flags & Flag.ACK) this.onPong(length);
      return;
    }
    if (type === FrameType.GoAway) {
      if (streamId !== 0) throw new ProtocolError(ErrorCode.InvalidStreamId, 'go-away on a stream id');
      this.onGoAway(length);
      return;
    }
    if (streamId === 0) throw new ProtocolError(ErrorCode.InvalidStreamId, `frame type ${type} on stream 0`);

    let stream = this.streams.get(streamId);
    // A later piece of a Data frame (piece mode) was judged with its first: SYN, ids and all.
    if (frame.cont === true) {
      if (stream === undefined) return;
    } else if (flags & Flag.SYN) {
      if (stream !== undefined) throw new ProtocolError(ErrorCode.StreamIdReused, `SYN for open stream ${streamId}`);
      const peerParity = this.role === 'client' ? 0 : 1;
      if (streamId % 2 !== peerParity) {
        throw new ProtocolError(ErrorCode.InvalidStreamId, `peer opened stream ${streamId} with our parity`);
      }
      if (streamId <= this.lastInboundId) {
        throw new ProtocolError(ErrorCode.StreamIdReused, `stream id ${streamId} reused`);
      }
      this.lastInboundId = streamId;
      if (this.localGoAway || this.remoteGoAway || this.streams.size >= this.config.maxConcurrentStreams) {
        // Refuse this one stream, keep the session.
        if (this.mayAnswer()) this.sendFrame(FrameType.WindowUpdate, Flag.RST, streamId, 0);
        return;
      }
      stream = this.createStream(streamId, true);
      stream.announce();
      this.emit('stream', stream);
    }

    if (stream === undefined) {
      this.checkKnownId(streamId);
      return; // a stream we already closed: late frames are dropped
    }
    if (type === FrameType.Data) stream.onData(data ?? Buffer.alloc(0));
    else if (length > 0) stream.onWindowUpdate(length);
    if (frame.more === true) return; // FIN, RST and ACK take effect with the frame's last byte
    const streamFlags = flags & (Flag.ACK | Flag.FIN | Flag.RST);
    if (streamFlags !== 0) stream.onFlags(streamFlags);
  }

  /**
   * A peer that makes us answer (pings, SYNs we refuse) but never reads the answers would grow
   * our send buffer by a byte for every byte it sends (found by test/fuzz.test.ts). While the
   * transport is blocked or a megabyte is queued, at most MAX_ANSWERS_WHILE_BLOCKED answers leave.
   */
  private mayAnswer(): boolean {
    if (!this.transportBlocked && this.outBytes < this.config.transportHighWaterMark) {
      this.answersWhileBlocked = 0;
      return true;
    }
    return ++this.answersWhileBlocked <= MAX_ANSWERS_WHILE_BLOCKED;
  }

  /** Refuses a Data frame larger than the stream's window from its header, before the payload is held. */
  private checkDataHeader(h: FrameHeader): void {
    const stream = this.streams.get(h.streamId);
    if (stream === undefined && !(h.flags & Flag.SYN)) {
      // A stream we closed: the peer may have sent up to the window it had (grown, and peers such
      // as hashicorp's send whole windows as one frame) before it saw our RST. Such a frame is
      // dropped, not judged against the initial window; an id never opened fails here already.
      this.checkKnownId(h.streamId);
      return;
    }
    const window = stream !== undefined ? stream.receiveWindow : this.config.initialStreamWindow;
    if (h.length > window) {
      throw new ProtocolError(
        ErrorCode.ReceiveWindowExceeded,
        `stream ${h.streamId} announced ${h.length} bytes with a window of ${window}`,
      );
    }
  }

  /** Frames for ids that were never opened are a protocol error; for closed ones they are late. */
  private checkKnownId(id: number): void {
    const ours = (id % 2 === 1) === (this.role === 'client');
    const neverOpened = ours ? id >= this.nextStreamId : id > this.lastInboundId;
    if (neverOpened) throw new ProtocolError(ErrorCode.InvalidStreamId, `frame for stream ${id} that was never opened`);
  }

  private onPong(id: number): void {
    const p = this.pings.get(id);
    if (p === undefined) return;
    this.pings.delete(id);
    const rtt = Math.max(0, this.clock.now() - p.sentAt);
    this._rtt = rtt;
    this.emit('rtt', rtt);
    p.resolve(rtt);
  }

  private onGoAway(code: number): void {
    this.remoteGoAway = true;
    this.emit('goaway', code);
    if (code !== GoAwayCode.Normal) {
      this.finish(new SessionError(ErrorCode.PeerProtocolError, `peer went away with code ${code}`));
      this.transport.close();
      return;
    }
    this.closeIfIdle();
  }

  private closeIfIdle(): void {
    if (!this._closed && this.goingAway && this.streams.size === 0) {
      // Let the last frames (FIN, GoAway) leave before the transport closes.
      process.nextTick(() => {
        if (!this._closed && this.streams.size === 0) this.close();
      });
    }
  }

  private readonly flushNow = (): void => this.flush();
  /** A batch already left in this event-loop turn; cleared by a setImmediate at the turn's end. */
  private turnFlushed = false;
  private readonly endTurn = (): void => {
    this.turnFlushed = false;
  };

  private batchWritten(batch: number): void {
    this.writtenBatches = batch;
    if (this._closed) return;
    const w = this.writtenWaiters;
    let n = 0;
    while (n < w.length && w[n]!.batch <= batch) n++;
    if (n === 0) return;
    for (const { fn } of w.splice(0, n)) fn();
  }

  /** Moves what was written into the scratch buffer since the last seal into `out`. */
  private sealScratch(): void {
    if (this.scratchEnd === this.scratchStart) return;
    this.out.push(this.scratch.subarray(this.scratchStart, this.scratchEnd));
    this.scratchStart = this.scratchEnd;
  }

  private flush(): void {
    this.flushScheduled = false;
    this.sealScratch();
    if (this.out.length === 0 || this._closed) {
      this.out = [];
      this.outBytes = 0;
      return;
    }
    // One message per batch (one ws message per payload would double the messages the peer
    // parses). A transport that can gather sends the pieces as they are; others get one copy.
    const out = this.out;
    const batch = ++this.flushedBatches;
    const written = this.transport.reportsWritten === true ? () => this.batchWritten(batch) : undefined;
    const ok =
      out.length === 1
        ? this.transport.write(out[0]!, written)
        : this.transport.writev !== undefined
          ? this.transport.writev(out, this.outBytes, written)
          : this.transport.write(Buffer.concat(out, this.outBytes), written);
    this.out = [];
    this.outBytes = 0;
    if (!this.turnFlushed) {
      this.turnFlushed = true;
      setImmediate(this.endTurn);
    }
    if (!ok) this.transportBlocked = true;
    else this.wakeWriters();
  }

  private wakeWriters(): void {
    if (this.drainWaiters.size === 0) return;
    const waiters = [...this.drainWaiters];
    this.drainWaiters.clear();
    for (const s of waiters) {
      if (!this.canSend()) {
        this.drainWaiters.add(s);
        continue;
      }
      s.flushPending();
    }
  }

  private scheduleKeepAlive(delay: number): void {
    this.keepAliveTimer = this.clock.setTimeout(() => {
      if (this._closed) return;
      this.ping().catch(() => undefined);
      // Forget pings that were never answered so the map stays bounded.
      const cutoff = this.clock.now() - this.config.keepAliveTimeout;
      for (const [id, p] of this.pings) if (p.sentAt < cutoff) this.pings.delete(id);
      this.scheduleKeepAlive(this.config.keepAliveInterval);
    }, delay);
  }

  private scheduleWatchdog(delay: number): void {
    this.watchdogTimer = this.clock.setTimeout(() => {
      if (this._closed) return;
      const silent = this.clock.now() - this.lastReceivedAt;
      if (silent >= this.config.keepAliveTimeout) {
        const err = new SessionError(ErrorCode.KeepAliveTimeout, `no data from peer for ${Math.round(silent)} ms`);
        this.finish(err);
        this.transport.close(err); // the ws adapter drops a dead socket at once instead of a close handshake
        return;
      }
      this.scheduleWatchdog(this.config.keepAliveTimeout - silent);
    }, delay);
  }

  /** Marks closed, aborts streams, rejects pings, stops timers, emits 'close' once. */
  private finish(err?: Error): void {
    if (this._closed) return;
    this._closed = true;
    this._closeError = err;
    this.clock.clearTimeout(this.keepAliveTimer);
    this.clock.clearTimeout(this.watchdogTimer);
    const streamErr = new SessionError(
      ErrorCode.StreamAborted,
      err === undefined ? 'session closed' : `session closed: ${err.message}`,
    );
    for (const s of [...this.streams.values()]) s.abort(streamErr);
    this.streams.clear();
    this.drainWaiters.clear();
    this.writtenWaiters.length = 0;
    for (const p of this.pings.values()) p.reject(new SessionError(ErrorCode.SessionClosed, 'session closed'));
    this.pings.clear();
    this.emit('close', err);
  }
}
