// The Cloudflare DNS-01 provider. Cloudflare cannot be reached from here, so this one test
// replaces fetch at the network boundary with a small fake of the API v4 routes it uses.
import { describe, expect, it } from 'vitest';
import { CLOUDFLARE_API, CloudflareApiError, CloudflareDns } from '../src/tls/dns/index.js';

interface Call {
  method: string;
  path: string;
  auth: string | null;
  body: unknown;
}

type Route = (call: Call) => { status?: number; body: unknown } | undefined;

/** A fake api.cloudflare.com: each call goes to the first route that answers. */
function fakeApi(routes: Route[]): { fetch: typeof fetch; calls: Call[] } {
  const calls: Call[] = [];
  const impl = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    expect(url.startsWith(CLOUDFLARE_API)).toBe(true);
    const headers = new Headers(init?.headers);
    const call: Call = {
      method: init?.method ?? 'GET',
      path: url.slice(CLOUDFLARE_API.length),
      auth: headers.get('authorization'),
      body: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined,
    };
    calls.push(call);
    for (const r of routes) {
      const answer = r(call);
      if (answer !== undefined) return new Response(JSON.stringify(answer.body), { status: answer.status ?? 200, headers: { 'content-type': 'application/json' } });
    }
    return new Response(JSON.stringify({ success: false, errors: [{ code: 7003, message: 'No route for that URI' }] }), { status: 404 });
  };
  return { fetch: impl as typeof fetch, calls };
}

const ok = (result: unknown) => ({ body: { success: true, errors: [], result } });
const zones: Route = (c) =>
  c.method === 'GET' && c.path.startsWith('/zones?')
    ? ok(new URLSearchParams(c.path.split('?')[1]).get('name') === 'example.com' ? [{ id: 'zone1', name: 'example.com' }] : [])
    : undefined;

describe('Cloudflare DNS provider', () => {
  it('finds the zone by walking up the name, creates the TXT record with the token, and removes it', async () => {
    const api = fakeApi([
      zones,
      (c) => (c.method === 'POST' && c.path === '/zones/zone1/dns_records' ? ok({ id: 'rec1' }) : undefined),
      (c) => (c.method === 'DELETE' && c.path === '/zones/zone1/dns_records/rec1' ? ok({ id: 'rec1' }) : undefined),
    ]);
    const dns = new CloudflareDns({ apiToken: 'secret-token', fetch: api.fetch });
    expect(dns.propagationMs).toBe(10_000);
    const handle = await dns.createTxt('_acme-challenge.relay.example.com', 'abc-123');
    expect(handle).toEqual({ zoneId: 'zone1', id: 'rec1' });
    expect(api.calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'GET /zones?name=relay.example.com',
      'GET /zones?name=example.com',
      'POST /zones/zone1/dns_records',
    ]);
    expect(api.calls.every((c) => c.auth === 'Bearer secret-token')).toBe(true);
    expect(api.calls[2]?.body).toMatchObject({ type: 'TXT', name: '_acme-challenge.relay.example.com', content: 'abc-123', ttl: 60 });

    // The zone is remembered; removal deletes exactly that record.
    await dns.createTxt('_acme-challenge.relay.example.com', 'def-456');
    expect(api.calls.filter((c) => c.path.startsWith('/zones?'))).toHaveLength(2);
    await dns.removeTxt(handle);
    expect(api.calls.at(-1)).toMatchObject({ method: 'DELETE', path: '/zones/zone1/dns_records/rec1' });
  });

  it('uses a configured zone id without looking zones up', async () => {
    const api = fakeApi([(c) => (c.method === 'POST' && c.path === '/zones/0123/dns_records' ? ok({ id: 'r' }) : undefined)]);
    const dns = new CloudflareDns({ apiToken: 't', zoneId: '0123', fetch: api.fetch, propagationMs: 0 });
    expect(await dns.createTxt('_acme-challenge.relay.example.com', 'v')).toEqual({ zoneId: '0123', id: 'r' });
    expect(api.calls).toHaveLength(1);
  });

  it('takes over an identical record left by an earlier attempt, and ignores one already removed', async () => {
    const api = fakeApi([
      zones,
      (c) => (c.method === 'POST' ? { status: 400, body: { success: false, errors: [{ code: 81058, message: 'An identical record already exists.' }] } } : undefined),
      (c) => (c.method === 'GET' && c.path.startsWith('/zones/zone1/dns_records?') ? ok([{ id: 'old' }]) : undefined),
      (c) => (c.method === 'DELETE' ? { status: 404, body: { success: false, errors: [{ code: 81044, message: 'Record does not exist.' }] } } : undefined),
    ]);
    const dns = new CloudflareDns({ apiToken: 't', fetch: api.fetch });
    const handle = await dns.createTxt('_acme-challenge.example.com', 'v');
    expect(handle).toEqual({ zoneId: 'zone1', id: 'old' });
    expect(api.calls.at(-1)?.path).toBe('/zones/zone1/dns_records?type=TXT&name=_acme-challenge.example.com&content=v');
    await expect(dns.removeTxt(handle)).resolves.toBeUndefined();
  });

  it("reports Cloudflare's errors with their codes, never the token", async () => {
    const api = fakeApi([
      (c) => (c.path.startsWith('/zones?') ? { status: 403, body: { success: false, errors: [{ code: 10000, message: 'Authentication error' }] } } : undefined),
    ]);
    const dns = new CloudflareDns({ apiToken: 'secret-token', fetch: api.fetch });
    const err = await dns.createTxt('_acme-challenge.relay.example.com', 'v').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudflareApiError);
    expect((err as CloudflareApiError).status).toBe(403);
    expect((err as Error).message).toBe('Cloudflare API GET /zones answered 403: Authentication error (code 10000)');
    expect((err as Error).message).not.toContain('secret-token');
  });

  it('says so when no zone of the account holds the name', async () => {
    const api = fakeApi([(c) => (c.path.startsWith('/zones?') ? ok([]) : undefined)]);
    const dns = new CloudflareDns({ apiToken: 't', fetch: api.fetch });
    await expect(dns.createTxt('_acme-challenge.relay.example.org', 'v')).rejects.toThrow(/no Cloudflare zone found for _acme-challenge\.relay\.example\.org/);
    expect(api.calls.map((c) => c.path)).toEqual(['/zones?name=relay.example.org', '/zones?name=example.org']);
  });
});
