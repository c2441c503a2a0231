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
 * Buffers bytes as they arrive, at any boundary, and yields whole frames.
 * A Data frame whose length exceeds `maxFrameSize` is refused before its payload is buffered.
 */
export class Decoder {
  private readonly maxFrameSize: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | undefined;

  /**
   * @param checkData called with each Data header before its payload is buffered; it may throw
   * (the session refuses a frame larger than the stream's window there, not after holding it).
   */
  constructor(
    maxFrameSize: number,
    private readonly checkData?: (header: FrameHeader) => void,
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
      }
      const header: FrameHeader = this.header;
      if (this.buffered < header.length) return;
      const data = this.take(header.length);
      this.header = undefined;
      yield { header, data };
    }
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
