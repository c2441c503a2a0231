// Client side of MJPEG (multipart/x-mixed-replace): an incremental multipart parser, a
// frame reader over an HTTP response, and small JPEG checks. Used by the tests, by the
// ffmpeg camera (which parses ffmpeg's own mpjpeg output) and by the demo.
import http from 'node:http';
import type { IncomingMessage, RequestOptions } from 'node:http';

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
/** A part's headers may not exceed this; past it the stream is not multipart. */
const MAX_HEADER_BYTES = 16 * 1024;

export interface MultipartPart {
  /** Lower-cased header names. */
  headers: Record<string, string>;
  body: Buffer;
}

export interface MjpegFrame extends MultipartPart {
  /** Sequence number in this reader, from 0. */
  index: number;
  /** performance.now() when the frame's last byte arrived. */
  receivedAt: number;
}

/** The boundary parameter of a multipart content type, without quotes. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const m = /boundary=(?:"([^"]+)"|([^;,\s]+))/i.exec(contentType);
  return m?.[1] ?? m?.[2];
}

/**
 * Incremental multipart parser. Feed chunks with push(); complete parts come out of push's
 * return value. Uses the part's Content-Length when present (ffmpeg, mjpg-streamer and
 * ustreamer all send it), else scans for the next delimiter.
 */
export class MultipartParser {
  readonly delimiter: Buffer;
  private buf: Buffer = Buffer.alloc(0);
  private state: 'preamble' | 'headers' | 'body' = 'preamble';
  private headers: Record<string, string> = {};
  private bodyLength: number | undefined;
  /** Bytes thrown away before the first delimiter or between parts. */
  skipped = 0;

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`--${boundary}`);
  }

  push(chunk: Buffer): MultipartPart[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: MultipartPart[] = [];
    for (;;) {
      if (this.state === 'preamble') {
        const i = this.buf.indexOf(this.delimiter);
        if (i < 0) {
          // Keep a tail long enough to hold a split delimiter.
          const keep = Math.min(this.buf.length, this.delimiter.length + 2);
          this.skipped += this.buf.length - keep;
          this.buf = this.buf.subarray(this.buf.length - keep);
          return out;
        }
        const lineEnd = this.buf.indexOf(CRLF, i);
        if (lineEnd < 0) return out;
        this.skipped += i;
        const rest = this.buf.subarray(i + this.delimiter.length, lineEnd).toString('latin1');
        this.buf = this.buf.subarray(lineEnd + 2);
        if (rest.startsWith('--')) {
          // Closing delimiter: anything after is epilogue.
          this.skipped += this.buf.length;
          this.buf = Buffer.alloc(0);
          return out;
        }
        this.state = 'headers';
        this.headers = {};
        continue;
      }
      if (this.state === 'headers') {
        // A part may have no headers at all: then the header block is just CRLF.
        if (this.buf.length >= 2 && this.buf[0] === 0x0d && this.buf[1] === 0x0a) {
          this.buf = this.buf.subarray(2);
        } else {
          const end = this.buf.indexOf(HEADER_END);
          if (end < 0) {
            if (this.buf.length > MAX_HEADER_BYTES) throw new Error('multipart: part headers too long');
            return out;
          }
          for (const line of this.buf.subarray(0, end).toString('latin1').split('\r\n')) {
            const colon = line.indexOf(':');
            if (colon > 0) this.headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
          }
          this.buf = this.buf.subarray(end + 4);
        }
        const cl = this.headers['content-length'];
        this.bodyLength = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : undefined;
        this.state = 'body';
        continue;
      }
      // body
      if (this.bodyLength !== undefined) {
        if (this.buf.length < this.bodyLength) return out;
        out.push({ headers: this.headers, body: Buffer.from(this.buf.subarray(0, this.bodyLength)) });
        this.buf = this.buf.subarray(this.bodyLength);
      } else {
        const next = this.buf.indexOf(Buffer.concat([CRLF, this.delimiter]));
        if (next < 0) return out;
        out.push({ headers: this.headers, body: Buffer.from(this.buf.subarray(0, next)) });
        this.buf = this.buf.subarray(next + 2);
      }
      this.state = 'preamble';
    }
  }
}

/** True when buf starts with SOI (FF D8) and ends with EOI (FF D9). */
export function isJpeg(buf: Uint8Array): boolean {
  return (
    buf.length >= 4 &&
    buf[0] === 0xff &&
    buf[1] === 0xd8 &&
    buf[buf.length - 2] === 0xff &&
    buf[buf.length - 1] === 0xd9
  );
}

/** Width and height from a JPEG's SOFn segment, or undefined. */
export function jpegSize(buf: Uint8Array): { width: number; height: number } | undefined {
  let i = 2;
  while (i + 9 < buf.length) {
    if (buf[i] !== 0xff) return undefined;
    const marker = buf[i + 1] ?? 0;
    if (marker === 0xff) {
      i += 1;
      continue;
    }
    const len = ((buf[i + 2] ?? 0) << 8) | (buf[i + 3] ?? 0);
    // SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC)
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      const height = ((buf[i + 5] ?? 0) << 8) | (buf[i + 6] ?? 0);
      const width = ((buf[i + 7] ?? 0) << 8) | (buf[i + 8] ?? 0);
      return { width, height };
    }
    if (marker === 0xda) return undefined; // start of scan without a frame header
    i += 2 + len;
  }
  return undefined;
}

/**
 * Reads JPEG frames from an MJPEG HTTP response until it ends or the consumer stops
 * (breaking out of the loop destroys the response). Throws if the response is not
 * multipart, or (with validate, the default) if a part is not a whole JPEG.
 */
export async function* readMjpeg(
  res: IncomingMessage,
  opts: { validate?: boolean } = {},
): AsyncGenerator<MjpegFrame, void, undefined> {
  const boundary = boundaryOf(res.headers['content-type']);
  if (!boundary || !/^multipart\//i.test(res.headers['content-type'] ?? '')) {
    res.resume();
    throw new Error(`not an MJPEG stream: status ${res.statusCode}, content-type ${res.headers['content-type']}`);
  }
  const parser = new MultipartParser(boundary);
  let index = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      for (const part of parser.push(chunk)) {
        if (opts.validate !== false && !isJpeg(part.body)) {
          throw new Error(`MJPEG part ${index} is not a whole JPEG (${part.body.length} bytes)`);
        }
        yield { ...part, index: index++, receivedAt: performance.now() };
      }
    }
  } finally {
    if (!res.destroyed) res.destroy();
  }
}

/** Opens an HTTP request and resolves with the response (any status). */
export function openStream(options: RequestOptions, timeoutMs = 10_000): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request(options, resolve);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
    req.on('response', () => req.setTimeout(0));
    req.once('error', reject);
    req.end();
  });
}

export interface CollectResult {
  frames: MjpegFrame[];
  status: number;
  contentType: string | undefined;
  /** Milliseconds from the first frame to the last. */
  spanMs: number;
}

/**
 * Opens an MJPEG stream, reads `count` frames (or until timeoutMs), then closes it.
 * Rejects if fewer than `count` frames arrive in time.
 */
export async function collectFrames(
  options: RequestOptions | string,
  count: number,
  timeoutMs = 15_000,
): Promise<CollectResult> {
  const opts: RequestOptions = typeof options === 'string' ? urlOptions(options) : options;
  const res = await openStream(opts, timeoutMs);
  const frames: MjpegFrame[] = [];
  const timer = setTimeout(
    () => res.destroy(new Error(`only ${frames.length}/${count} MJPEG frames within ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    for await (const frame of readMjpeg(res)) {
      frames.push(frame);
      if (frames.length >= count) break;
    }
  } finally {
    clearTimeout(timer);
    res.destroy();
  }
  if (frames.length < count) throw new Error(`MJPEG stream ended after ${frames.length}/${count} frames`);
  const first = frames[0];
  const last = frames[frames.length - 1];
  return {
    frames,
    status: res.statusCode ?? 0,
    contentType: res.headers['content-type'],
    spanMs: first && last ? last.receivedAt - first.receivedAt : 0,
  };
}

function urlOptions(url: string): RequestOptions {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 80), path: `${u.pathname}${u.search}` };
}
