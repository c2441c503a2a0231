/** Minimal cookie parsing and serialising (RFC 6265), for the relay's own two cookies. */

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (header === undefined) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}

export interface CookieOptions {
  /** Seconds; 0 deletes the cookie. Omitted: a browser-session cookie. */
  maxAge?: number;
  secure: boolean;
  sameSite?: 'Lax' | 'Strict';
  path?: string;
}

/** Host-only (never a Domain attribute), HttpOnly, SameSite, Secure over TLS. */
export function serializeCookie(name: string, value: string, o: CookieOptions): string {
  if (!/^[A-Za-z0-9_-]+$/.test(name) || !/^[A-Za-z0-9._~-]*$/.test(value)) throw new Error('unsafe cookie');
  let c = `${name}=${value}; Path=${o.path ?? '/'}; HttpOnly; SameSite=${o.sameSite ?? 'Lax'}`;
  if (o.secure) c += '; Secure';
  if (o.maxAge !== undefined) c += `; Max-Age=${Math.max(0, Math.floor(o.maxAge))}`;
  return c;
}

/**
 * Cookie names. Over TLS the `__Host-` prefix makes the browser itself refuse the cookie unless
 * it is Secure, host-only and Path=/ — so no subdomain can plant or widen it.
 */
export function cookieName(kind: 'dashboard' | 'device', secure: boolean): string {
  const base = kind === 'dashboard' ? 'porthole_session' : 'porthole_device';
  return secure ? `__Host-${base}` : base;
}
