import type { Socket } from 'node:net';
import type WebSocket from 'ws';
import { ErrorCode, ProtocolError } from './errors.js';

/**
 * Reads the peer's WebSocket frames (RFC 6455 §5.2) straight off the socket and hands the payload
 * bytes of binary messages on as views of the socket's reads, never gathered into whole messages.
 * The tunnel's yamux decoder takes bytes at any boundary, so message boundaries mean nothing to
 * it; gathering them (as ws does) copied every byte once more and held up to a whole message, a
 * megabyte when a batch is large, per message in flight (bench "Proxy": agent upload CPU, relay
 * download CPU). Control frames (ping, pong, close) are complete and tiny: they go whole to ws's
 * own receiver, which answers pings and runs the close handshake exactly as before.
 *
 * `from: 'server'` (the agent reads the relay): frames must be unmasked. `from: 'client'` (the
 * relay reads an agent): frames must be masked (§5.1). The agent masks with an all-zero key, so
 * its payloads pass as they are; any other key is undone in place, in the socket's own buffer,
 * which nothing else reads once ws's listener is gone.
 */
export class FrameReader {
  private readonly head = Buffer.allocUnsafe(14);
  private headLength = 0;
  /** Payload bytes of the current data frame still to come. */
  private remaining = 0;
  /** The current data frame's mask key when it is not all zeros, and the payload offset into it. */
  private mask: Buffer | undefined;
  private maskOffset = 0;
  /** The control frame being gathered (header and payload), and how long it will be. */
  private control: Buffer | undefined;
  private controlFilled = 0;
  /** Inside a fragmented binary message: continuation frames are expected. */
  private inMessage = false;
  private done = false;
  private readonly masked: boolean;

  constructor(
    private readonly deliver: (bytes: Buffer) => void,
    private readonly controlFrame: (frame: Buffer) => void,
    private readonly fail: (err: ProtocolError) => void,
    from: 'server' | 'client' = 'server',
  ) {
    this.masked = from === 'client';
  }

  write(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.done) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        this.remaining -= n;
        const piece = off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n);
        if (this.mask !== undefined) this.unmask(piece);
        this.deliver(piece);
        off += n;
        continue;
      }
      if (this.control !== undefined) {
        const n = Math.min(this.control.length - this.controlFilled, chunk.length - off);
        chunk.copy(this.control, this.controlFilled, off, off + n);
        this.controlFilled += n;
        off += n;
        if (this.controlFilled === this.control.length) this.endControl();
        continue;
      }
      // A header: 2 bytes, then a 16- or 64-bit length and a client's mask key. Gathered in `head`
      // across reads.
      const need = this.headLength < 2 ? 2 : headerLength(this.head[1]!);
      const n = Math.min(need - this.headLength, chunk.length - off);
      chunk.copy(this.head, this.headLength, off, off + n);
      this.headLength += n;
      off += n;
      if (this.headLength < 2 || this.headLength < headerLength(this.head[1]!)) continue;
      this.onHeader();
    }
  }

  private onHeader(): void {
    const b0 = this.head[0]!;
    const b1 = this.head[1]!;
    const size = this.headLength;
    this.headLength = 0;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if ((b0 & 0x70) !== 0) return this.refuse('a frame with RSV bits set (no extension was negotiated)');
    const maskBit = (b1 & 0x80) !== 0;
    if (maskBit !== this.masked) return this.refuse(this.masked ? 'an unmasked frame from the client' : 'a masked frame from the server');
    let length = b1 & 0x7f;
    if (length === 126) length = this.head.readUInt16BE(2);
    else if (length === 127) {
      const high = this.head.readUInt32BE(2);
      if (high > 0x1f_ffff) return this.refuse('a frame longer than 2^53 bytes');
      length = high * 2 ** 32 + this.head.readUInt32BE(6);
    }
    if (opcode >= 0x8) {
      if (opcode > 0xa) return this.refuse(`unknown control opcode ${opcode}`);
      if (!fin || length > 125) return this.refuse('a fragmented or oversized control frame');
      this.control = Buffer.allocUnsafe(size + length);
      this.head.copy(this.control, 0, 0, size);
      this.controlFilled = size;
      if (length === 0) this.endControl();
      return;
    }
    if (opcode === 0x1) return this.refuse('a text message on a tunnel', ErrorCode.InvalidType);
    if (opcode === 0x2) {
      if (this.inMessage) return this.refuse('a new message inside a fragmented one');
    } else if (opcode === 0x0) {
      if (!this.inMessage) return this.refuse('a continuation frame outside a message');
    } else {
      return this.refuse(`unknown opcode ${opcode}`);
    }
    this.inMessage = !fin;
    this.remaining = length;
    this.mask = undefined;
    if (this.masked && this.head.readUInt32BE(size - 4) !== 0) {
      this.mask = Buffer.from(this.head.subarray(size - 4, size));
      this.maskOffset = 0;
    }
  }

  private unmask(piece: Buffer): void {
    const key = this.mask!;
    const start = this.maskOffset;
    for (let i = 0; i < piece.length; i++) piece[i]! ^= key[(start + i) & 3]!;
    this.maskOffset = (start + piece.length) & 3;
  }

  /** A control frame is complete: to ws's receiver. Nothing may follow a close frame. */
  private endControl(): void {
    const frame = this.control!;
    this.control = undefined;
    if ((frame[0]! & 0x0f) === 0x8) this.done = true;
    this.controlFrame(frame);
  }

  private refuse(what: string, code: ErrorCode = ErrorCode.InvalidWebSocketFrame): void {
    this.done = true;
    this.fail(new ProtocolError(code, `websocket: ${what}`));
  }
}

/** Bytes of a frame's header, from its second byte: the length's, and a mask key when the mask bit is set. */
function headerLength(b1: number): number {
  const l = b1 & 0x7f;
  return (l === 126 ? 4 : l === 127 ? 10 : 2) + ((b1 & 0x80) !== 0 ? 4 : 0);
}

interface WsInternals {
  _socket?: Socket | null;
  _receiver?: { write(chunk: Buffer): boolean; _bufferedBytes?: number; _state?: number; _fragments?: unknown[] };
}

/**
 * Takes the reading of a just-opened WebSocket over from ws's receiver: the socket's data goes
 * through a FrameReader (the peer's frames: a client reads a server's, a server a client's),
 * payloads to `deliver`, control frames to ws's receiver. Returns false, changing nothing, unless
 * ws is exactly as expected: no extension, its receiver at a frame boundary holding nothing, and
 * its one 'data' listener on the socket. The caller then keeps using ws's 'message' events.
 */
export function readFramesDirectly(
  ws: WebSocket,
  from: 'server' | 'client',
  deliver: (bytes: Buffer) => void,
  fail: (err: ProtocolError) => void,
): boolean {
  if (ws.extensions !== '' || ws.readyState !== ws.OPEN) return false;
  const { _socket: socket, _receiver: receiver } = ws as unknown as WsInternals;
  if (socket === null || socket === undefined || receiver === undefined || typeof receiver.write !== 'function') return false;
  if (receiver._bufferedBytes !== 0 || receiver._state !== 0 || (receiver._fragments?.length ?? 0) !== 0) return false;
  const listeners = socket.listeners('data');
  if (listeners.length !== 1) return false;
  socket.removeListener('data', listeners[0] as (chunk: Buffer) => void);
  const reader = new FrameReader(deliver, (frame) => void receiver.write(frame), fail, from);
  socket.on('data', (chunk: Buffer) => reader.write(chunk));
  return true;
}
