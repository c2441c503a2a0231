import { pino, type DestinationStream, type Logger } from 'pino';
import type { RelayConfig } from './config.js';

export type { Logger } from 'pino';

/**
 * Field names used across the relay's logs, so a query for one device or one stream finds every
 * line about it. Use `log.child({ [LogField.device]: slug })`, never a name of your own.
 */
export const LogField = {
  /** Device slug. */
  device: 'device',
  /** Device id (database). */
  deviceId: 'deviceId',
  /** Tunnel stream id. */
  stream: 'stream',
  /** Agent-side service name. */
  service: 'service',
  /** Request id (Fastify's). */
  reqId: 'reqId',
  /** Client address as the relay sees it (after trustProxy). */
  remote: 'remote',
  /** An Error; pino serialises it with its stack and cause. */
  err: 'err',
  /** A URL (the relay's own public URL at start-up, a request URL elsewhere). */
  url: 'url',
  /** Migration name. */
  migration: 'migration',
  /** Elapsed milliseconds. */
  ms: 'ms',
} as const;
export type LogField = (typeof LogField)[keyof typeof LogField];

/** Replaces redacted values. */
export const REDACTED = '[redacted]';

/**
 * Paths whose values never reach a log line: credentials and secrets at the top level or one
 * level down, and the auth-carrying headers of requests and responses (Fastify's `req`/`res`
 * and plain `headers` objects).
 */
export const REDACT_PATHS: readonly string[] = [
  ...['credential', 'credentialHash', 'secret', 'password', 'token', 'cookie', 'authorization', 'apiToken', 'cloudflareApiToken'].flatMap(
    (k) => [k, `*.${k}`],
  ),
  ...['req.headers', 'res.headers', 'headers', 'request.headers', 'response.headers'].flatMap((h) => [
    `${h}.authorization`,
    `${h}["proxy-authorization"]`,
    `${h}.cookie`,
    `${h}["set-cookie"]`,
    `${h}["x-porthole-credential"]`,
  ]),
];

/**
 * The relay's root logger: JSON lines to stdout (or `destination`), ISO timestamps, fixed field
 * names, secrets redacted. Make a child per connection and per request.
 */
export function createLogger(config: Pick<RelayConfig, 'logLevel'>, destination?: DestinationStream): Logger {
  return pino(
    {
      level: config.logLevel,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      errorKey: LogField.err,
      serializers: { [LogField.err]: pino.stdSerializers.err },
      redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    },
    destination ?? pino.destination(1),
  );
}
