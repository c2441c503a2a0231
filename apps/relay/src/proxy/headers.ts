import type { IncomingMessage } from 'node:http';
import type { HelloService } from '@porthole/protocol';

/** RFC 9110 §7.6.1 connection-specific fields, never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** Headers a client may not set for the printer to believe: the relay sets them itself. */
const RELAY_SET = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip', 'forwarded']);

/** The relay's own cookies: its session lives in these and never reaches a printer. */
export const RELAY_COOKIE_PREFIXES = ['porthole', '__host-porthole', '__secure-porthole'];

export type HeaderMap = Record<string, string | string[]>;

function connectionTokens(raw: string[]): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const t of raw[i + 1]!.split(',')) out.add(t.trim().toLowerCase());
    }
  }
  return out;
}

function add(h: HeaderMap, name: string, value: string): void {
  const prev = h[name];
  if (prev === undefined) h[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else h[name] = [prev, value];
}

export function stripRelayCookies(cookie: string): string {
  return cookie
    .split(';')
    .map((c) => c.trim())
    .filter((c) => {
      if (c.length === 0) return false;
      const name = c.slice(0, Math.max(0, c.indexOf('='))).trim().toLowerCase();
      return !RELAY_COOKIE_PREFIXES.some((p) => name.startsWith(p));
    })
    .join('; ');
}

export function clientAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

export interface ForwardOptions {
  service: HelloService;
  trustProxy: boolean;
  /** Keep Connection/Upgrade for a WebSocket handshake. */
  upgrade?: boolean;
}

/**
 * Request headers for the printer: hop-by-hop removed, the relay's cookies and Authorization
 * removed (unless the service asks for Authorization, e.g. PrusaLink's digest), and
 * X-Forwarded-For/Proto/Host set by the relay so the printer UI builds correct URLs.
 */
export function forwardHeaders(req: IncomingMessage, opts: ForwardOptions): HeaderMap {
  const raw = req.rawHeaders;
  const drop = connectionTokens(raw);
  const out: HeaderMap = {};
  let host = '';
  let inboundXff: string | undefined;
  let inboundProto: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (name === 'host') {
      host = value;
      continue;
    }
    if (name === 'x-forwarded-for') inboundXff = inboundXff === undefined ? value : `${inboundXff}, ${value}`;
    if (name === 'x-forwarded-proto') inboundProto ??= value;
    if (HOP_BY_HOP.has(name) || drop.has(name) || RELAY_SET.has(name)) continue;
    if (name === 'authorization' && opts.service.passAuthorization !== true) continue;
    if (name === 'cookie') {
      const kept = stripRelayCookies(value);
      if (kept.length > 0) add(out, 'cookie', kept);
      continue;
    }
    add(out, name, value);
  }
  if (Array.isArray(out.cookie)) out.cookie = out.cookie.join('; ');
  const client = clientAddress(req);
  const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true;
  out.host = opts.service.hostHeader ?? host;
  out['x-forwarded-for'] = opts.trustProxy && inboundXff !== undefined ? `${inboundXff}, ${client}` : client;
  out['x-forwarded-proto'] = encrypted ? 'https' : opts.trustProxy && inboundProto !== undefined ? inboundProto : 'http';
  out['x-forwarded-host'] = host;
  if (opts.upgrade === true) {
    out.connection = 'Upgrade';
    out.upgrade = 'websocket';
  }
  return out;
}

/**
 * Response headers for the phone, as a flat raw list: hop-by-hop removed, and Set-Cookie made
 * host-only (a Domain attribute would let one printer's UI plant cookies for other devices
 * or for the relay's own domain).
 */
export function responseHeaders(rawHeaders: string[]): string[] {
  const drop = connectionTokens(rawHeaders);
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || drop.has(lower)) continue;
    let value = rawHeaders[i + 1]!;
    if (lower === 'set-cookie') value = value.replace(/;\s*domain=[^;]*/gi, '');
    out.push(name, value);
  }
  return out;
}

/** Serialises a request head for a raw stream (WebSocket upgrade). */
export function requestHead(method: string, target: string, headers: HeaderMap): string {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (/[\r\n]/.test(one)) continue;
      head += `${k}: ${one}\r\n`;
    }
  }
  return `${head}\r\n`;
}
