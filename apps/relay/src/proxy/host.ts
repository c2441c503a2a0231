/**
 * Where a request is going, from its Host header (or an absolute-form request line, which per
 * RFC 9112 §3.2.2 overrides Host — and must then agree with it, or the request is refused).
 */
export type Target =
  | { kind: 'relay' }
  | { kind: 'device'; slug: string }
  | { kind: 'unknown' }
  | { kind: 'invalid'; reason: string };

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function hostOnly(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return (colon === -1 ? h : h.slice(0, colon)).replace(/\.$/, '');
}

export function classifyHost(hostHeader: string | undefined, url: string | undefined, domain: string): Target {
  if (hostHeader === undefined || hostHeader.length === 0) return { kind: 'invalid', reason: 'missing Host header' };
  let host = hostOnly(hostHeader);
  if (url !== undefined && !url.startsWith('/') && url !== '*') {
    let abs: URL;
    try {
      abs = new URL(url);
    } catch {
      return { kind: 'invalid', reason: 'malformed request target' };
    }
    const absHost = hostOnly(abs.host);
    if (absHost !== host) return { kind: 'invalid', reason: 'request target and Host disagree' };
    host = absHost;
  }
  const d = domain.toLowerCase();
  if (host === d) return { kind: 'relay' };
  if (host.endsWith(`.${d}`)) {
    const slug = host.slice(0, -(d.length + 1));
    if (LABEL.test(slug)) return { kind: 'device', slug };
    return { kind: 'unknown' };
  }
  return { kind: 'unknown' };
}

/**
 * The path part of a request target, checked: no dot segments (raw or percent-encoded), no
 * encoded slashes or backslashes, no NUL — browsers never send these, and they are how a route
 * prefix is escaped. Returns undefined when the path must be refused.
 */
export function checkedPath(url: string): { path: string; query: string } | undefined {
  let target = url;
  if (!target.startsWith('/')) {
    try {
      const u = new URL(target);
      target = u.pathname + u.search;
    } catch {
      return undefined;
    }
  }
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q);
  if (!path.startsWith('/') || path.includes('\\') || path.includes('\0')) return undefined;
  if (/%(?:2f|5c|00)/i.test(path)) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return undefined;
  }
  if (decoded.split('/').some((seg) => seg === '..' || seg === '.')) return undefined;
  return { path, query };
}
