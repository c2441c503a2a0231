import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { makeFrame, type Frame } from '../src/webcam/frame.js';
import { RateMeter } from '../src/webcam/rate.js';
import { Viewer } from '../src/webcam/viewer.js';

/** A response whose socket flushes only when told to (`flush()`), like a phone on a slow link. */
class FakeResponse extends EventEmitter {
  headersSent = false;
  destroyed = false;
  writableEnded = false;
  status = 0;
  written: Buffer[] = [];
  /** Bytes not yet flushed. */
  writableLength = 0;
  private callbacks: (() => void)[] = [];
  writeHead(status: number) {
    this.status = status;
    this.headersSent = true;
    return this;
  }
  flushHeaders() {}
  cork() {}
  uncork() {}
  write(chunk: Buffer, cb?: () => void) {
    this.written.push(chunk);
    this.writableLength += chunk.length;
    if (cb) this.callbacks.push(cb);
    return this.writableLength < 16_384;
  }
  flush() {
    this.writableLength = 0;
    const cbs = this.callbacks.splice(0);
    for (const cb of cbs) cb();
  }
  /** The JPEGs written so far, by their first byte after SOI (the test's frame id). */
  jpegs(): number[] {
    return this.written.filter((b) => b[0] === 0xff && b[1] === 0xd8).map((b) => b[2]!);
  }
  end() {
    this.writableEnded = true;
  }
  destroy() {
    this.destroyed = true;
  }
}

function setup(fps?: number) {
  let now = 1_000;
  const res = new FakeResponse();
  const totals = { delivered: 0, dropped: 0, skipped: 0 };
  const clock = () => now;
  const v = new Viewer(res as unknown as ServerResponse, { fps, now: clock, totals, meter: new RateMeter(clock), ownMeter: new RateMeter(clock) });
  v.start();
  let seq = 0;
  const frame = (id: number, size = 1_000): Frame => {
    const jpeg = Buffer.alloc(size, 0);
    jpeg.set([0xff, 0xd8, id]);
    return makeFrame(++seq, jpeg, now);
  };
  return { res, v, totals, frame, advance: (ms: number) => (now += ms) };
}

describe('Viewer', () => {
  it('writes a multipart stream: head, then one part per frame', () => {
    const { res, v, frame } = setup();
    expect(res.status).toBe(200);
    v.offer(frame(1));
    const text = Buffer.concat(res.written).toString('latin1');
    expect(text).toMatch(/^--portholeframe\r\nContent-Type: image\/jpeg\r\nContent-Length: 1000\r\nX-Timestamp: \d+\.\d{6}\r\n\r\n\xff\xd8\x01/);
    expect(text.endsWith('\r\n')).toBe(true);
  });

  it('while a frame is on its way, newer frames replace each other: the newest is sent next', () => {
    const { res, v, totals, frame } = setup();
    v.offer(frame(1, 100)); // small: under the socket's high-water mark, still "busy"
    v.offer(frame(2, 100));
    v.offer(frame(3, 100));
    v.offer(frame(4, 100));
    expect(res.jpegs()).toEqual([1]);
    expect(v.heldBytes).toBeLessThan(2 * 300);
    res.flush();
    expect(res.jpegs()).toEqual([1, 4]);
    expect(totals).toMatchObject({ delivered: 2, dropped: 2 });
    res.flush();
    v.offer(frame(5, 100));
    expect(res.jpegs()).toEqual([1, 4, 5]);
  });

  it('a stalled viewer never holds more than one frame in flight and one waiting', () => {
    const { res, v, frame } = setup();
    for (let i = 1; i <= 200; i++) v.offer(frame(i % 250, 10_000));
    expect(res.jpegs()).toHaveLength(1);
    expect(v.heldBytes).toBeLessThanOrEqual(2 * (10_000 + 200));
    expect(v.dropped).toBe(198);
  });

  it('never sends the same or an older frame twice', () => {
    const { res, v, frame } = setup();
    const f = frame(7);
    v.offer(f);
    res.flush();
    v.offer(f);
    expect(res.jpegs()).toEqual([7]);
  });

  it('an fps cap keeps an exact average cadence against a faster source', () => {
    const { res, v, frame, advance } = setup(2);
    // A 15 fps source for 10 s, with jitter.
    for (let i = 0; i < 150; i++) {
      v.offer(frame(i % 250));
      res.flush();
      advance(1000 / 15 + (i % 3) - 1);
    }
    expect(res.jpegs().length).toBeGreaterThanOrEqual(19);
    expect(res.jpegs().length).toBeLessThanOrEqual(21);
    expect(v.skipped).toBe(150 - res.jpegs().length);
  });

  it('after close nothing more is written, and close(true) ends the response', () => {
    const { res, v, frame } = setup();
    v.close(true);
    v.offer(frame(1));
    expect(res.jpegs()).toEqual([]);
    expect(res.writableEnded).toBe(true);
  });
});
