/** Time, injectable so tests decide it (same shape as @porthole/protocol's Clock). */
export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * The real clock. Unlike the protocol's systemClock its timers keep the process alive: a backoff
 * timer is often the only thing pending while the relay is unreachable.
 */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
