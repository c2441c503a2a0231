/**
 * A token bucket per source address for the agent endpoint, charged for failures only: every
 * refused credential costs its address a token, and an address with no token left is answered
 * 429 at once, before any credential check. Agents that authenticate cost nothing, so a print
 * farm behind one NAT address can reconnect all at once after a relay restart. A parallel flood
 * cannot outrun the bucket: at most `burst` attempts per address are checked at the same time.
 */
export interface RefusalThrottleOptions {
  /** Failures an address may have in a row (and attempts it may have in flight at once). */
  burst: number;
  /** Tokens earned back per minute. */
  perMinute: number;
  /** Addresses remembered; beyond it the fullest buckets (the least suspicious) are forgotten first. */
  maxAddresses?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
  inFlight: number;
}

/** Wait asked of an address that has `burst` attempts in flight already. */
const BUSY_WAIT_MS = 1_000;
/** Longest wait ever asked (a big parallel flood runs the bucket into debt). */
const MAX_WAIT_MS = 3_600_000;

export class RefusalThrottle {
  private readonly buckets = new Map<string, Bucket>();
  private readonly ratePerMs: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;

  constructor(private readonly opts: RefusalThrottleOptions) {
    this.ratePerMs = opts.perMinute / 60_000;
    this.maxAddresses = opts.maxAddresses ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  private refill(addr: string): Bucket {
    const t = this.now();
    let b = this.buckets.get(addr);
    if (b === undefined) {
      b = { tokens: this.opts.burst, at: t, inFlight: 0 };
      this.buckets.set(addr, b);
      if (this.buckets.size > this.maxAddresses) this.evict(addr);
    } else {
      b.tokens = Math.min(this.opts.burst, b.tokens + (t - b.at) * this.ratePerMs);
      b.at = t;
    }
    return b;
  }

  /**
   * An attempt from `addr` begins: 0 when it may be checked (then call `settle` once), else the
   * milliseconds to wait, and the attempt must be refused without any check.
   */
  begin(addr: string): number {
    const b = this.refill(addr);
    if (b.tokens < 1) return Math.min(MAX_WAIT_MS, Math.ceil((1 - b.tokens) / this.ratePerMs));
    if (b.inFlight >= this.opts.burst) return BUSY_WAIT_MS;
    b.inFlight++;
    return 0;
  }

  /** The attempt begun with `begin` is decided: a failure costs a token. */
  settle(addr: string, ok: boolean): void {
    const b = this.refill(addr);
    b.inFlight = Math.max(0, b.inFlight - 1);
    if (!ok) b.tokens -= 1;
    if (b.inFlight === 0 && b.tokens >= this.opts.burst) this.buckets.delete(addr);
  }

  get size(): number {
    return this.buckets.size;
  }

  private evict(keep: string): void {
    // Full buckets hold nothing worth keeping; drop them, then the oldest entries.
    const t = this.now();
    for (const [addr, b] of this.buckets) {
      if (this.buckets.size <= this.maxAddresses) return;
      if (addr !== keep && b.inFlight === 0 && b.tokens + (t - b.at) * this.ratePerMs >= this.opts.burst) this.buckets.delete(addr);
    }
    for (const addr of this.buckets.keys()) {
      if (this.buckets.size <= this.maxAddresses) return;
      if (addr !== keep) this.buckets.delete(addr);
    }
  }
}
