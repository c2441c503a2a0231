import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Decoder, MIN_PIECE } from '../src/decode.js';
import { ErrorCode, ProtocolError } from '../src/errors.js';
import { Flag, FrameType, HEADER_LENGTH, type Frame, type FrameHeader } from '../src/frame.js';
import { pseudoRandomBytes, refEncodeHeader } from './helpers.js';

const MAX = 64 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Many frames of every type, with empty, tiny and large payloads. */
function sampleFrames(): Frame[] {
  const frames: Frame[] = [];
  const payloadSizes = [0, 1, 2, 11, 12, 13, 100, 4096, 65_535, MAX];
  let id = 1;
  for (const [i, size] of payloadSizes.entries()) {
    const flags = [0, Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST, Flag.SYN | Flag.FIN][i % 6]!;
    frames.push({
      header: { version: 0, type: FrameType.Data, flags, streamId: id, length: size },
      data: pseudoRandomBytes(size, i + 1),
    });
    frames.push({ header: { version: 0, type: FrameType.WindowUpdate, flags, streamId: id, length: 1024 * i } });
    frames.push({ header: { version: 0, type: FrameType.Ping, flags: i % 2 ? Flag.ACK : Flag.SYN, streamId: 0, length: 0xffff_fff0 + i } });
    id += 2;
  }
  frames.push({ header: { version: 0, type: FrameType.WindowUpdate, flags: 0, streamId: 0xffff_ffff, length: 0xffff_ffff } });
  frames.push({ header: { version: 0, type: FrameType.GoAway, flags: 0, streamId: 0, length: 0 } });
  frames.push({ header: { version: 0, type: FrameType.GoAway, flags: 0, streamId: 0, length: 2 } });
  // Several frames whose headers and payloads are smaller than a header, back to back.
  for (let k = 0; k < 5; k++) {
    frames.push({ header: { version: 0, type: FrameType.Data, flags: 0, streamId: 3, length: k }, data: pseudoRandomBytes(k, 99 + k) });
  }
  return frames;
}

function encodeAll(frames: Frame[]): Buffer {
  return Buffer.concat(frames.flatMap((f) => (f.data === undefined ? [refEncodeHeader(f.header)] : [refEncodeHeader(f.header), f.data])));
}

/** Plain, comparable view of frames (Buffers become hex). */
function plain(frames: Frame[]): { header: FrameHeader; data: string | undefined }[] {
  return frames.map((f) => ({ header: { ...f.header }, data: f.data?.toString('hex') }));
}

function feed(decoder: Decoder, chunks: Buffer[]): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) {
    for (const f of decoder.write(c)) out.push(f);
    // After each write, only an incomplete frame is held.
    expect(decoder.bufferedBytes).toBeLessThan(HEADER_LENGTH + MAX);
  }
  return out;
}

function splitAt(buf: Buffer, points: number[]): Buffer[] {
  const sorted = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of sorted) {
    chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  chunks.push(buf.subarray(prev));
  return chunks;
}

describe('Decoder', () => {
  const frames = sampleFrames();
  const wire = encodeAll(frames);
  const expected = plain(frames);

  it('yields every frame from one chunk', () => {
    const d = new Decoder(MAX);
    expect(plain(feed(d, [wire]))).toEqual(expected);
    expect(d.bufferedBytes).toBe(0);
    expect(expected.map((f) => f.header.type)).toEqual(expect.arrayContaining([0, 1, 2, 3]));
  });

  it('yields identical frames when fed one byte at a time', () => {
    const d = new Decoder(MAX);
    const chunks = Array.from({ length: wire.length }, (_, i) => wire.subarray(i, i + 1));
    expect(plain(feed(d, chunks))).toEqual(expected);
    expect(d.bufferedBytes).toBe(0);
  });

  it('yields identical frames when split into two at every byte of the first frames', () => {
    const head = encodeAll(frames.slice(0, 12)); // small-payload frames of every type
    const want = plain(frames.slice(0, 12));
    for (let i = 0; i <= head.length; i++) {
      const d = new Decoder(MAX);
      expect(plain(feed(d, [head.subarray(0, i), head.subarray(i)]))).toEqual(want);
    }
  });

  it('yields identical frames at random split points (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: wire.length }), { maxLength: 300 }), (points) => {
        const d = new Decoder(MAX);
        expect(plain(feed(d, splitAt(wire, points)))).toEqual(expected);
        expect(d.bufferedBytes).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('holds the tail of an incomplete frame and finishes it later', () => {
    const d = new Decoder(MAX);
    const f = refEncodeHeader({ version: 0, type: 0, flags: 0, streamId: 1, length: 10 });
    expect([...d.write(Buffer.concat([f, Buffer.from('abc')]))]).toEqual([]);
    expect(d.bufferedBytes).toBe(3);
    const got = [...d.write(Buffer.from('defghijXYZ'))];
    expect(got).toHaveLength(1);
    expect(got[0]!.data!.toString()).toBe('abcdefghij');
    expect(d.bufferedBytes).toBe(3); // 'XYZ' is the start of the next header
  });

  it('accepts a Data frame of exactly maxFrameSize', () => {
    const d = new Decoder(1024);
    const data = pseudoRandomBytes(1024, 5);
    const got = [...d.write(Buffer.concat([refEncodeHeader({ version: 0, type: 0, flags: 0, streamId: 1, length: 1024 }), data]))];
    expect(got[0]!.data!.equals(data)).toBe(true);
  });

  it('refuses an oversized Data frame as soon as its header arrives, buffering none of the payload', () => {
    for (const length of [1025, 1 << 20, 0xffff_ffff]) {
      const d = new Decoder(1024);
      const head = refEncodeHeader({ version: 0, type: FrameType.Data, flags: 0, streamId: 1, length });
      // The header alone is enough to refuse: the decoder does not wait for the payload.
      let caught: unknown;
      try {
        for (const _ of d.write(head)) expect.unreachable('no frame expected');
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ProtocolError);
      expect((caught as ProtocolError).code).toBe(ErrorCode.FrameTooLarge);
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it('refuses an oversized Data frame that follows good frames in the same chunk, after yielding them', () => {
    const d = new Decoder(1024);
    const good = refEncodeHeader({ version: 0, type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: 1 });
    const bad = refEncodeHeader({ version: 0, type: FrameType.Data, flags: 0, streamId: 1, length: 2048 });
    const yielded: Frame[] = [];
    expect(() => {
      for (const f of d.write(Buffer.concat([good, bad, Buffer.alloc(100)]))) yielded.push(f);
    }).toThrow(expect.objectContaining({ code: ErrorCode.FrameTooLarge }));
    expect(yielded).toHaveLength(1);
    expect(d.bufferedBytes).toBeLessThanOrEqual(100); // never the 2048 bytes it announced
  });

  it('does not apply the size limit to the length of non-Data frames', () => {
    const d = new Decoder(1024);
    const wu = refEncodeHeader({ version: 0, type: FrameType.WindowUpdate, flags: 0, streamId: 1, length: 0xffff_ffff });
    const got = [...d.write(wu)];
    expect(got).toEqual([{ header: { version: 0, type: FrameType.WindowUpdate, flags: 0, streamId: 1, length: 0xffff_ffff } }]);
  });

  it('gathers a large payload sent one byte per chunk in linear time', () => {
    // A peer may send 1-byte WebSocket messages; gathering must not go quadratic (it took seconds
    // for 64 KiB when every consumed chunk was shift()ed off the front of the list).
    // 256 KiB: ~50 ms when linear, several seconds when quadratic (and a bigger size would hang).
    const size = 256 * 1024;
    const d = new Decoder(1 << 24);
    const payload = pseudoRandomBytes(size, 3);
    const wire = Buffer.concat([refEncodeHeader({ version: 0, type: 0, flags: 0, streamId: 1, length: size }), payload]);
    const t0 = performance.now();
    const got: Frame[] = [];
    for (let i = 0; i < wire.length; i++) for (const f of d.write(wire.subarray(i, i + 1))) got.push(f);
    const ms = performance.now() - t0;
    expect(got).toHaveLength(1);
    expect(got[0]!.data!.equals(payload)).toBe(true);
    expect(d.bufferedBytes).toBe(0);
    expect(ms).toBeLessThan(2_000);
  });

  it('throws the header error when a bad header arrives split across chunks', () => {
    const d = new Decoder(MAX);
    const bad = refEncodeHeader({ version: 0, type: 7 as FrameType, flags: 0, streamId: 1, length: 0 });
    expect([...d.write(bad.subarray(0, 5))]).toEqual([]);
    expect(() => [...d.write(bad.subarray(5))]).toThrow(expect.objectContaining({ code: ErrorCode.InvalidType }));
  });
});

describe('Decoder in piece mode', () => {
  const frames = sampleFrames();
  const wire = encodeAll(frames);
  const expected = plain(frames);

  /** Feeds chunks; checks the piece rules; returns the pieces joined back into frames. */
  function feedPieces(d: Decoder, chunks: Buffer[]): Frame[] {
    const out: Frame[] = [];
    let open: { header: FrameHeader; parts: Buffer[] } | undefined;
    for (const c of chunks) {
      for (const f of d.write(c)) {
        if (f.cont === true) {
          expect(open?.header).toBe(f.header);
          open!.parts.push(f.data!);
        } else {
          expect(open).toBeUndefined(); // a frame's pieces are never interleaved with another frame
          open = { header: f.header, parts: f.data === undefined ? [] : [f.data] };
        }
        // Every piece but a frame's last is at least MIN_PIECE: no stream queues an object per byte.
        if (f.more === true) expect(f.data!.length).toBeGreaterThanOrEqual(MIN_PIECE);
        if (f.more !== true && open !== undefined) {
          out.push(open.header.type === FrameType.Data ? { header: open.header, data: Buffer.concat(open.parts) } : { header: open.header });
          open = undefined;
        }
      }
      expect(d.bufferedBytes).toBeLessThan(HEADER_LENGTH + MIN_PIECE);
    }
    expect(open).toBeUndefined();
    return out;
  }

  it('yields whole frames, unmarked, when each arrives in one chunk', () => {
    const d = new Decoder(MAX, undefined, true);
    const got = [...d.write(wire)];
    expect(got.every((f) => f.more === undefined && f.cont === undefined)).toBe(true);
    expect(plain(got)).toEqual(expected);
  });

  it('yields the same frames, in pieces, one byte at a time and at random split points (property)', () => {
    const d = new Decoder(MAX, undefined, true);
    expect(plain(feedPieces(d, Array.from({ length: wire.length }, (_, i) => wire.subarray(i, i + 1))))).toEqual(expected);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: wire.length }), { maxLength: 300 }), (points) => {
        expect(plain(feedPieces(new Decoder(MAX, undefined, true), splitAt(wire, points)))).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });

  it('hands a payload on as views of the chunks it came in, joining only leftovers under MIN_PIECE', () => {
    const size = 200 * 1024;
    const payload = pseudoRandomBytes(size, 8);
    const bytes = Buffer.concat([refEncodeHeader({ version: 0, type: 0, flags: Flag.FIN, streamId: 1, length: size }), payload]);
    const reads = splitAt(bytes, [12 + 100, 12 + 100 + 64 * 1024, 12 + 100 + 128 * 1024, 12 + 100 + 128 * 1024 + 10]).map((b) => Buffer.from(b));
    const d = new Decoder(1 << 20, undefined, true);
    const pieces = reads.flatMap((r) => [...d.write(r)]);
    expect(sha256(Buffer.concat(pieces.map((p) => p.data!)))).toBe(sha256(payload));
    const views = pieces.filter((p) => reads.some((r) => r.buffer === p.data!.buffer));
    const viewBytes = views.reduce((n, p) => n + p.data!.length, 0);
    expect(viewBytes).toBeGreaterThanOrEqual(size - 2 * MIN_PIECE); // copied: only the two small leftovers, joined
    expect(pieces.filter((p) => p.more === undefined)).toHaveLength(1); // FIN goes with the last piece only
  });
});
