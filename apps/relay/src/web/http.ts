import { createHash, timingSafeEqual } from 'node:crypto';
import type { z } from 'zod';
import { RelayError, type RelayErrorCode } from '../errors.js';

/** A RelayError that also tells the client when to come back (429 Retry-After). */
export class RetryLaterError extends RelayError {
  readonly retryAfterS: number;

  constructor(code: RelayErrorCode, retryAfterMs: number, args: readonly string[] = []) {
    super(code, args);
    this.retryAfterS = Math.max(1, Math.ceil(retryAfterMs / 1000));
  }
}

/** "45 seconds", "1 minute", "15 minutes", "2 hours". */
export function formatWait(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.ceil(s / 60);
  if (m < 120) return `${m} minute${m === 1 ? '' : 's'}`;
  const h = Math.ceil(m / 60);
  return `${h} hours`;
}

/** The error a client sees: a catalogue code, its status and message, and extra headers. */
export interface Problem {
  status: number;
  code: RelayErrorCode;
  message: string;
  headers: Record<string, string>;
  /** Unexpected: log it with its stack. */
  internal: boolean;
}

/**
 * Any thrown value → what the client is told. Catalogue errors say what they say; Fastify's own
 * 4xx (bad JSON, wrong content type, too large) map to catalogue codes; anything else is a 500
 * that tells nothing (the log has it).
 */
export function toProblem(err: unknown): Problem {
  if (err instanceof RelayError) {
    const headers: Record<string, string> = {};
    if (err instanceof RetryLaterError) headers['retry-after'] = String(err.retryAfterS);
    return { status: err.statusCode, code: err.code, message: err.message, headers, internal: err.statusCode >= 500 };
  }
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown } | null;
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  const fst = typeof e?.code === 'string' ? e.code : '';
  if (fst === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || status === 415) {
    return problem(new RelayError('RELAY_UNSUPPORTED_MEDIA_TYPE', ['application/json']));
  }
  if (fst === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) {
    return problem(new RelayError('RELAY_PAYLOAD_TOO_LARGE', [BODY_LIMIT]));
  }
  if (status >= 400 && status < 500) {
    const detail = fst.startsWith('FST_ERR_CTP') ? 'the request body is not valid' : String(e?.message ?? 'malformed request');
    return { ...problem(new RelayError('RELAY_BAD_REQUEST', [detail.slice(0, 200)])), status: status === 404 ? 404 : 400 };
  }
  return { ...problem(new RelayError('RELAY_INTERNAL', ['see the relay log'])), internal: true };
}

function problem(err: RelayError): Problem {
  return { status: err.statusCode, code: err.code, message: err.message, headers: {}, internal: false };
}

/** Bodies the dashboard sends are small: 64 KiB is plenty and bounds what a stranger can make us parse. */
export const BODY_LIMIT = 64 * 1024;

/** Validates a request body (or query) with a zod schema; RELAY_BAD_REQUEST naming the first problem. */
export function parse<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  throw new RelayError('RELAY_BAD_REQUEST', [`${where}${issue?.message ?? 'invalid input'}`]);
}

/** Constant-time string comparison (hashes both sides, so lengths never leak). */
export function safeEqual(a: unknown, b: string): boolean {
  if (typeof a !== 'string' || a.length === 0 || a.length > 1024) return false;
  const h = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(h(a), h(b));
}
