import type { Socket } from 'node:net';
import type WebSocket from 'ws';
import type { SessionConfig } from './config.js';
import { ErrorCode, ProtocolError, SessionError } from './errors.js';
import { GoAwayCode } from './frame.js';
import { Session, type Clock, type Role } from './session.js';
import { readFramesDirectly } from './ws-reader.js';

export interface WebSocketSessionOptions {
  role: Role;
  config?: Partial<SessionConfig>;
  clock?: Clock;
  /**
   * Client role only: frames the session writes itself carry an all-zero mask, as the agent's
   * ws client is configured to use (`generateMask` filling zeros). Without it a client session
   * sends every message through `ws.send`, which masks with whatever the ws client generates.
   */
  zeroMask?: boolean;
  /**
   * Read the peer's frames off the socket ourselves (ws-reader.ts), handing payloads to the
   * session as the socket delivers them instead of as whole ws messages. Falls back to ws's
   * messages when ws is not in the state that allows it.
   */
  readDirect?: boolean;
}

/** WebSocket close codes we use (RFC 6455 §7.4.1). */
export const WsCloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  Unsupported: 1003,
  InternalError: 1011,
} as const;

/**
 * Runs a yamux session over a `ws` WebSocket's binary messages. The session sees the socket as
 * blocked while more than `transportHighWaterMark` bytes are handed to ws and not yet written to
 * the kernel (tracked through send callbacks, which is what `bufferedAmount` approximates), so a
 * slow link pushes back on the streams instead of growing memory.
 */
export function sessionOverWebSocket(ws: WebSocket, opts: WebSocketSessionOptions): Session {
  let inFlight = 0;
  let blocked = false;
  const sent = (bytes: number, written: (() => void) | undefined) => (err?: Error | null) => {
    inFlight -= bytes;
    if (written !== undefined && (err === undefined || err === null)) written();
    if (blocked && inFlight <= hwm / 2) {
      blocked = false;
      session?.transportDrained();
    }
  };
  const sendOne = (chunk: Buffer, written?: () => void) => {
    inFlight += chunk.length;
    ws.send(chunk, { binary: true, compress: false }, sent(chunk.length, written));
  };
  const masked = opts.role === 'client';
  const gather = !masked || opts.zeroMask === true;
  const transport = {
    reportsWritten: true,
    write(chunk: Buffer, written?: () => void): boolean {
      if (ws.readyState !== ws.OPEN) return true; // closing: the session is about to learn of it
      sendOne(chunk, written);
      if (inFlight > hwm) blocked = true;
      return !blocked;
    },
    writev(chunks: Buffer[], bytes: number, written?: () => void): boolean {
      if (ws.readyState !== ws.OPEN) return true;
      const socket = gather ? gatherSocket(ws) : undefined;
      if (socket === undefined) {
        sendOne(Buffer.concat(chunks, bytes), written);
      } else {
        // One binary message, written as ws itself writes an unmasked (or zero-masked) frame:
        // its header, then the payload pieces, corked into one writev. No copy of the payload.
        inFlight += bytes;
        const last = chunks.length - 1;
        socket.cork();
        socket.write(frameHeader(bytes, masked));
        for (let i = 0; i < last; i++) socket.write(chunks[i]!);
        socket.write(chunks[last]!, sent(bytes, written));
        socket.uncork();
      }
      if (inFlight > hwm) blocked = true;
      return !blocked;
    },
    close(err?: Error): void {
      if (ws.readyState === ws.CLOSED) return;
      const code =
        err === undefined
          ? WsCloseCode.Normal
          : err instanceof ProtocolError
            ? err.goAwayCode === GoAwayCode.ProtocolError
              ? WsCloseCode.ProtocolError
              : WsCloseCode.InternalError
            : err instanceof SessionError && err.code === ErrorCode.KeepAliveTimeout
              ? null
              : WsCloseCode.GoingAway;
      if (code === null) ws.terminate(); // the peer is not answering: do not wait for a close handshake
      else ws.close(code, err?.message.slice(0, 120));
    },
  };
  if (!gather) delete (transport as { writev?: unknown }).writev;
  const session: Session = new Session({ role: opts.role, transport, config: opts.config, clock: opts.clock });
  const hwm = session.config.transportHighWaterMark;
  const s = session;
  ws.binaryType = 'nodebuffer';
  if (opts.readDirect === true) {
    readFramesDirectly(
      ws,
      opts.role === 'client' ? 'server' : 'client',
      (bytes) => s.receive(bytes),
      (err) => {
        s.close(err); // GoAway and a 1002 close frame, then drop the connection: its bytes make no sense
        ws.terminate();
      },
    );
  }
  // Messages ws parsed before the reading was taken over, or all of them when it was not.
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) {
      s.close(new ProtocolError(ErrorCode.InvalidType, 'text message on a tunnel'));
      return;
    }
    s.receive(data);
  });
  ws.on('close', (code: number, reason: Buffer) => {
    s.transportClosed(
      new SessionError(ErrorCode.TransportClosed, `websocket closed (${code}${reason.length ? `: ${reason.toString()}` : ''})`),
    );
  });
  ws.on('error', (err: Error) => {
    s.transportClosed(new SessionError(ErrorCode.TransportClosed, `websocket error: ${err.message}`));
  });
  return s;
}

/**
 * The socket under a ws WebSocket when frames may be written to it directly: ws writes every
 * frame synchronously and in one piece unless a compression extension queues them, so with no
 * extension negotiated a complete frame written here never interleaves with one of ws's own
 * (close, pong). Undefined when that does not hold; the caller then uses `ws.send`.
 */
function gatherSocket(ws: WebSocket): Socket | undefined {
  if (ws.extensions !== '') return undefined;
  const socket = (ws as unknown as { _socket?: Socket | null })._socket;
  if (socket === null || socket === undefined || typeof socket.cork !== 'function' || socket.destroyed) return undefined;
  return socket;
}

/** A final binary frame's header (RFC 6455 §5.2) for `length` payload bytes; masked: with a zero key. */
export function frameHeader(length: number, masked: boolean): Buffer {
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const h = Buffer.alloc(2 + lengthBytes + (masked ? 4 : 0)); // zero-filled: the mask key is 0
  h[0] = 0x82; // FIN, opcode 2 (binary)
  h[1] = (masked ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) h.writeUInt16BE(length, 2);
  else if (lengthBytes === 8) h.writeUIntBE(length, 4, 6); // bytes 2-3 stay 0: lengths fit in 48 bits
  return h;
}
