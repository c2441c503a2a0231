import type { DnsProvider } from './provider.js';

export const CLOUDFLARE_API = 'https://api.cloudflare.com/client/v4';

export interface CloudflareOptions {
  /** API token with Zone.DNS:Edit on the zone (and Zone.Zone:Read unless zoneId is given). */
  apiToken: string;
  /** The zone's id; looked up from the record name when absent. */
  zoneId?: string;
  /** Default 10 s: Cloudflare's edge serves a new record within seconds. */
  propagationMs?: number;
  /** The network boundary (tests replace it). */
  fetch?: typeof fetch;
  timeoutMs?: number;
}

export interface CloudflareRecord {
  zoneId: string;
  id: string;
}

interface Envelope<T> {
  success?: boolean;
  errors?: { code?: number; message?: string }[];
  result?: T;
}

/** Cloudflare's error for a record that already exists with the same content. */
const IDENTICAL_RECORD = 81058;

export class CloudflareApiError extends Error {
  readonly status: number;
  readonly codes: readonly number[];
  constructor(message: string, status: number, codes: readonly number[]) {
    super(message);
    this.name = 'CloudflareApiError';
    this.status = status;
    this.codes = codes;
  }
}

/** DNS-01 through Cloudflare's API v4 with a scoped API token (never a global key). */
export class CloudflareDns implements DnsProvider<CloudflareRecord> {
  readonly name = 'cloudflare';
  readonly propagationMs: number;
  private readonly token: string;
  private readonly fetch: typeof fetch;
  private readonly timeoutMs: number;
  /** Names looked up: zone id, or null for a name that is not a zone. */
  private readonly zones = new Map<string, string | null>();
  private readonly zoneId: string | undefined;

  constructor(opts: CloudflareOptions) {
    if (opts.apiToken === '') throw new Error('Cloudflare API token is empty');
    this.token = opts.apiToken;
    this.zoneId = opts.zoneId;
    this.propagationMs = opts.propagationMs ?? 10_000;
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  async createTxt(name: string, value: string): Promise<CloudflareRecord> {
    const zoneId = await this.zoneFor(name);
    try {
      const rec = await this.call<{ id: string }>('POST', `/zones/${zoneId}/dns_records`, {
        type: 'TXT',
        name,
        content: value,
        ttl: 60,
        comment: 'ACME challenge (Porthole relay); removed once validated',
      });
      return { zoneId, id: rec.id };
    } catch (e) {
      // A retry after a crash may find its own record still there: take it over.
      if (!(e instanceof CloudflareApiError) || !e.codes.includes(IDENTICAL_RECORD)) throw e;
      const q = new URLSearchParams({ type: 'TXT', name, content: value });
      const found = await this.call<{ id: string }[]>('GET', `/zones/${zoneId}/dns_records?${q}`);
      const first = found[0];
      if (first === undefined) throw e;
      return { zoneId, id: first.id };
    }
  }

  async removeTxt(record: CloudflareRecord): Promise<void> {
    try {
      await this.call('DELETE', `/zones/${record.zoneId}/dns_records/${record.id}`);
    } catch (e) {
      if (e instanceof CloudflareApiError && e.status === 404) return; // already gone
      throw e;
    }
  }

  /** The zone holding `name`: the longest suffix of it that is a zone of this account. */
  private async zoneFor(name: string): Promise<string> {
    if (this.zoneId !== undefined) return this.zoneId;
    const labels = name.split('.');
    for (let i = 1; i < labels.length - 1; i++) {
      const candidate = labels.slice(i).join('.');
      let id = this.zones.get(candidate);
      if (id === undefined) {
        const found = await this.call<{ id: string; name: string }[]>('GET', `/zones?${new URLSearchParams({ name: candidate })}`);
        id = found.find((z) => z.name === candidate)?.id ?? null;
        this.zones.set(candidate, id);
      }
      if (id !== null) return id;
    }
    throw new Error(
      `no Cloudflare zone found for ${name}: is the domain on this Cloudflare account, and may the token read zones? ` +
        '(or set cloudflareZoneId)',
    );
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await this.fetch(`${CLOUDFLARE_API}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw new Error(`Cloudflare API ${method} ${path.split('?')[0]}: ${(e as Error).message}`, { cause: e });
    }
    let env: Envelope<T> | undefined;
    try {
      env = (await res.json()) as Envelope<T>;
    } catch {
      env = undefined;
    }
    if (!res.ok || env?.success !== true) {
      const errors = env?.errors ?? [];
      const detail = errors.map((x) => `${x.message ?? 'error'}${x.code !== undefined ? ` (code ${x.code})` : ''}`).join('; ');
      throw new CloudflareApiError(
        `Cloudflare API ${method} ${path.split('?')[0]} answered ${res.status}${detail ? `: ${detail}` : ''}`,
        res.status,
        errors.map((x) => x.code ?? 0),
      );
    }
    return env.result as T;
  }
}
