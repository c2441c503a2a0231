import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeHeader } from '../src/decode.js';
import { encodeHeader } from '../src/encode.js';
import { ErrorCode, ProtocolError } from '../src/errors.js';
import { ALL_FLAGS, Flag, FrameType, GoAwayCode, HEADER_LENGTH, PROTOCOL_VERSION, type FrameHeader } from '../src/frame.js';
import { refDecodeHeader, refEncodeHeader } from './helpers.js';

const types = Object.values(FrameType);
const flagCombos = Array.from({ length: ALL_FLAGS + 1 }, (_, i) => i); // every subset of SYN|ACK|FIN|RST
const streamIds = [0, 1, 2, 3, 255, 256, 65_535, 65_536, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];
const lengths = [0, 1, 12, 255, 256, 65_535, 65_536, 262_144, 16 * 1024 * 1024, 0x8000_0000, 0xffff_ffff];

/** Every type x every flag combination x a spread of ids and lengths. */
const table: FrameHeader[] = [];
for (const type of types) {
  for (const flags of flagCombos) {
    for (const [i, streamId] of streamIds.entries()) {
      const length = lengths[(i + flags) % lengths.length]!;
      table.push({ version: PROTOCOL_VERSION, type, flags, streamId, length });
    }
  }
}

describe('frame constants', () => {
  it('match the yamux spec', () => {
    expect(HEADER_LENGTH).toBe(12);
    expect(PROTOCOL_VERSION).toBe(0);
    expect(FrameType).toEqual({ Data: 0, WindowUpdate: 1, Ping: 2, GoAway: 3 });
    expect(Flag).toEqual({ SYN: 1, ACK: 2, FIN: 4, RST: 8 });
    expect(ALL_FLAGS).toBe(0xf);
    expect(GoAwayCode).toEqual({ Normal: 0, ProtocolError: 1, InternalError: 2 });
  });
});

describe('encodeHeader / decodeHeader', () => {
  it(`round-trips the table of ${table.length} headers against the reference codec`, () => {
    expect(table.length).toBe(types.length * 16 * streamIds.length);
    for (const h of table) {
      const ours = encodeHeader(h);
      const ref = refEncodeHeader(h);
      expect(ours.length).toBe(HEADER_LENGTH);
      expect(ours.equals(ref), JSON.stringify(h)).toBe(true);
      expect(decodeHeader(ref)).toEqual(h);
      expect(refDecodeHeader(ours)).toEqual(h);
    }
  });

  it('lays the fields out big-endian at the documented offsets', () => {
    const b = encodeHeader({ version: 0, type: FrameType.WindowUpdate, flags: Flag.SYN | Flag.FIN, streamId: 0x01020304, length: 0xa0b0c0d0 });
    expect([...b]).toEqual([0, 1, 0, 5, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0]);
  });

  it('encodes into a given buffer at an offset and decodes from an offset', () => {
    const into = Buffer.alloc(40, 0xee);
    const h: FrameHeader = { version: 0, type: FrameType.Ping, flags: Flag.ACK, streamId: 0, length: 0xdeadbeef };
    const ret = encodeHeader(h, into, 17);
    expect(ret).toBe(into);
    expect(into.subarray(17, 29).equals(refEncodeHeader(h))).toBe(true);
    expect(into[16]).toBe(0xee);
    expect(into[29]).toBe(0xee);
    expect(decodeHeader(into, 17)).toEqual(h);
  });

  it('decodes from a Uint8Array view with a non-zero byteOffset', () => {
    const h: FrameHeader = { version: 0, type: FrameType.GoAway, flags: 0, streamId: 0, length: GoAwayCode.InternalError };
    const backing = new Uint8Array(64);
    backing.set(refEncodeHeader(h), 5);
    const view = backing.subarray(5, 17);
    expect(decodeHeader(view)).toEqual(h);
  });

  it('round-trips arbitrary valid headers (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...types),
        fc.integer({ min: 0, max: ALL_FLAGS }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (type, flags, streamId, length) => {
          const h: FrameHeader = { version: 0, type, flags, streamId, length };
          const enc = encodeHeader(h);
          expect(enc.equals(refEncodeHeader(h))).toBe(true);
          expect(decodeHeader(enc)).toEqual(h);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('throws a RangeError on fewer than 12 bytes', () => {
    expect(() => decodeHeader(Buffer.alloc(11))).toThrow(RangeError);
    expect(() => decodeHeader(Buffer.alloc(12), 1)).toThrow(RangeError);
  });

  const rejections: [string, FrameHeader, ErrorCode][] = [
    ['version 1', { version: 1, type: 0, flags: 0, streamId: 1, length: 0 }, ErrorCode.InvalidVersion],
    ['version 255', { version: 255, type: 2, flags: 1, streamId: 0, length: 1 }, ErrorCode.InvalidVersion],
    ['type 4', { version: 0, type: 4 as FrameType, flags: 0, streamId: 1, length: 0 }, ErrorCode.InvalidType],
    ['type 255', { version: 0, type: 255 as FrameType, flags: 0, streamId: 1, length: 0 }, ErrorCode.InvalidType],
    ['flag 0x10', { version: 0, type: 0, flags: 0x10, streamId: 1, length: 0 }, ErrorCode.InvalidFlags],
    ['flag 0x8000', { version: 0, type: 1, flags: 0x8000, streamId: 1, length: 0 }, ErrorCode.InvalidFlags],
    ['all flags 0xffff', { version: 0, type: 1, flags: 0xffff, streamId: 1, length: 0 }, ErrorCode.InvalidFlags],
    ['known + unknown flags', { version: 0, type: 0, flags: Flag.SYN | 0x20, streamId: 1, length: 0 }, ErrorCode.InvalidFlags],
  ];
  for (const [name, h, code] of rejections) {
    it(`rejects ${name} with ${code}`, () => {
      let caught: unknown;
      try {
        decodeHeader(refEncodeHeader(h));
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ProtocolError);
      expect((caught as ProtocolError).code).toBe(code);
      expect((caught as ProtocolError).goAwayCode).toBe(GoAwayCode.ProtocolError);
    });
  }

  it('checks the version before the type and the type before the flags', () => {
    const all = { version: 9, type: 9 as FrameType, flags: 0x100, streamId: 1, length: 0 };
    expect(() => decodeHeader(refEncodeHeader(all))).toThrow(expect.objectContaining({ code: ErrorCode.InvalidVersion }));
    expect(() => decodeHeader(refEncodeHeader({ ...all, version: 0 }))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidType }),
    );
  });

  it('rejects every invalid version, type and flag value (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffff }),
        (version, type, flags) => {
          const bytes = refEncodeHeader({ version, type: type as FrameType, flags, streamId: 7, length: 9 });
          const valid = version === 0 && type <= 3 && (flags & ~ALL_FLAGS) === 0;
          if (valid) {
            expect(decodeHeader(bytes).flags).toBe(flags);
          } else {
            const expected =
              version !== 0 ? ErrorCode.InvalidVersion : type > 3 ? ErrorCode.InvalidType : ErrorCode.InvalidFlags;
            expect(() => decodeHeader(bytes)).toThrow(expect.objectContaining({ code: expected }));
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
