import { realClock, type Clock } from '../clock.js';

export interface BackoffOptions {
  /** Ceiling of the first delay. */
  baseMs?: number;
  /** No delay is ever longer than this. */
  capMs?: number;
  /** A connection that lasted this long resets the attempt count. */
  stableMs?: number;
  /**
   * After a stable connection drops (a relay restart, a router reboot), delays stay under this
   * ceiling for `outagePeriodMs`: short outages end in seconds, not in the minute-long waits the
   * doubling reaches after a handful of failures. Full jitter still spreads the fleet.
   */
  outageCapMs?: number;
  /** How long after that drop the lower ceiling holds; then the delays grow to `capMs`. */
  outagePeriodMs?: number;
  /** Uniform in [0, 1). */
  random?: () => number;
  clock?: Pick<Clock, 'now'>;
}

export const BACKOFF_DEFAULTS = Object.freeze({
  baseMs: 500,
  capMs: 60_000,
  stableMs: 60_000,
  outageCapMs: 10_000,
  outagePeriodMs: 120_000,
});

/** Past this the ceiling is the cap anyway; stops 2^attempt from growing without bound. */
const MAX_EXPONENT = 30;

/**
 * Exponential backoff with full jitter: delay = random(0, min(cap, base·2^attempt)).
 * Full jitter spreads a fleet of agents reconnecting after a relay restart over the whole
 * window instead of having them all knock at the same instants. A connection that stayed up for
 * `stableMs` resets the count (cloudflared's grace period), and for `outagePeriodMs` after it drops
 * the ceiling is `outageCapMs`: a relay restart of a few seconds brings every printer back within
 * about that long (1,000 agents at a 60 s cap took up to a minute, bench/README.md "Scale"), while
 * a relay that stays down, or one that drops every connection at once, still gets the slow pace.
 */
export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly stableMs: number;
  readonly outageCapMs: number;
  readonly outagePeriodMs: number;
  private readonly random: () => number;
  private readonly clock: Pick<Clock, 'now'>;
  private _attempt = 0;
  private connectedAt: number | undefined;
  /** When a stable connection last dropped, while its outage period lasts. */
  private outageSince: number | undefined;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? BACKOFF_DEFAULTS.baseMs;
    this.capMs = opts.capMs ?? BACKOFF_DEFAULTS.capMs;
    this.stableMs = opts.stableMs ?? BACKOFF_DEFAULTS.stableMs;
    this.outageCapMs =
      opts.outageCapMs ?? Math.max(this.baseMs, Math.min(BACKOFF_DEFAULTS.outageCapMs, this.capMs));
    this.outagePeriodMs = opts.outagePeriodMs ?? BACKOFF_DEFAULTS.outagePeriodMs;
    this.random = opts.random ?? Math.random;
    this.clock = opts.clock ?? realClock;
    if (!(this.baseMs > 0) || !(this.capMs >= this.baseMs) || !(this.stableMs >= 0)) {
      throw new RangeError('backoff needs baseMs > 0, capMs >= baseMs, stableMs >= 0');
    }
    if (!(this.outageCapMs >= this.baseMs && this.outageCapMs <= this.capMs) || !(this.outagePeriodMs >= 0)) {
      throw new RangeError('backoff needs baseMs <= outageCapMs <= capMs, outagePeriodMs >= 0');
    }
  }

  /** Failed attempts since the last stable connection. */
  get attempt(): number {
    return this._attempt;
  }

  /** Upper bound of the delay for an attempt number (now: the outage ceiling may apply). */
  ceiling(attempt = this._attempt): number {
    const inOutage = this.outageSince !== undefined && this.clock.now() - this.outageSince < this.outagePeriodMs;
    return Math.min(inOutage ? this.outageCapMs : this.capMs, this.baseMs * 2 ** Math.min(attempt, MAX_EXPONENT));
  }

  /** The delay before the next attempt; counts the attempt. */
  next(): number {
    const delay = Math.floor(this.random() * this.ceiling());
    this._attempt = Math.min(this._attempt + 1, MAX_EXPONENT);
    return delay;
  }

  reset(): void {
    this._attempt = 0;
  }

  /** A connection is up: remember since when. */
  connected(): void {
    this.connectedAt = this.clock.now();
    this.outageSince = undefined;
  }

  /** The connection went down: if it had been stable, start over from the base delay. */
  disconnected(): void {
    const now = this.clock.now();
    if (this.connectedAt !== undefined && now - this.connectedAt >= this.stableMs) {
      this.reset();
      this.outageSince = now;
    }
    this.connectedAt = undefined;
  }
}
