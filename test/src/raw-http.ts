// Exact bytes over a raw TCP socket, for requests no HTTP client would send (smuggling shapes,
// slow heads, garbage upgrades), and a minimal WebSocket frame builder.
import net from 'node:net';

export interface RawResponse {
  /** Status code of the first response line; 0 when the relay closed without answering. */
  status: number;
  /** Everything received, as latin1 text. */
  text: string;
  /** Head fields of the first response, lowercase names. */
  headers: Record<string, string>;
  /** Milliseconds from the first byte sent to the socket's close (or the answer, with `untilAnswer`). */
  ms: number;
  /** How the exchange ended. */
  ended: 'closed' | 'timeout' | 'answered';
}

export interface RawOptions {
  /** Local address to send from (any 127.x.y.z works on Linux): separates throttle buckets. */
  localAddress?: string;
  /** Give up after this long (the socket is destroyed); default 10 s. */
  timeoutMs?: number;
  /** Resolve as soon as one whole response head has arrived, without waiting for the close. */
  untilAnswer?: boolean;
}

function parse(text: string): { status: number; headers: Record<string, string> } {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  const headers: Record<string, string> = {};
  const headEnd = text.indexOf('\r\n\r\n');
  if (m !== null && headEnd > 0) {
    for (const line of text.slice(0, headEnd).split('\r\n').slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
  }
  return { status: m === null ? 0 : Number(m[1]), headers };
}

/** Opens a socket to 127.0.0.1:port; `send` writes to it (all at once, or dripped by the caller). */
export function rawExchange(
  port: number,
  send: (socket: net.Socket) => void | Promise<void>,
  opts: RawOptions = {},
): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) });
    const chunks: Buffer[] = [];
    let start = 0;
    let done = false;
    const finish = (ended: RawResponse['ended']) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      socket.destroy();
      resolve({ ...parse(text), text, ms: Date.now() - start, ended });
    };
    const timer = setTimeout(() => finish('timeout'), opts.timeoutMs ?? 10_000);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (opts.untilAnswer === true && Buffer.concat(chunks).includes('\r\n\r\n')) finish('answered');
    });
    socket.on('close', () => finish('closed'));
    socket.on('error', () => finish('closed'));
    socket.once('connect', () => {
      start = Date.now();
      Promise.resolve(send(socket)).catch(() => socket.destroy());
    });
  });
}

/** Sends `bytes` at once and waits for the answer and the close. */
export function rawRequest(port: number, bytes: string | Buffer, opts: RawOptions = {}): Promise<RawResponse> {
  return rawExchange(port, (s) => void s.write(bytes), opts);
}

/** Writes `bytes` a piece at a time, `everyMs` apart, until done or the socket closes. */
export async function drip(socket: net.Socket, bytes: string, everyMs: number, piece = 1): Promise<void> {
  for (let i = 0; i < bytes.length && !socket.destroyed; i += piece) {
    socket.write(bytes.slice(i, i + piece));
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** One masked client→server WebSocket frame (RFC 6455). */
export function wsFrame(opcode: number, payload: Buffer | string, fin = true, mask = true): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = data.length;
  const ext = len < 126 ? 0 : len < 65_536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (mask ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) head.writeUInt16BE(len, 2);
  else if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2);
  if (!mask) return Buffer.concat([head, data]);
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  key.copy(head, 2 + ext);
  const masked = Buffer.from(data);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= key[i & 3]!;
  return Buffer.concat([head, masked]);
}
