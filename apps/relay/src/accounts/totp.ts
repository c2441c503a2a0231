import { createHash, randomBytes } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';

/**
 * RFC 6238 with the parameters every authenticator app supports: HMAC-SHA1, 6 digits, 30 s.
 * (SHA-256 and 8 digits are silently ignored by several popular apps, which then show wrong codes.)
 */
export const TOTP_ALGORITHM = 'SHA1';
export const TOTP_DIGITS = 6;
export const TOTP_PERIOD_S = 30;
/** 160-bit secrets, as RFC 4226 recommends. */
export const TOTP_SECRET_BYTES = 20;
/** Steps accepted either side of the current one: clocks drift and people type slowly. */
export const TOTP_WINDOW = 1;

/** A fresh random secret, base32 (RFC 4648, no padding): 32 characters. */
export function newTotpSecret(): string {
  return new Secret({ buffer: bufferOf(randomBytes(TOTP_SECRET_BYTES)) }).base32;
}

/** The otpauth:// URI an authenticator app reads from a QR code: label "issuer:username". */
export function totpUri(secret: string, username: string, issuer = 'Porthole'): string {
  return totp(Secret.fromBase32(secret), username, issuer).toString();
}

/** The time step `now` falls in. */
export function totpStep(now: number = Date.now()): number {
  return TOTP.counter({ period: TOTP_PERIOD_S, timestamp: now });
}

/** `code` as six digits ("123 456" and "123-456" are fine), or null. */
export function normalizeTotpCode(code: string): string | null {
  const digits = code.replace(/[\s-]/g, '');
  return digits.length === TOTP_DIGITS && /^[0-9]+$/.test(digits) ? digits : null;
}

export interface VerifyTotpOptions {
  /** Milliseconds since the epoch. */
  now?: number;
  /** Steps either side of now's. Default 1. */
  window?: number;
  /** The step of the last code this user got in with: it and every earlier one are refused. */
  lastStep?: number | null;
}

/**
 * The time step `code` belongs to if it is valid for `secret` within the window and later than
 * `lastStep`, else null. Store the step and pass it back next time: a code works once.
 * Comparison is constant-time (otpauth uses crypto.timingSafeEqual).
 */
export function verifyTotp(secret: string, code: string, opts: VerifyTotpOptions = {}): number | null {
  const token = normalizeTotpCode(code);
  if (token === null) return null;
  let key: Secret;
  try {
    key = Secret.fromBase32(secret);
  } catch {
    return null;
  }
  if (key.bytes.length < 10) return null; // not one of ours: ours are 20 bytes
  const now = opts.now ?? Date.now();
  const window = Math.max(0, Math.min(opts.window ?? TOTP_WINDOW, 10));
  const delta = totp(key).validate({ token, timestamp: now, window });
  if (delta === null) return null;
  const step = totpStep(now) + delta;
  if (opts.lastStep !== undefined && opts.lastStep !== null && step <= opts.lastStep) return null;
  return step;
}

function totp(secret: Secret, label = 'user', issuer = 'Porthole'): TOTP {
  return new TOTP({
    issuer,
    label,
    issuerInLabel: true,
    secret,
    algorithm: TOTP_ALGORITHM,
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_S,
  });
}

function bufferOf(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

// ---- recovery codes ----------------------------------------------------------------------

export const RECOVERY_CODE_COUNT = 10;

/**
 * Crockford's base32: no I, L, O or U, so what is read off paper is what was printed; when typed
 * back, i and l count as 1 and o as 0.
 */
const CROCKFORD = '0123456789abcdefghjkmnpqrstvwxyz';
const RECOVERY_CHARS = 12;

/**
 * `n` fresh recovery codes like "7k2m-q9xd-40tz" (12 characters, 60 random bits), to show once,
 * and their hashes to store.
 */
export function newRecoveryCodes(n: number = RECOVERY_CODE_COUNT): { codes: string[]; hashes: string[] } {
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new RangeError('recovery code count must be 1..100');
  const codes: string[] = [];
  while (codes.length < n) {
    // 256 is a multiple of 32: every character equally likely.
    const chars = [...randomBytes(RECOVERY_CHARS)].map((b) => CROCKFORD[b & 31] ?? '');
    const code = `${chars.slice(0, 4).join('')}-${chars.slice(4, 8).join('')}-${chars.slice(8).join('')}`;
    if (!codes.includes(code)) codes.push(code);
  }
  return { codes, hashes: codes.map(hashRecoveryCode) };
}

/** A recovery code as typed, reduced to its 12 canonical characters, or null if it cannot be one. */
export function normalizeRecoveryCode(code: string): string | null {
  const s = code
    .toLowerCase()
    .replace(/[\s-]/g, '')
    .replace(/[il]/g, '1')
    .replace(/o/g, '0');
  if (s.length !== RECOVERY_CHARS) return null;
  for (const c of s) if (!CROCKFORD.includes(c)) return null;
  return s;
}

/**
 * Lowercase hex SHA-256 of the normalized code. A fast hash is enough for 60 random bits that are
 * only ever guessed online through the sign-in throttle. Something that is not a recovery code
 * at all gets a hash no stored code can have.
 */
export function hashRecoveryCode(code: string): string {
  const norm = normalizeRecoveryCode(code);
  return createHash('sha256')
    .update(norm === null ? `invalid:${code}` : `porthole-recovery:${norm}`, 'utf8')
    .digest('hex');
}
