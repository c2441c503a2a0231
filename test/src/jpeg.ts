// Test-pattern JPEGs for the Node MJPEG source: a handful of distinct frames made once by
// ffmpeg (testsrc: colour bars, a moving gradient and a frame counter), or, without ffmpeg,
// one tiny embedded JPEG. Every served frame is stamped with a JPEG comment segment (FF FE)
// carrying its sequence number, so consecutive frames always differ byte-wise.
import { execFile } from 'node:child_process';
import { isJpeg } from './mjpeg.js';

/** A 16×16 blue JPEG (223 bytes), used when ffmpeg is not available. */
const TINY_JPEG = Buffer.from(
  '/9j/4AAQSkZJRgABAgAAAQABAAD//gAQTGF2YzU5LjM3LjEwMAD/2wBDAAgUFBcUFxsbGxsbGyAeICEhISAgICAhISEkJCQqKiokJCQhISQkKCgqKi4vLisrKisvLzIyMjw8OTlGRkhWVmf/xABLAAEBAAAAAAAAAAAAAAAAAAAABQEBAAAAAAAAAAAAAAAAAAAABhABAAAAAAAAAAAAAAAAAAAAABEBAAAAAAAAAAAAAAAAAAAAAP/AABEIABAAEAMBIgACEQADEQD/2gAMAwEAAhEDEQA/AIIB2Ov/2Q==',
  'base64',
);

export interface TestFramesOptions {
  count?: number;
  width?: number;
  height?: number;
}

const cache = new Map<string, Promise<Buffer[]>>();

/** Splits a concatenation of JPEGs (ffmpeg -f mjpeg output) at SOI/EOI pairs. */
export function splitJpegs(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = data.indexOf(Buffer.from([0xff, 0xd8, 0xff]));
  while (start >= 0) {
    // The next frame's SOI marks this one's end; its EOI is just before.
    const next = data.indexOf(Buffer.from([0xff, 0xd9, 0xff, 0xd8, 0xff]), start + 3);
    const end = next < 0 ? data.length : next + 2;
    const frame = data.subarray(start, end);
    if (isJpeg(frame)) out.push(Buffer.from(frame));
    start = next < 0 ? -1 : next + 2;
  }
  return out;
}

function ffmpegFrames(count: number, width: number, height: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    execFile(
      'ffmpeg',
      [
        '-hide_banner', '-loglevel', 'error', '-nostdin',
        '-f', 'lavfi', '-i', `testsrc=size=${width}x${height}:rate=10`,
        '-frames:v', String(count), '-q:v', '7', '-f', 'mjpeg', 'pipe:1',
      ],
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: 20_000 },
      (err, stdout) => {
        if (err) return reject(err);
        const frames = splitJpegs(stdout);
        if (frames.length === 0) return reject(new Error('ffmpeg produced no JPEG frames'));
        resolve(frames);
      },
    );
  });
}

/**
 * Distinct test-pattern JPEGs, made once per process and size. Falls back to the embedded
 * tiny JPEG when ffmpeg is missing or fails (frames then differ only by their stamp).
 */
export function testFrames(opts: TestFramesOptions = {}): Promise<Buffer[]> {
  const count = opts.count ?? 20;
  const width = opts.width ?? 320;
  const height = opts.height ?? 240;
  const key = `${count}:${width}x${height}`;
  let p = cache.get(key);
  if (!p) {
    p = ffmpegFrames(count, width, height).catch(() => [TINY_JPEG]);
    cache.set(key, p);
  }
  return p;
}

/** The embedded fallback JPEG. */
export function tinyJpeg(): Buffer {
  return Buffer.from(TINY_JPEG);
}

/** Inserts a COM (FF FE) segment with `text` right after SOI. The result is a valid JPEG. */
export function stampJpeg(jpeg: Buffer, text: string): Buffer {
  const body = Buffer.from(text, 'latin1').subarray(0, 65_533);
  const seg = Buffer.alloc(4 + body.length);
  seg[0] = 0xff;
  seg[1] = 0xfe;
  seg.writeUInt16BE(body.length + 2, 2);
  body.copy(seg, 4);
  return Buffer.concat([jpeg.subarray(0, 2), seg, jpeg.subarray(2)]);
}

/** The text of the first COM segment stamped by stampJpeg, if any. */
export function jpegStamp(jpeg: Buffer): string | undefined {
  if (jpeg[2] !== 0xff || jpeg[3] !== 0xfe) return undefined;
  const len = jpeg.readUInt16BE(4);
  return jpeg.subarray(6, 4 + len).toString('latin1');
}
