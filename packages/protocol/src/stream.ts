import { Duplex } from 'node:stream';
import { ErrorCode, ProtocolError, StreamError } from './errors.js';
import { Flag, FrameType, MAX_UINT32 } from './frame.js';
import type { Session } from './session.js';

/** Where a stream is in its life (yamux spec "Stream states"). */
export const StreamState = {
  /** We sent SYN, no ACK yet. */
  SYNSent: 'syn-sent',
  /** Peer sent SYN; our ACK is on its way. */
  SYNReceived: 'syn-received',
  Established: 'established',
  /** Both sides sent FIN, or a side sent RST, or the session ended. */
  Closed: 'closed',
} as const;
export type StreamState = (typeof StreamState)[keyof typeof StreamState];

interface PendingWrite {
  chunk: Buffer;
  cb: (err?: Error | null) => void;
}

/**
 * One multiplexed stream, exposed as a Node Duplex so `pipeline()` works and backpressure is real:
 * - writes never exceed the peer's window; a write's callback fires only once its bytes are framed,
 *   so the Writable buffers at most `writableHighWaterMark` above that;
 * - received data is pushed to the Readable; window is granted back only as the reader consumes,
 *   so at most the receive window is ever buffered here;
 * - end() sends FIN; destroy() before both sides finished sends RST; a peer RST destroys the
 *   stream with ERR_STREAM_RESET, so a truncated body is never seen as a complete one.
 */
export class Stream extends Duplex {
  readonly id: number;
  private readonly session: Session;
  private _state: StreamState;
  private synSent: boolean;

  // sending
  private sendWindow: number;
  private pending: PendingWrite | undefined;
  private localFin = false;

  // receiving
  private recvWindow: number;
  private recvAvailable: number;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private canPush = true;
  private remoteFin = false;
  private ended = false;
  private epochStart: number;

  /** @internal created by Session only */
  constructor(session: Session, id: number, inbound: boolean, initialWindow: number, highWaterMark: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: highWaterMark, writableHighWaterMark: highWaterMark });
    this.session = session;
    this.id = id;
    this._state = inbound ? StreamState.SYNReceived : StreamState.SYNSent;
    this.synSent = inbound; // an inbound stream answers with ACK, never SYN
    this.sendWindow = initialWindow;
    this.recvWindow = initialWindow;
    this.recvAvailable = initialWindow;
    this.epochStart = session.now();
  }

  get state(): StreamState {
    return this._state;
  }

  /** Bytes the peer may still send before it must wait for a window update. */
  get receiveWindow(): number {
    return this.recvAvailable;
  }

  /** Current maximum receive window (grows with RTT up to the configured cap). */
  get receiveWindowSize(): number {
    return this.recvWindow;
  }

  /** Bytes this side may still send. */
  get sendWindowSize(): number {
    return this.sendWindow;
  }

  /** Bytes received and not yet consumed by the reader. */
  get bufferedBytes(): number {
    return this.queuedBytes + this.readableLength;
  }

  /**
   * Calls `fn` once what was written to this stream (writes whose callbacks have fired) has
   * left through the session's transport, so the written buffers may be reused. Never called
   * when the session ends first, or over a transport that does not report writes.
   */
  whenWritten(fn: () => void): void {
    this.session.whenWritten(fn);
  }

  /** Abort the stream: the peer sees RST. */
  reset(): void {
    this.destroy();
  }

  // ---- flags for outgoing frames ----

  /** @internal */
  takeOpenFlags(): number {
    if (!this.synSent) {
      this.synSent = true;
      return Flag.SYN;
    }
    if (this._state === StreamState.SYNReceived) {
      this._state = StreamState.Established;
      return Flag.ACK;
    }
    return 0;
  }

  /** @internal send the SYN (outbound) or ACK (inbound) now, before any data. */
  announce(): void {
    this.session.sendFrame(FrameType.WindowUpdate, this.takeOpenFlags(), this.id, 0);
  }

  // ---- Writable side ----

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pending = { chunk, cb };
    this.flushPending();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this._state === StreamState.Closed) {
      cb();
      return;
    }
    this.localFin = true;
    this.session.sendFrame(FrameType.WindowUpdate, this.takeOpenFlags() | Flag.FIN, this.id, 0);
    this.maybeClosed();
    cb();
  }

  /** @internal sends as much of the pending write as window and transport allow. */
  flushPending(): void {
    while (this.pending !== undefined) {
      if (this._state === StreamState.Closed) {
        const { cb } = this.pending;
        this.pending = undefined;
        cb(new StreamError(ErrorCode.StreamAborted, `stream ${this.id} closed while writing`));
        return;
      }
      if (this.sendWindow === 0) return; // a WindowUpdate calls us again
      if (!this.session.canSend()) {
        this.session.waitForDrain(this);
        return;
      }
      const { chunk, cb } = this.pending;
      const n = Math.min(this.sendWindow, this.session.config.maxSendFrameSize, chunk.length);
      const part = n === chunk.length ? chunk : chunk.subarray(0, n);
      this.sendWindow -= n;
      this.session.sendFrame(FrameType.Data, this.takeOpenFlags(), this.id, n, part);
      if (n === chunk.length) {
        this.pending = undefined;
        cb();
      } else {
        this.pending = { chunk: chunk.subarray(n), cb };
      }
    }
  }

  // ---- Readable side ----

  override _read(): void {
    this.canPush = true;
    while (this.queue.length > 0 && this.canPush) {
      const c = this.queue.shift()!;
      this.queuedBytes -= c.length;
      this.canPush = this.push(c);
    }
    this.maybeEnd();
    this.maybeGrantWindow();
  }

  private maybeEnd(): void {
    if (this.remoteFin && !this.ended && this.queue.length === 0) {
      this.ended = true;
      this.push(null);
    }
  }

  /** Grants the peer window for what the reader consumed; grows the window when it keeps up. */
  private maybeGrantWindow(): void {
    if (this._state === StreamState.Closed || this.remoteFin) return;
    let delta = this.recvWindow - this.recvAvailable - this.bufferedBytes;
    if (delta < this.recvWindow / 2) return;
    const now = this.session.now();
    const rtt = this.session.rtt;
    if (rtt !== undefined && now - this.epochStart < 2 * rtt && this.recvWindow < this.session.config.maxStreamWindow) {
      const growth = this.session.reserveGrowth(
        Math.min(this.recvWindow, this.session.config.maxStreamWindow - this.recvWindow),
      );
      this.recvWindow += growth;
      delta += growth;
    }
    this.epochStart = now;
    this.recvAvailable += delta;
    this.session.sendFrame(FrameType.WindowUpdate, this.takeOpenFlags(), this.id, delta);
  }

  // ---- frames from the session ----

  /** @internal */
  onData(data: Buffer): void {
    if (this.remoteFin) {
      throw new ProtocolError(ErrorCode.DataAfterFin, `data on stream ${this.id} after its FIN`);
    }
    if (data.length > this.recvAvailable) {
      throw new ProtocolError(
        ErrorCode.ReceiveWindowExceeded,
        `stream ${this.id} received ${data.length} bytes with a window of ${this.recvAvailable}`,
      );
    }
    this.recvAvailable -= data.length;
    if (data.length === 0 || this.destroyed) return;
    if (this.queue.length === 0 && this.canPush) {
      this.canPush = this.push(data);
    } else {
      this.queue.push(data);
      this.queuedBytes += data.length;
    }
    this.maybeGrantWindow();
  }

  /** @internal */
  onWindowUpdate(delta: number): void {
    const next = this.sendWindow + delta;
    if (next > MAX_UINT32) {
      throw new ProtocolError(ErrorCode.WindowOverflow, `stream ${this.id} send window would overflow`);
    }
    this.sendWindow = next;
    if (delta > 0) this.flushPending();
  }

  /** @internal */
  onFlags(flags: number): void {
    if (flags & Flag.ACK && this._state === StreamState.SYNSent) this._state = StreamState.Established;
    if (flags & Flag.RST) {
      this._state = StreamState.Closed;
      this.session.forget(this);
      this.destroy(new StreamError(ErrorCode.StreamReset, `stream ${this.id} was reset by the peer`));
      return;
    }
    if (flags & Flag.FIN && !this.remoteFin) {
      this.remoteFin = true;
      this.maybeEnd();
      this.maybeClosed();
    }
  }

  /** @internal the session ended under us. */
  abort(err: Error): void {
    if (this._state === StreamState.Closed && this.destroyed) return;
    this._state = StreamState.Closed;
    this.destroy(err);
  }

  private maybeClosed(): void {
    if (this.localFin && this.remoteFin && this._state !== StreamState.Closed) {
      this._state = StreamState.Closed;
      this.session.forget(this);
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this._state !== StreamState.Closed) {
      // Not finished both ways: tell the peer this stream is aborted, never let it look complete.
      this._state = StreamState.Closed;
      this.session.sendFrame(FrameType.WindowUpdate, this.takeOpenFlags() | Flag.RST, this.id, 0);
    }
    this.session.forget(this);
    this.queue.length = 0;
    this.queuedBytes = 0;
    if (this.pending !== undefined) {
      const { cb: writeCb } = this.pending;
      this.pending = undefined;
      writeCb(err ?? new StreamError(ErrorCode.StreamAborted, `stream ${this.id} destroyed while writing`));
    }
    cb(err);
  }
}
