import type { FastifyReply, FastifyRequest } from 'fastify';
import type { WebConfig } from './deps.js';

/**
 * The Content-Security-Policy of every page the relay serves on its own domain: no inline or
 * foreign script, nothing framed, no <base>. Forms may post to the relay and to device
 * subdomains: the "Open" button's POST answers with a redirect to the device's handoff URL, and
 * browsers apply form-action to that redirect too.
 */
export function contentSecurityPolicy(config: Pick<WebConfig, 'publicUrl' | 'domain'>): string {
  const u = new URL(config.publicUrl);
  const devices = `${u.protocol}//*.${config.domain}${u.port ? `:${u.port}` : ''}`;
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    `form-action 'self' ${devices}`,
  ].join('; ');
}

/** One year, as HSTS preload lists expect. */
const HSTS = 'max-age=31536000; includeSubDomains';

/**
 * An onSend hook that puts the security headers on every response Fastify sends for the
 * relay's own domain (device subdomains never reach Fastify: the proxy answers them).
 * Cache-Control: no-store on the API (and on whatever did not say otherwise), HSTS only over TLS.
 */
export function securityHeaders(config: WebConfig) {
  const csp = contentSecurityPolicy(config);
  return async (req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    reply.header('content-security-policy', csp);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('cross-origin-opener-policy', 'same-origin');
    reply.header('cross-origin-resource-policy', 'same-origin');
    if (config.secureCookies) reply.header('strict-transport-security', HSTS);
    if (isApiPath(req.url) || !reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    return payload;
  };
}

export function isApiPath(url: string): boolean {
  return url === '/api' || url.startsWith('/api/') || url.startsWith('/api?');
}

export const STATE_CHANGING: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Whether the request carries a body (a length above zero, or chunked). */
export function hasBody(req: FastifyRequest): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined && len !== '0') return true;
  return req.headers['transfer-encoding'] !== undefined;
}

/** The media type of the request, lowercase, without parameters. */
export function mediaType(req: FastifyRequest): string | undefined {
  const ct = req.headers['content-type'];
  if (ct === undefined) return undefined;
  return ct.split(';')[0]!.trim().toLowerCase();
}
