import http from 'node:http';
import type { Duplex } from 'node:stream';

export const ACME_CHALLENGE_PATH = '/.well-known/acme-challenge/';

/** HTTP-01 answers waiting for the CA: token → key authorization. */
export class Http01Challenges {
  private readonly answers = new Map<string, string>();

  set(token: string, keyAuthorization: string): void {
    this.answers.set(token, keyAuthorization);
  }

  delete(token: string): void {
    this.answers.delete(token);
  }

  get(token: string): string | undefined {
    return this.answers.get(token);
  }

  get size(): number {
    return this.answers.size;
  }
}

export interface HttpPortOptions {
  challenges: Http01Challenges;
  /** The relay's domain: Host headers for it and its subdomains keep their name in the redirect. */
  domain: string;
  /** `https://DOMAIN[:PORT]`: where everything else goes (its port is the public HTTPS port). */
  publicUrl: string;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The plain-HTTP listener (port 80) when TLS is on: ACME HTTP-01 answers at
 * /.well-known/acme-challenge/TOKEN, and a 301 to HTTPS (same host, path and query) for
 * everything else. It serves no page and sets no cookie.
 */
export function createHttpPortServer(opts: HttpPortOptions): http.Server {
  const server = http.createServer((req, res) => {
    const target = requestTarget(req.url);
    if (target.startsWith(ACME_CHALLENGE_PATH)) {
      const token = target.slice(ACME_CHALLENGE_PATH.length);
      const answer = (req.method === 'GET' || req.method === 'HEAD') && /^[A-Za-z0-9_-]+$/.test(token) ? opts.challenges.get(token) : undefined;
      if (answer === undefined) {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
        res.end('No such challenge\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(answer), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : answer);
      return;
    }
    const location = redirectTarget(req.headers.host, target, opts);
    res.writeHead(301, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(location) + 1 });
    res.end(req.method === 'HEAD' ? undefined : `${location}\n`);
  });
  // A ws:// upgrade (an agent configured with ws://) gets the same redirect, then the socket closes.
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
    const location = redirectTarget(req.headers.host, requestTarget(req.url), opts);
    socket.end(`HTTP/1.1 301 Moved Permanently\r\nlocation: ${location}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  return server;
}

/** Path and query of the request, whatever form its target came in. */
function requestTarget(url: string | undefined): string {
  const raw = url ?? '/';
  if (raw.startsWith('/')) return raw;
  try {
    const u = new URL(raw); // absolute-form (a proxy request)
    return `${u.pathname}${u.search}`;
  } catch {
    return '/';
  }
}

/** https://HOST[:port]TARGET, keeping the Host only when it is the relay's domain or a subdomain. */
export function redirectTarget(hostHeader: string | undefined, target: string, opts: Pick<HttpPortOptions, 'domain' | 'publicUrl'>): string {
  const pub = new URL(opts.publicUrl);
  const port = pub.port === '' ? '' : `:${pub.port}`;
  const name = (hostHeader ?? '').toLowerCase().replace(/:\d*$/, '').replace(/\.$/, '');
  const ours =
    name === opts.domain ||
    (name.endsWith(`.${opts.domain}`) && name.slice(0, -opts.domain.length - 1).split('.').every((l) => LABEL.test(l)));
  const host = ours ? name : pub.hostname;
  // A target such as //evil.example/ stays a path on our host: only the path and query follow.
  return `https://${host}${port}${target.startsWith('/') ? target : `/${target}`}`;
}
