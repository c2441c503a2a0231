import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import * as acme from 'acme-client';
import type { Logger } from 'pino';
import { inspectKeyPair, namesFor, type KeyPair } from './certificate.js';
import { challengeRecordName, type DnsProvider } from './dns/provider.js';
import type { Http01Challenges } from './http-port.js';

/** How hard acme-client itself retries one request and polls one challenge before we give up this attempt. */
export interface AcmeTimings {
  /** Polling of a challenge or order: first delay, cap, attempts. */
  pollMinMs: number;
  pollMaxMs: number;
  pollAttempts: number;
  /** Retries of one HTTP request on a network error, 5xx or 429 (acme-client's own loop, Retry-After honoured). */
  requestRetries: number;
  requestRetryDelayS: number;
}

export const ACME_TIMINGS: AcmeTimings = Object.freeze({
  pollMinMs: 1_000,
  pollMaxMs: 10_000,
  pollAttempts: 12,
  requestRetries: 3,
  requestRetryDelayS: 2,
});

export interface AcmeIssuerOptions {
  directoryUrl: string;
  domain: string;
  email?: string;
  /** PEM of the ACME account key. */
  accountKey: string;
  /** The account's URL when it is registered already (then no registration request is made). */
  accountUrl?: string;
  /** Called with the account URL after a registration. */
  onAccount?: (accountUrl: string) => Promise<void>;
  dns: DnsProvider;
  http01: Http01Challenges;
  /** Extra CAs for the ACME server's own HTTPS (a private CA, Pebble in tests). */
  ca?: Buffer;
  timings?: Partial<AcmeTimings>;
  log: Logger;
  /** Called when an order is placed (status counts them). */
  onOrder?: () => void;
}

/**
 * Gets one certificate for DOMAIN and *.DOMAIN: an order with both names, HTTP-01 for the bare
 * domain (answered on port 80), DNS-01 for the wildcard (a TXT record through the DNS provider),
 * a fresh P-256 key for every certificate.
 */
export class AcmeIssuer {
  private readonly client: acme.Client;
  private readonly opts: AcmeIssuerOptions;
  private accountReady = false;

  constructor(opts: AcmeIssuerOptions) {
    this.opts = opts;
    const t = { ...ACME_TIMINGS, ...opts.timings };
    // acme-client sends every request through one axios instance per process; a relay has one
    // ACME configuration, so its settings live there.
    const defaults = acme.axios.defaults as typeof acme.axios.defaults & { acmeSettings: Record<string, number> };
    defaults.acmeSettings = { ...defaults.acmeSettings, retryMaxAttempts: t.requestRetries, retryDefaultDelay: t.requestRetryDelayS };
    defaults.timeout = 30_000;
    if (opts.ca !== undefined) acme.axios.defaults.httpsAgent = new https.Agent({ ca: opts.ca });
    this.client = new acme.Client({
      directoryUrl: opts.directoryUrl,
      accountKey: opts.accountKey,
      backoffMin: t.pollMinMs,
      backoffMax: t.pollMaxMs,
      backoffAttempts: t.pollAttempts,
      ...(opts.accountUrl !== undefined ? { accountUrl: opts.accountUrl } : {}),
    });
    this.accountReady = opts.accountUrl !== undefined;
  }

  /** Runs one whole order. Rejects with the CA's or the DNS provider's reason. */
  async issue(): Promise<KeyPair> {
    // acme-client turns a network error into "Cannot read properties of undefined": ask the
    // directory first, so an unreachable CA is reported as what it is.
    await probeDirectory(this.opts.directoryUrl, this.opts.ca);
    try {
      return await this.order();
    } catch (e) {
      if (e instanceof TypeError && /reading 'config'/.test(e.message)) {
        throw new Error(`the ACME server ${this.opts.directoryUrl} stopped answering (network error)`, { cause: e });
      }
      throw e;
    }
  }

  private async order(): Promise<KeyPair> {
    const { domain, log } = this.opts;
    if (!this.accountReady) {
      // Registers the key (a key the CA knows already gets its account back).
      await this.client.createAccount({
        termsOfServiceAgreed: true,
        ...(this.opts.email !== undefined ? { contact: [`mailto:${this.opts.email}`] } : {}),
      });
      this.accountReady = true;
      await this.opts.onAccount?.(this.client.getAccountUrl());
    }
    const names = namesFor(domain);
    const order = await this.client.createOrder({ identifiers: names.map((value) => ({ type: 'dns', value })) });
    this.opts.onOrder?.();
    log.info({ names, order: order.url }, 'ACME order placed');
    const authorizations = await this.client.getAuthorizations(order);
    // The two challenges are independent: answer them side by side.
    await Promise.all(authorizations.map((authz) => this.authorize(authz)));
    const [key, csr] = await acme.crypto.createCsr({ altNames: names }, await acme.crypto.createPrivateEcdsaKey('P-256'));
    const finalized = await this.client.finalizeOrder(order, csr);
    const chain = await this.client.getCertificate(finalized);
    return inspectKeyPair(chain, key.toString('utf8'));
  }

  private async authorize(authz: acme.Authorization): Promise<void> {
    if (authz.status === 'valid') return; // the CA reused an earlier validation
    const name = `${authz.wildcard === true ? '*.' : ''}${authz.identifier.value}`;
    const type = authz.wildcard === true ? 'dns-01' : 'http-01';
    const challenge = authz.challenges.find((c) => c.type === type);
    if (challenge === undefined) throw new Error(`the CA offers no ${type} challenge for ${name}`);
    const keyAuthorization = await this.client.getChallengeKeyAuthorization(challenge);
    const log = this.opts.log.child({ identifier: name, challenge: type });
    let cleanup: () => Promise<void>;
    if (challenge.type === 'http-01') {
      this.opts.http01.set(challenge.token, keyAuthorization);
      cleanup = async () => this.opts.http01.delete(challenge.token);
    } else {
      const dns = this.opts.dns;
      const record = challengeRecordName(authz.identifier.value);
      const handle = await dns.createTxt(record, keyAuthorization);
      cleanup = () => dns.removeTxt(handle);
      log.info({ record, provider: dns.name, waitMs: dns.propagationMs }, 'DNS-01 record published');
      if (dns.propagationMs > 0) await sleep(dns.propagationMs);
    }
    try {
      await this.client.completeChallenge(challenge);
      await this.client.waitForValidStatus(challenge);
      log.debug('challenge validated');
    } finally {
      await cleanup().catch((e: unknown) => log.warn({ err: e }, 'could not remove the challenge answer'));
    }
  }
}

/** GETs the ACME directory; rejects with why it cannot be reached (refused, DNS, TLS, timeout, status). */
export function probeDirectory(url: string, ca: Buffer | undefined, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string, cause?: unknown) => reject(new Error(`ACME directory ${url} unreachable: ${why}`, { cause }));
    const req = https.get(url, { ...(ca !== undefined ? { ca } : {}), timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else fail(`HTTP ${res.statusCode}`);
    });
    req.once('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.once('error', (e) => fail(e.message, e));
  });
}

/** A new ECDSA P-256 account key, PEM. */
export async function createAccountKey(): Promise<string> {
  return (await acme.crypto.createPrivateEcdsaKey('P-256')).toString('utf8');
}
