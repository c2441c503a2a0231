import type { OnReadOpts, Socket } from 'node:net';
import type { Stream } from '@porthole/protocol';

/**
 * Read buffers for local-service sockets, reused once the tunnel has sent what was read into
 * them. Node otherwise allocates a fresh 64 KiB buffer for every read; at a few hundred MB/s
 * that churn made V8 run a full collection every 64 MiB of external memory, a large part of
 * the agent's CPU per GiB on a download. Bounded: at most `keep` idle buffers are held.
 */
export class ReadPool {
  private readonly free: Buffer[] = [];
  private _allocated = 0;

  constructor(
    readonly size = 64 * 1024,
    readonly keep = 32,
  ) {}

  take(): Buffer {
    const b = this.free.pop();
    if (b !== undefined) return b;
    this._allocated++;
    return Buffer.allocUnsafeSlow(this.size);
  }

  /** Buffers allocated so far (the rest of the reads reused one). */
  get allocated(): number {
    return this._allocated;
  }

  give(buf: Buffer): void {
    if (this.free.length < this.keep && buf.length === this.size) this.free.push(buf);
  }

  /** Buffers waiting for reuse. */
  get idle(): number {
    return this.free.length;
  }
}

/**
 * Reads a socket into pooled buffers (net's `onread`) and writes what it reads to a tunnel
 * stream, with backpressure: a full stream stops reading until it drains. A buffer goes back
 * to the pool only after the session's transport wrote it; a write that fails keeps it out.
 */
export class PooledReader {
  private dest: Stream | undefined;
  private socket: Socket | undefined;
  private readonly early: Buffer[] = [];
  private used = false;

  constructor(private readonly pool: ReadPool) {}

  /** True once net took a buffer, i.e. the socket was made with `onread` (a test's own connect may not). */
  get active(): boolean {
    return this.used;
  }

  /** The `onread` option for net.connect. */
  readonly onread: OnReadOpts = {
    buffer: () => {
      this.used = true;
      return this.pool.take();
    },
    callback: (n: number, buf: Uint8Array): boolean => this.data(buf.subarray(0, n) as Buffer, buf as Buffer),
  };

  /** Starts forwarding to `stream`; the socket's end ends the stream's writing side. */
  attach(stream: Stream, socket: Socket): void {
    this.dest = stream;
    this.socket = socket;
    socket.once('end', () => {
      if (!stream.destroyed) stream.end();
    });
    socket.resume(); // flowing, so 'end' is emitted; the data itself goes to the callback
    let ok = true;
    for (const chunk of this.early.splice(0)) ok = stream.write(chunk);
    if (!ok) {
      socket.pause();
      this.pauseUntilDrain();
    }
  }

  private data(view: Buffer, buf: Buffer): boolean {
    const dest = this.dest;
    if (dest === undefined) {
      this.early.push(view);
      return true;
    }
    const ok = dest.write(view, (err) => {
      if (err === undefined || err === null) dest.whenWritten(() => this.pool.give(buf));
    });
    if (ok) return true;
    this.pauseUntilDrain();
    return false;
  }

  private pauseUntilDrain(): void {
    const dest = this.dest!;
    const socket = this.socket!;
    dest.once('drain', () => {
      if (!socket.destroyed) socket.resume();
    });
  }
}
