import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { RelayConfig } from '../config.js';
import { RelayError } from '../errors.js';
import { AcmeIssuer, createAccountKey, type AcmeTimings } from './acme.js';
import { AcmeRenewal, RETRY_DEFAULTS, type RetryPolicy } from './acme-renewal.js';
import { alarmTime, type KeyPair } from './certificate.js';
import { createDnsProvider, type DnsProvider } from './dns/index.js';
import { FileCertificates } from './files.js';
import { createHttpPortServer, Http01Challenges } from './http-port.js';
import { NO_PROGRESS, type SourceProgress, type TlsStatus } from './status.js';
import { TlsStore } from './store.js';
import { TLS_SERVER_OPTIONS } from './ciphers.js';

/** Sent on every HTTPS response: devices live on subdomains, so they are included. */
export const HSTS_HEADER = 'max-age=31536000; includeSubDomains';

/** How often an expiry that comes close is logged again. */
const ALARM_REPEAT_MS = 3600_000;

/** Test seams and tuning; the defaults are what production uses. */
export interface TlsOptions {
  /** Wall clock in ms (move it to drive renewal and the expiry alarm). Default Date.now. */
  now?: () => number;
  random?: () => number;
  retry?: Partial<RetryPolicy>;
  /** How often renewal and expiry are looked at again. Default 1 h. */
  checkIntervalMs?: number;
  /** `files` mode: how often the files are polled for changes. Default 5 s. */
  filesPollMs?: number;
  acmeTimings?: Partial<AcmeTimings>;
  /** Replaces the configured DNS provider. */
  dns?: DnsProvider;
}

type TlsConfig = Pick<
  RelayConfig,
  | 'tls'
  | 'domain'
  | 'host'
  | 'httpPort'
  | 'publicUrl'
  | 'dataDir'
  | 'acmeDirectoryUrl'
  | 'acmeEmail'
  | 'acmeCaFile'
  | 'dnsProvider'
  | 'dnsPropagationMs'
  | 'cloudflareApiToken'
  | 'cloudflareZoneId'
  | 'challtestsrvUrl'
  | 'tlsCertFile'
  | 'tlsKeyFile'
>;

interface Source extends EventEmitter<{ certificate: [KeyPair]; failure: [Error] }> {
  readonly current: KeyPair | undefined;
  start(): Promise<void>;
  check(): Promise<void>;
  close(): Promise<void>;
  progress(): SourceProgress;
}

export interface TlsServiceEvents {
  /** A new certificate is being served. */
  certificate: [KeyPair];
  /** Expiry is close (or past) and no renewal has succeeded. */
  alarm: [TlsStatus];
}

/**
 * The relay's HTTPS: where certificates come from (ACME or files), the port-80 listener
 * (HTTP-01 answers and redirects), and the swap of the serving certificate. A new certificate
 * goes to `server.setSecureContext()`: new handshakes get it, open connections keep theirs.
 */
export class TlsService extends EventEmitter<TlsServiceEvents> {
  readonly mode: RelayConfig['tls'];
  readonly challenges = new Http01Challenges();
  private readonly config: TlsConfig;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly checkIntervalMs: number;
  private readonly source: Source | undefined;
  private httpServer: http.Server | undefined;
  private server: tls.Server | undefined;
  private alarmTimer: NodeJS.Timeout | undefined;
  private lastAlarmAt: number | undefined;

  constructor(config: TlsConfig, log: Logger, opts: TlsOptions = {}) {
    super();
    this.config = config;
    this.mode = config.tls;
    this.log = log;
    this.now = opts.now ?? Date.now;
    this.checkIntervalMs = opts.checkIntervalMs ?? 3600_000;
    if (config.tls === 'acme') this.source = this.acmeSource(opts);
    else if (config.tls === 'files') {
      this.source = new FileCertificates({
        certFile: config.tlsCertFile ?? '',
        keyFile: config.tlsKeyFile ?? '',
        log,
        now: this.now,
        pollMs: opts.filesPollMs ?? 5_000,
      });
    }
    this.source?.on('certificate', (pair) => {
      this.server?.setSecureContext({ ...TLS_SERVER_OPTIONS, cert: pair.cert, key: pair.key });
      this.emit('certificate', pair);
    });
    this.source?.on('failure', () => this.alarm());
  }

  get enabled(): boolean {
    return this.source !== undefined;
  }

  /** The port-80 listener's port once started (0 picks a free one). */
  get httpPort(): number | undefined {
    return (this.httpServer?.address() as AddressInfo | null)?.port;
  }

  /**
   * Starts after the HTTPS server listens: the port-80 listener first (ACME's HTTP-01 needs it),
   * then the certificate (stored, or a first order — whose failure is logged and retried, not
   * thrown). Rejects only when `files` cannot be loaded or port 80 cannot be bound.
   */
  async start(server: tls.Server): Promise<void> {
    if (this.source === undefined) return;
    this.server = server;
    const httpServer = createHttpPortServer({ challenges: this.challenges, domain: this.config.domain, publicUrl: this.config.publicUrl });
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen({ host: this.config.host, port: this.config.httpPort }, () => {
        httpServer.off('error', reject);
        resolve();
      });
    });
    this.httpServer = httpServer;
    this.log.info({ port: this.httpPort }, 'HTTP listener up: ACME challenges and redirects to HTTPS');
    try {
      await this.source.start();
    } catch (e) {
      throw new RelayError('RELAY_INVALID_CONFIG', [(e as Error).message], { cause: e });
    }
    this.alarm();
    const tick = () => {
      this.alarmTimer = setTimeout(() => {
        this.alarm();
        tick();
      }, this.checkIntervalMs);
      this.alarmTimer.unref();
    };
    tick();
  }

  /** Looks again now: renews when due (acme), raises the alarm when expiry is close. */
  async check(): Promise<void> {
    await this.source?.check();
    this.alarm();
  }

  /** `files` mode: reloads the files now instead of waiting for the poll. */
  async reload(): Promise<void> {
    if (this.source instanceof FileCertificates) await this.source.reload();
  }

  status(): TlsStatus {
    const pair = this.source?.current;
    const now = this.now();
    const progress = this.source?.progress() ?? NO_PROGRESS;
    const info = pair?.info;
    return Object.freeze({
      mode: this.mode,
      domain: this.config.domain,
      names: info?.names ?? [],
      notBefore: info?.notBefore,
      notAfter: info?.notAfter,
      fingerprint256: info?.fingerprint256,
      ...progress,
      expiringSoon: this.source !== undefined && (info === undefined || now >= alarmTime(info)),
      expired: info !== undefined && now >= info.notAfter.getTime(),
    });
  }

  async close(): Promise<void> {
    clearTimeout(this.alarmTimer);
    await this.source?.close();
    const httpServer = this.httpServer;
    if (httpServer !== undefined) {
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
    }
  }

  private acmeSource(opts: TlsOptions): AcmeRenewal {
    const config = this.config;
    const store = new TlsStore(config.dataDir);
    const log = this.log.child({ component: 'acme' });
    let issuer: AcmeIssuer | undefined;
    let ca: Buffer | undefined;
    if (config.acmeCaFile !== undefined) {
      try {
        ca = readFileSync(config.acmeCaFile);
      } catch (e) {
        const reason = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        throw new RelayError('RELAY_INVALID_CONFIG', [`acmeCaFile: cannot read ${config.acmeCaFile}: ${reason}`], { cause: e });
      }
    }
    const renewal: AcmeRenewal = new AcmeRenewal({
      domain: config.domain,
      directoryUrl: config.acmeDirectoryUrl,
      store,
      log,
      now: this.now,
      random: opts.random ?? Math.random,
      retry: { ...RETRY_DEFAULTS, ...opts.retry },
      checkIntervalMs: this.checkIntervalMs,
      issuer: {
        issue: async () => {
          const accountUrl = await store.accountUrl(config.acmeDirectoryUrl);
          issuer ??= new AcmeIssuer({
            directoryUrl: config.acmeDirectoryUrl,
            domain: config.domain,
            ...(config.acmeEmail !== undefined ? { email: config.acmeEmail } : {}),
            accountKey: await store.accountKey(createAccountKey),
            ...(accountUrl !== undefined ? { accountUrl } : {}),
            onAccount: (url) => store.setAccountUrl(config.acmeDirectoryUrl, url),
            dns: opts.dns ?? createDnsProvider(config),
            http01: this.challenges,
            ...(ca !== undefined ? { ca } : {}),
            ...(opts.acmeTimings !== undefined ? { timings: opts.acmeTimings } : {}),
            log,
            onOrder: () => renewal.countOrder(),
          });
          try {
            return await issuer.issue();
          } catch (e) {
            // The CA may have forgotten the account (a test CA restarted, an account deactivated):
            // register again on the next attempt.
            if (accountUrl !== undefined && /account/i.test((e as Error).message)) {
              issuer = undefined;
              await store.setAccountUrl(config.acmeDirectoryUrl, undefined).catch(() => undefined);
            }
            throw e;
          }
        },
      },
    });
    return renewal;
  }

  /** Logs loudly, at most hourly, while expiry is close and no renewal has succeeded. */
  private alarm(): void {
    if (this.source === undefined) return;
    const status = this.status();
    if (!status.expiringSoon || status.notAfter === undefined) return;
    const now = this.now();
    if (this.lastAlarmAt !== undefined && now - this.lastAlarmAt < ALARM_REPEAT_MS) return;
    this.lastAlarmAt = now;
    this.log.error(
      { notAfter: status.notAfter, lastRenewalError: status.lastRenewalError, failures: status.consecutiveFailures, mode: this.mode },
      status.expired
        ? 'TLS CERTIFICATE HAS EXPIRED: browsers and agents will refuse the relay until it is renewed'
        : `TLS CERTIFICATE EXPIRES SOON (${status.notAfter.toISOString()}) and has not been renewed`,
    );
    this.emit('alarm', status);
  }
}
