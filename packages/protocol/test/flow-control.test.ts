import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KiB, MiB, type SessionConfig } from '../src/config.js';
import { Decoder } from '../src/decode.js';
import { FrameType } from '../src/frame.js';
import { Session, type Clock } from '../src/session.js';
import type { Stream } from '../src/stream.js';
import { ManualClock, pseudoRandomBytes, tick } from './helpers.js';

const INITIAL = 256 * KiB;

/**
 * Two sessions joined by transports that watch every frame on the wire:
 * - credit[sender][id] is the window the receiver has granted: 256 KiB, plus every WindowUpdate
 *   the receiver wrote, minus every Data byte the sender wrote. It must never go negative.
 * - after every delivery, every stream's buffered bytes must fit its receive window, and the
 *   growth summed over a session's streams must fit the session budget.
 */
function watchedPair(opts: { config?: Partial<SessionConfig>; clock?: Clock; delayMs?: number }) {
  const violations: string[] = [];
  const credit = { client: new Map<number, number>(), server: new Map<number, number>() };
  const streams = { client: new Set<Stream>(), server: new Set<Stream>() };
  let maxGrowth = { client: 0, server: 0 };
  const sessions: Partial<Record<'client' | 'server', Session>> = {};

  const checkSession = (side: 'client' | 'server') => {
    const s = sessions[side];
    if (s === undefined) return;
    let growth = 0;
    for (const st of streams[side]) {
      if (st.bufferedBytes > st.receiveWindowSize) {
        violations.push(`${side} stream ${st.id} buffers ${st.bufferedBytes} > window ${st.receiveWindowSize}`);
      }
      if (st.receiveWindowSize > s.config.maxStreamWindow) violations.push(`${side} stream ${st.id} window above max`);
      if (s.streamCount > 0 && !st.destroyed && st.state !== 'closed') growth += st.receiveWindowSize - INITIAL;
    }
    if (growth > s.config.maxSessionReceiveWindow) violations.push(`${side} growth ${growth} beyond session budget`);
    maxGrowth = { ...maxGrowth, [side]: Math.max(maxGrowth[side], growth) };
  };

  const make = (self: 'client' | 'server') => {
    const peer = self === 'client' ? 'server' : 'client';
    const decoder = new Decoder(0xffff_ffff);
    let inFlight = 0;
    let blocked = false;
    const hwm = 64 * MiB;
    return {
      write(chunk: Buffer): boolean {
        for (const { header } of decoder.write(chunk)) {
          if (header.streamId === 0) continue;
          if (header.type === FrameType.Data) {
            // `self` spends credit its peer granted.
            const left = (credit[self].get(header.streamId) ?? INITIAL) - header.length;
            credit[self].set(header.streamId, left);
            if (left < 0) violations.push(`${self} sent ${-left} bytes beyond the window on stream ${header.streamId}`);
          } else if (header.type === FrameType.WindowUpdate) {
            // `self` grants its peer more credit.
            credit[peer].set(header.streamId, (credit[peer].get(header.streamId) ?? INITIAL) + header.length);
          }
        }
        inFlight += chunk.length;
        const deliver = () => {
          inFlight -= chunk.length;
          sessions[peer]!.receive(chunk);
          checkSession(peer);
          if (blocked && inFlight <= hwm / 2) {
            blocked = false;
            sessions[self]!.transportDrained();
          }
        };
        if (opts.delayMs === undefined) setImmediate(deliver);
        else setTimeout(deliver, opts.delayMs);
        if (inFlight > hwm) blocked = true;
        return !blocked;
      },
      close(): void {
        setImmediate(() => sessions[peer]!.transportClosed());
      },
    };
  };
  const client = new Session({ role: 'client', transport: make('client'), config: opts.config, clock: opts.clock });
  const server = new Session({ role: 'server', transport: make('server'), config: opts.config, clock: opts.clock });
  sessions.client = client;
  sessions.server = server;
  const streamErrors: Error[] = [];
  const track = (side: 'client' | 'server') => (st: Stream) => {
    streams[side].add(st);
    st.on('close', () => streams[side].delete(st));
    st.on('error', (e) => streamErrors.push(e));
  };
  server.on('stream', track('server'));
  return {
    client,
    server,
    violations,
    streamErrors,
    credit,
    maxGrowth: () => maxGrowth,
    open(): Stream {
      const st = client.openStream();
      track('client')(st);
      return st;
    },
  };
}

/** Sets the session's RTT by holding a manual clock still except during one ping. */
async function setRtt(session: Session, clock: ManualClock, ms: number): Promise<void> {
  const p = session.ping();
  clock.t += ms;
  expect(await p).toBe(ms);
}

interface ReadOp {
  bytes: number;
  pause: number;
}

/** Reads in flowing mode: after each op's byte count, pauses for `pause` ticks (advancing the clock). */
function patternedRead(st: Stream, ops: ReadOp[], clock: ManualClock | undefined, msPerPauseTick: number, onChunk?: () => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let op = 0;
    let sinceOp = 0;
    st.on('data', (c: Buffer) => {
      parts.push(c);
      onChunk?.();
      sinceOp += c.length;
      const cur = ops[op % ops.length]!;
      if (sinceOp >= cur.bytes) {
        sinceOp = 0;
        op++;
        if (cur.pause > 0) {
          st.pause();
          void (async () => {
            for (let i = 0; i < cur.pause; i++) {
              await tick();
              if (clock !== undefined) clock.t += msPerPauseTick;
            }
            st.resume();
          })();
        }
      }
    });
    st.on('end', () => resolve(Buffer.concat(parts)));
    st.on('error', reject);
  });
}

async function writeAll(st: Stream, data: Buffer, sizes: number[]): Promise<void> {
  let off = 0;
  for (const n of sizes) {
    const part = data.subarray(off, off + n);
    off += n;
    if (!st.write(part)) await new Promise((r) => st.once('drain', r));
  }
  st.end();
}

const readOps = fc.array(fc.record({ bytes: fc.integer({ min: 1, max: 400_000 }), pause: fc.integer({ min: 0, max: 4 }) }), {
  minLength: 1,
  maxLength: 8,
});
const writeSizes = fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1, maxLength: 10 });

describe('flow control', () => {
  it('never lets a sender exceed the granted window nor a receiver buffer beyond its window (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ up: writeSizes, down: writeSizes, serverReads: readOps, clientReads: readOps }), {
          minLength: 1,
          maxLength: 3,
        }),
        fc.integer({ min: 0, max: 40 }),
        fc.constantFrom(0, 512 * KiB, 4 * MiB),
        async (plans, rtt, budget) => {
          const clock = new ManualClock();
          const pair = watchedPair({
            clock,
            config: { keepAliveInterval: 0, maxStreamWindow: 2 * MiB, maxSessionReceiveWindow: budget },
          });
          // A long RTT lets windows grow when the reader keeps up; pauses advance the clock so some do not.
          await setRtt(pair.server, clock, rtt);
          await setRtt(pair.client, clock, rtt);
          const received = new Map<number, Promise<Buffer>>();
          pair.server.on('stream', (st) => {
            const plan = plans[(st.id - 1) / 2]!;
            received.set(st.id, patternedRead(st, plan.serverReads, clock, 7));
            const down = pseudoRandomBytes(plan.down.reduce((a, b) => a + b, 0), st.id + 1000);
            void writeAll(st, down, plan.down);
          });
          const jobs = plans.map(async (plan) => {
            const st = pair.open();
            const up = pseudoRandomBytes(plan.up.reduce((a, b) => a + b, 0), st.id);
            const back = patternedRead(st, plan.clientReads, clock, 7);
            await writeAll(st, up, plan.up);
            const got = await back;
            expect(got.equals(pseudoRandomBytes(got.length, st.id + 1000))).toBe(true);
            expect(got.length).toBe(plan.down.reduce((a, b) => a + b, 0));
            await new Promise((r) => setImmediate(r));
            const serverGot = await received.get(st.id)!;
            expect(serverGot.equals(up)).toBe(true);
          });
          await Promise.all(jobs);
          expect(pair.violations).toEqual([]);
          expect(pair.streamErrors).toEqual([]);
          expect(pair.client.closed).toBe(false);
          expect(pair.server.closed).toBe(false);
          pair.client.close();
          pair.server.close();
        },
      ),
      { numRuns: 80 },
    );
  });

  it('the watcher itself catches a sender that ignores the window', async () => {
    // Guard against a vacuous property: a raw writer that overruns the window is flagged by the
    // watcher and the receiving session ends with ERR_RECV_WINDOW_EXCEEDED.
    const pair = watchedPair({ config: { keepAliveInterval: 0 } });
    const closed = new Promise<Error | undefined>((r) => pair.server.once('close', r));
    const st = pair.open();
    (st as unknown as { sendWindow: number }).sendWindow = 10 * MiB; // lie to our own sender
    st.write(Buffer.alloc(INITIAL + 1));
    const err = await closed;
    expect(pair.violations.some((v) => v.includes('beyond the window'))).toBe(true);
    expect(err).toMatchObject({ code: 'ERR_RECV_WINDOW_EXCEEDED' });
  });

  describe('window growth', () => {
    async function transfer(opts: {
      rtt: number;
      bytes: number;
      maxStreamWindow?: number;
      budget?: number;
      /** ms the reader spends on each chunk (advances the clock). */
      perChunkMs: number;
    }) {
      const clock = new ManualClock();
      const pair = watchedPair({
        clock,
        config: {
          keepAliveInterval: 0,
          ...(opts.maxStreamWindow !== undefined ? { maxStreamWindow: opts.maxStreamWindow } : {}),
          ...(opts.budget !== undefined ? { maxSessionReceiveWindow: opts.budget } : {}),
        },
      });
      await setRtt(pair.server, clock, opts.rtt);
      const windows: number[] = [];
      let peakSend = 0;
      const data = pseudoRandomBytes(opts.bytes, 42);
      const serverStream = new Promise<Stream>((r) => pair.server.once('stream', r));
      const st = pair.open();
      const writing = writeAll(st, data, Array.from({ length: opts.bytes / (64 * KiB) }, () => 64 * KiB));
      const rs = await serverStream;
      const parts: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        rs.on('data', (c: Buffer) => {
          parts.push(c);
          clock.t += opts.perChunkMs;
          peakSend = Math.max(peakSend, st.sendWindowSize);
          if (windows.at(-1) !== rs.receiveWindowSize) windows.push(rs.receiveWindowSize);
        });
        rs.on('end', resolve);
        rs.on('error', reject);
      });
      await writing;
      expect(Buffer.concat(parts).equals(data)).toBe(true);
      expect(pair.violations).toEqual([]);
      return { windows, peakSend, pair };
    }

    it('doubles toward maxStreamWindow when the RTT is long and the reader keeps up', async () => {
      const { windows, peakSend } = await transfer({ rtt: 100, bytes: 48 * MiB, perChunkMs: 0 });
      expect(windows[0]).toBe(INITIAL);
      expect(windows.at(-1)).toBe(16 * MiB);
      // 256K, 512K, 1M, ... 16M: each step doubles.
      expect(windows).toEqual([256, 512, 1024, 2048, 4096, 8192, 16_384].map((k) => k * KiB));
      expect(peakSend).toBeGreaterThan(4 * MiB);
    });

    it('stays at 256 KiB when the reader is slow', async () => {
      // Each chunk takes the reader 250 ms (> 2 x RTT of 100 ms): no grant comes fast enough to grow.
      const { windows, peakSend } = await transfer({ rtt: 100, bytes: 8 * MiB, perChunkMs: 250 });
      expect(windows).toEqual([INITIAL]);
      expect(peakSend).toBeLessThanOrEqual(INITIAL);
    });

    it('does not grow before any RTT is known', async () => {
      const clock = new ManualClock();
      const pair = watchedPair({ clock, config: { keepAliveInterval: 0 } });
      const serverStream = new Promise<Stream>((r) => pair.server.once('stream', r));
      const st = pair.open();
      const writing = writeAll(st, Buffer.alloc(4 * MiB), Array.from({ length: 64 }, () => 64 * KiB));
      const rs = await serverStream;
      let maxWin = 0;
      rs.on('data', () => (maxWin = Math.max(maxWin, rs.receiveWindowSize)));
      await new Promise((r) => rs.on('end', r));
      await writing;
      expect(pair.server.rtt).toBeUndefined();
      expect(maxWin).toBe(INITIAL);
    });

    it('caps the growth summed over all streams at maxSessionReceiveWindow, and frees it when streams end', async () => {
      const clock = new ManualClock();
      const budget = 1 * MiB;
      const pair = watchedPair({ clock, config: { keepAliveInterval: 0, maxSessionReceiveWindow: budget } });
      await setRtt(pair.server, clock, 100);
      const serverStreams: Stream[] = [];
      pair.server.on('stream', (s) => serverStreams.push(s));
      const run = async (n: number) => {
        const ends: Promise<unknown>[] = [];
        for (let i = 0; i < n; i++) {
          const st = pair.open();
          ends.push(writeAll(st, Buffer.alloc(8 * MiB, i), Array.from({ length: 128 }, () => 64 * KiB)));
        }
        while (serverStreams.length < n) await tick();
        const mine = serverStreams.splice(0);
        const reads = mine.map(
          (s) =>
            new Promise<number>((resolve) => {
              let peak = 0;
              s.on('data', () => (peak = Math.max(peak, s.receiveWindowSize)));
              s.on('end', () => resolve(peak));
            }),
        );
        await Promise.all(ends);
        // Every stream stays open until all have been read, so their growth is held at once.
        const result = await Promise.all(reads);
        for (const s of mine) s.end();
        return result;
      };
      const peaks = await run(4);
      expect(peaks.reduce((a, p) => a + (p - INITIAL), 0)).toBeLessThanOrEqual(budget);
      expect(pair.maxGrowth().server).toBe(budget); // the budget was used, not just never reached
      expect(pair.violations).toEqual([]);
      // Closed streams gave their growth back: a new stream can grow again.
      await tick();
      expect(pair.server.streamCount).toBe(0);
      const [again] = await run(1);
      expect(again).toBeGreaterThan(INITIAL);
    });

    it('grows over a transport with a real 2 x 15 ms delay and the system clock', async () => {
      // Keep-alive on (default): its first ping measures the RTT.
      const pair = watchedPair({ delayMs: 15 });
      await pair.client.ping();
      const bytes = 24 * MiB;
      const serverStream = new Promise<Stream>((r) => pair.server.once('stream', r));
      const st = pair.open();
      const t0 = performance.now();
      const writing = writeAll(st, Buffer.alloc(bytes, 1), Array.from({ length: bytes / (256 * KiB) }, () => 256 * KiB));
      const rs = await serverStream;
      let maxWin = 0;
      let got = 0;
      rs.on('data', (c: Buffer) => {
        got += c.length;
        maxWin = Math.max(maxWin, rs.receiveWindowSize);
      });
      await new Promise((r) => rs.on('end', r));
      await writing;
      const seconds = (performance.now() - t0) / 1000;
      expect(got).toBe(bytes);
      expect(pair.server.rtt).toBeGreaterThanOrEqual(25);
      expect(maxWin).toBeGreaterThanOrEqual(2 * MiB);
      // A fixed 256 KiB window moves at most 256 KiB per 30 ms RTT: 24 MiB would take >= 2.9 s.
      expect(seconds).toBeLessThan(2.5);
      expect(pair.violations).toEqual([]);
      pair.client.close();
      pair.server.close();
    });
  });
});
