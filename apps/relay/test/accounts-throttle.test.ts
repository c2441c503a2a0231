import { describe, expect, it } from 'vitest';
import {
  accountKey,
  addressKey,
  LoginThrottle,
  Throttle,
  THROTTLE_DEFAULTS,
  type LoginKeys,
} from '../src/accounts/throttle.js';

const MIN = 60_000;

function fakeClock(start = Date.UTC(2025, 0, 1)) {
  let now = start;
  return {
    clock: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('Throttle', () => {
  it('lets the first failures through, then makes each attempt wait 1 s, 2 s, 4 s…', () => {
    const { clock, advance } = fakeClock();
    const t = new Throttle({ clock });
    for (let i = 0; i < 5; i++) {
      expect(t.check('k')).toEqual({ allowed: true });
      expect(t.fail('k')).toEqual({ locked: false });
    }
    for (const wait of [1_000, 2_000, 4_000, 8_000, 16_000]) {
      expect(t.check('k')).toEqual({ allowed: false, retryAfterMs: wait, reason: 'delay' });
      advance(wait - 1);
      expect(t.check('k')).toEqual({ allowed: false, retryAfterMs: 1, reason: 'delay' });
      advance(1);
      expect(t.check('k')).toEqual({ allowed: true });
      if (wait < 16_000) expect(t.fail('k')).toEqual({ locked: false });
    }
  });

  it('caps the delay', () => {
    const { clock } = fakeClock();
    const t = new Throttle({ clock, freeFailures: 0, baseDelayMs: 1_000, maxDelayMs: 5_000, lockoutFailures: 30 });
    for (let i = 0; i < 20; i++) t.fail('k');
    expect(t.check('k')).toEqual({ allowed: false, retryAfterMs: 5_000, reason: 'delay' });
  });

  it('locks the key after the lockout threshold, for the lockout period', () => {
    const { clock, advance } = fakeClock();
    const t = new Throttle({ clock });
    for (let i = 1; i <= 10; i++) {
      advance(60_000); // waits out every delay
      expect(t.check('k').allowed).toBe(true);
      expect(t.fail('k').locked).toBe(i === 10);
    }
    expect(t.check('k')).toEqual({ allowed: false, retryAfterMs: 15 * MIN, reason: 'locked' });
    advance(15 * MIN - 1);
    expect(t.check('k')).toMatchObject({ allowed: false, reason: 'locked', retryAfterMs: 1 });
    advance(1);
    expect(t.check('k')).toEqual({ allowed: true });
  });

  it('doubles the lockout when the key goes on failing, and forgets once it is quiet', () => {
    const { clock, advance } = fakeClock();
    const t = new Throttle({ clock, freeFailures: 0, baseDelayMs: 0, lockoutFailures: 3, lockoutMs: 10 * MIN });
    const lockOut = () => {
      for (let i = 0; i < 3; i++) t.fail('k');
      const d = t.check('k');
      expect(d.allowed).toBe(false);
      return d.allowed ? 0 : d.retryAfterMs;
    };
    expect(lockOut()).toBe(10 * MIN);
    advance(10 * MIN);
    expect(lockOut()).toBe(20 * MIN);
    advance(20 * MIN);
    expect(lockOut()).toBe(40 * MIN);
    // Quiet for a whole window after the lockout: back to the first lockout.
    advance(40 * MIN + THROTTLE_DEFAULTS.windowMs);
    expect(lockOut()).toBe(10 * MIN);
  });

  it('does not count or extend while locked', () => {
    const { clock, advance } = fakeClock();
    const t = new Throttle({ clock, freeFailures: 0, baseDelayMs: 0, lockoutFailures: 2, lockoutMs: MIN });
    t.fail('k');
    expect(t.fail('k')).toEqual({ locked: true });
    advance(30_000);
    expect(t.fail('k')).toEqual({ locked: false });
    expect(t.check('k')).toEqual({ allowed: false, retryAfterMs: 30_000, reason: 'locked' });
  });

  it('counts failures in a sliding window', () => {
    const { clock, advance } = fakeClock();
    const t = new Throttle({ clock, windowMs: 10 * MIN });
    for (let i = 0; i < 4; i++) {
      t.fail('k');
      advance(3 * MIN);
    }
    // Failures at 0, 3, 6 and 9 min; at 12 min the first has left the window: 3 count, the 4th is free.
    t.fail('k');
    expect(t.check('k')).toEqual({ allowed: true });
    t.fail('k');
    expect(t.check('k')).toEqual({ allowed: false, reason: 'delay', retryAfterMs: 1_000 });
  });

  it('forgets a key on success', () => {
    const { clock } = fakeClock();
    const t = new Throttle({ clock });
    for (let i = 0; i < 9; i++) t.fail('k');
    expect(t.check('k').allowed).toBe(false);
    t.succeed('k');
    expect(t.check('k')).toEqual({ allowed: true });
    expect(t.size).toBe(0);
  });

  it('keeps keys apart', () => {
    const { clock } = fakeClock();
    const t = new Throttle({ clock });
    for (let i = 0; i < 10; i++) t.fail('a');
    expect(t.check('a')).toMatchObject({ allowed: false, reason: 'locked' });
    expect(t.check('b')).toEqual({ allowed: true });
  });

  it('bounds its memory under a flood of keys', () => {
    const { clock, advance } = fakeClock();
    const t = new Throttle({ clock, maxEntries: 100 });
    for (let i = 0; i < 10_000; i++) {
      t.fail(`flood-${i}`);
      advance(1);
    }
    expect(t.size).toBe(100);
    // The most recent keys are the ones kept.
    for (let i = 0; i < 5; i++) t.fail('flood-9999');
    expect(t.check('flood-9999')).toMatchObject({ allowed: false, reason: 'delay' });
    // All locked: the oldest lockouts go.
    const locking = new Throttle({ clock, maxEntries: 100, freeFailures: 0, lockoutFailures: 1 });
    for (let i = 0; i < 1_000; i++) locking.fail(`k-${i}`);
    expect(locking.size).toBe(100);
  });

  it('evicts unlocked keys before a locked one', () => {
    const { clock } = fakeClock();
    const t = new Throttle({ clock, maxEntries: 10 });
    for (let i = 0; i < 10; i++) t.fail('locked');
    expect(t.check('locked')).toMatchObject({ allowed: false, reason: 'locked' });
    // A flood of new keys to push the (oldest) locked one out.
    for (let i = 0; i < 1_000; i++) t.fail(`spray-${i}`);
    expect(t.size).toBe(10);
    expect(t.check('locked')).toMatchObject({ allowed: false, reason: 'locked' });
  });

  it('drops keys with nothing left to remember, and check() adds none', () => {
    const { clock, advance } = fakeClock();
    const t = new Throttle({ clock });
    for (let i = 0; i < 1_000; i++) t.check(`probe-${i}`);
    expect(t.size).toBe(0);
    for (let i = 0; i < 50; i++) t.fail(`k-${i}`);
    expect(t.size).toBe(50);
    advance(THROTTLE_DEFAULTS.windowMs);
    t.fail('fresh'); // the periodic sweep runs on a failure
    expect(t.size).toBe(1);
    advance(THROTTLE_DEFAULTS.windowMs);
    t.sweep();
    expect(t.size).toBe(0);
  });

  it('rejects nonsense options', () => {
    expect(() => new Throttle({ lockoutFailures: 0 })).toThrow(RangeError);
    expect(() => new Throttle({ freeFailures: 10, lockoutFailures: 10 })).toThrow(RangeError);
    expect(() => new Throttle({ windowMs: -1 })).toThrow(RangeError);
    expect(() => new Throttle({ maxEntries: Number.NaN })).toThrow(RangeError);
    expect(() => new Throttle({ maxEntries: 0 })).toThrow(RangeError);
    // Paced at the capped delay, 95 failures take longer than the window: never locked.
    expect(() => new Throttle({ lockoutFailures: 100 })).toThrow(/never come/);
  });
});

describe('addressKey', () => {
  it.each([
    ['192.0.2.7', '192.0.2.7'],
    [' 192.0.2.7 ', '192.0.2.7'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['::ffff:c000:207', '192.0.2.7'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:DB8:0:0:ffff:ffff:ffff:ffff', '2001:db8:0:0::/64'],
    ['2001:db8:0:1::1', '2001:db8:0:1::/64'],
    ['[2001:db8::1]', '2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['64:ff9b::192.0.2.7', '64:ff9b:0:0::/64'],
    ['not an address', '?not an address'],
  ])('%s → %s', (ip, key) => {
    expect(addressKey(ip)).toBe(key);
  });
});

describe('LoginThrottle', () => {
  const PASSWORD = 'the right one';

  /** What the sign-in route does: ask first, verify only if allowed, then report. */
  function signIn(t: LoginThrottle, keys: LoginKeys, password: string): 'in' | 'wrong' | 'throttled' {
    if (!t.check(keys).allowed) return 'throttled';
    if (password !== PASSWORD) {
      t.fail(keys);
      return 'wrong';
    }
    t.succeed(keys);
    return 'in';
  }

  it('refuses even the right password during a lockout', () => {
    const { clock, advance } = fakeClock();
    const t = new LoginThrottle({ clock });
    const keys = { account: 'Alice', ip: '192.0.2.7' };
    for (let i = 0; i < 10; i++) {
      advance(MIN);
      expect(signIn(t, keys, `guess ${i}`)).toBe('wrong');
    }
    expect(t.check(keys)).toMatchObject({ allowed: false, reason: 'locked', scope: 'account' });
    advance(MIN);
    expect(signIn(t, keys, PASSWORD)).toBe('throttled');
    // From another address too: the account itself is locked.
    expect(signIn(t, { account: 'alice', ip: '198.51.100.1' }, PASSWORD)).toBe('throttled');
    advance(15 * MIN);
    expect(signIn(t, keys, PASSWORD)).toBe('in');
    expect(t.check(keys)).toEqual({ allowed: true });
  });

  it('reports the failure that locks', () => {
    const { clock, advance } = fakeClock();
    const t = new LoginThrottle({ clock });
    const keys = { account: 'bob', ip: '192.0.2.7' };
    const results = Array.from({ length: 10 }, () => {
      advance(MIN);
      return t.fail(keys);
    });
    expect(results.slice(0, 9).every((r) => !r.locked)).toBe(true);
    expect(results[9]).toEqual({ locked: true, accountLocked: true, ipLocked: false });
  });

  it('resets the account on success but lets the address counter decay by itself', () => {
    const { clock, advance } = fakeClock();
    const t = new LoginThrottle({ clock });
    const keys = { account: 'alice', ip: '192.0.2.7' };
    for (let i = 0; i < 7; i++) t.fail(keys);
    expect(t.check(keys)).toMatchObject({ allowed: false, scope: 'account' });
    advance(MIN);
    expect(signIn(t, keys, PASSWORD)).toBe('in');
    expect(t.account.size).toBe(0);
    expect(t.ip.size).toBe(1);
    // The address keeps its 7 failures: 3 more (free up to 10) and it starts waiting.
    for (let i = 0; i < 3; i++) t.fail({ account: `user${i}`, ip: '192.0.2.7' });
    expect(t.check({ account: 'carol', ip: '192.0.2.7' })).toMatchObject({ allowed: false, scope: 'ip', reason: 'delay' });
    advance(THROTTLE_DEFAULTS.windowMs);
    expect(t.check({ account: 'carol', ip: '192.0.2.7' })).toEqual({ allowed: true });
  });

  it('throttles an address spraying many accounts, and nobody else', () => {
    const { clock, advance } = fakeClock();
    const t = new LoginThrottle({ clock });
    const ip = '203.0.113.9';
    let lockedAt = -1;
    for (let i = 0; i < 30; i++) {
      advance(MIN); // waits out every delay
      const keys = { account: `victim${i}`, ip };
      expect(t.check(keys).allowed).toBe(true);
      if (t.fail(keys).ipLocked) lockedAt = i;
    }
    expect(lockedAt).toBe(29);
    expect(t.check({ account: 'victim100', ip })).toMatchObject({ allowed: false, reason: 'locked', scope: 'ip' });
    // Each account saw one failure: from elsewhere they are fine.
    expect(t.check({ account: 'victim0', ip: '198.51.100.1' })).toEqual({ allowed: true });
  });

  it('groups IPv6 clients by /64', () => {
    const { clock } = fakeClock();
    const t = new LoginThrottle({ clock, ip: { freeFailures: 2, lockoutFailures: 4 } });
    for (let i = 1; i <= 4; i++) t.fail({ account: `u${i}`, ip: `2001:db8:aa:bb::${i.toString(16)}` });
    expect(t.check({ account: 'new', ip: '2001:db8:aa:bb:1234:5678:9abc:def0' })).toMatchObject({
      allowed: false,
      reason: 'locked',
      scope: 'ip',
    });
    expect(t.check({ account: 'new', ip: '2001:db8:aa:bc::1' })).toEqual({ allowed: true });
  });

  it('treats usernames case-insensitively', () => {
    const { clock } = fakeClock();
    const t = new LoginThrottle({ clock });
    for (let i = 0; i < 10; i++) t.fail({ account: i % 2 ? 'ALICE' : ' alice ', ip: `192.0.2.${i}` });
    expect(t.check({ account: 'Alice', ip: '198.51.100.1' })).toMatchObject({ allowed: false, reason: 'locked' });
    expect(accountKey(' ALICE ')).toBe('alice');
  });

  it('answers with the longer wait when both counters say no', () => {
    const { clock } = fakeClock();
    const t = new LoginThrottle({ clock, ip: { freeFailures: 0, lockoutFailures: 1 } });
    for (let i = 0; i < 6; i++) t.fail({ account: 'alice', ip: '192.0.2.7' });
    expect(t.check({ account: 'alice', ip: '192.0.2.7' })).toMatchObject({ allowed: false, reason: 'locked', scope: 'ip' });
    expect(t.check({ account: 'alice', ip: '192.0.2.8' })).toMatchObject({ allowed: false, reason: 'delay', scope: 'account' });
  });
});
