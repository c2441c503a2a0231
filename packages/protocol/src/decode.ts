import { ErrorCode, ProtocolError } from './errors.js';
import { ALL_FLAGS, FrameType, HEADER_LENGTH, PROTOCOL_VERSION, type Frame, type FrameHeader } from './frame.js';

/** Decodes and validates the 12-byte header at `offset`. Pure; throws ProtocolError. */
export function decodeHeader(buf: Uint8Array, offset = 0): FrameHeader {
  if (buf.length - offset < HEADER_LENGTH) {
    throw new RangeError(`need ${HEADER_LENGTH} bytes, have ${buf.length - offset}`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset + offset, HEADER_LENGTH);
  const version = view.getUint8(0);
  const type = view.getUint8(1);
  const flags = view.getUint16(2);
  const streamId = view.getUint32(4);
  const length = view.getUint32(8);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(ErrorCode.InvalidVersion, `unsupported yamux version ${version}`);
  }
  if (type > FrameType.GoAway) {
    throw new ProtocolError(ErrorCode.InvalidType, `unknown frame type ${type}`);
  }
  if ((flags & ~ALL_FLAGS) !== 0) {
    throw new ProtocolError(ErrorCode.InvalidFlags, `unknown flags 0x${flags.toString(16)}`);
  }
  return { version, type: type as FrameType, flags, streamId, length };
}

/**
 * A Data payload is handed on in pieces of at least this many bytes (the last piece of a frame may
 * be shorter), so a peer that dribbles bytes cannot make a stream queue one object per byte.
 */
export const MIN_PIECE = 4 * 1024;

/**
 * Buffers bytes as they arrive, at any boundary, and yields whole frames.
 * A Data frame whose length exceeds `maxFrameSize` is refused before its payload is buffered.
 *
 * In piece mode a Data frame's payload is yielded as it arrives instead of gathered first: each
 * piece is a view of the chunk it came in whenever it is at least MIN_PIECE long (no copy; only
 * smaller leftovers are joined), marked `more` until the frame's last piece and `cont` after its
 * first. A transport that delivers arbitrary slices of the byte stream (a socket's reads) then
 * costs no copy at all, where gathering would copy every frame that spans two reads.
 */
export class Decoder {
  private readonly maxFrameSize: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | undefined;
  /** Piece mode: payload bytes of the current Data frame not yet yielded. */
  private remaining = 0;
  /** Piece mode: a piece of the current Data frame has been yielded (the next ones are `cont`). */
  private started = false;

  /**
   * @param checkData called with each Data header before its payload is buffered; it may throw
   * (the session refuses a frame larger than the stream's window there, not after holding it).
   */
  constructor(
    maxFrameSize: number,
    private readonly checkData?: (header: FrameHeader) => void,
    private readonly pieces = false,
  ) {
    this.maxFrameSize = maxFrameSize;
  }

  /** Bytes held that are not yet part of a yielded frame. Never more than 12 + maxFrameSize. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Feed a chunk; yields every frame now complete. Throws ProtocolError on bad input. */
  *write(chunk: Buffer): Generator<Frame> {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      // Tiny chunks (a peer sending 1-byte messages) would cost an object each while a large
      // payload gathers: merge them once they average under 64 bytes, which keeps copying linear.
      if (this.chunks.length > 1024 && this.chunks.length * 64 > this.buffered) {
        this.chunks = [Buffer.concat(this.chunks, this.buffered)];
      }
    }
    for (;;) {
      if (this.header === undefined) {
        if (this.buffered < HEADER_LENGTH) return;
        const head = this.take(HEADER_LENGTH);
        const header = decodeHeader(head);
        if (header.type === FrameType.Data && header.length > this.maxFrameSize) {
          throw new ProtocolError(
            ErrorCode.FrameTooLarge,
            `data frame of ${header.length} bytes exceeds the maximum of ${this.maxFrameSize}`,
          );
        }
        if (header.type !== FrameType.Data) {
          yield { header };
          continue;
        }
        this.checkData?.(header);
        this.header = header;
        this.remaining = header.length;
        this.started = false;
      }
      const header: FrameHeader = this.header;
      if (this.pieces) {
        if (!(yield* this.writePieces(header))) return;
        continue;
      }
      if (this.buffered < header.length) return;
      const data = this.take(header.length);
      this.header = undefined;
      yield { header, data };
    }
  }

  /**
   * Piece mode: yields what is held of the current Data frame's payload. Returns true when the
   * frame is complete (the next header may follow), false when it waits for more bytes.
   */
  private *writePieces(header: FrameHeader): Generator<Frame, boolean> {
    while (this.remaining > 0 && this.buffered > 0) {
      const first = this.chunks[0]!;
      const last = this.buffered >= this.remaining;
      let n: number;
      if (first.length >= MIN_PIECE || first.length >= this.remaining) {
        n = Math.min(first.length, this.remaining); // a view of one chunk, no copy
      } else if (last || this.buffered >= MIN_PIECE) {
        n = Math.min(this.buffered, this.remaining, MIN_PIECE); // small leftovers, joined
      } else {
        return false; // under MIN_PIECE held and the frame goes on: wait for more
      }
      const data = this.take(n);
      this.remaining -= n;
      const piece: Frame = { header, data };
      if (this.remaining > 0) piece.more = true;
      if (this.started) piece.cont = true;
      this.started = true;
      yield piece;
    }
    if (this.remaining > 0) return false;
    if (!this.started) yield { header, data: Buffer.alloc(0) }; // an empty Data frame
    this.header = undefined;
    return true;
  }

  /** Removes exactly n bytes from the front; avoids copies when one chunk suffices. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length >= n) {
      this.buffered -= n;
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let used = 0; // chunks fully consumed, dropped in one splice (shift() per chunk is quadratic)
    while (filled < n) {
      const c = this.chunks[used]!;
      const want = n - filled;
      if (c.length <= want) {
        c.copy(out, filled);
        filled += c.length;
        used++;
      } else {
        c.copy(out, filled, 0, want);
        this.chunks[used] = c.subarray(want);
        filled += want;
      }
    }
    this.chunks.splice(0, used);
    this.buffered -= n;
    return out;
  }
}
