/**
 * An incremental MJPEG (multipart/x-mixed-replace) parser for what real camera servers send:
 * mjpg-streamer, ustreamer, camera-streamer, ffmpeg's mpjpeg, ESP32 firmwares, and the broken
 * ones. Feed chunks of any size with `push()`; whole JPEG frames come out.
 *
 * - The boundary comes from the Content-Type header when it is right, else from the body: the
 *   first `--token` line followed by a header line or a blank line. `boundary=--x` with `--x`
 *   in the body (a common mistake) works too.
 * - A part with Content-Length is read by length; without, up to the next delimiter.
 * - Bytes before the first delimiter and between parts are skipped.
 * - A part that is not a whole JPEG (SOI … EOI) is skipped, not returned: a truncated part whose
 *   Content-Length runs into the next part is cut at that part's delimiter, so only the broken
 *   frame is lost.
 * - Memory is bounded: a part larger than `maxFrameBytes`, or headers larger than
 *   `maxHeaderBytes`, are dropped.
 */

export interface MjpegParserOptions {
  /** Largest frame kept; bigger parts are skipped. Default 8 MiB. */
  maxFrameBytes?: number;
  /** Largest part header block. Default 8 KiB. */
  maxHeaderBytes?: number;
  /** Give up on the header's boundary after skipping this many bytes without seeing it, and learn
   * it from the body instead. Default 64 KiB. */
  learnAfterBytes?: number;
}

export interface MjpegParserStats {
  /** Whole JPEG frames returned. */
  frames: number;
  /** Parts dropped: not a JPEG, truncated, too large, unreadable headers. */
  corrupt: number;
  /** Bytes skipped outside parts (preamble, garbage between parts, epilogue). */
  skippedBytes: number;
}

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const MAX_BOUNDARY = 70;

type State = 'seek' | 'headers' | 'body';

export class MjpegParser {
  readonly stats: MjpegParserStats = { frames: 0, corrupt: 0, skippedBytes: 0 };
  private readonly maxFrame: number;
  private readonly maxHeader: number;
  private readonly learnAfter: number;
  /** Delimiters to look for (`--boundary`), before one has been seen. */
  private candidates: Buffer[];
  /** The delimiter in use once seen in the body. */
  private delimiter: Buffer | undefined;
  private state: State = 'seek';
  /** Unconsumed input; in the body state with a known length, `parts` holds it instead. */
  private buf: Buffer = Buffer.alloc(0);
  private parts: Buffer[] = [];
  private partsLength = 0;
  /** buf[0] starts a line (for learning a boundary from the body). */
  private lineStart = true;
  private headerBytes = 0;
  private headerCount = 0;
  private bodyLength: number | undefined;
  /** Where the delimiter search in a body without length resumes. */
  private scanFrom = 0;
  /** Bytes skipped while the header's boundary was not found. */
  private unmatched = 0;

  constructor(boundary?: string, opts: MjpegParserOptions = {}) {
    this.maxFrame = opts.maxFrameBytes ?? 8 * 1024 * 1024;
    this.maxHeader = opts.maxHeaderBytes ?? 8 * 1024;
    this.learnAfter = opts.learnAfterBytes ?? 64 * 1024;
    this.candidates = [];
    if (boundary !== undefined && boundary.length > 0 && boundary.length <= MAX_BOUNDARY + 2) {
      this.candidates.push(Buffer.from(`--${boundary}`, 'latin1'));
      if (boundary.startsWith('--')) this.candidates.push(Buffer.from(boundary, 'latin1'));
    }
  }

  /** The boundary in use, once seen in the body (without the leading `--`). */
  get boundary(): string | undefined {
    return this.delimiter?.subarray(2).toString('latin1');
  }

  /** Feeds a chunk; returns the whole JPEG frames it completed, in order. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (chunk.length === 0) return out;
    if (this.state === 'body' && this.bodyLength !== undefined) {
      // Reading by length: collect chunks, join once the frame is complete.
      this.parts.push(chunk);
      this.partsLength += chunk.length;
      if (this.partsLength < this.bodyLength) return out;
      this.buf = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partsLength);
      this.parts = [];
      this.partsLength = 0;
    } else {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    }
    for (;;) {
      const progressed =
        this.state === 'seek' ? this.seek() : this.state === 'headers' ? this.headers() : this.body(out);
      if (!progressed) break;
    }
    if (this.state === 'body' && this.bodyLength !== undefined && this.buf.length < this.bodyLength) {
      this.parts = this.buf.length > 0 ? [this.buf] : [];
      this.partsLength = this.buf.length;
      this.buf = Buffer.alloc(0);
    }
    return out;
  }

  /** Finds the next delimiter line. Returns true when the state changed. */
  private seek(): boolean {
    const buf = this.buf;
    let at = -1;
    let delim: Buffer | undefined;
    if (this.delimiter !== undefined) {
      at = findDelimiter(buf, this.delimiter, 0);
      delim = this.delimiter;
    } else {
      for (const c of this.candidates) {
        const i = findDelimiter(buf, c, 0);
        if (i >= 0 && (at < 0 || i < at)) {
          at = i;
          delim = c;
        }
      }
      if (at < 0 && (this.candidates.length === 0 || this.unmatched + buf.length >= this.learnAfter)) {
        const learned = learnDelimiter(buf, this.lineStart);
        if (learned !== undefined) {
          at = learned.at;
          delim = learned.delimiter;
        }
      }
    }
    if (at < 0 || delim === undefined) {
      // Keep a tail that may hold the start of a split delimiter line (and, while learning the
      // boundary, the header line after it).
      const keep = Math.min(buf.length, this.delimiter === undefined ? 512 : MAX_BOUNDARY + 8);
      const drop = buf.length - keep;
      if (drop > 0) {
        this.skip(drop);
        this.unmatched += drop;
      }
      return false;
    }
    const lineEnd = buf.indexOf(LF, at + delim.length);
    if (lineEnd < 0) {
      if (buf.length - at > delim.length + MAX_BOUNDARY) {
        // Not a delimiter line after all (no line end in sight): skip past it.
        this.skip(at + delim.length);
        return true;
      }
      if (at > 0) this.skip(at);
      return false;
    }
    const rest = buf.subarray(at + delim.length, lineEnd);
    this.skip(at);
    this.delimiter = delim;
    this.candidates = [];
    this.unmatched = 0;
    this.consume(lineEnd + 1 - at);
    this.lineStart = true;
    if (rest.length >= 2 && rest[0] === DASH && rest[1] === DASH) {
      // A closing delimiter: what follows is epilogue (or, from some servers, a new stream).
      return true;
    }
    this.state = 'headers';
    this.headerBytes = 0;
    this.headerCount = 0;
    this.bodyLength = undefined;
    return true;
  }

  /** Reads header lines up to the blank line. */
  private headers(): boolean {
    const buf = this.buf;
    // A part with no blank line before its JPEG: the body starts here.
    if (this.headerCount === 0 && buf.length >= 2 && buf[0] === 0xff && buf[1] === 0xd8) {
      this.startBody();
      return true;
    }
    const nl = buf.indexOf(LF);
    if (nl < 0) {
      if (this.headerBytes + buf.length > this.maxHeader) return this.corrupt();
      return false;
    }
    this.headerBytes += nl + 1;
    if (this.headerBytes > this.maxHeader) return this.corrupt();
    const end = nl > 0 && buf[nl - 1] === CR ? nl - 1 : nl;
    const line = buf.subarray(0, end);
    this.consume(nl + 1);
    if (line.length === 0) {
      this.startBody();
      return true;
    }
    this.headerCount++;
    const colon = line.indexOf(0x3a);
    if (colon > 0) {
      const name = line.subarray(0, colon).toString('latin1').trim().toLowerCase();
      if (name === 'content-length') {
        const v = line.subarray(colon + 1).toString('latin1').trim();
        if (/^\d{1,10}$/.test(v)) this.bodyLength = Number(v);
      }
    }
    return true;
  }

  private startBody(): void {
    this.state = 'body';
    this.scanFrom = 0;
    if (this.bodyLength !== undefined && (this.bodyLength === 0 || this.bodyLength > this.maxFrame)) {
      this.bodyLength = undefined;
    }
  }

  private body(out: Buffer[]): boolean {
    const buf = this.buf;
    if (this.bodyLength !== undefined) {
      const n = this.bodyLength;
      if (buf.length < n) return false;
      const jpeg = wholeJpeg(buf.subarray(0, n), true);
      if (jpeg !== undefined) {
        this.emit(out, jpeg);
        this.consume(n);
      } else {
        // A truncated part runs into the next one: resume at the next delimiter inside it.
        this.stats.corrupt++;
        const next = this.delimiter === undefined ? -1 : findDelimiter(buf, this.delimiter, 1);
        this.consume(next > 0 && next < n ? next : n);
      }
      this.state = 'seek';
      this.lineStart = false;
      return true;
    }
    const delim = this.delimiter!;
    const at = findDelimiter(buf, delim, this.scanFrom);
    if (at < 0) {
      if (buf.length > this.maxFrame) return this.corrupt();
      this.scanFrom = Math.max(0, buf.length - delim.length - 1);
      return false;
    }
    const jpeg = at <= this.maxFrame ? wholeJpeg(buf.subarray(0, at)) : undefined;
    if (jpeg !== undefined) this.emit(out, jpeg);
    else this.stats.corrupt++;
    this.consume(at);
    this.state = 'seek';
    return true;
  }

  private emit(out: Buffer[], jpeg: Buffer): void {
    this.stats.frames++;
    // A copy, so a frame never pins the (possibly much larger) chunk it arrived in.
    out.push(Buffer.from(jpeg));
  }

  /** Drops the current part and looks for the next delimiter. */
  private corrupt(): boolean {
    this.stats.corrupt++;
    this.state = 'seek';
    this.bodyLength = undefined;
    this.lineStart = false;
    return true;
  }

  private consume(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  private skip(n: number): void {
    if (n <= 0) return;
    this.stats.skippedBytes += n;
    this.lineStart = this.buf[n - 1] === LF;
    this.consume(n);
  }
}

/**
 * Index of `delim` in buf from `from` where it is followed by CR, LF, '-', or whitespace (so
 * `--frame` does not match `--frame2`); a match at the very end waits for the next byte. -1 if
 * none.
 */
function findDelimiter(buf: Buffer, delim: Buffer, from: number): number {
  let i = buf.indexOf(delim, from);
  while (i >= 0) {
    const next = buf[i + delim.length];
    if (next === CR || next === LF || next === DASH || next === 0x20 || next === 0x09) return i;
    i = buf.indexOf(delim, i + 1);
  }
  return -1;
}

const LEARN = /\n(--[!-~]{1,70}?)[ \t]*\r?\n(?:[!-9;-~]+:[^\r\n]*\r?\n|\r?\n)/;

/** A `--token` line at a line start, followed by a header line or a blank line. */
function learnDelimiter(buf: Buffer, lineStart: boolean): { at: number; delimiter: Buffer } | undefined {
  const prefix = lineStart ? '\n' : '';
  const m = LEARN.exec(prefix + buf.subarray(0, Math.min(buf.length, 256 * 1024)).toString('latin1'));
  if (m === null) return undefined;
  let token = m[1]!;
  if (token.length > 4 && token.endsWith('--')) token = token.slice(0, -2); // a closing delimiter
  return { at: m.index + 1 - prefix.length, delimiter: Buffer.from(token, 'latin1') };
}

/** How far from a part's end its JPEG may end (padding, or junk a server wrote between parts). */
const TAIL_SLACK = 256;
const EOI = Buffer.from([0xff, 0xd9]);

/**
 * The JPEG in a part body: it must start with SOI (FF D8 FF), allowing a little leading line
 * noise, and end with EOI (FF D9). A part read by its Content-Length may only have CR/LF/NUL
 * padding after EOI (anything else means the length was wrong); a part read up to the next
 * delimiter may also carry junk a server wrote between parts, up to TAIL_SLACK bytes (EOI
 * occurs nowhere else near a JPEG's end: entropy-coded data stuffs every FF). undefined if not
 * whole.
 */
export function wholeJpeg(body: Buffer, byLength = false): Buffer | undefined {
  let start = 0;
  while (start < body.length && start < 8 && (body[start] === CR || body[start] === LF || body[start] === 0x20)) start++;
  if (body.length - start < 4 || body[start] !== 0xff || body[start + 1] !== 0xd8 || body[start + 2] !== 0xff) return undefined;
  if (byLength) {
    let end = body.length;
    while (end > start && end > body.length - 16 && (body[end - 1] === CR || body[end - 1] === LF || body[end - 1] === 0)) end--;
    if (end - start < 4 || body[end - 2] !== 0xff || body[end - 1] !== 0xd9) return undefined;
    return body.subarray(start, end);
  }
  const eoi = body.lastIndexOf(EOI);
  if (eoi < start + 2 || eoi < body.length - TAIL_SLACK) return undefined;
  return body.subarray(start, eoi + 2);
}

/** The boundary parameter of a multipart Content-Type, unquoted. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const m = /;\s*boundary\s*=\s*(?:"([^"]{1,72})"|([^;,\s]{1,72}))/i.exec(contentType);
  return m?.[1] ?? m?.[2];
}

/** Is this Content-Type an MJPEG stream (multipart/x-mixed-replace)? */
export function isMultipartReplace(contentType: string | undefined): boolean {
  return contentType !== undefined && /^\s*multipart\/x-mixed-replace\b/i.test(contentType);
}
