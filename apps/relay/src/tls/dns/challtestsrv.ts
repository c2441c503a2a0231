import type { DnsProvider } from './provider.js';

export interface ChalltestsrvOptions {
  /** Management API origin, e.g. http://127.0.0.1:8055. */
  url: string;
  /** Default 0: Pebble asks challtestsrv directly. */
  propagationMs?: number;
  fetch?: typeof fetch;
}

/**
 * pebble-challtestsrv, the mock DNS server that Pebble (Let's Encrypt's test CA) resolves
 * through in tests: POST /set-txt {host, value}, POST /clear-txt {host}.
 */
export class ChalltestsrvDns implements DnsProvider<string> {
  readonly name = 'challtestsrv';
  readonly propagationMs: number;
  private readonly url: string;
  private readonly fetch: typeof fetch;

  constructor(opts: ChalltestsrvOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.propagationMs = opts.propagationMs ?? 0;
    this.fetch = opts.fetch ?? globalThis.fetch;
  }

  async createTxt(name: string, value: string): Promise<string> {
    const host = `${name}.`;
    await this.post('/set-txt', { host, value });
    return host;
  }

  async removeTxt(host: string): Promise<void> {
    await this.post('/clear-txt', { host });
  }

  private async post(path: string, body: unknown): Promise<void> {
    const res = await this.fetch(`${this.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`challtestsrv ${path} answered ${res.status}`);
  }
}
