import http from 'node:http';
import https from 'node:https';
import { parseRelayUrl } from '../config/index.js';
import { isObject, own } from '../config/validate.js';

/**
 * The agent's side of the pairing protocol (the relay's apps/relay/src/pairing/routes.ts):
 *   POST {relay}/_porthole/pair/start {name, agent} → 201 {pairingId, code, pollToken, expiresAt, approveUrl}
 *   POST {relay}/_porthole/pair/poll {pairingId, pollToken} → long poll, then
 *     200 {status: pending} | 200 {status: approved, credential, slug, name, deviceId}
 *     | 410 {status: expired} | 403 {status: denied} | 404 (the relay does not know the pairing)
 * Plain node:http/https with the agent's own CA option; no redirects are followed.
 */

export const PAIR_START_PATH = '/_porthole/pair/start';
export const PAIR_POLL_PATH = '/_porthole/pair/poll';

export const PAIRING_CLIENT_DEFAULTS = Object.freeze({
  /** Bound on a start request. */
  startTimeoutMs: 15_000,
  /** Bound on a poll: the relay answers within 25 s, plus room for a slow link. */
  pollTimeoutMs: 45_000,
  /** Largest response read. */
  maxResponseBytes: 64 * 1024,
});

/** The relay as the pairing client talks to it. */
export interface PairingEndpoint {
  /** http(s)://host[:port][/prefix], no trailing slash. */
  base: string;
  /** Extra trusted CA certificate(s) (PEM), as `caFile` in the agent config. */
  ca?: Buffer;
}

/** The relay URL given on the command line (http, https, ws or wss) → where to pair and what the config says. */
export function relayUrls(raw: string): { http: string; ws: string } | { error: string } {
  const ws = parseRelayUrl(raw);
  if (typeof ws !== 'string') return ws;
  return { ws, http: ws.replace(/^ws/, 'http') };
}

const CODE_RE = /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/;
const CREDENTIAL_RE = /^[\x21-\x7e]{1,1024}$/;

/** A string that `ok` accepts. */
const stringWhere = (v: unknown, ok: (s: string) => boolean): v is string => typeof v === 'string' && ok(v);
const matching = (re: RegExp) => (s: string) => re.test(s);

/** The 201 answer to a start, with only the fields we know; undefined when it is not of that shape. */
function startAnswer(body: unknown): { pairingId: string; code: string; pollToken: string; expiresAt: string; approveUrl: string } | undefined {
  if (!isObject(body)) return undefined;
  const [pairingId, code, pollToken, expiresAt, approveUrl] = ['pairingId', 'code', 'pollToken', 'expiresAt', 'approveUrl'].map((k) => own(body, k));
  if (
    !stringWhere(pairingId, matching(/^[0-9a-f-]{36}$/)) ||
    !stringWhere(code, matching(CODE_RE)) ||
    !stringWhere(pollToken, matching(/^[A-Za-z0-9_-]{43}$/)) ||
    !stringWhere(expiresAt, (s) => !Number.isNaN(Date.parse(s))) ||
    !stringWhere(approveUrl, (s) => s.length <= 2048 && /^https?:\/\//.test(s) && !/[\s\x00-\x1f\x7f]/.test(s))
  ) {
    return undefined;
  }
  return { pairingId, code, pollToken, expiresAt, approveUrl };
}

/** An answer to a poll, with only the fields we know; undefined when it is not one of the four shapes. */
function pollAnswer(body: unknown): Exclude<PollAnswer, { status: 'unknown' }> | undefined {
  if (!isObject(body)) return undefined;
  const status = own(body, 'status');
  if (status === 'pending' || status === 'expired' || status === 'denied') return { status };
  if (status !== 'approved') return undefined;
  const [credential, slug, name, deviceId] = ['credential', 'slug', 'name', 'deviceId'].map((k) => own(body, k));
  if (
    !stringWhere(credential, matching(CREDENTIAL_RE)) ||
    !stringWhere(slug, matching(/^[a-z0-9-]{1,63}$/)) ||
    !stringWhere(name, (s) => s.length >= 1 && s.length <= 200) ||
    !stringWhere(deviceId, (s) => s.length >= 1 && s.length <= 100)
  ) {
    return undefined;
  }
  return { status, credential, slug, name, deviceId };
}

export interface StartedPairing {
  pairingId: string;
  code: string;
  pollToken: string;
  expiresAt: Date;
  approveUrl: string;
  /** How long the code lives, by the relay's own clock (its Date header), so a skewed Pi clock does not matter. */
  ttlMs: number;
}

export type PollAnswer =
  | { status: 'pending' }
  | { status: 'approved'; credential: string; slug: string; name: string; deviceId: string }
  | { status: 'expired' }
  | { status: 'denied' }
  /** The relay does not know this pairing (it restarted): start over. */
  | { status: 'unknown' };

/**
 * Why a pairing request failed. `transient`: worth retrying (network, timeout, 5xx, 429);
 * otherwise the relay refused for good (4xx) or does not speak this protocol.
 */
export class PairingError extends Error {
  readonly transient: boolean;
  /** HTTP status, when the relay answered. */
  readonly status: number | undefined;
  /** The relay's Retry-After, in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(message: string, opts: { transient: boolean; status?: number; retryAfterMs?: number; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PairingError';
    this.transient = opts.transient;
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

/** The request was aborted through its signal (Ctrl-C). */
export class PairingAborted extends Error {
  constructor() {
    super('pairing cancelled');
    this.name = 'PairingAborted';
  }
}

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface JsonResponse {
  status: number;
  body: unknown;
  date: number | undefined;
  retryAfterMs: number | undefined;
}

/** POSTs JSON, reads a bounded JSON answer. Rejects with PairingError or PairingAborted. */
export function postJson(endpoint: PairingEndpoint, path: string, payload: unknown, opts: RequestOptions = {}): Promise<JsonResponse> {
  const url = new URL(`${endpoint.base}${path}`);
  const body = Buffer.from(JSON.stringify(payload), 'utf8');
  const timeoutMs = opts.timeoutMs ?? PAIRING_CLIENT_DEFAULTS.startTimeoutMs;
  const secure = url.protocol === 'https:';
  return new Promise<JsonResponse>((resolve, reject) => {
    if (opts.signal?.aborted === true) {
      reject(new PairingAborted());
      return;
    }
    let settled = false;
    const finish = (err: Error | undefined, res?: JsonResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err !== undefined) {
        req.destroy();
        reject(err);
      } else resolve(res!);
    };
    const options: https.RequestOptions = {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-length': String(body.length),
        accept: 'application/json',
      },
      ...(secure && endpoint.ca !== undefined ? { ca: endpoint.ca } : {}),
      // Explicit, so NODE_TLS_REJECT_UNAUTHORIZED=0 cannot turn verification off either.
      ...(secure ? { rejectUnauthorized: true } : {}),
    };
    const req = (secure ? https : http).request(url, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > PAIRING_CLIENT_DEFAULTS.maxResponseBytes) {
          finish(new PairingError(`the relay's answer to ${path} is too large`, { transient: false, status: res.statusCode }));
          return;
        }
        chunks.push(c);
      });
      res.on('error', (e) => finish(network(e)));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        const date = res.headers.date === undefined ? undefined : Date.parse(res.headers.date);
        finish(undefined, {
          status,
          body: parsed,
          date: date === undefined || Number.isNaN(date) ? undefined : date,
          retryAfterMs: retryAfter(res.headers['retry-after']),
        });
      });
    });
    const timer = setTimeout(
      () => finish(new PairingError(`the relay did not answer within ${Math.round(timeoutMs / 1000)} s`, { transient: true })),
      timeoutMs,
    );
    const onAbort = () => finish(new PairingAborted());
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e) => finish(network(e)));
    req.end(body);
  });
}

function network(e: Error): PairingError {
  const code = (e as NodeJS.ErrnoException).code;
  const msg = code !== undefined && !e.message.includes(code) ? `${code}: ${e.message}` : e.message;
  return new PairingError(`cannot reach the relay (${msg})`, { transient: true, cause: e });
}

function retryAfter(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,6}$/.test(v.trim())) return undefined;
  return Number(v.trim()) * 1000;
}

/** The relay's `{code, message}` (or any message) for an error status. */
function refusal(what: string, r: JsonResponse): PairingError {
  const b = r.body as { message?: unknown } | undefined;
  const message = typeof b?.message === 'string' ? b.message.replace(/[\x00-\x1f\x7f]/g, ' ').slice(0, 300) : `HTTP ${r.status}`;
  const transient = r.status >= 500 || r.status === 429 || r.status === 408;
  const hint = r.status === 404 ? ' (is this a Porthole relay, and recent enough to pair devices?)' : '';
  return new PairingError(`the relay refused ${what}: ${message}${hint}`, {
    transient,
    status: r.status,
    ...(r.retryAfterMs !== undefined ? { retryAfterMs: r.retryAfterMs } : {}),
  });
}

/** Asks the relay for a pairing code. */
export async function startPairing(
  endpoint: PairingEndpoint,
  input: { name: string; agent: string },
  opts: RequestOptions = {},
): Promise<StartedPairing> {
  const sentAt = Date.now();
  const r = await postJson(endpoint, PAIR_START_PATH, input, { timeoutMs: PAIRING_CLIENT_DEFAULTS.startTimeoutMs, ...opts });
  if (r.status !== 201) throw refusal('to start pairing', r);
  const answer = startAnswer(r.body);
  if (answer === undefined) throw new PairingError('the relay sent an unexpected answer to the pairing request', { transient: false, status: r.status });
  const expiresAt = new Date(answer.expiresAt);
  const ttlMs = Math.max(0, expiresAt.getTime() - (r.date ?? sentAt));
  return { ...answer, expiresAt, ttlMs };
}

/** One long poll: resolves the relay's answer. Transport and server trouble reject with PairingError. */
export async function pollPairing(
  endpoint: PairingEndpoint,
  input: { pairingId: string; pollToken: string },
  opts: RequestOptions = {},
): Promise<PollAnswer> {
  const r = await postJson(endpoint, PAIR_POLL_PATH, input, { timeoutMs: PAIRING_CLIENT_DEFAULTS.pollTimeoutMs, ...opts });
  if (r.status === 404) return { status: 'unknown' };
  if (r.status === 200 || r.status === 403 || r.status === 410) {
    const answer = pollAnswer(r.body);
    const expected = r.status === 403 ? 'denied' : r.status === 410 ? 'expired' : undefined;
    if (answer !== undefined && (expected === undefined ? ['pending', 'approved'].includes(answer.status) : answer.status === expected)) {
      return answer;
    }
    if (expected !== undefined) return { status: expected };
    throw new PairingError('the relay sent an unexpected answer to a poll', { transient: false, status: r.status });
  }
  throw refusal('the poll', r);
}
