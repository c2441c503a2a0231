// Signing in to a device as a browser would, over HTTP or HTTPS and to any address: the
// relay's login, then /open/SLUG and its handoff redirects on the device's own origin, with a
// cookie jar per host. (@porthole/e2e/auth does the same over plain HTTP on 127.0.0.1 only.)
import http from 'node:http';
import https from 'node:https';
import type { Target } from './load.js';

interface Answer {
  status: number;
  location: string | undefined;
  body: string;
}

export interface SignInOptions {
  /** The relay's port and address, and with HTTPS its CA (the server name comes from each URL). */
  port: number;
  address?: string;
  ca?: string | Buffer;
  /** The relay's domain: the dashboard's host name; devices are SLUG.domain. */
  domain: string;
  username: string;
  password: string;
  slug: string;
}

/** Signs in and returns a Target for the device: its Host, its cookie, and TLS settings if any. */
export async function signIn(o: SignInOptions): Promise<Target> {
  const [t] = await signInMany(o, [o.slug]);
  return t as Target;
}

/** One login, then a Target for each of `slugs` (each opened through its handoff). */
export async function signInMany(o: Omit<SignInOptions, 'slug'> & { slug?: string }, slugs: readonly string[]): Promise<Target[]> {
  const scheme = o.ca === undefined ? 'http' : 'https';
  const jar = new Map<string, Map<string, string>>();
  const send = (url: URL, method: string, body?: string, headers: Record<string, string> = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const cookies = jar.get(url.hostname);
      const h: Record<string, string> = { host: url.host, ...headers };
      if (cookies !== undefined && cookies.size > 0) h.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
      const opts: https.RequestOptions = {
        host: o.address ?? '127.0.0.1',
        port: o.port,
        method,
        path: url.pathname + url.search,
        headers: h,
        agent: false,
        ...(o.ca !== undefined ? { ca: o.ca, servername: url.hostname } : {}),
      };
      const req = (o.ca === undefined ? http : https).request(opts, (res) => {
        for (const c of res.headers['set-cookie'] ?? []) {
          const pair = c.split(';')[0] ?? '';
          const eq = pair.indexOf('=');
          const m = jar.get(url.hostname) ?? new Map<string, string>();
          jar.set(url.hostname, m);
          m.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
        }
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, location: res.headers.location, body: Buffer.concat(chunks).toString() }),
        );
        res.on('error', reject);
      });
      req.setTimeout(15_000, () => req.destroy(new Error(`sign-in: timeout on ${method} ${url.href}`)));
      req.on('error', reject);
      req.end(body);
    });
  const base = `${scheme}://${o.domain}:${o.port}`;
  const login = await send(new URL(`${base}/api/login`), 'POST', JSON.stringify({ username: o.username, password: o.password }), {
    origin: base,
    'content-type': 'application/json',
  });
  if (login.status !== 200) throw new Error(`sign-in: login answered ${login.status} ${login.body.slice(0, 200)}`);
  const targets: Target[] = [];
  for (const slug of slugs) {
    let url = new URL(`${base}/open/${slug}`);
    for (let hop = 0; hop < 4; hop++) {
      const r = await send(url, 'GET');
      if (r.status < 300 || r.status >= 400 || r.location === undefined) break;
      url = new URL(r.location, url);
    }
    const deviceHost = `${slug}.${o.domain}`;
    const entry = [...(jar.get(deviceHost) ?? [])].find(([k]) => k.includes('porthole_device'));
    if (entry === undefined) throw new Error(`sign-in: no device cookie for ${deviceHost} after the handoff (at ${url.href})`);
    targets.push({
      port: o.port,
      address: o.address,
      host: `${deviceHost}:${o.port}`,
      cookie: `${entry[0]}=${entry[1]}`,
      ...(o.ca !== undefined ? { tls: { ca: o.ca, servername: deviceHost } } : {}),
    });
  }
  return targets;
}
