import type { ServerResponse } from 'node:http';
import { CRLF, streamHeaders, type Frame } from './frame.js';
import type { RateMeter } from './rate.js';

/** Counters a camera keeps over all its viewers (and the hub over all cameras). */
export interface DeliveryTotals {
  /** Frames written to viewers. */
  delivered: number;
  /** Frames a viewer never got because it was still busy with an older one (slow or stalled). */
  dropped: number;
  /** Frames left out on purpose by a viewer's frame-rate cap. */
  skipped: number;
}

export interface ViewerOptions {
  /** Frame-rate cap; undefined: every frame. */
  fps?: number | undefined;
  now: () => number;
  totals: DeliveryTotals;
  /** The camera's delivered-frames meter. */
  meter: RateMeter;
  ownMeter: RateMeter;
}

let nextId = 1;

/**
 * One phone watching one camera. It always gets the newest frame: until the frame written last
 * has gone to the kernel (its write callback), newer frames replace each other in `pending`
 * instead of queueing, so a viewer that falls behind skips frames, and a stalled one holds at
 * most one frame in its socket buffer plus a reference to one shared frame. Nobody else waits
 * for it: the camera hands frames to every viewer and moves on.
 */
export class Viewer {
  readonly id = nextId++;
  readonly joinedAt = Date.now();
  /** The response head has been written (false while the first upstream answer is awaited). */
  started = false;
  closed = false;
  /** Forward the request as a plain proxy request instead (the URL was no stream after all). */
  fallback: (() => void) | undefined;
  delivered = 0;
  dropped = 0;
  skipped = 0;
  private busy = false;
  private pending: Frame | undefined;
  private lastSeq = -1;
  private nextDue = 0;
  private readonly intervalMs: number;
  private readonly onFlushed = () => this.flushed();

  constructor(
    readonly res: ServerResponse,
    private readonly o: ViewerOptions,
  ) {
    this.intervalMs = o.fps !== undefined && o.fps > 0 ? 1000 / o.fps : 0;
    // A write racing a reset must not become an unhandled 'error'.
    res.on('error', () => undefined);
  }

  get fps(): number | undefined {
    return this.intervalMs > 0 ? 1000 / this.intervalMs : undefined;
  }

  /** Bytes queued for this viewer in the relay (the response and socket buffers). */
  get bufferedBytes(): number {
    return this.res.destroyed ? 0 : this.res.writableLength;
  }

  /** Bytes this viewer keeps alive: its buffers plus the frame it is waiting to send. */
  get heldBytes(): number {
    return this.bufferedBytes + (this.pending !== undefined ? this.pending.head.length + this.pending.jpeg.length + 2 : 0);
  }

  get deliveredFps(): number {
    return this.o.ownMeter.rate();
  }

  /** Writes the stream's response head. */
  start(): void {
    if (this.started || this.closed || this.res.headersSent || this.res.destroyed) {
      this.started = true;
      return;
    }
    this.started = true;
    this.res.writeHead(200, streamHeaders());
    this.res.flushHeaders();
  }

  /** A new frame from the camera: send it now, keep it for when the socket drains, or skip it. */
  offer(frame: Frame): void {
    if (this.closed || !this.started || frame.seq <= this.lastSeq) return;
    if (this.intervalMs > 0) {
      const now = this.o.now();
      // A little early is on time: frame arrival jitters.
      if (now + Math.min(5, this.intervalMs / 10) < this.nextDue) {
        this.skipped++;
        this.o.totals.skipped++;
        return;
      }
    }
    if (this.busy) {
      if (this.pending !== undefined) {
        this.dropped++;
        this.o.totals.dropped++;
      }
      this.pending = frame;
      return;
    }
    this.write(frame);
  }

  private write(frame: Frame): void {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    this.lastSeq = frame.seq;
    if (this.intervalMs > 0) {
      // Keep the cadence while on schedule (the average is then exactly fps); after a gap,
      // start it again from now.
      const now = this.o.now();
      const base = this.nextDue > 0 && now - this.nextDue < this.intervalMs ? this.nextDue : now;
      this.nextDue = base + this.intervalMs;
    }
    // Busy until this frame has left the relay's buffers: not merely until the socket is under
    // its high-water mark, which would let two or three small frames pile up.
    this.busy = true;
    res.cork();
    res.write(frame.head);
    res.write(frame.jpeg);
    res.write(CRLF, this.onFlushed);
    res.uncork();
    this.delivered++;
    this.o.totals.delivered++;
    this.o.meter.mark();
    this.o.ownMeter.mark();
  }

  private flushed(): void {
    this.busy = false;
    const next = this.pending;
    this.pending = undefined;
    if (next !== undefined && next.seq > this.lastSeq && !this.closed) this.write(next);
  }

  /** Stops sending; `end` finishes the response (shutdown), otherwise it is left to its owner. */
  close(end = false): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = undefined;
    if (end && !this.res.destroyed) {
      if (this.res.headersSent) this.res.end();
      else this.res.destroy();
    }
  }
}
