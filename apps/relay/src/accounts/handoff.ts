import { randomBytes } from 'node:crypto';

export interface Handoff {
  userId: string;
  deviceId: string;
  /** The dashboard session the device session will hang from. */
  parentSessionId: string;
  /** Path to land on at the device, checked to be a local path. */
  next: string;
  expiresAt: number;
}

/**
 * One-time, short-lived codes that carry a signed-in user from the relay's domain to one
 * device's subdomain. Kept in memory only: a code is worthless after one use, a minute, or a
 * relay restart.
 */
export class HandoffStore {
  private readonly codes = new Map<string, Handoff>();

  constructor(
    private readonly ttlMs = 60_000,
    private readonly now: () => number = Date.now,
    private readonly max = 10_000,
  ) {}

  create(h: Omit<Handoff, 'expiresAt' | 'next'> & { next?: string }): string {
    this.sweep();
    if (this.codes.size >= this.max) throw new Error('too many pending handoffs');
    const code = randomBytes(24).toString('base64url');
    this.codes.set(code, { ...h, next: safeNext(h.next), expiresAt: this.now() + this.ttlMs });
    return code;
  }

  /** Returns the handoff and forgets it; a second use, or one after expiry, gets nothing. */
  take(code: string | undefined, deviceId: string): Handoff | undefined {
    if (code === undefined || code.length > 64) return undefined;
    const h = this.codes.get(code);
    if (h === undefined) return undefined;
    this.codes.delete(code);
    if (h.expiresAt <= this.now() || h.deviceId !== deviceId) return undefined;
    return h;
  }

  private sweep(): void {
    const t = this.now();
    for (const [c, h] of this.codes) if (h.expiresAt <= t) this.codes.delete(c);
  }
}

/** Only a local absolute path: never `//host`, a scheme, or a backslash trick. */
export function safeNext(next: string | undefined): string {
  if (next === undefined || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\') || /[\r\n]/.test(next)) {
    return '/';
  }
  return next.length > 2048 ? '/' : next;
}
