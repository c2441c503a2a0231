import type WebSocket from 'ws';
import type { SessionConfig } from './config.js';
import { ErrorCode, ProtocolError, SessionError } from './errors.js';
import { GoAwayCode } from './frame.js';
import { Session, type Clock, type Role } from './session.js';

export interface WebSocketSessionOptions {
  role: Role;
  config?: Partial<SessionConfig>;
  clock?: Clock;
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
  const sendOne = (chunk: Buffer) => {
    inFlight += chunk.length;
    ws.send(chunk, { binary: true, compress: false }, () => {
      inFlight -= chunk.length;
      if (blocked && inFlight <= hwm / 2) {
        blocked = false;
        session?.transportDrained();
      }
    });
  };
  const transport = {
    write(chunk: Buffer): boolean {
      if (ws.readyState !== ws.OPEN) return true; // closing: the session is about to learn of it
      sendOne(chunk);
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
  const session: Session = new Session({ role: opts.role, transport, config: opts.config, clock: opts.clock });
  const hwm = session.config.transportHighWaterMark;
  const s = session;
  ws.binaryType = 'nodebuffer';
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
