import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * What the relay accepts from the open internet before a request is routed anywhere. Node's
 * parser (llhttp, strict) already refuses most request-smuggling shapes — Content-Length with
 * Transfer-Encoding, duplicate or malformed lengths, obs-fold, bare CR or LF, bad chunk sizes —
 * as client errors; `checkRequest` refuses the few it lets through, and the size limits here
 * give a too-long request target its own status (414) instead of the parser's 431.
 */
export interface HttpLimits {
  /** A request target longer than this: 414. */
  maxUrlBytes: number;
  /** Header fields (names + values + separators) above this: 431. */
  maxHeaderBytes: number;
  /** Headers not complete within this: 408 (slowloris). */
  headersTimeoutMs: number;
  /** A body the relay is reading that brings nothing for this long: 408, and the exchange is aborted. */
  bodyIdleTimeoutMs: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  maxUrlBytes: 8 * 1024,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 30_000,
  bodyIdleTimeoutMs: 60_000,
});

/** Options for http(s).createServer that enforce the limits in the parser itself. */
export function serverOptions(l: HttpLimits): http.ServerOptions {
  return {
    // Room for a maximal target and maximal headers, so requests near the limits reach
    // `checkRequest` and get a precise status; anything bigger is cut by the parser (clientError).
    maxHeaderSize: l.maxUrlBytes + l.maxHeaderBytes + 1024,
    headersTimeout: l.headersTimeoutMs,
    // Long uploads at a printer's pace must not hit a whole-request limit: bodies have an idle timer.
    requestTimeout: 0,
    // How often Node looks for requests over headersTimeout (its default, 30 s, would let a short
    // timeout run up to 30 s late).
    connectionsCheckingInterval: Math.min(5_000, Math.max(100, Math.floor(l.headersTimeoutMs / 4))),
  };
}

export interface Refusal {
  status: number;
  title: string;
  detail: string;
}

/** Refuses what must never be routed: oversized targets and headers, ambiguous framing. */
export function checkRequest(req: IncomingMessage, l: HttpLimits): Refusal | undefined {
  if ((req.url ?? '').length > l.maxUrlBytes) {
    return { status: 414, title: 'Address too long', detail: `The address is longer than ${l.maxUrlBytes} bytes.` };
  }
  // One pass over the raw headers: their size (name, value, ': ' and CRLF) and the framing ones.
  let bytes = 0;
  let hosts = 0;
  let lengths = 0;
  let encodings = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    bytes += name.length + raw[i + 1]!.length + 4;
    const lower = name.toLowerCase();
    if (lower === 'host') hosts++;
    else if (lower === 'content-length') lengths++;
    else if (lower === 'transfer-encoding') encodings++;
  }
  if (bytes > l.maxHeaderBytes) {
    return { status: 431, title: 'Headers too large', detail: `The request headers are larger than ${l.maxHeaderBytes} bytes.` };
  }
  const bad = (detail: string): Refusal => ({ status: 400, title: 'Bad request', detail });
  if (hosts > 1) return bad('More than one Host header.');
  if (lengths > 1) return bad('More than one Content-Length header.');
  if (encodings > 0) {
    // Only plain `chunked` is framing both sides read the same way; HTTP/1.0 has no chunked at all.
    if (req.httpVersion !== '1.1') return bad('Transfer-Encoding in an HTTP/1.0 request.');
    if (encodings > 1 || (req.headers['transfer-encoding'] ?? '').trim().toLowerCase() !== 'chunked') {
      return bad('Transfer-Encoding other than chunked.');
    }
    if (lengths > 0) return bad('Both Content-Length and Transfer-Encoding.');
  }
  return undefined;
}

function plainResponse(status: number, text: string, extra = ''): string {
  const body = `${text}\n`;
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

/** Ends a raw socket (upgrade, client error) with a short answer; a peer that never reads is cut. */
export function refuseSocket(socket: Duplex, status: number, text: string, extraHeaders = ''): void {
  if (socket.destroyed) return;
  socket.end(plainResponse(status, text, extraHeaders));
  setTimeout(() => socket.destroy(), 5_000).unref();
}

/** Whether the bytes the parser gave up on were still the request line (the target was too long). */
function inRequestLine(err: { rawPacket?: unknown; bytesParsed?: unknown }): boolean {
  if (!Buffer.isBuffer(err.rawPacket)) return false;
  const parsed = typeof err.bytesParsed === 'number' ? err.bytesParsed : err.rawPacket.length;
  const seen = err.rawPacket.subarray(0, Math.max(0, Math.min(parsed, err.rawPacket.length)));
  const text = seen.subarray(seen.lastIndexOf(0x0a) + 1, seen.lastIndexOf(0x0a) + 1 + 64).toString('latin1');
  // A line that starts like `METHOD /…` and has not ended: the target itself overflowed.
  return /^[A-Z]{3,10} \S/.test(text);
}

/**
 * The server's 'clientError' answer: 414/431 for oversized heads, 408 for slow ones, 400 for
 * anything the parser refused (every smuggling shape lands here). Nothing of it is routed.
 */
export function clientErrorHandler(err: Error & { code?: string; rawPacket?: unknown; bytesParsed?: unknown }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  // A response already started on this connection: a raw answer would corrupt it.
  const current = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (current?.headersSent === true) {
    socket.destroy();
    return;
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    if (inRequestLine(err)) refuseSocket(socket, 414, 'URI Too Long: the address is too long.');
    else refuseSocket(socket, 431, 'Request Header Fields Too Large.');
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    refuseSocket(socket, 408, 'Request Timeout: the request headers took too long.');
  } else {
    refuseSocket(socket, 400, `Bad Request: ${err.code ?? 'malformed request'}.`);
  }
}

/**
 * Aborts a request whose body stalls: while the relay is reading (the body is flowing, not held
 * back by a slow printer), bytes must keep arriving within `idleMs`. Watches the socket's byte
 * count, so it adds no listener that could change the body's flow.
 */
export function watchBody(req: IncomingMessage, res: ServerResponse, idleMs: number, onTimeout?: () => void): void {
  const length = req.headers['content-length'];
  if (req.complete || (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0'))) return;
  const socket = req.socket;
  let last = socket.bytesRead;
  let lastAt = Date.now();
  const every = Math.max(50, Math.min(1_000, Math.floor(idleMs / 4)));
  const timer = setInterval(() => {
    if (req.complete || req.destroyed || socket.destroyed) {
      clearInterval(timer);
      return;
    }
    const now = Date.now();
    if (socket.bytesRead !== last || req.readableFlowing !== true) {
      // Progress, or the relay is not asking for more (backpressure from the printer, or the
      // request is not routed yet): not the client's fault.
      last = socket.bytesRead;
      lastAt = now;
      return;
    }
    if (now - lastAt < idleMs) return;
    clearInterval(timer);
    onTimeout?.();
    if (!res.headersSent) {
      res.writeHead(408, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end('Request Timeout: the request body stalled.\n');
    }
    // At once, not after 'finish': the request's 'close' (next tick, before any I/O) aborts the
    // exchange with the printer, so a late printer answer can never meet a response already sent.
    req.destroy();
  }, every);
  timer.unref();
  req.once('close', () => clearInterval(timer));
}
