import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import type { PrismaClient } from '../db/index.js';
import { NAME_MAX, type Device, type DeviceStore } from '../devices.js';
import { RelayError } from '../errors.js';
import { LogField, type Logger } from '../log.js';
import { generateCode, normalizeCode } from './code.js';

export { CODE_ALPHABET, generateCode, normalizeCode } from './code.js';

/**
 * Device pairing: an agent asks for a short code (start), the owner approves that code in the
 * dashboard or with `porthole-relay pair approve`, and the agent's long poll receives the new
 * device's credential exactly once.
 *
 * Everything here is in memory: a credential waiting for its agent never touches the database
 * (which keeps only its hash, through DeviceStore). A relay restart forgets every pairing; the
 * agent's next poll gets "unknown" and it starts over with a new code.
 *
 * The agent-facing side is open to the internet, so everything is bounded: pairings in total
 * and per client address, how long each lives, one waiting poll per pairing.
 */

/** Wall-clock time (expiry is shown to people as a date), injectable for tests. */
export interface PairingClock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Date.now and timers that never keep the process alive. */
export const realPairingClock: PairingClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface PairingLimits {
  /** How long a code can be approved. */
  ttlMs: number;
  /** Longest a poll waits for news before answering "pending". */
  pollWaitMs: number;
  /** Pairings in progress (pending, being approved, approved but not collected), all clients. */
  maxPending: number;
  /** Pairings in progress per client address (IPv6: per /64). */
  maxPendingPerRemote: number;
  /** How long an expired or denied pairing still answers polls with "expired"/"denied". */
  tombstoneMs: number;
  /** How long an approved credential waits for its agent, at least, before the device is removed. */
  collectGraceMs: number;
  /** How often expired pairings are swept. */
  sweepIntervalMs: number;
}

/** Every default in one place. */
export const PAIRING_DEFAULTS: Readonly<PairingLimits> = Object.freeze({
  ttlMs: 10 * 60_000,
  pollWaitMs: 25_000,
  maxPending: 100,
  maxPendingPerRemote: 5,
  tombstoneMs: 10 * 60_000,
  collectGraceMs: 2 * 60_000,
  sweepIntervalMs: 30_000,
});

export const AGENT_VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

export interface PairingServiceOptions {
  devices: Pick<DeviceStore, 'create' | 'remove'>;
  prisma: Pick<PrismaClient, 'user' | 'membership'>;
  log: Logger;
  /** The relay's public origin, for the approve link: `<publicUrl>/app/pair?code=ABCD-EFGH`. */
  publicUrl: string;
  clock?: PairingClock;
  limits?: Partial<PairingLimits>;
}

export interface StartInput {
  /** The printer's name as the agent proposes it (its host name, or --name). */
  name: string;
  /** The agent's version. */
  agent: string;
  /** Client address as the relay sees it (request.ip). */
  remote: string;
}

export interface StartResult {
  pairingId: string;
  /** `ABCD-EFGH` */
  code: string;
  /** 32 random bytes, base64url: only the agent that started the pairing can poll it. */
  pollToken: string;
  expiresAt: Date;
  approveUrl: string;
}

/** What a dashboard shows before someone approves a code. */
export interface PairingInfo {
  code: string;
  name: string;
  agent: string;
  remote: string;
  createdAt: Date;
  expiresAt: Date;
}

export type PollResult =
  | { status: 'pending' }
  | { status: 'approved'; credential: string; slug: string; name: string; deviceId: string }
  | { status: 'expired' }
  | { status: 'denied' }
  /** No such pairing, or the wrong token (the same answer for both, on purpose). */
  | { status: 'unknown' };

export interface PollInput {
  pairingId: string;
  pollToken: string;
  /** Aborts the wait when the client goes away, so a credential is never handed to a closed connection. */
  signal?: AbortSignal;
  /** Overrides limits.pollWaitMs (never longer). 0 answers at once. */
  waitMs?: number;
}

export interface ApproveInput {
  code: string;
  /** Becomes the device's owner (a Membership row with role "owner"). */
  ownerUserId: string;
  /** Overrides the name the agent proposed. */
  name?: string;
  /** The device's subdomain; derived from the name when absent. */
  slug?: string;
}

type State = 'pending' | 'approving' | 'approved' | 'denied' | 'expired';

interface Handoff {
  credential: string;
  slug: string;
  name: string;
  deviceId: string;
}

interface Waiter {
  finish(result: PollResult): void;
}

interface Pairing {
  readonly id: string;
  readonly code: string;
  readonly tokenHash: Buffer;
  readonly name: string;
  readonly agent: string;
  readonly remote: string;
  readonly remoteKey: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  state: State;
  /** When the record goes: tombstones, and approved credentials nobody collected. */
  dropAt: number;
  handoff?: Handoff;
  waiter?: Waiter;
}

const LIVE: ReadonlySet<State> = new Set(['pending', 'approving', 'approved']);

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** The key the per-address limit counts by: the address, or its /64 for IPv6 (one home, one /64). */
export function remoteKey(remote: string): string {
  const ip = remote.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (net.isIPv6(ip)) {
    const [head = '', tail = ''] = ip.toLowerCase().split('::');
    const left = head === '' ? [] : head.split(':');
    const right = tail === '' ? [] : tail.split(':');
    const groups = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
    return `${groups
      .slice(0, 4)
      .map((g) => g.replace(/^0+(?=.)/, ''))
      .join(':')}::/64`;
  }
  return ip;
}

/** Why `name` cannot be shown for approval, or undefined. Stricter than device names: no invisible
 * formatting characters (bidi overrides could make one name look like another). */
export function pairingNameProblem(name: string): string | undefined {
  const n = name.trim();
  if (n.length === 0) return 'must not be empty';
  if (n.length > NAME_MAX) return `must be at most ${NAME_MAX} characters`;
  if (/[\p{Cc}\p{Cf}\p{Co}\p{Cn}]/u.test(n)) return 'must not contain control or formatting characters';
  return undefined;
}

export class PairingService {
  readonly limits: Readonly<PairingLimits>;
  readonly #opts: PairingServiceOptions;
  readonly #clock: PairingClock;
  readonly #log: Logger;
  readonly #publicUrl: string;
  readonly #byId = new Map<string, Pairing>();
  /** Live pairings only (pending, approving, approved): a code names at most one. */
  readonly #byCode = new Map<string, Pairing>();
  #sweepTimer: unknown;
  #closed = false;

  constructor(opts: PairingServiceOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? realPairingClock;
    this.#log = opts.log.child({ component: 'pairing' });
    this.#publicUrl = opts.publicUrl.replace(/\/+$/, '');
    const limits = { ...PAIRING_DEFAULTS, ...opts.limits };
    for (const [k, v] of Object.entries(limits)) {
      if (!Number.isInteger(v) || v < (k === 'pollWaitMs' || k === 'tombstoneMs' || k === 'collectGraceMs' ? 0 : 1)) {
        throw new RelayError('RELAY_INVALID_CONFIG', [`pairing limit ${k} must be a positive integer, got ${String(v)}`]);
      }
    }
    this.limits = Object.freeze(limits);
    this.#scheduleSweep();
  }

  /** Pairings in progress (not tombstones). */
  get size(): number {
    return this.#byCode.size;
  }

  /**
   * An agent asks to pair. Throws RELAY_INVALID_NAME / RELAY_BAD_REQUEST for bad input and
   * RELAY_PAIRING_LIMIT when too many pairings are in progress, overall or from this address.
   */
  start(input: StartInput): StartResult {
    if (this.#closed) throw new RelayError('RELAY_PAIRING_LIMIT', ['(the relay is shutting down)']);
    const problem = pairingNameProblem(input.name);
    if (problem !== undefined) throw new RelayError('RELAY_INVALID_NAME', [problem]);
    if (!AGENT_VERSION_RE.test(input.agent)) throw new RelayError('RELAY_BAD_REQUEST', ['agent must be a version like 1.2.3']);
    this.sweep();

    const key = remoteKey(input.remote);
    if (this.#byCode.size >= this.limits.maxPending) {
      this.#log.warn({ [LogField.remote]: input.remote, pending: this.#byCode.size }, 'pairing refused: too many in progress');
      throw new RelayError('RELAY_PAIRING_LIMIT', ['on this relay']);
    }
    let fromRemote = 0;
    for (const p of this.#byCode.values()) if (p.remoteKey === key) fromRemote++;
    if (fromRemote >= this.limits.maxPendingPerRemote) {
      this.#log.warn({ [LogField.remote]: input.remote, pending: fromRemote }, 'pairing refused: too many from this address');
      throw new RelayError('RELAY_PAIRING_LIMIT', ['from your address']);
    }

    let code = generateCode();
    while (this.#byCode.has(code)) code = generateCode();
    const pollToken = randomBytes(32).toString('base64url');
    const now = this.#clock.now();
    const pairing: Pairing = {
      id: randomUUID(),
      code,
      tokenHash: sha256(pollToken),
      name: input.name.trim(),
      agent: input.agent,
      remote: input.remote,
      remoteKey: key,
      createdAt: now,
      expiresAt: now + this.limits.ttlMs,
      state: 'pending',
      dropAt: Number.POSITIVE_INFINITY,
    };
    this.#byId.set(pairing.id, pairing);
    this.#byCode.set(code, pairing);
    // Never the code or the token: whoever reads the log could approve someone else's printer.
    this.#log.info(
      { pairingId: pairing.id, [LogField.remote]: input.remote, name: pairing.name, agent: input.agent },
      'pairing started',
    );
    return {
      pairingId: pairing.id,
      code,
      pollToken,
      expiresAt: new Date(pairing.expiresAt),
      approveUrl: `${this.#publicUrl}/app/pair?code=${code}`, // the phone dashboard (plain page: /pair)
    };
  }

  /**
   * The agent's long poll: answers at once when there is news (approved: the credential, handed
   * over once, and the pairing is gone; denied; expired), else waits up to pollWaitMs for it. A
   * second poll for the same pairing answers the first with "pending". Never rejects.
   */
  poll(input: PollInput): Promise<PollResult> {
    const p = this.#byId.get(input.pairingId);
    if (p === undefined || !tokenMatches(p.tokenHash, input.pollToken)) return Promise.resolve({ status: 'unknown' });
    this.#expire(p, this.#clock.now());
    const now = this.#answer(p);
    if (now !== undefined) return Promise.resolve(now);

    const waitMs = Math.min(input.waitMs ?? this.limits.pollWaitMs, this.limits.pollWaitMs);
    if (waitMs <= 0 || input.signal?.aborted === true || this.#closed) return Promise.resolve({ status: 'pending' });
    p.waiter?.finish({ status: 'pending' });
    return new Promise<PollResult>((resolve) => {
      const untilExpiry = p.state === 'pending' ? Math.max(0, p.expiresAt - this.#clock.now()) : waitMs;
      const timer = this.#clock.setTimeout(() => {
        this.#expire(p, this.#clock.now());
        waiter.finish(this.#answer(p) ?? { status: 'pending' });
      }, Math.min(waitMs, untilExpiry));
      const onAbort = () => waiter.finish({ status: 'pending' });
      const waiter: Waiter = {
        finish: (result) => {
          if (p.waiter !== waiter) return;
          p.waiter = undefined;
          this.#clock.clearTimeout(timer);
          input.signal?.removeEventListener('abort', onAbort);
          resolve(result);
        },
      };
      p.waiter = waiter;
      input.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** A pending pairing by the code a person typed, for the dashboard to show before approving. */
  lookup(code: string): PairingInfo | undefined {
    const p = this.#pending(code);
    return p === undefined ? undefined : info(p);
  }

  /** Every pending pairing, oldest first (the admin CLI's `pair list`). */
  list(): PairingInfo[] {
    const now = this.#clock.now();
    return [...this.#byCode.values()]
      .filter((p) => {
        this.#expire(p, now);
        return p.state === 'pending';
      })
      .sort((a, b) => a.createdAt - b.createdAt)
      .map(info);
  }

  /**
   * Approves a pending code: creates the device (DeviceStore generates the credential and keeps
   * only its hash), makes `ownerUserId` its owner, and hands the credential to the agent's poll.
   * Throws RELAY_PAIRING_NOT_FOUND, RELAY_PAIRING_OWNER, and DeviceStore's errors
   * (RELAY_INVALID_NAME, RELAY_INVALID_SLUG, RELAY_SLUG_TAKEN); after an error the code is still
   * pending, so it can be approved again with another slug.
   */
  async approve(input: ApproveInput): Promise<{ device: Device; pairing: PairingInfo }> {
    const p = this.#pending(input.code);
    if (p === undefined) throw new RelayError('RELAY_PAIRING_NOT_FOUND', [displayCode(input.code)]);
    // Claimed before the first await: a second approval of the same code finds nothing pending.
    p.state = 'approving';
    let device: Device;
    let credential: string;
    try {
      const owner = await this.#opts.prisma.user.findUnique({
        where: { id: input.ownerUserId },
        select: { id: true, disabledAt: true },
      });
      if (owner === null) throw new RelayError('RELAY_PAIRING_OWNER', [input.ownerUserId, 'no such user']);
      if (owner.disabledAt !== null) throw new RelayError('RELAY_PAIRING_OWNER', [input.ownerUserId, 'the account is disabled']);
      ({ device, credential } = await this.#opts.devices.create({
        name: input.name ?? p.name,
        ...(input.slug !== undefined ? { slug: input.slug } : {}),
      }));
      try {
        await this.#opts.prisma.membership.create({ data: { userId: owner.id, deviceId: device.id, role: 'owner' } });
      } catch (err) {
        // A device nobody owns must not stay behind (the user was deleted meanwhile, say).
        await this.#opts.devices.remove(device.id).catch(() => {});
        throw err;
      }
    } catch (err) {
      if (p.state === 'approving') p.state = 'pending';
      throw err;
    }

    const now = this.#clock.now();
    this.#log.info(
      { pairingId: p.id, [LogField.deviceId]: device.id, [LogField.device]: device.slug, userId: input.ownerUserId },
      'pairing approved',
    );
    const handoff: Handoff = { credential, slug: device.slug, name: device.name, deviceId: device.id };
    if (this.#closed) {
      // The relay stopped while the database worked: nobody can collect it.
      this.#drop(p);
      void this.#removeUncollected(device.id);
    } else if (p.waiter !== undefined) {
      this.#drop(p);
      p.waiter.finish({ status: 'approved', ...handoff });
      this.#log.info({ pairingId: p.id, [LogField.deviceId]: device.id }, 'credential handed to the agent');
    } else {
      p.state = 'approved';
      p.handoff = handoff;
      p.dropAt = Math.max(p.expiresAt, now + this.limits.collectGraceMs);
    }
    return { device, pairing: info(p) };
  }

  /** Refuses a pending code; the agent's poll answers "denied". Throws RELAY_PAIRING_NOT_FOUND. */
  deny(code: string): PairingInfo {
    const p = this.#pending(code);
    if (p === undefined) throw new RelayError('RELAY_PAIRING_NOT_FOUND', [displayCode(code)]);
    this.#tombstone(p, 'denied', this.#clock.now());
    this.#log.info({ pairingId: p.id, [LogField.remote]: p.remote }, 'pairing denied');
    p.waiter?.finish({ status: 'denied' });
    return info(p);
  }

  /**
   * Expires pending pairings past their time, forgets old tombstones, and removes devices whose
   * credential nobody collected. Runs on a timer; tests call it directly.
   */
  sweep(): void {
    const now = this.#clock.now();
    for (const p of this.#byId.values()) {
      this.#expire(p, now);
      if (p.dropAt > now) continue;
      if (p.state === 'approved' && p.handoff !== undefined) {
        this.#log.warn(
          { pairingId: p.id, [LogField.deviceId]: p.handoff.deviceId, [LogField.device]: p.handoff.slug },
          'approved device never collected its credential; removing it',
        );
        void this.#removeUncollected(p.handoff.deviceId);
      }
      this.#drop(p);
      this.#byId.delete(p.id);
    }
  }

  /** Stops the sweep, answers waiting polls, forgets every pairing; uncollected devices are removed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#clock.clearTimeout(this.#sweepTimer);
    const removals: Promise<void>[] = [];
    for (const p of this.#byId.values()) {
      p.waiter?.finish({ status: 'pending' });
      if (p.state === 'approved' && p.handoff !== undefined) removals.push(this.#removeUncollected(p.handoff.deviceId));
      this.#drop(p);
    }
    this.#byId.clear();
    await Promise.all(removals);
  }

  #scheduleSweep(): void {
    this.#sweepTimer = this.#clock.setTimeout(() => {
      if (this.#closed) return;
      try {
        this.sweep();
      } catch (err) {
        this.#log.error({ [LogField.err]: err }, 'pairing sweep failed');
      }
      this.#scheduleSweep();
    }, this.limits.sweepIntervalMs);
  }

  #pending(code: string): Pairing | undefined {
    const c = normalizeCode(code);
    if (c === undefined) return undefined;
    const p = this.#byCode.get(c);
    if (p === undefined) return undefined;
    this.#expire(p, this.#clock.now());
    return p.state === 'pending' ? p : undefined;
  }

  /** What a poll answers without waiting, or undefined to wait. Hands the credential over (once). */
  #answer(p: Pairing): PollResult | undefined {
    switch (p.state) {
      case 'approved': {
        const h = p.handoff!;
        this.#drop(p);
        this.#byId.delete(p.id);
        this.#log.info({ pairingId: p.id, [LogField.deviceId]: h.deviceId }, 'credential handed to the agent');
        return { status: 'approved', ...h };
      }
      case 'denied':
        return { status: 'denied' };
      case 'expired':
        return { status: 'expired' };
      default:
        return undefined;
    }
  }

  /** A pending pairing past its time becomes an "expired" tombstone (an approval in progress finishes). */
  #expire(p: Pairing, now: number): void {
    if (p.state !== 'pending' || now < p.expiresAt) return;
    this.#tombstone(p, 'expired', now);
    this.#log.info({ pairingId: p.id, [LogField.remote]: p.remote }, 'pairing expired');
    p.waiter?.finish({ status: 'expired' });
  }

  #tombstone(p: Pairing, state: 'denied' | 'expired', now: number): void {
    p.state = state;
    p.dropAt = Math.max(now, p.expiresAt) + this.limits.tombstoneMs;
    if (this.#byCode.get(p.code) === p) this.#byCode.delete(p.code);
  }

  /** Takes a pairing out of the live set and forgets its credential (the record may stay as a tombstone). */
  #drop(p: Pairing): void {
    if (this.#byCode.get(p.code) === p) this.#byCode.delete(p.code);
    if (LIVE.has(p.state)) p.state = 'expired';
    p.handoff = undefined;
    this.#byId.delete(p.id);
  }

  async #removeUncollected(deviceId: string): Promise<void> {
    try {
      await this.#opts.devices.remove(deviceId);
    } catch (err) {
      if (!(err instanceof RelayError && err.code === 'RELAY_DEVICE_NOT_FOUND')) {
        this.#log.error({ [LogField.err]: err, [LogField.deviceId]: deviceId }, 'could not remove an uncollected device');
      }
    }
  }
}

function info(p: Pairing): PairingInfo {
  return {
    code: p.code,
    name: p.name,
    agent: p.agent,
    remote: p.remote,
    createdAt: new Date(p.createdAt),
    expiresAt: new Date(p.expiresAt),
  };
}

/** Compares SHA-256 digests in constant time (equal lengths whatever the input). */
function tokenMatches(expected: Buffer, token: string): boolean {
  return timingSafeEqual(expected, sha256(token));
}

/** A code for an error message: normalised when it looks like one, else shortened and made printable. */
function displayCode(code: string): string {
  return normalizeCode(code) ?? code.replace(/[^\x20-\x7e]/g, '?').slice(0, 20);
}
