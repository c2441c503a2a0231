import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { coversDomain, renewalTime, type KeyPair } from './certificate.js';
import type { SourceProgress } from './status.js';
import type { TlsStore } from './store.js';

/** Retry after a failed attempt: exponential from `baseMs`, capped, with jitter. */
export interface RetryPolicy {
  baseMs: number;
  maxMs: number;
}

/** 2 min, 4, 8… capped at 6 h: well inside Let's Encrypt's limit on failed validations. */
export const RETRY_DEFAULTS: RetryPolicy = Object.freeze({ baseMs: 120_000, maxMs: 6 * 3600_000 });

export interface Issuer {
  issue(): Promise<KeyPair>;
}

export interface AcmeRenewalOptions {
  domain: string;
  directoryUrl: string;
  store: TlsStore;
  issuer: Issuer;
  log: Logger;
  /** Wall clock, ms (tests move it to drive renewal). */
  now: () => number;
  random: () => number;
  retry: RetryPolicy;
  /** How often the renewal time is looked at again, whatever the timers say. */
  checkIntervalMs: number;
}

export interface AcmeRenewalEvents {
  certificate: [KeyPair];
  failure: [Error];
}

/**
 * Keeps an ACME certificate current: reuses the stored one, obtains one when there is none,
 * renews at two thirds of the lifetime, retries failures with backoff while the current
 * certificate keeps being served. Emits `certificate` for every new one.
 */
export class AcmeRenewal extends EventEmitter<AcmeRenewalEvents> {
  private readonly opts: AcmeRenewalOptions;
  private currentPair: KeyPair | undefined;
  private obtainedAt: number | undefined;
  private attempt: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private lastError: string | undefined;
  private lastAttemptAt: number | undefined;
  private nextAttemptAt: number | undefined;
  private orders = 0;
  private closed = false;

  constructor(opts: AcmeRenewalOptions) {
    super();
    this.opts = opts;
  }

  get current(): KeyPair | undefined {
    return this.currentPair;
  }

  /** Called by the issuer when it places an order. */
  countOrder(): void {
    this.orders += 1;
  }

  /**
   * Loads the stored certificate, or waits for a first attempt to obtain one (which may fail:
   * the retries go on in the background).
   */
  async start(): Promise<void> {
    const { store, log, domain, directoryUrl } = this.opts;
    const stored = await store.loadCertificate((reason) => log.warn({ reason }, 'stored certificate not usable; obtaining a new one'));
    if (stored !== undefined) {
      const why =
        stored.directoryUrl !== directoryUrl
          ? `it came from another ACME directory (${stored.directoryUrl})`
          : !coversDomain(stored.info, domain)
            ? `it is for ${stored.info.names.join(', ')}`
            : stored.info.notAfter.getTime() <= this.opts.now()
              ? 'it has expired'
              : undefined;
      if (why === undefined) {
        this.use(stored, stored.obtainedAt.getTime());
        log.info({ names: stored.info.names, notAfter: stored.info.notAfter, renewAt: new Date(renewalTime(stored.info)) }, 'using the stored certificate');
      } else {
        log.info({ reason: why }, 'stored certificate not reused; obtaining a new one');
      }
    }
    // With no certificate, wait for the first attempt; with one, a due renewal runs in the background.
    if (this.currentPair === undefined) await this.check();
    else void this.check();
    this.scheduleCheck();
  }

  /** Renews when due (or when there is no certificate); a no-op while an attempt runs or a retry waits. */
  check(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.attempt !== undefined) return this.attempt;
    if (this.retryTimer !== undefined) return Promise.resolve();
    const pair = this.currentPair;
    if (pair === undefined || this.opts.now() >= renewalTime(pair.info)) return this.renew();
    return Promise.resolve();
  }

  progress(): SourceProgress {
    const at = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms));
    return {
      lastRenewalAt: at(this.obtainedAt),
      lastAttemptAt: at(this.lastAttemptAt),
      lastRenewalError: this.lastError,
      consecutiveFailures: this.failures,
      nextAttemptAt: at(this.nextAttemptAt),
      renewAt: this.currentPair === undefined ? undefined : new Date(renewalTime(this.currentPair.info)),
      orders: this.orders,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.checkTimer);
    this.retryTimer = undefined;
    // An attempt still polling the CA is not waited for: its result is dropped (see renew()).
  }

  private use(pair: KeyPair, obtainedAt: number): void {
    this.currentPair = pair;
    this.obtainedAt = obtainedAt;
    this.emit('certificate', pair);
  }

  private renew(): Promise<void> {
    const { log, now } = this.opts;
    const renewing = this.currentPair !== undefined;
    this.lastAttemptAt = now();
    const started = performance.now();
    this.attempt = (async () => {
      let pair: KeyPair;
      try {
        pair = await this.opts.issuer.issue();
      } catch (e) {
        this.failed(e instanceof Error ? e : new Error(String(e)), renewing);
        return;
      }
      if (this.closed) return;
      this.failures = 0;
      this.lastError = undefined;
      this.nextAttemptAt = undefined;
      const obtainedAt = now();
      this.use(pair, obtainedAt);
      log.info(
        { names: pair.info.names, notAfter: pair.info.notAfter, renewAt: new Date(renewalTime(pair.info)), ms: Math.round(performance.now() - started) },
        renewing ? 'certificate renewed' : 'certificate obtained',
      );
      try {
        await this.opts.store.saveCertificate(pair, this.opts.directoryUrl, new Date(obtainedAt));
      } catch (e) {
        log.error({ err: e }, 'could not store the new certificate: the next start will order another one');
      }
    })().finally(() => {
      this.attempt = undefined;
    });
    return this.attempt;
  }

  private failed(err: Error, renewing: boolean): void {
    if (this.closed) return;
    this.failures += 1;
    this.lastError = err.message;
    const { baseMs, maxMs } = this.opts.retry;
    const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(this.failures - 1, 30));
    const delay = Math.round(ceiling / 2 + (this.opts.random() * ceiling) / 2);
    this.nextAttemptAt = this.opts.now() + delay;
    const pair = this.currentPair;
    // Without a certificate nothing can be served over HTTPS: that is an error, not a warning.
    (pair === undefined ? this.opts.log.error : this.opts.log.warn).call(
      this.opts.log,
      { err, failures: this.failures, retryInMs: delay, notAfter: pair?.info.notAfter },
      renewing ? 'certificate renewal failed; still serving the current certificate, will retry' : 'could not obtain a certificate; will retry',
    );
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.closed) void this.renew();
    }, delay);
    this.emit('failure', err);
  }

  private scheduleCheck(): void {
    if (this.closed) return;
    const pair = this.currentPair;
    const untilRenewal = pair === undefined ? Infinity : renewalTime(pair.info) - this.opts.now();
    const delay = Math.max(1_000, Math.min(untilRenewal, this.opts.checkIntervalMs, 2 ** 31 - 1));
    this.checkTimer = setTimeout(() => {
      void this.check();
      this.scheduleCheck();
    }, delay);
    this.checkTimer.unref();
  }
}
