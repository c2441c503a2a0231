import http from 'node:http';
import net from 'node:net';

/**
 * Small, bounded network probes for `detect` and `doctor`: one TCP connect, one HTTP GET.
 * Every probe has a deadline, reads at most a few KiB, and resolves (never rejects) with either
 * what came back or why nothing did, as an error code plain words can be made from.
 */

export type ProbeFailure = { ok: false; code: string; message: string };

export interface TcpOptions {
  host: string;
  port: number;
  timeoutMs: number;
  lookup?: net.LookupFunction;
}

/** Connects and closes at once: is anything listening? */
export function tcpProbe(opts: TcpOptions): Promise<{ ok: true; address: string } | ProbeFailure> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: opts.host, port: opts.port, ...(opts.lookup !== undefined ? { lookup: opts.lookup } : {}) });
    const timer = setTimeout(() => finish({ ok: false, code: 'ETIMEDOUT', message: `no answer within ${opts.timeoutMs} ms` }), opts.timeoutMs);
    let done = false;
    function finish(r: { ok: true; address: string } | ProbeFailure): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    }
    socket.once('connect', () => finish({ ok: true, address: socket.remoteAddress ?? opts.host }));
    socket.once('error', (e: NodeJS.ErrnoException) => finish({ ok: false, code: e.code ?? 'ERROR', message: e.message }));
  });
}

export interface GetOptions {
  host: string;
  port: number;
  path?: string;
  /** Host header; default host:port. */
  hostHeader?: string;
  timeoutMs: number;
  /** Body bytes kept (the rest is not read). Default 16 KiB. */
  maxBytes?: number;
  /** Resolve on the response head without reading the body (snapshots, streams). */
  headOnly?: boolean;
  lookup?: net.LookupFunction;
}

export interface GetAnswer {
  ok: true;
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The first maxBytes of the body, as text. */
  body: string;
}

/** One GET with a deadline over the whole exchange. */
export function httpGet(opts: GetOptions): Promise<GetAnswer | ProbeFailure> {
  const maxBytes = opts.maxBytes ?? 16 * 1024;
  return new Promise((resolve) => {
    let done = false;
    const req = http.request({
      host: opts.host,
      port: opts.port,
      path: opts.path ?? '/',
      method: 'GET',
      agent: false,
      headers: { host: opts.hostHeader ?? `${opts.host}:${opts.port}`, accept: '*/*', 'user-agent': 'porthole-agent' },
      ...(opts.lookup !== undefined ? { lookup: opts.lookup } : {}),
    });
    const timer = setTimeout(
      () => finish({ ok: false, code: 'ETIMEDOUT', message: `no HTTP answer within ${opts.timeoutMs} ms` }),
      opts.timeoutMs,
    );
    function finish(r: GetAnswer | ProbeFailure): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    }
    req.once('error', (e: NodeJS.ErrnoException) => finish({ ok: false, code: e.code ?? 'ERROR', message: e.message }));
    req.once('response', (res) => {
      const head = { ok: true as const, status: res.statusCode ?? 0, headers: res.headers };
      if (opts.headOnly === true) {
        finish({ ...head, body: '' });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      const end = () => finish({ ...head, body: Buffer.concat(chunks).toString('utf8') });
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        if (size >= maxBytes) end();
      });
      res.once('end', end);
      res.once('error', end);
    });
    req.end();
  });
}

/** An error code from a probe, in plain words. */
export function plainNetError(code: string, message: string): string {
  switch (code) {
    case 'ECONNREFUSED':
      return 'nothing is listening there (connection refused)';
    case 'ETIMEDOUT':
      return message;
    case 'ENOTFOUND':
      return 'the name does not resolve (ENOTFOUND)';
    case 'EAI_AGAIN':
      return 'the name could not be resolved right now (EAI_AGAIN: DNS not answering?)';
    case 'EHOSTUNREACH':
      return 'the host is unreachable (EHOSTUNREACH)';
    case 'ENETUNREACH':
      return 'the network is unreachable (ENETUNREACH: no route, is this Pi online?)';
    case 'ECONNRESET':
      return 'the connection was reset (ECONNRESET)';
    case 'ENOTLAN':
      return 'the name resolves outside the local network, which the agent refuses';
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_VERSION':
      return 'it answers, but not with HTTP';
    default:
      return `${code}: ${message}`;
  }
}
