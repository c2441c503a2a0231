/**
 * Events per second over a sliding window (default 5 s): a ring of event times, fixed size, no
 * allocation per event. Used for upstream and delivered frame rates.
 */
export class RateMeter {
  private readonly times: Float64Array;
  private next = 0;
  private count = 0;
  private readonly since: number;

  constructor(
    private readonly now: () => number = () => performance.now(),
    private readonly windowMs = 5_000,
    capacity = 1024,
  ) {
    this.times = new Float64Array(capacity);
    this.since = now();
  }

  mark(): void {
    this.times[this.next] = this.now();
    this.next = (this.next + 1) % this.times.length;
    if (this.count < this.times.length) this.count++;
  }

  /** Events per second in the window (or since creation, when younger than the window). */
  rate(): number {
    const now = this.now();
    const from = now - this.windowMs;
    let n = 0;
    for (let i = 1; i <= this.count; i++) {
      const t = this.times[(this.next - i + this.times.length) % this.times.length]!;
      if (t <= from) break;
      n++;
    }
    const span = Math.min(this.windowMs, now - this.since);
    return span <= 0 ? 0 : (n * 1000) / span;
  }
}
