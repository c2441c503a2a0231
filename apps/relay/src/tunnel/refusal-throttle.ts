/**
 * A token bucket per source address for the agent endpoint: every attempt takes a token before
 * any credential check (database, hashing), a successful one gives it back. An address that keeps
 * failing is answered 429 at once until it has earned a token again; other addresses, and the
 * agents that authenticate, are not affected.
 */
export interface RefusalThrottleOptions {
  /** Attempts an address may have failed (or in flight) at once. */
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
}

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
      b = { tokens: this.opts.burst, at: t };
      this.buckets.set(addr, b);
      if (this.buckets.size > this.maxAddresses) this.evict();
    } else {
      b.tokens = Math.min(this.opts.burst, b.tokens + (t - b.at) * this.ratePerMs);
      b.at = t;
    }
    return b;
  }

  /** Takes a token for an attempt: 0 when allowed, else the milliseconds until one is earned. */
  take(addr: string): number {
    const b = this.refill(addr);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / this.ratePerMs);
  }

  /** The attempt succeeded: its token comes back. */
  give(addr: string): void {
    const b = this.refill(addr);
    b.tokens = Math.min(this.opts.burst, b.tokens + 1);
    if (b.tokens >= this.opts.burst) this.buckets.delete(addr);
  }

  get size(): number {
    return this.buckets.size;
  }

  private evict(): void {
    // Full (or nearly) buckets hold nothing worth keeping; drop them, then the oldest entries.
    for (const [addr, b] of this.buckets) {
      if (this.buckets.size <= this.maxAddresses) return;
      if (b.tokens + (this.now() - b.at) * this.ratePerMs >= this.opts.burst) this.buckets.delete(addr);
    }
    for (const addr of this.buckets.keys()) {
      if (this.buckets.size <= this.maxAddresses) return;
      this.buckets.delete(addr);
    }
  }
}
