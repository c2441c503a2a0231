import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { boundaryOf, isMultipartReplace, MjpegParser, wholeJpeg } from '../src/webcam/parser.js';
import { placeholderJpeg } from '../src/webcam/placeholder.js';

/** A small JPEG-shaped buffer (SOI, an APP0-ish marker, deterministic bytes, EOI). */
function fakeJpeg(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n + 6);
  b[0] = 0xff;
  b[1] = 0xd8;
  b[2] = 0xff;
  b[3] = 0xe0;
  let x = seed * 2654435761;
  for (let i = 4; i < n + 4; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (x >>> 16) & 0x7f; // 7-bit: never a stray FF marker
  }
  b[n + 4] = 0xff;
  b[n + 5] = 0xd9;
  return b;
}

interface PartSpec {
  body: Buffer;
  length?: boolean;
  /** Extra bytes between this part and the next delimiter. */
  garbageAfter?: string;
  headers?: string[];
}

/** Serializes a multipart stream the way camera servers do (reference writer). */
function stream(parts: PartSpec[], o: { boundary?: string; preamble?: string; close?: boolean; eol?: string } = {}): Buffer {
  const boundary = o.boundary ?? 'frame';
  const eol = o.eol ?? '\r\n';
  const out: Buffer[] = [Buffer.from(o.preamble ?? '')];
  for (const p of parts) {
    const headers = p.headers ?? ['Content-Type: image/jpeg'];
    const lines = [...headers, ...(p.length !== false ? [`Content-Length: ${p.body.length}`] : [])];
    out.push(Buffer.from(`--${boundary}${eol}${lines.map((l) => `${l}${eol}`).join('')}${eol}`));
    out.push(p.body);
    out.push(Buffer.from(`${eol}${p.garbageAfter ?? ''}`));
  }
  if (o.close === true) out.push(Buffer.from(`--${boundary}--${eol}`));
  return Buffer.concat(out);
}

function parseAll(data: Buffer, chunks: number[], boundary: string | null = 'frame', opts = {}): { frames: Buffer[]; parser: MjpegParser } {
  const parser = new MjpegParser(boundary ?? undefined, opts);
  const frames: Buffer[] = [];
  let at = 0;
  for (const n of chunks) {
    frames.push(...parser.push(data.subarray(at, at + n)));
    at += n;
  }
  frames.push(...parser.push(data.subarray(at)));
  return { frames, parser };
}

const FRAMES = [fakeJpeg(120, 1), fakeJpeg(7, 2), fakeJpeg(300, 3)];

/** Frames as base64 text: compared as strings (deep equality on Buffers is slow). */
const b64 = (frames: (Buffer | undefined)[]) => frames.map((f) => f?.toString('base64'));

describe('MjpegParser', () => {
  it('reads parts with Content-Length, split at every byte position', () => {
    const data = stream(FRAMES.map((body) => ({ body })), { preamble: 'HTTP junk\r\n' });
    for (let i = 0; i <= data.length; i++) {
      const { frames } = parseAll(data, [i]);
      expect(b64(frames), `split at ${i}`).toEqual(b64(FRAMES));
    }
  });

  it('reads parts without Content-Length, split at every byte position', () => {
    // The last part has no following delimiter yet: it completes when the next one arrives.
    const data = Buffer.concat([stream(FRAMES.map((body) => ({ body, length: false }))), Buffer.from('--frame\r\n')]);
    for (let i = 0; i <= data.length; i++) {
      const { frames } = parseAll(data, [i]);
      expect(b64(frames), `split at ${i}`).toEqual(b64(FRAMES));
    }
  });

  it('mixes parts with and without lengths, with garbage between parts, one byte at a time', () => {
    const data = Buffer.concat([
      stream(
        [
          { body: FRAMES[0]!, garbageAfter: 'garbage\r\nmore garbage --fram\r\n' },
          { body: FRAMES[1]!, length: false, garbageAfter: '\r\n\r\n' },
          { body: FRAMES[2]!, headers: ['Content-Type: image/jpeg', 'X-Timestamp: 1712345678.123456'] },
        ],
        { preamble: '\r\n\r\n' },
      ),
      Buffer.from('--frame\r\n'),
    ]);
    const { frames, parser } = parseAll(data, Array.from({ length: data.length }, () => 1));
    expect(b64(frames)).toEqual(b64(FRAMES));
    expect(parser.stats.frames).toBe(3);
    expect(parser.stats.skippedBytes).toBeGreaterThan(20);
  });

  it('returns the same frames for any chunking (property)', () => {
    const data = Buffer.concat([
      stream([
        { body: FRAMES[0]! },
        { body: FRAMES[1]!, length: false, garbageAfter: 'xx' },
        { body: FRAMES[2]! },
        { body: placeholderJpeg('camera'), length: false },
      ]),
      Buffer.from('--frame\r\n'),
    ]);
    const expected = [...FRAMES, placeholderJpeg('camera')];
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 4096 }), { maxLength: 64 }), (sizes) => {
        expect(b64(parseAll(data, sizes).frames)).toEqual(b64(expected));
      }),
      { numRuns: 300 },
    );
  });

  it('tolerates junk between a part without length and the next delimiter', () => {
    const data = stream([{ body: FRAMES[0]!, length: false, garbageAfter: 'junk\r\n' }, { body: FRAMES[1]! }]);
    expect(parseAll(data, [3]).frames).toEqual([FRAMES[0], FRAMES[1]]);
  });

  it('skips a part that is not a JPEG', () => {
    const data = stream([{ body: FRAMES[0]! }, { body: Buffer.from('<html>not a picture</html>') }, { body: FRAMES[1]! }]);
    const { frames, parser } = parseAll(data, [17, 50]);
    expect(frames).toEqual([FRAMES[0], FRAMES[1]]);
    expect(parser.stats.corrupt).toBe(1);
  });

  it('a truncated part (Content-Length larger than what came) costs only that part', () => {
    const cut = FRAMES[2]!.subarray(0, 100);
    const data = Buffer.concat([
      Buffer.from(`--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ${FRAMES[2]!.length}\r\n\r\n`),
      cut,
      Buffer.from('\r\n'),
      stream([{ body: FRAMES[0]! }, { body: FRAMES[1]! }, { body: FRAMES[2]! }]),
    ]);
    for (const split of [0, 60, 200, 333]) {
      const { frames, parser } = parseAll(data, [split]);
      expect(b64(frames), `split ${split}`).toEqual(b64(FRAMES));
      expect(parser.stats.corrupt).toBe(1);
    }
  });

  it('learns the boundary from the body when the header has none', () => {
    const data = stream(FRAMES.map((body) => ({ body })), { boundary: 'myboundary' });
    for (let i = 0; i <= data.length; i += 7) {
      expect(b64(parseAll(data, [i], null).frames), `split at ${i}`).toEqual(b64(FRAMES));
    }
    expect(parseAll(data, [], null).parser.boundary).toBe('myboundary');
  });

  it('learns the boundary from the body when the header names another one', () => {
    const many = Array.from({ length: 12 }, (_, i) => fakeJpeg(1000, i + 10));
    const data = stream(many.map((body) => ({ body })), { boundary: 'actual' });
    const { frames, parser } = parseAll(data, [500, 500, 3000], 'announced', { learnAfterBytes: 2048 });
    // The first parts go by while the announced boundary is looked for; then it is learnt.
    expect(frames.length).toBeGreaterThanOrEqual(9);
    expect(b64(frames)).toEqual(b64(many.slice(many.length - frames.length)));
    expect(parser.boundary).toBe('actual');
  });

  it('accepts boundary=--x with --x in the body', () => {
    const data = stream(FRAMES.map((body) => ({ body })), { boundary: '--x' });
    expect(b64(parseAll(data, [5], '--x').frames)).toEqual(b64(FRAMES));
  });

  it('does not take --frame2 inside a body for the delimiter --frame', () => {
    // A JPEG comment can hold any text, line breaks included.
    const tricky = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xfe]), Buffer.from('\r\n--frame2\r\n--frames\r\n'), FRAMES[0]!.subarray(4)]);
    const data = Buffer.concat([stream([{ body: tricky, length: false }, { body: FRAMES[1]!, length: false }]), Buffer.from('--frame\r\n')]);
    for (let i = 0; i <= data.length; i += 3) {
      expect(b64(parseAll(data, [i]).frames), `split at ${i}`).toEqual(b64([tricky, FRAMES[1]]));
    }
  });

  it('takes bare-LF line endings', () => {
    const data = stream(FRAMES.map((body) => ({ body })), { eol: '\n' });
    expect(b64(parseAll(data, [9]).frames)).toEqual(b64(FRAMES));
  });

  it('drops parts over maxFrameBytes and headers over maxHeaderBytes, and recovers', () => {
    const big = fakeJpeg(5000, 9);
    const data = Buffer.concat([
      stream([{ body: big, length: false }, { body: FRAMES[0]! }]),
      Buffer.from(`--frame\r\nX-Junk: ${'y'.repeat(3000)}\r\n\r\n`),
      FRAMES[1]!,
      Buffer.from('\r\n'),
      stream([{ body: FRAMES[2]! }]),
    ]);
    const { frames, parser } = parseAll(data, [100, 100, 100], 'frame', { maxFrameBytes: 2048, maxHeaderBytes: 1024 });
    expect(frames).toEqual([FRAMES[0], FRAMES[2]]);
    expect(parser.stats.corrupt).toBe(2);
  });

  it('a closing delimiter ends the parts; what follows is skipped until a new delimiter', () => {
    const data = Buffer.concat([stream([{ body: FRAMES[0]! }], { close: true }), Buffer.from('epilogue\r\n'), stream([{ body: FRAMES[1]! }])]);
    expect(parseAll(data, [11]).frames).toEqual([FRAMES[0], FRAMES[1]]);
  });

  it('a part with no blank line before its JPEG still yields the JPEG', () => {
    const data = Buffer.concat([Buffer.from('--frame\r\n'), FRAMES[0]!, Buffer.from('\r\n--frame\r\n')]);
    expect(parseAll(data, [4]).frames).toEqual([FRAMES[0]]);
  });

  it('returns copies, never views into the input', () => {
    const data = stream([{ body: FRAMES[0]! }]);
    const { frames } = parseAll(data, []);
    data.fill(0);
    expect(frames[0]).toEqual(FRAMES[0]);
  });
});

describe('content-type helpers', () => {
  it('reads the boundary, quoted or not', () => {
    expect(boundaryOf('multipart/x-mixed-replace;boundary=boundarydonotcross')).toBe('boundarydonotcross');
    expect(boundaryOf('multipart/x-mixed-replace; boundary="a b"; charset=x')).toBe('a b');
    expect(boundaryOf('multipart/x-mixed-replace')).toBeUndefined();
    expect(boundaryOf(undefined)).toBeUndefined();
  });

  it('recognises multipart/x-mixed-replace only', () => {
    expect(isMultipartReplace('multipart/x-mixed-replace;boundary=x')).toBe(true);
    expect(isMultipartReplace('Multipart/X-Mixed-Replace')).toBe(true);
    expect(isMultipartReplace('multipart/form-data; boundary=x')).toBe(false);
    expect(isMultipartReplace('image/jpeg')).toBe(false);
    expect(isMultipartReplace(undefined)).toBe(false);
  });

  it('wholeJpeg accepts line noise and padding around a JPEG, nothing else', () => {
    const j = FRAMES[0]!;
    expect(wholeJpeg(Buffer.concat([Buffer.from('\r\n'), j, Buffer.from('\r\n\0\0')]))).toEqual(j);
    expect(wholeJpeg(j.subarray(0, j.length - 1))).toBeUndefined();
    expect(wholeJpeg(Buffer.from('hello'))).toBeUndefined();
    expect(wholeJpeg(placeholderJpeg('device'))).toEqual(placeholderJpeg('device'));
  });
});
