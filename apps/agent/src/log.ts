import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './config/index.js';

export type { Logger };

/** Every field name the agent logs, in one place: dashboards and greps depend on them. */
export const LogField = Object.freeze({
  version: 'version',
  /** The Node.js running the agent (process.version). */
  node: 'node',
  relay: 'relay',
  /** Round-trip time to the relay, ms. */
  rtt: 'rtt',
  reason: 'reason',
  /** TunnelErrorCode of a failure. */
  code: 'code',
  /** HTTP status of a refused upgrade. */
  status: 'status',
  /** WebSocket close code. */
  closeCode: 'closeCode',
  delayMs: 'delayMs',
  attempt: 'attempt',
  /** Sequence number of a tunnel connection since start. */
  conn: 'conn',
  service: 'service',
  services: 'services',
  streamId: 'streamId',
  streams: 'streams',
  signal: 'signal',
  exitCode: 'exitCode',
  err: 'err',
  config: 'config',
} as const);

/** Paths that could ever carry the device credential. */
export const REDACT_PATHS = [
  'credential',
  '*.credential',
  'authorization',
  'Authorization',
  'headers.authorization',
  'headers.Authorization',
  '*.headers.authorization',
  '*.headers.Authorization',
];

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; stdout (synchronously) when omitted. */
  destination?: DestinationStream;
}

/** JSON lines with level labels; no hostname/pid (journald has them); the credential redacted. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: undefined,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ fd: 1, sync: true }),
  );
}
