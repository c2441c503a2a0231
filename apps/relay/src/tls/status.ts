import type { TlsMode } from '../config.js';

/**
 * Where the relay's certificate stands: a snapshot for metrics, /readyz and logs. Dates are
 * wall-clock; `undefined` means "none" (no certificate yet, never failed…).
 */
export interface TlsStatus {
  readonly mode: TlsMode;
  readonly domain: string;
  /** DNS names of the certificate being served; empty while there is none. */
  readonly names: readonly string[];
  readonly notBefore: Date | undefined;
  readonly notAfter: Date | undefined;
  readonly fingerprint256: string | undefined;
  /** `acme`: when renewal starts, two thirds into the lifetime. */
  readonly renewAt: Date | undefined;
  /** When the certificate being served was obtained (`acme`) or loaded (`files`). */
  readonly lastRenewalAt: Date | undefined;
  /** When the last attempt to obtain (or reload) one started. */
  readonly lastAttemptAt: Date | undefined;
  /** Why the last attempt failed; cleared by a success. */
  readonly lastRenewalError: string | undefined;
  readonly consecutiveFailures: number;
  /** `acme`: when the next attempt is due after a failure. */
  readonly nextAttemptAt: Date | undefined;
  /** No certificate at all, or less than a sixth of its lifetime left: someone should look. */
  readonly expiringSoon: boolean;
  readonly expired: boolean;
  /** ACME orders placed since the relay started (a restart that reuses its certificate places none). */
  readonly orders: number;
}

/** What a certificate source reports about its own attempts. */
export interface SourceProgress {
  lastRenewalAt: Date | undefined;
  lastAttemptAt: Date | undefined;
  lastRenewalError: string | undefined;
  consecutiveFailures: number;
  nextAttemptAt: Date | undefined;
  renewAt: Date | undefined;
  orders: number;
}

export const NO_PROGRESS: SourceProgress = Object.freeze({
  lastRenewalAt: undefined,
  lastAttemptAt: undefined,
  lastRenewalError: undefined,
  consecutiveFailures: 0,
  nextAttemptAt: undefined,
  renewAt: undefined,
  orders: 0,
});
