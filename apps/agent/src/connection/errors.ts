import { AgentCloseCode } from '@porthole/protocol';

/** Why a tunnel could not be made or ended. The retry policy decides by class, never by message. */
export const TunnelErrorCode = {
  /** HTTP 401 on the upgrade: the relay does not know this credential. */
  Unauthorized: 'ERR_CREDENTIAL_UNKNOWN',
  /** HTTP 403 on the upgrade, or close 4001: the credential was revoked. */
  Revoked: 'ERR_CREDENTIAL_REVOKED',
  /** Close 4000: a newer connection of the same device took over. */
  Replaced: 'ERR_REPLACED',
  /** Close 1001 or a GoAway: the relay is shutting down. */
  RelayGoingAway: 'ERR_RELAY_GOING_AWAY',
  /** Any other HTTP status on the upgrade (5xx, 429, 404…). */
  HttpStatus: 'ERR_HTTP_STATUS',
  /** DNS, TCP, TLS or WebSocket handshake failure. */
  Network: 'ERR_NETWORK',
  /** The relay accepted the upgrade but did not answer a ping in time. */
  HandshakeTimeout: 'ERR_HANDSHAKE_TIMEOUT',
  /** An established tunnel ended (WebSocket closed, keep-alive timeout, protocol error). */
  Closed: 'ERR_TUNNEL_CLOSED',
  /** We gave up on the dial ourselves (shutdown). */
  Aborted: 'ERR_DIAL_ABORTED',
} as const;
export type TunnelErrorCode = (typeof TunnelErrorCode)[keyof typeof TunnelErrorCode];

export abstract class TunnelError extends Error {
  abstract readonly permanent: boolean;
  readonly code: TunnelErrorCode;
  /** HTTP status of a refused upgrade. */
  readonly status: number | undefined;
  /** WebSocket close code of an ended tunnel. */
  readonly closeCode: number | undefined;
  constructor(code: TunnelErrorCode, message: string, extra: { status?: number; closeCode?: number } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = extra.status;
    this.closeCode = extra.closeCode;
  }
}

/** Retrying cannot help (the credential is refused): stop and say why. */
export class PermanentError extends TunnelError {
  readonly permanent = true;
}

/** Retry with backoff. */
export class TransientError extends TunnelError {
  readonly permanent = false;
  /** Reconnect at once rather than after a backoff delay (the relay asked us to move). */
  readonly prompt: boolean;
  /** The relay's Retry-After, in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(
    code: TunnelErrorCode,
    message: string,
    extra: { status?: number; closeCode?: number; prompt?: boolean; retryAfterMs?: number } = {},
  ) {
    super(code, message, extra);
    this.prompt = extra.prompt ?? false;
    this.retryAfterMs = extra.retryAfterMs;
  }
}

export function isPermanent(err: unknown): err is PermanentError {
  return err instanceof PermanentError;
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or nonsense. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The relay refused the WebSocket upgrade with this HTTP status. */
export function errorFromStatus(status: number, retryAfter?: string): TunnelError {
  if (status === 401) {
    return new PermanentError(TunnelErrorCode.Unauthorized, 'relay refused the credential (HTTP 401: unknown or bad credential)', { status });
  }
  if (status === 403) {
    return new PermanentError(TunnelErrorCode.Revoked, 'relay refused the credential (HTTP 403: revoked)', { status });
  }
  const retryAfterMs = parseRetryAfter(retryAfter);
  return new TransientError(TunnelErrorCode.HttpStatus, `relay answered the upgrade with HTTP ${status}`, {
    status,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
}

/** The WebSocket closed with this code (and the session reported `cause`). */
export function errorFromClose(code: number | undefined, reason: string, cause?: Error): TunnelError {
  const why = reason === '' ? '' : `: ${reason}`;
  switch (code) {
    case AgentCloseCode.Revoked:
      return new PermanentError(TunnelErrorCode.Revoked, `relay revoked the credential (close ${code}${why})`, { closeCode: code });
    case AgentCloseCode.Replaced:
      return new TransientError(TunnelErrorCode.Replaced, `replaced by a newer connection of this device (close ${code}${why})`, {
        closeCode: code,
      });
    case AgentCloseCode.GoingAway:
      return new TransientError(TunnelErrorCode.RelayGoingAway, `relay going away (close ${code}${why})`, {
        closeCode: code,
        prompt: true,
      });
    case undefined:
      return new TransientError(TunnelErrorCode.Closed, cause?.message ?? 'tunnel closed');
    default:
      return new TransientError(TunnelErrorCode.Closed, `tunnel closed (close ${code}${why})`, { closeCode: code });
  }
}

/** A DNS/TCP/TLS/handshake error from ws; transient by definition. */
export function errorFromNetwork(err: Error): TransientError {
  const code = (err as NodeJS.ErrnoException).code;
  return new TransientError(TunnelErrorCode.Network, code !== undefined && !err.message.includes(code) ? `${code}: ${err.message}` : err.message);
}
