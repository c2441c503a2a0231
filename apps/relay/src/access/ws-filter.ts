import { Transform, type TransformCallback } from 'node:stream';

/** RFC 6455 close codes the filter answers with. */
export const WsClose = {
  /** Broken framing: unmasked, reserved bits, bad fragment sequence, bad control frame. */
  ProtocolError: 1002,
  /** A call viewers may not make, or a binary message. */
  PolicyViolation: 1008,
  /** A message over the size limit, or split into too many fragments. */
  MessageTooBig: 1009,
} as const;

class Violation extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Sits on the client→printer bytes of a WebSocket a viewer opened, after the handshake: parses
 * RFC 6455 frames (any chunking), holds each data message until it is whole, and forwards its
 * original frames only if `allowed(text)` says so. Control frames pass. Anything else —
 * a forbidden call, a binary or compressed message, an unmasked frame, a message over the
 * limit, a message in more fragments than `maxFragments` — emits 'violation' (reason, close
 * code) and forwards nothing more. What it holds is bounded: at most `maxMessage` bytes of frames
 * (headers included, so empty fragments count too) plus one partial frame header.
 */
export class WsClientFilter extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  private held: Buffer[] = [];
  private heldText: Buffer[] = [];
  private heldBytes = 0;
  private inMessage = false;
  private dead = false;

  constructor(
    private readonly allowed: (text: string) => boolean,
    private readonly maxMessage = 256 * 1024,
    private readonly maxFragments = 256,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.dead) {
      cb();
      return;
    }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    try {
      this.parse();
    } catch (e) {
      this.violate((e as Error).message, e instanceof Violation ? e.code : WsClose.ProtocolError);
    }
    cb();
  }

  private violate(reason: string, code: number): void {
    if (this.dead) return;
    this.dead = true;
    this.buf = Buffer.alloc(0);
    this.held = [];
    this.heldText = [];
    this.emit('violation', reason, code);
  }

  private parse(): void {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0]! & 0x80) !== 0;
      const rsv = b[0]! & 0x70;
      const opcode = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(this.maxMessage)) throw new Violation(WsClose.MessageTooBig, 'frame too large');
        len = Number(big);
        off = 10;
      }
      if (!masked) throw new Violation(WsClose.ProtocolError, 'unmasked client frame');
      if (rsv !== 0) throw new Violation(WsClose.ProtocolError, 'compressed or extended frames are not allowed');
      if (len > this.maxMessage) throw new Violation(WsClose.MessageTooBig, 'frame too large');
      if (b.length < off + 4 + len) return;
      const frame = b.subarray(0, off + 4 + len);
      this.buf = b.subarray(off + 4 + len);

      if (opcode >= 0x8) {
        // close, ping, pong: pass at once (they may interleave a fragmented message)
        if (!fin || len > 125) throw new Violation(WsClose.ProtocolError, 'bad control frame');
        this.push(frame);
        continue;
      }
      if (opcode === 0x2 || (opcode === 0x0 && !this.inMessage) || (opcode === 0x1 && this.inMessage) || opcode > 0x2) {
        if (opcode === 0x2) throw new Violation(WsClose.PolicyViolation, 'binary messages are not allowed');
        throw new Violation(WsClose.ProtocolError, 'bad fragment sequence');
      }
      const mask = b.subarray(off, off + 4);
      const payload = Buffer.from(b.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      this.held.push(frame);
      this.heldText.push(payload);
      this.heldBytes += frame.length;
      if (this.heldBytes > this.maxMessage) throw new Violation(WsClose.MessageTooBig, 'message too large');
      if (this.held.length > this.maxFragments) throw new Violation(WsClose.MessageTooBig, 'message in too many fragments');
      this.inMessage = !fin;
      if (!fin) continue;
      const text = Buffer.concat(this.heldText).toString('utf8');
      const frames = this.held;
      this.held = [];
      this.heldText = [];
      this.heldBytes = 0;
      if (!this.allowed(text)) throw new Violation(WsClose.PolicyViolation, 'this call is not allowed for viewers');
      for (const f of frames) this.push(f);
    }
  }
}

/**
 * Sits on the printer→client bytes of a filtered WebSocket — the printer's HTTP response head,
 * then its frames — and tracks frame boundaries, so the relay can end the client's socket with a
 * proper close frame:
 * `closeWith()` stops taking the printer's bytes at the next boundary, sends the close frame, and
 * ends. Past `maxWaitBytes` of an unfinished printer frame it gives up and destroys instead.
 */
export class WsServerGate extends Transform {
  /** Bytes left in the current frame; 0 at a boundary. */
  private remaining = 0;
  private head: Buffer = Buffer.alloc(0);
  private closing: Buffer | undefined;
  private done = false;
  /** The printer's response head, until its blank line; then 'frames' (101) or 'opaque' (anything else). */
  private phase: 'head' | 'frames' | 'opaque' = 'head';
  private headText = '';

  constructor(private readonly maxWaitBytes = 1024 * 1024) {
    super();
  }

  /** True when the next byte starts a new frame. */
  get atBoundary(): boolean {
    return this.phase === 'frames' && this.remaining === 0 && this.head.length === 0;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.done) {
      cb(); // after the close frame nothing more reaches the client
      return;
    }
    if (this.closing !== undefined) {
      // Only the rest of the frame in progress still passes.
      const n = Math.min(this.remaining, chunk.length);
      if (n > 0) this.push(chunk.subarray(0, n));
      this.remaining -= n;
      if (this.remaining === 0) this.finishClose();
      cb();
      return;
    }
    this.track(chunk);
    this.push(chunk);
    cb();
  }

  private track(chunk: Buffer): void {
    let off = 0;
    if (this.phase === 'opaque') return;
    if (this.phase === 'head') {
      const before = this.headText.length;
      this.headText += chunk.subarray(0, 16 * 1024).toString('latin1');
      const end = this.headText.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.headText.length > 16 * 1024) this.phase = 'opaque';
        return;
      }
      this.phase = /^HTTP\/1\.1 101 /.test(this.headText) ? 'frames' : 'opaque';
      off = end + 4 - before;
      this.headText = '';
      if (this.phase === 'opaque') return;
    }
    while (off < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        this.remaining -= n;
        off += n;
        continue;
      }
      // Gather a header: 2 bytes, plus 2 or 8 of extended length.
      const need = (h: Buffer): number => {
        if (h.length < 2) return 2;
        const l = h[1]! & 0x7f;
        return 2 + (l === 126 ? 2 : l === 127 ? 8 : 0) + ((h[1]! & 0x80) !== 0 ? 4 : 0);
      };
      while (off < chunk.length && this.head.length < need(this.head)) {
        this.head = Buffer.concat([this.head, chunk.subarray(off, off + 1)]);
        off++;
      }
      if (this.head.length < need(this.head)) return;
      const l = this.head[1]! & 0x7f;
      this.remaining = l === 126 ? this.head.readUInt16BE(2) : l === 127 ? Number(this.head.readBigUInt64BE(2)) : l;
      this.head = Buffer.alloc(0);
    }
  }

  /** Ends the client's side with close `code`; returns false when it had to cut instead. */
  closeWith(code: number, reason = ''): boolean {
    if (this.closing !== undefined) return true;
    const text = Buffer.from(reason.slice(0, 100), 'utf8').subarray(0, 123);
    const frame = Buffer.alloc(4 + text.length);
    frame[0] = 0x88; // FIN + close
    frame[1] = 2 + text.length;
    frame.writeUInt16BE(code, 2);
    text.copy(frame, 4);
    this.closing = frame;
    if (this.phase !== 'frames' || this.head.length > 0 || this.remaining > this.maxWaitBytes) {
      this.destroy();
      return false;
    }
    if (this.remaining === 0) this.finishClose();
    return true;
  }

  private finishClose(): void {
    const frame = this.closing;
    if (frame === undefined || this.done) return;
    this.done = true;
    this.push(frame);
    this.push(null);
  }
}
