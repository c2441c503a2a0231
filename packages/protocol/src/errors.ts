import { GoAwayCode } from './frame.js';

/** Every error the protocol raises has one of these codes. */
export const ErrorCode = {
  /** Header version is not 0. */
  InvalidVersion: 'ERR_INVALID_VERSION',
  /** Frame type outside Data/WindowUpdate/Ping/GoAway. */
  InvalidType: 'ERR_INVALID_TYPE',
  /** Unknown flag bits, or flags that make no sense for the frame type. */
  InvalidFlags: 'ERR_INVALID_FLAGS',
  /** Data frame larger than the configured maximum. */
  FrameTooLarge: 'ERR_FRAME_TOO_LARGE',
  /** Peer sent more data than the window it was granted. */
  ReceiveWindowExceeded: 'ERR_RECV_WINDOW_EXCEEDED',
  /** A window update would push the send window beyond 2^32-1. */
  WindowOverflow: 'ERR_WINDOW_OVERFLOW',
  /** Frame for stream 0 that must name a stream, or a stream frame with id 0 that must not. */
  InvalidStreamId: 'ERR_INVALID_STREAM_ID',
  /** SYN for a stream id that is already in use, or with the wrong parity. */
  StreamIdReused: 'ERR_STREAM_ID_REUSED',
  /** Data after the peer's FIN on the same stream. */
  DataAfterFin: 'ERR_DATA_AFTER_FIN',
  /** No answer to keep-alive pings within the timeout. */
  KeepAliveTimeout: 'ERR_KEEPALIVE_TIMEOUT',
  /** The peer said go away and we tried to open a stream. */
  GoAwayReceived: 'ERR_GOAWAY_RECEIVED',
  /** We are going away and cannot open new streams. */
  SessionClosing: 'ERR_SESSION_CLOSING',
  /** The session is closed. */
  SessionClosed: 'ERR_SESSION_CLOSED',
  /** The peer reset the stream. */
  StreamReset: 'ERR_STREAM_RESET',
  /** The session ended while the stream was open. */
  StreamAborted: 'ERR_STREAM_ABORTED',
  /** Too many open streams. */
  TooManyStreams: 'ERR_TOO_MANY_STREAMS',
  /** Stream-open header malformed or of an unknown version. */
  InvalidOpenHeader: 'ERR_INVALID_OPEN_HEADER',
  /** The peer closed the connection (transport gone). */
  TransportClosed: 'ERR_TRANSPORT_CLOSED',
  /** The peer ended the session with a GoAway carrying an error code. */
  PeerProtocolError: 'ERR_PEER_PROTOCOL_ERROR',
  /** A WebSocket frame the tunnel cannot carry (masked the wrong way for its sender, reserved bits, bad fragmentation). */
  InvalidWebSocketFrame: 'ERR_INVALID_WS_FRAME',
  /** A bug or an application handler threw inside the session. */
  Internal: 'ERR_INTERNAL',
  /** Bad configuration value. */
  InvalidConfig: 'ERR_INVALID_CONFIG',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base of every protocol error; `code` is stable, `message` is for people. */
export class PortholeProtocolError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A violation that ends the session; carries the GoAway code we send the peer. */
export class ProtocolError extends PortholeProtocolError {
  readonly goAwayCode: GoAwayCode;
  constructor(code: ErrorCode, message: string, goAwayCode: GoAwayCode = GoAwayCode.ProtocolError) {
    super(code, message);
    this.goAwayCode = goAwayCode;
  }
}

/** An error that ends one stream only. */
export class StreamError extends PortholeProtocolError {}

/** The session (and every stream in it) ended. */
export class SessionError extends PortholeProtocolError {}

export class ConfigError extends PortholeProtocolError {
  constructor(message: string) {
    super(ErrorCode.InvalidConfig, message);
  }
}
