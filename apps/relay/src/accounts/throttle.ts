import { isIP } from 'node:net';

/** What a throttle counts failures of: an account name, an address prefix, a device credential id… */
export type ThrottleKey = string;

export type ThrottleDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      /** Milliseconds until the next attempt may be made (for Retry-After, round up to seconds). */
      readonly retryAfterMs: number;
      /** delay: too many recent failures, wait a little; locked: too many, wait out the lockout. */
      readonly reason: 'delay' | 'locked';
    };

export interface ThrottleOptions {
  /** Milliseconds since the epoch. */
  clock?: () => number;
  /** Failures older than this no longer count. Default 15 min. */
  windowMs?: number;
  /** Failures in the window that cost nothing; each one after that adds a delay. Default 5. */
  freeFailures?: number;
  /** Delay after the first failure past the free ones; doubles with each further one. Default 1 s. */
  baseDelayMs?: number;
  /** Ceiling of that delay. Default 1 min. */
  maxDelayMs?: number;
  /** Failures in the window that lock the key. Default 10. */
  lockoutFailures?: number;
  /** First lockout; each further lockout of the same key (before it goes quiet) doubles it. Default 15 min. */
  lockoutMs?: number;
  /** Ceiling of the lockout. Default 24 h. */
  maxLockoutMs?: number;
  /** At most this many keys are tracked; past that the least recently failed unlocked ones go first. Default 100,000. */
  maxEntries?: number;
}

export const THROTTLE_DEFAULTS: Readonly<Required<Omit<ThrottleOptions, 'clock'>>> = Object.freeze({
  windowMs: 15 * 60_000,
  freeFailures: 5,
  baseDelayMs: 1_000,
  maxDelayMs: 60_000,
  lockoutFailures: 10,
  lockoutMs: 15 * 60_000,
  maxLockoutMs: 24 * 60 * 60_000,
  maxEntries: 100_000,
});

interface Entry {
  /** Times of the failures in the window, oldest first; never more than lockoutFailures. */
  failures: number[];
  /** 0 when not locked. */
  lockedUntil: number;
  /** Lockouts since the key was last quiet for a whole window. */
  lockouts: number;
}

/** Entries past their usefulness are swept at most this often (there are no timers). */
const SWEEP_EVERY_MS = 60_000;
/** When full, how far from the least recently failed end to look for an unlocked entry to evict. */
const EVICTION_SCAN = 64;

/**
 * Failure counting for one kind of key, in a sliding window: the first `freeFailures` cost nothing,
 * then each attempt waits `baseDelayMs`, doubling per failure, and `lockoutFailures` lock the key
 * for `lockoutMs` (doubling per repeated lockout). Ask `check()` BEFORE verifying anything: while it
 * says no, the attempt must be refused without looking at the secret, right or wrong.
 *
 * Memory is bounded: keys live in a Map in least-recently-failed order; a key with nothing left to
 * remember is dropped, and past `maxEntries` the oldest unlocked keys are evicted. `check()` never
 * adds a key.
 */
export class Throttle {
  readonly #clock: () => number;
  readonly #o: Readonly<Required<Omit<ThrottleOptions, 'clock'>>>;
  readonly #entries = new Map<ThrottleKey, Entry>();
  #lastSweep: number;

  constructor(opts: ThrottleOptions = {}) {
    const { clock, ...rest } = opts;
    const o = { ...THROTTLE_DEFAULTS, ...stripUndefined(rest) };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`Throttle option ${k} must be a non-negative number`);
    }
    if (o.lockoutFailures < 1 || o.lockoutFailures <= o.freeFailures) {
      throw new RangeError('Throttle option lockoutFailures must be at least 1 and above freeFailures');
    }
    if (o.maxEntries < 1) throw new RangeError('Throttle option maxEntries must be at least 1');
    this.#o = Object.freeze(o);
    // Someone who waits out every delay must still reach the lockout before their first
    // failures leave the window, or they could guess forever at one per maxDelayMs.
    let paced = 0;
    for (let n = o.freeFailures; n < o.lockoutFailures; n++) paced += this.#delay(n);
    if (paced >= o.windowMs) {
      throw new RangeError(
        `Throttle: waiting out every delay takes ${paced} ms, not under windowMs (${o.windowMs}): the lockout would never come`,
      );
    }
    this.#clock = clock ?? Date.now;
    this.#lastSweep = this.#clock();
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether an attempt for `key` may go ahead now. */
  check(key: ThrottleKey): ThrottleDecision {
    const now = this.#clock();
    const e = this.#live(key, now);
    if (!e) return ALLOWED;
    if (e.lockedUntil > now) return { allowed: false, retryAfterMs: e.lockedUntil - now, reason: 'locked' };
    const n = e.failures.length;
    if (n < this.#o.freeFailures) return ALLOWED;
    const last = e.failures[n - 1] ?? now;
    const wait = last + this.#delay(n) - now;
    return wait > 0 ? { allowed: false, retryAfterMs: wait, reason: 'delay' } : ALLOWED;
  }

  /**
   * Records a failed attempt. `locked` is true when this very failure locked the key (once per
   * lockout: audit it). A failure reported while the key is already locked (two attempts raced
   * past `check()`) is not counted and does not extend the lockout.
   */
  fail(key: ThrottleKey): { readonly locked: boolean } {
    const now = this.#clock();
    this.#maybeSweep(now);
    let e = this.#live(key, now);
    if (e && e.lockedUntil > now) return { locked: false };
    if (e) {
      this.#entries.delete(key); // re-inserted below: most recently failed last
    } else {
      this.#makeRoom();
      e = { failures: [], lockedUntil: 0, lockouts: 0 };
    }
    this.#entries.set(key, e);
    e.failures.push(now);
    if (e.failures.length < this.#o.lockoutFailures) return { locked: false };
    e.failures = [];
    e.lockouts += 1;
    const lockMs = Math.min(this.#o.lockoutMs * 2 ** Math.min(e.lockouts - 1, 30), this.#o.maxLockoutMs);
    e.lockedUntil = now + lockMs;
    return { locked: true };
  }

  /** Forgets `key`: its failures, delays, lockout and lockout history. */
  succeed(key: ThrottleKey): void {
    this.#entries.delete(key);
  }

  /** Drops every key that has nothing left to remember. Runs by itself once a minute; exposed for tests. */
  sweep(): void {
    const now = this.#clock();
    this.#lastSweep = now;
    for (const [key, e] of this.#entries) if (this.#expired(e, now)) this.#entries.delete(key);
  }

  /** The wait after `failures` failures, once past the free ones. */
  #delay(failures: number): number {
    const exp = Math.max(0, Math.min(failures - this.#o.freeFailures, 40));
    return Math.min(this.#o.baseDelayMs * 2 ** exp, this.#o.maxDelayMs);
  }

  /** The entry for `key` with old failures pruned, or undefined (and dropped) if it has nothing left. */
  #live(key: ThrottleKey, now: number): Entry | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (this.#expired(e, now)) {
      this.#entries.delete(key);
      return undefined;
    }
    const from = now - this.#o.windowMs;
    let i = 0;
    while (i < e.failures.length && (e.failures[i] ?? 0) <= from) i++;
    if (i > 0) e.failures.splice(0, i);
    return e;
  }

  /** Nothing to remember: not locked, no failure in the window, and quiet for a window since the lockout ended. */
  #expired(e: Entry, now: number): boolean {
    const lastFailure = e.failures[e.failures.length - 1] ?? 0;
    return e.lockedUntil + this.#o.windowMs <= now && lastFailure + this.#o.windowMs <= now;
  }

  #maybeSweep(now: number): void {
    if (now - this.#lastSweep >= SWEEP_EVERY_MS || now < this.#lastSweep) this.sweep();
  }

  /** Makes room for one more key. */
  #makeRoom(): void {
    if (this.#entries.size < this.#o.maxEntries) return;
    const now = this.#clock();
    // A full sweep is O(keys): under a flood, at most one a second.
    if (now - this.#lastSweep >= 1_000 || now < this.#lastSweep) {
      this.sweep();
      if (this.#entries.size < this.#o.maxEntries) return;
    }
    // Evict the least recently failed key that is not locked, looking only at the oldest few so a
    // flood costs O(1) per key. If they are all locked, the oldest lockout goes.
    let victim: ThrottleKey | undefined;
    let scanned = 0;
    for (const [key, e] of this.#entries) {
      victim ??= key;
      if (e.lockedUntil <= now) {
        victim = key;
        break;
      }
      if (++scanned >= EVICTION_SCAN) break;
    }
    if (victim !== undefined) this.#entries.delete(victim);
  }
}

const ALLOWED = Object.freeze({ allowed: true } as const);

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// ---- addresses ---------------------------------------------------------------------------

/**
 * The throttling key of a client address: an IPv4 address as is (also when IPv4-mapped), an IPv6
 * address by its /64, which is what one subscriber gets. Anything unparsable is kept verbatim.
 */
export function addressKey(ip: string): ThrottleKey {
  const addr = ip.trim().toLowerCase().replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const v = isIP(addr);
  if (v === 4) return addr;
  if (v !== 6) return `?${ip}`;
  const groups = expandIPv6(addr);
  if (!groups) return `?${ip}`;
  // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (as checked by isIP), or null. */
function expandIPv6(addr: string): number[] | null {
  let s = addr;
  // A trailing dotted quad stands for the last two groups.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  const groups = all.map((g) => parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

// ---- sign-in -----------------------------------------------------------------------------

export interface LoginKeys {
  /** The username as typed; known or not, it is throttled the same. */
  readonly account: string;
  /** The client address (IPv6 is grouped by /64). */
  readonly ip: string;
}

export type LoginDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      readonly retryAfterMs: number;
      readonly reason: 'delay' | 'locked';
      /** Which counter said no (the account's if both did and it waits longer). */
      readonly scope: 'account' | 'ip';
    };

export interface LoginThrottleOptions {
  clock?: () => number;
  /** Per account. Defaults: 5 free failures, then 1 s, 2 s, 4 s… (≤ 1 min), lockout after 10 for 15 min. */
  account?: Omit<ThrottleOptions, 'clock'>;
  /**
   * Per address. One address can be a whole household or a carrier NAT, so the defaults are looser:
   * 10 free failures, lockout after 30 in an hour.
   */
  ip?: Omit<ThrottleOptions, 'clock'>;
}

export const LOGIN_IP_DEFAULTS: Readonly<Omit<ThrottleOptions, 'clock'>> = Object.freeze({
  freeFailures: 10,
  lockoutFailures: 30,
  // 20 paced failures at up to a minute apart must fit in the window.
  windowMs: 60 * 60_000,
});

/**
 * Sign-in throttling per account (lowercased username) and per client address. Call `check()`
 * before verifying the password, `fail()` after a wrong password or second factor, `succeed()`
 * after a full sign-in: it clears the account's counter; the address's failures just age out of
 * the window (so signing in to one's own account does not buy more guesses at others').
 */
export class LoginThrottle {
  readonly account: Throttle;
  readonly ip: Throttle;

  constructor(opts: LoginThrottleOptions = {}) {
    this.account = new Throttle({ ...opts.account, clock: opts.clock });
    this.ip = new Throttle({ ...LOGIN_IP_DEFAULTS, ...opts.ip, clock: opts.clock });
  }

  check(keys: LoginKeys): LoginDecision {
    const a = this.account.check(accountKey(keys.account));
    const i = this.ip.check(addressKey(keys.ip));
    if (!a.allowed && (i.allowed || a.retryAfterMs >= i.retryAfterMs)) return { ...a, scope: 'account' };
    if (!i.allowed) return { ...i, scope: 'ip' };
    return ALLOWED;
  }

  fail(keys: LoginKeys): { readonly locked: boolean; readonly accountLocked: boolean; readonly ipLocked: boolean } {
    const accountLocked = this.account.fail(accountKey(keys.account)).locked;
    const ipLocked = this.ip.fail(addressKey(keys.ip)).locked;
    return { locked: accountLocked || ipLocked, accountLocked, ipLocked };
  }

  succeed(keys: LoginKeys): void {
    this.account.succeed(accountKey(keys.account));
  }
}

/** The throttling key of a username as typed. */
export function accountKey(username: string): ThrottleKey {
  return username.trim().normalize('NFKC').toLowerCase();
}
