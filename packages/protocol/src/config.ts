import { ConfigError } from './errors.js';

export interface SessionConfig {
  /** Initial per-stream window; yamux fixes this at 256 KiB, both sides assume it. */
  initialStreamWindow: number;
  /** Ceiling a stream's receive window may grow to when the reader keeps up over a long RTT. */
  maxStreamWindow: number;
  /** Bytes granted beyond the initial windows, summed over all streams of a session. */
  maxSessionReceiveWindow: number;
  /** Largest Data frame accepted; frames we send are at most `maxSendFrameSize`. */
  maxFrameSize: number;
  maxSendFrameSize: number;
  /** Concurrent streams; an inbound SYN beyond this is answered with RST. */
  maxConcurrentStreams: number;
  /** How often to ping; 0 disables keep-alive. */
  keepAliveInterval: number;
  /** A peer that sends nothing at all for this long is dead and the session ends. */
  keepAliveTimeout: number;
  /** Transport bytes queued above which streams stop sending until it drains. */
  transportHighWaterMark: number;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;

export const DEFAULT_CONFIG: Readonly<SessionConfig> = Object.freeze({
  initialStreamWindow: 256 * KiB,
  maxStreamWindow: 16 * MiB,
  maxSessionReceiveWindow: 64 * MiB,
  maxFrameSize: 16 * MiB,
  maxSendFrameSize: 64 * KiB,
  maxConcurrentStreams: 512,
  keepAliveInterval: 15_000,
  keepAliveTimeout: 45_000,
  transportHighWaterMark: 1 * MiB,
});

const INITIAL_WINDOW = 256 * KiB;

/** Merges with the defaults, rejects values that would break the protocol, freezes. */
export function verifyConfig(partial: Partial<SessionConfig> = {}): Readonly<SessionConfig> {
  const c: SessionConfig = { ...DEFAULT_CONFIG, ...partial };
  const positiveInt = (k: keyof SessionConfig, min = 1) => {
    const v = c[k];
    if (!Number.isInteger(v) || v < min) throw new ConfigError(`${k} must be an integer >= ${min}, got ${String(v)}`);
  };
  if (c.initialStreamWindow !== INITIAL_WINDOW) {
    throw new ConfigError(`initialStreamWindow must be ${INITIAL_WINDOW} (fixed by the yamux spec)`);
  }
  positiveInt('maxStreamWindow', INITIAL_WINDOW);
  if (c.maxStreamWindow > 0xffff_ffff) throw new ConfigError('maxStreamWindow must fit in 32 bits');
  positiveInt('maxSessionReceiveWindow', 0);
  positiveInt('maxFrameSize', 1024);
  positiveInt('maxSendFrameSize', 1024);
  if (c.maxSendFrameSize > c.maxFrameSize) throw new ConfigError('maxSendFrameSize must be <= maxFrameSize');
  positiveInt('maxConcurrentStreams', 1);
  positiveInt('keepAliveInterval', 0);
  positiveInt('keepAliveTimeout', 1);
  if (c.keepAliveInterval > 0 && c.keepAliveTimeout <= c.keepAliveInterval) {
    throw new ConfigError('keepAliveTimeout must be longer than keepAliveInterval');
  }
  positiveInt('transportHighWaterMark', 1024);
  return Object.freeze(c);
}
