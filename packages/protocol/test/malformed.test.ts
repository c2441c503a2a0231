import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KiB } from '../src/config.js';
import { ErrorCode, ProtocolError, SessionError } from '../src/errors.js';
import { Flag, FrameType, GoAwayCode } from '../src/frame.js';
import { Session } from '../src/session.js';
import type { Stream } from '../src/stream.js';
import { CaptureTransport, rawFrame, tick } from './helpers.js';

const { Data, WindowUpdate, Ping, GoAway } = FrameType;
const { SYN, ACK, FIN, RST } = Flag;
const MAX_FRAME = 1024 * KiB;

/** A server-role session fed raw bytes, with everything it does recorded. */
function harness() {
  const transport = new CaptureTransport();
  const session = new Session({ role: 'server', transport, config: { keepAliveInterval: 0, maxFrameSize: MAX_FRAME } });
  const closes: (Error | undefined)[] = [];
  const streams: Stream[] = [];
  const streamErrors: Error[] = [];
  const streamEnds: Stream[] = [];
  session.on('close', (e) => closes.push(e));
  session.on('stream', (s) => {
    streams.push(s);
    s.on('error', (e) => streamErrors.push(e));
    s.on('end', () => streamEnds.push(s));
    s.resume();
  });
  /** receive() must never throw, whatever the bytes. */
  const feed = (...chunks: Buffer[]) => {
    for (const c of chunks) expect(() => session.receive(c)).not.toThrow();
  };
  return { transport, session, closes, streams, streamErrors, streamEnds, feed };
}

type Harness = ReturnType<typeof harness>;

/** The session ended once, with a ProtocolError of `code`, told the peer GoAway(ProtocolError), and closed the transport. */
async function expectProtocolClose(h: Harness, code: ErrorCode) {
  expect(h.session.closed).toBe(true);
  expect(h.closes).toHaveLength(1);
  const err = h.closes[0];
  expect(err).toBeInstanceOf(ProtocolError);
  expect((err as ProtocolError).code).toBe(code);
  expect(h.session.closeError).toBe(err);
  const frames = h.transport.frames();
  const last = frames.at(-1);
  expect(last?.header).toEqual({ version: 0, type: GoAway, flags: 0, streamId: 0, length: GoAwayCode.ProtocolError });
  expect(frames.filter((f) => f.header.type === GoAway)).toHaveLength(1);
  expect(h.transport.closed).toBe(true);
  expect(h.transport.closeErr).toBe(err);
  // Streams that were open are aborted with an error, never ended cleanly.
  await tick();
  for (const s of h.streams) expect(s.destroyed).toBe(true);
  expect(h.streamEnds).toEqual([]);
  const errorCodes = h.streamErrors.map((e) => (e as SessionError).code);
  expect(errorCodes.every((c) => c === ErrorCode.StreamAborted || c === ErrorCode.StreamReset)).toBe(true);
  expect(h.streamErrors.length).toBe(h.streams.length);
  // Later input is ignored and writes nothing.
  const before = h.transport.bytes.length;
  h.feed(rawFrame(Ping, SYN, 0, 1), rawFrame(8, 0, 0, 0));
  await tick();
  expect(h.transport.bytes.length).toBe(before);
  expect(h.closes).toHaveLength(1);
}

const cases: [string, Buffer[], ErrorCode][] = [
  ['bad version', [rawFrame(Ping, SYN, 0, 1, undefined, 1)], ErrorCode.InvalidVersion],
  ['bad version after good frames', [rawFrame(Ping, SYN, 0, 1), rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(Data, 0, 1, 0, undefined, 2)], ErrorCode.InvalidVersion],
  ['unknown type', [rawFrame(4, 0, 1, 0)], ErrorCode.InvalidType],
  ['unknown type 255', [rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(255, 0, 1, 0)], ErrorCode.InvalidType],
  ['unknown flags', [rawFrame(WindowUpdate, 0x10 | SYN, 1, 0)], ErrorCode.InvalidFlags],
  ['oversized length', [rawFrame(Data, SYN, 1, MAX_FRAME + 1)], ErrorCode.FrameTooLarge],
  ['oversized length 2^32-1', [rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(Data, 0, 1, 0xffff_ffff)], ErrorCode.FrameTooLarge],
  [
    'data on a stream after its FIN',
    [rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(Data, FIN, 1, 3, Buffer.from('abc')), rawFrame(Data, 0, 1, 1, Buffer.from('x'))],
    ErrorCode.DataAfterFin,
  ],
  [
    'data after a FIN carried by a window update',
    [rawFrame(Data, SYN, 1, 2, Buffer.from('ab')), rawFrame(WindowUpdate, FIN, 1, 0), rawFrame(Data, 0, 1, 1, Buffer.from('x'))],
    ErrorCode.DataAfterFin,
  ],
  ['data beyond the window in one frame', [rawFrame(Data, SYN, 1, 256 * KiB + 1, Buffer.alloc(256 * KiB + 1))], ErrorCode.ReceiveWindowExceeded],
  [
    'data beyond the window over several frames',
    [
      rawFrame(Data, SYN, 1, 200 * KiB, Buffer.alloc(200 * KiB)),
      rawFrame(Data, 0, 1, 56 * KiB, Buffer.alloc(56 * KiB)),
      rawFrame(Data, 0, 1, 1, Buffer.alloc(1)),
    ],
    ErrorCode.ReceiveWindowExceeded,
  ],
  ['window update overflow past 2^32-1', [rawFrame(WindowUpdate, SYN, 1, 0xffff_ffff)], ErrorCode.WindowOverflow],
  [
    'window updates that add up past 2^32-1',
    [rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(WindowUpdate, 0, 1, 0x8000_0000), rawFrame(WindowUpdate, 0, 1, 0x8000_0000)],
    ErrorCode.WindowOverflow,
  ],
  ['data for a never-opened peer stream id', [rawFrame(Data, 0, 5, 1, Buffer.from('x'))], ErrorCode.InvalidStreamId],
  ['window update for a never-opened id of our parity', [rawFrame(WindowUpdate, ACK, 2, 10)], ErrorCode.InvalidStreamId],
  ['data above the last opened peer id', [rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(Data, 0, 3, 1, Buffer.from('x'))], ErrorCode.InvalidStreamId],
  ['SYN reuse of an open stream', [rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(WindowUpdate, SYN, 1, 0)], ErrorCode.StreamIdReused],
  ['SYN reuse of a closed stream', [rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(WindowUpdate, RST, 1, 0), rawFrame(Data, SYN, 1, 1, Buffer.from('x'))], ErrorCode.StreamIdReused],
  ['SYN for an id below the last one', [rawFrame(WindowUpdate, SYN, 5, 0), rawFrame(WindowUpdate, SYN, 3, 0)], ErrorCode.StreamIdReused],
  ['SYN with our (even) parity', [rawFrame(WindowUpdate, SYN, 2, 0)], ErrorCode.InvalidStreamId],
  ['Data on stream 0', [rawFrame(Data, 0, 0, 1, Buffer.from('x'))], ErrorCode.InvalidStreamId],
  ['SYN on stream 0', [rawFrame(WindowUpdate, SYN, 0, 0)], ErrorCode.InvalidStreamId],
  ['Ping on a stream id', [rawFrame(Ping, SYN, 1, 7)], ErrorCode.InvalidStreamId],
  ['GoAway on a stream id', [rawFrame(GoAway, 0, 1, 0)], ErrorCode.InvalidStreamId],
];

describe('malformed input ends the session with GoAway(ProtocolError)', () => {
  for (const [name, chunks, code] of cases) {
    it(`${name} → ${code}`, async () => {
      const h = harness();
      h.feed(...chunks);
      await expectProtocolClose(h, code);
    });

    it(`${name} → ${code}, fed one byte at a time`, async () => {
      const h = harness();
      const all = Buffer.concat(chunks);
      if (all.length > 4096) {
        // Large payloads: bytes of the headers one by one, payloads in a few pieces.
        for (let i = 0; i < all.length; i += i < 64 ? 1 : 65_536) h.feed(all.subarray(i, i < 64 ? i + 1 : i + 65_536));
      } else {
        for (let i = 0; i < all.length; i++) h.feed(all.subarray(i, i + 1));
      }
      await expectProtocolClose(h, code);
    });
  }

  it('a window update overflow on a stream we opened', async () => {
    const h = harness();
    const s = h.session.openStream();
    s.on('error', (e) => h.streamErrors.push(e));
    h.streams.push(s);
    h.feed(rawFrame(WindowUpdate, ACK, s.id, 0xffff_ffff - 256 * KiB + 1));
    await expectProtocolClose(h, ErrorCode.WindowOverflow);
  });

  it('up to exactly 2^32-1 the send window is fine', () => {
    const h = harness();
    const s = h.session.openStream();
    h.feed(rawFrame(WindowUpdate, ACK, s.id, 0xffff_ffff - 256 * KiB));
    expect(h.session.closed).toBe(false);
    expect(s.sendWindowSize).toBe(0xffff_ffff);
    const aborted = new Promise((r) => s.once('error', r));
    h.session.close();
    return expect(aborted).resolves.toMatchObject({ code: ErrorCode.StreamAborted });
  });

  it('a peer GoAway with an error code ends the session with ERR_PEER_PROTOCOL_ERROR', () => {
    const h = harness();
    h.feed(rawFrame(WindowUpdate, SYN, 1, 0), rawFrame(GoAway, 0, 0, GoAwayCode.InternalError));
    expect(h.closes).toHaveLength(1);
    expect(h.closes[0]).toBeInstanceOf(SessionError);
    expect((h.closes[0] as SessionError).code).toBe(ErrorCode.PeerProtocolError);
    expect(h.transport.closed).toBe(true);
  });
});

describe('late and refused frames do not end the session', () => {
  it('drops frames for a stream we reset', async () => {
    const h = harness();
    h.feed(rawFrame(WindowUpdate, SYN, 1, 0));
    h.streams[0]!.destroy();
    await tick();
    h.feed(rawFrame(Data, 0, 1, 3, Buffer.from('abc')), rawFrame(WindowUpdate, 0, 1, 100), rawFrame(WindowUpdate, FIN, 1, 0));
    expect(h.session.closed).toBe(false);
    const rst = h.transport.frames().filter((f) => f.header.streamId === 1 && f.header.flags & RST);
    expect(rst).toHaveLength(1);
    h.session.close();
  });

  it('answers a SYN beyond maxConcurrentStreams with RST and drops its data', async () => {
    const transport = new CaptureTransport();
    const session = new Session({ role: 'server', transport, config: { keepAliveInterval: 0, maxConcurrentStreams: 1 } });
    const accepted: number[] = [];
    session.on('stream', (s) => {
      accepted.push(s.id);
      s.on('error', () => undefined);
    });
    session.receive(rawFrame(WindowUpdate, SYN, 1, 0));
    session.receive(rawFrame(Data, SYN, 3, 2, Buffer.from('hi')));
    session.receive(rawFrame(Data, 0, 3, 2, Buffer.from('hi')));
    await tick();
    expect(accepted).toEqual([1]);
    expect(session.closed).toBe(false);
    const refusal = transport.frames().find((f) => f.header.streamId === 3);
    expect(refusal?.header).toEqual({ version: 0, type: WindowUpdate, flags: RST, streamId: 3, length: 0 });
    session.close();
  });
});

describe('garbage never throws', () => {
  it('random bytes (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 200 }), { minLength: 1, maxLength: 8 }), (chunks) => {
        const h = harness();
        h.feed(...chunks.map((c) => Buffer.from(c)));
        for (const e of h.closes) {
          expect(e).toBeInstanceOf(ProtocolError);
          const last = h.transport.frames().at(-1)?.header;
          expect(last?.type).toBe(GoAway);
          expect(last?.length).toBe((e as ProtocolError).goAwayCode);
        }
        if (!h.session.closed) h.session.close();
      }),
      { numRuns: 1000 },
    );
  });

  it('random well-formed-looking frames (property)', async () => {
    const frame = fc
      .record({
        type: fc.integer({ min: 0, max: 4 }),
        flags: fc.integer({ min: 0, max: 0x1f }),
        id: fc.integer({ min: 0, max: 8 }),
        length: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(256 * KiB, 0xffff_ffff)),
        version: fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 255 })),
      })
      .map(({ type, flags, id, length, version }) =>
        type === Data && length <= 64
          ? rawFrame(type, flags, id, length, Buffer.alloc(length, 1), version)
          : rawFrame(type, flags, id, length, undefined, version),
      );
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 30 }), fc.boolean(), async (frames, openOne) => {
        const h = harness();
        if (openOne) {
          const s = h.session.openStream();
          s.on('error', () => undefined);
        }
        h.feed(...frames);
        await tick();
        if (h.session.closed) {
          expect(h.closes).toHaveLength(1);
          const e = h.closes[0];
          if (!(e instanceof SessionError && e.code === ErrorCode.PeerProtocolError) && e !== undefined) {
            expect(e).toBeInstanceOf(ProtocolError);
          }
        } else {
          h.session.close();
        }
        await tick();
      }),
      { numRuns: 500 },
    );
  });
});

describe('a frame larger than its window', () => {
  it('is refused from its header alone, before any of its payload is held', async () => {
    const h = harness();
    // Only the 12-byte header of a 900 KiB Data frame on a new stream (window 256 KiB).
    const frame = rawFrame(Data, SYN, 1, 900 * KiB, Buffer.alloc(0));
    h.feed(frame.subarray(0, 12));
    await expectProtocolClose(h, ErrorCode.ReceiveWindowExceeded);
  });
});

describe('a Data frame that arrives in pieces', () => {
  const payload = Buffer.from(Array.from({ length: 40 * KiB }, (_, i) => (i * 7) & 0xff));

  it('opens its stream once, delivers every byte, and applies FIN only after the last one', async () => {
    const h = harness();
    const bytes = rawFrame(Data, SYN | FIN, 1, payload.length, payload);
    const got: Buffer[] = [];
    h.session.on('stream', (s) => s.on('data', (c: Buffer) => got.push(c)));
    for (let off = 0; off < bytes.length; off += 1000) {
      h.feed(bytes.subarray(off, off + 1000));
      if (off + 1000 < bytes.length) expect(h.streamEnds).toHaveLength(0);
    }
    await tick();
    expect(h.streams).toHaveLength(1);
    expect(Buffer.concat(got).equals(payload)).toBe(true);
    expect(h.streamEnds).toHaveLength(1);
    expect(h.session.closed).toBe(false);
    h.session.close();
  });

  it('drops the rest of a frame whose stream was reset after its first piece, and carries on', async () => {
    const h = harness();
    h.feed(rawFrame(WindowUpdate, SYN, 1, 0));
    const bytes = rawFrame(Data, FIN, 1, payload.length, payload);
    h.feed(bytes.subarray(0, 10_000));
    h.streams[0]!.destroy();
    await tick();
    h.feed(bytes.subarray(10_000), rawFrame(Data, SYN, 3, 2, Buffer.from('ok')));
    await tick();
    expect(h.session.closed).toBe(false);
    expect(h.streams.map((s) => s.id)).toEqual([1, 3]);
    h.session.close();
  });

  it('still refuses one announced beyond the window from its header alone', () => {
    const h = harness();
    h.feed(rawFrame(WindowUpdate, SYN, 1, 0));
    h.feed(rawFrame(Data, 0, 1, 256 * KiB + 1).subarray(0, 12));
    expect(h.closes).toHaveLength(1);
    expect((h.closes[0] as ProtocolError).code).toBe(ErrorCode.ReceiveWindowExceeded);
  });
});
