import { Transform, type TransformCallback } from 'node:stream';

/**
 * Sits on the client→printer bytes of a WebSocket a viewer opened, after the handshake: parses
 * RFC 6455 frames (any chunking), holds each data message until it is whole, and forwards its
 * original frames only if `allowed(text)` says so. Control frames pass. Anything else —
 * a forbidden call, a binary or compressed message, an unmasked frame, a message over the
 * limit — emits 'violation' and forwards nothing more.
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
      this.violate((e as Error).message);
    }
    cb();
  }

  private violate(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    this.buf = Buffer.alloc(0);
    this.held = [];
    this.heldText = [];
    this.emit('violation', reason);
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
        if (big > BigInt(this.maxMessage)) throw new Error('frame too large');
        len = Number(big);
        off = 10;
      }
      if (!masked) throw new Error('unmasked client frame');
      if (rsv !== 0) throw new Error('compressed or extended frames are not allowed');
      if (len > this.maxMessage) throw new Error('frame too large');
      if (b.length < off + 4 + len) return;
      const frame = b.subarray(0, off + 4 + len);
      this.buf = b.subarray(off + 4 + len);

      if (opcode >= 0x8) {
        // close, ping, pong: pass at once (they may interleave a fragmented message)
        if (!fin || len > 125) throw new Error('bad control frame');
        this.push(frame);
        continue;
      }
      if (opcode === 0x2 || (opcode === 0x0 && !this.inMessage) || (opcode === 0x1 && this.inMessage) || opcode > 0x2) {
        throw new Error(opcode === 0x2 ? 'binary messages are not allowed' : 'bad fragment sequence');
      }
      const mask = b.subarray(off, off + 4);
      const payload = Buffer.from(b.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      this.held.push(frame);
      this.heldText.push(payload);
      this.heldBytes += len;
      if (this.heldBytes > this.maxMessage) throw new Error('message too large');
      this.inMessage = !fin;
      if (!fin) continue;
      const text = Buffer.concat(this.heldText).toString('utf8');
      const frames = this.held;
      this.held = [];
      this.heldText = [];
      this.heldBytes = 0;
      if (!this.allowed(text)) throw new Error('this call is not allowed for viewers');
      for (const f of frames) this.push(f);
    }
  }
}
