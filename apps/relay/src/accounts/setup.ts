import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The one-time first-run token. While the relay has no user, it prints a setup link carrying
 * this token; whoever opens it first makes the first admin. The token lives in memory only (a
 * restart prints a new one), is used once, and is compared in constant time.
 *
 * This class does not look at the database: the caller decides that no user exists (the setup
 * route checks `UserStore.count()` on every request) and calls `close()` once one does.
 */
export class SetupTokens {
  #token: string | undefined;
  /** A consumed token whose setup is still running: `restore()` can give it back. */
  #inUse: string | undefined;
  #closed = false;

  constructor(private readonly bytes = 24) {}

  /** The current token, made on first call; undefined once it is used or setup is closed. */
  current(): string | undefined {
    if (this.#closed || this.#inUse !== undefined) return undefined;
    this.#token ??= randomBytes(this.bytes).toString('base64url');
    return this.#token;
  }

  /** Whether `token` is the current one, without using it up. */
  check(token: unknown): boolean {
    const t = this.#closed || this.#inUse !== undefined ? undefined : this.#token;
    if (t === undefined || typeof token !== 'string' || token.length === 0 || token.length > 256) return false;
    // Hash both sides: equal lengths for timingSafeEqual whatever was typed.
    return timingSafeEqual(digest(t), digest(token));
  }

  /**
   * Uses the token up: true exactly once, for the right token. Synchronous, so two requests
   * racing with the same token cannot both get true.
   */
  consume(token: unknown): boolean {
    if (!this.check(token)) return false;
    this.#inUse = this.#token;
    this.#token = undefined;
    return true;
  }

  /**
   * Gives a consumed token back after the setup it was used for failed before any user was
   * made (a weak password, say), so the printed link keeps working. Nothing after `close()`.
   */
  restore(token: string): void {
    if (this.#closed || this.#inUse !== token) return;
    this.#token = token;
    this.#inUse = undefined;
  }

  /** No more setup, for good: a user exists (made here or with the CLI). */
  close(): void {
    this.#closed = true;
    this.#token = undefined;
    this.#inUse = undefined;
  }

  /** `<publicUrl>/setup?token=…`, or undefined when there is no token. */
  setupUrl(publicUrl: string): string | undefined {
    const t = this.current();
    return t === undefined ? undefined : `${publicUrl.replace(/\/+$/, '')}/setup?token=${t}`;
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
