/**
 * Readiness: a list of named checks, run on each GET /readyz. The database registers one, TLS
 * registers one when it is on; anything else that must work before traffic is sent here can add
 * its own. Liveness (/healthz) is only "the process answers".
 */

export interface CheckOutcome {
  ok: boolean;
  /** A short, public line: no secrets, no paths. */
  detail?: string;
}

export type ReadinessCheck = () => CheckOutcome | Promise<CheckOutcome>;

export interface Readiness {
  ok: boolean;
  checks: Record<string, CheckOutcome>;
}

export class HealthChecks {
  private readonly checks = new Map<string, ReadinessCheck>();

  constructor(private readonly timeoutMs = 3_000) {}

  /** Adds (or replaces) a check; returns a function removing it. */
  register(name: string, check: ReadinessCheck): () => void {
    this.checks.set(name, check);
    return () => {
      if (this.checks.get(name) === check) this.checks.delete(name);
    };
  }

  get names(): string[] {
    return [...this.checks.keys()];
  }

  /** Runs every check at once; one that throws or takes too long fails. */
  async run(): Promise<Readiness> {
    const entries = await Promise.all(
      [...this.checks].map(async ([name, check]): Promise<[string, CheckOutcome]> => {
        let timer: NodeJS.Timeout | undefined;
        try {
          const outcome = await Promise.race([
            Promise.resolve().then(check),
            new Promise<CheckOutcome>((resolve) => {
              timer = setTimeout(() => resolve({ ok: false, detail: `no answer within ${this.timeoutMs} ms` }), this.timeoutMs);
            }),
          ]);
          return [name, outcome];
        } catch (e) {
          return [name, { ok: false, detail: (e as Error).message.split('\n')[0]?.slice(0, 200) ?? 'failed' }];
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const checks = Object.fromEntries(entries);
    return { ok: entries.every(([, c]) => c.ok), checks };
  }
}

/** What readiness needs to know of the TLS status (src/tls/status.ts). */
export interface CertificateState {
  readonly notAfter: Date | undefined;
  readonly expired: boolean;
  readonly expiringSoon: boolean;
  readonly lastRenewalError: string | undefined;
}

/** TLS is on: ready while a certificate is served and has not expired; close to expiry is said, not failed. */
export function certificateCheck(state: () => CertificateState, now: () => number = Date.now): ReadinessCheck {
  return () => {
    const s = state();
    if (s.notAfter === undefined) return { ok: false, detail: 'no certificate yet' };
    if (s.expired || s.notAfter.getTime() <= now()) return { ok: false, detail: `the certificate expired ${s.notAfter.toISOString()}` };
    const days = Math.floor((s.notAfter.getTime() - now()) / 86_400_000);
    const soon = s.expiringSoon ? `; renewal overdue${s.lastRenewalError !== undefined ? ' (the last attempt failed)' : ''}` : '';
    return { ok: true, detail: `valid until ${s.notAfter.toISOString()} (${days} days)${soon}` };
  };
}

/** The database answers a trivial query. */
export function databaseCheck(query: () => Promise<unknown>, onError: (err: unknown) => void): ReadinessCheck {
  return async () => {
    try {
      await query();
      return { ok: true };
    } catch (err) {
      onError(err);
      return { ok: false, detail: 'the database does not answer (see the relay log)' };
    }
  };
}
