import { HEADER_LENGTH, type FrameHeader } from './frame.js';

/** Encodes a header into 12 bytes, big-endian as the spec says. Pure. */
export function encodeHeader(h: FrameHeader, into: Buffer = Buffer.allocUnsafe(HEADER_LENGTH), offset = 0): Buffer {
  into[offset] = h.version;
  into[offset + 1] = h.type;
  into.writeUInt16BE(h.flags, offset + 2);
  into.writeUInt32BE(h.streamId >>> 0, offset + 4);
  into.writeUInt32BE(h.length >>> 0, offset + 8);
  return into;
}
