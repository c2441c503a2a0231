// A small HTTP client that behaves like a browser where it matters to access control: a cookie
// jar per host (host-only cookies stay on their host), redirects followed by hand or not, and
// every request sent to 127.0.0.1 whatever the URL's host (so `*.localhost` needs no resolver).
import http from 'node:http';

export interface ClientResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text(): string;
  json<T = unknown>(): T;
  /** The URL that answered (after redirects). */
  url: string;
}

export interface ClientRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** JSON body; sets content-type. */
  json?: unknown;
  /** Follow up to this many redirects (default 0). */
  follow?: number;
  timeoutMs?: number;
}

export class Client {
  /** host (without port) → cookie name → value */
  readonly jar = new Map<string, Map<string, string>>();

  constructor(readonly port: number) {}

  cookies(host: string): Map<string, string> {
    let m = this.jar.get(host);
    if (m === undefined) {
      m = new Map();
      this.jar.set(host, m);
    }
    return m;
  }

  async request(url: string, opts: ClientRequestOptions = {}): Promise<ClientResponse> {
    let current = new URL(url);
    let method = opts.method ?? 'GET';
    let body: string | Buffer | undefined = opts.json !== undefined ? JSON.stringify(opts.json) : opts.body;
    for (let hop = 0; ; hop++) {
      const res = await this.once(current, method, body, opts);
      const loc = res.headers.location;
      if (hop < (opts.follow ?? 0) && res.status >= 300 && res.status < 400 && typeof loc === 'string') {
        current = new URL(loc, current);
        method = 'GET';
        body = undefined;
        continue;
      }
      return res;
    }
  }

  private once(url: URL, method: string, body: string | Buffer | undefined, opts: ClientRequestOptions): Promise<ClientResponse> {
    const headers: Record<string, string> = { host: url.host, ...opts.headers };
    if (opts.json !== undefined && body !== undefined) headers['content-type'] ??= 'application/json';
    const jar = this.jar.get(url.hostname);
    if (jar !== undefined && jar.size > 0 && headers.cookie === undefined) {
      headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: this.port, method, path: url.pathname + url.search, headers, agent: false },
        (res) => {
          for (const c of res.headers['set-cookie'] ?? []) {
            const [pair] = c.split(';');
            const eq = pair!.indexOf('=');
            const name = pair!.slice(0, eq).trim();
            const value = pair!.slice(eq + 1).trim();
            if (/max-age=0/i.test(c) || value === '') this.cookies(url.hostname).delete(name);
            else this.cookies(url.hostname).set(name, value);
          }
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => {
            const b = Buffer.concat(chunks);
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: b,
              url: url.toString(),
              text: () => b.toString('utf8'),
              json: <T>() => JSON.parse(b.toString('utf8')) as T,
            });
          });
          res.on('error', reject);
        },
      );
      req.setTimeout(opts.timeoutMs ?? 15_000, () => req.destroy(new Error(`timeout: ${method} ${url.toString()}`)));
      req.on('error', reject);
      req.end(body);
    });
  }
}
