import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Backoff } from '../src/retry/index.js';

/** A clock that only moves when told: nothing here ever sleeps. */
function manualClock() {
  let now = 0;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

describe('Backoff', () => {
  it('doubles the ceiling from 500 ms up to the 60 s cap and stays there', () => {
    const b = new Backoff({ random: () => 0.999_999, clock: manualClock() });
    const delays = Array.from({ length: 12 }, () => b.next());
    expect(delays).toEqual([499, 999, 1999, 3999, 7999, 15999, 31999, 59999, 59999, 59999, 59999, 59999]);
    expect(b.attempt).toBe(12);
  });

  it('never exceeds the cap however many attempts fail', () => {
    const b = new Backoff({ random: () => 0.999_999 });
    for (let i = 0; i < 1_000; i++) expect(b.next()).toBeLessThan(60_000);
    expect(b.ceiling()).toBe(60_000);
  });

  it('draws each delay uniformly in [0, ceiling) (full jitter)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1, maxLength: 20 }), (rs) => {
        let i = 0;
        const b = new Backoff({ random: () => rs[i++]! });
        rs.forEach((r, attempt) => {
          const ceiling = Math.min(60_000, 500 * 2 ** attempt);
          const d = b.next();
          expect(d).toBe(Math.floor(r * ceiling));
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThan(ceiling);
        });
      }),
    );
  });

  it('gives zero with random() = 0: the jitter really goes all the way down', () => {
    const b = new Backoff({ random: () => 0 });
    for (let i = 0; i < 10; i++) expect(b.next()).toBe(0);
  });

  it('resets after a connection that stayed up for the stable period', () => {
    const clock = manualClock();
    const b = new Backoff({ random: () => 0.999_999, clock });
    b.next();
    b.next();
    b.next();
    expect(b.attempt).toBe(3);

    b.connected();
    clock.advance(59_999);
    b.disconnected(); // not stable yet: keep growing
    expect(b.attempt).toBe(3);
    expect(b.next()).toBe(3999);

    b.connected();
    clock.advance(60_000);
    b.disconnected(); // stable: start over
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(499);
  });

  it('does not reset on a disconnect without a connect', () => {
    const clock = manualClock();
    const b = new Backoff({ random: () => 0.5, clock });
    b.next();
    clock.advance(120_000);
    b.disconnected();
    expect(b.attempt).toBe(1);
  });

  it('keeps delays under the outage ceiling for a while after a stable connection drops', () => {
    const clock = manualClock();
    const b = new Backoff({ random: () => 0.999_999, clock });
    b.connected();
    clock.advance(60_000);
    b.disconnected(); // a relay restart after a long, good connection
    const delays = Array.from({ length: 8 }, () => b.next());
    expect(delays).toEqual([499, 999, 1999, 3999, 7999, 9999, 9999, 9999]);
    // The outage goes on past its period: the doubling resumes up to the full cap.
    clock.advance(120_000);
    expect(b.next()).toBe(59_999);
    // Back up (not for long): the ceiling is the grown one, not the outage one.
    b.connected();
    clock.advance(1_000);
    b.disconnected();
    expect(b.next()).toBe(59_999);
  });

  it('gives no outage ceiling to a connection that never became stable (a relay that drops everyone)', () => {
    const clock = manualClock();
    const b = new Backoff({ random: () => 0.999_999, clock });
    for (let i = 0; i < 8; i++) {
      b.connected();
      clock.advance(1_000);
      b.disconnected();
      b.next();
    }
    expect(b.next()).toBe(59_999);
  });

  it('fits the outage ceiling between base and cap, and refuses one outside', () => {
    expect(new Backoff({ baseMs: 100, capMs: 5_000 }).outageCapMs).toBe(5_000);
    expect(new Backoff({ baseMs: 30_000, capMs: 60_000 }).outageCapMs).toBe(30_000);
    expect(new Backoff().outageCapMs).toBe(10_000);
    expect(() => new Backoff({ outageCapMs: 120_000 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 1_000, outageCapMs: 500 })).toThrow(RangeError);
  });

  it('takes custom base, cap and stable period, and refuses nonsense', () => {
    const b = new Backoff({ baseMs: 100, capMs: 250, random: () => 0.999_999 });
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([99, 199, 249, 249]);
    expect(() => new Backoff({ baseMs: 0 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 1000, capMs: 10 })).toThrow(RangeError);
  });
});
