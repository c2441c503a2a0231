import { Secret, TOTP, URI } from 'otpauth';
import { describe, expect, it } from 'vitest';
import {
  hashRecoveryCode,
  newRecoveryCodes,
  newTotpSecret,
  normalizeRecoveryCode,
  normalizeTotpCode,
  totpStep,
  totpUri,
  verifyTotp,
} from '../src/accounts/totp.js';

// 2025-01-01T00:00:10Z: 10 s into a step.
const T0 = Date.UTC(2025, 0, 1, 0, 0, 10);
const STEP0 = Math.floor(T0 / 30_000);

/** The reference generator: the library itself, configured as authenticator apps are. */
function codeAt(secret: string, timestamp: number): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp });
}

describe('TOTP secrets and URIs', () => {
  it('makes 160-bit base32 secrets, all different', () => {
    const secrets = new Set(Array.from({ length: 100 }, newTotpSecret));
    expect(secrets.size).toBe(100);
    for (const s of secrets) {
      expect(s).toMatch(/^[A-Z2-7]{32}$/);
      expect(Secret.fromBase32(s).bytes.length).toBe(20);
    }
  });

  it('writes an otpauth URI an authenticator app reads back', () => {
    const secret = newTotpSecret();
    const uri = totpUri(secret, 'alice');
    expect(uri).toMatch(/^otpauth:\/\/totp\/Porthole:alice\?/);
    const otp = URI.parse(uri);
    expect(otp).toBeInstanceOf(TOTP);
    const totp = otp as TOTP;
    expect(totp.issuer).toBe('Porthole');
    expect(totp.label).toBe('alice');
    expect(totp.secret.base32).toBe(secret);
    expect(totp.algorithm).toBe('SHA1');
    expect(totp.digits).toBe(6);
    expect(totp.period).toBe(30);
    expect(totpUri(secret, 'bob', 'My Relay')).toMatch(/^otpauth:\/\/totp\/My%20Relay:bob\?issuer=My%20Relay&/);
  });
});

describe('verifyTotp', () => {
  const secret = newTotpSecret();

  it('accepts the current code and says which step it was', () => {
    expect(totpStep(T0)).toBe(STEP0);
    expect(verifyTotp(secret, codeAt(secret, T0), { now: T0 })).toBe(STEP0);
  });

  it('accepts one step either side by default, not two', () => {
    expect(verifyTotp(secret, codeAt(secret, T0 - 30_000), { now: T0 })).toBe(STEP0 - 1);
    expect(verifyTotp(secret, codeAt(secret, T0 + 30_000), { now: T0 })).toBe(STEP0 + 1);
    expect(verifyTotp(secret, codeAt(secret, T0 - 60_000), { now: T0 })).toBeNull();
    expect(verifyTotp(secret, codeAt(secret, T0 + 60_000), { now: T0 })).toBeNull();
  });

  it('honours the window option', () => {
    expect(verifyTotp(secret, codeAt(secret, T0 - 30_000), { now: T0, window: 0 })).toBeNull();
    expect(verifyTotp(secret, codeAt(secret, T0 - 60_000), { now: T0, window: 2 })).toBe(STEP0 - 2);
  });

  it('refuses a code from a step already used, or an earlier one', () => {
    const code = codeAt(secret, T0);
    const step = verifyTotp(secret, code, { now: T0 });
    expect(step).toBe(STEP0);
    expect(verifyTotp(secret, code, { now: T0, lastStep: step })).toBeNull();
    expect(verifyTotp(secret, code, { now: T0 + 20_000, lastStep: step })).toBeNull();
    expect(verifyTotp(secret, codeAt(secret, T0 - 30_000), { now: T0, lastStep: step })).toBeNull();
    // The next step's code is still good.
    expect(verifyTotp(secret, codeAt(secret, T0 + 30_000), { now: T0 + 30_000, lastStep: step })).toBe(STEP0 + 1);
  });

  it('takes codes with spaces or a dash, and nothing else', () => {
    const code = codeAt(secret, T0);
    expect(verifyTotp(secret, `${code.slice(0, 3)} ${code.slice(3)}`, { now: T0 })).toBe(STEP0);
    expect(verifyTotp(secret, ` ${code.slice(0, 3)}-${code.slice(3)} `, { now: T0 })).toBe(STEP0);
    expect(verifyTotp(secret, `${code}0`, { now: T0 })).toBeNull();
    expect(verifyTotp(secret, code.slice(1), { now: T0 })).toBeNull();
    expect(verifyTotp(secret, '', { now: T0 })).toBeNull();
    expect(normalizeTotpCode('12345a')).toBeNull();
    expect(normalizeTotpCode('１２３４５６')).toBeNull();
  });

  it('refuses a wrong secret or a broken one', () => {
    const code = codeAt(secret, T0);
    expect(verifyTotp(newTotpSecret(), code, { now: T0 })).toBeNull();
    expect(verifyTotp('', code, { now: T0 })).toBeNull();
    expect(verifyTotp('!!!', code, { now: T0 })).toBeNull();
    expect(verifyTotp('AAAA', codeAt('AAAA', T0), { now: T0 })).toBeNull();
  });

  it('matches the RFC 6238 SHA-1 test vectors (8 digits there, 6 here: the last six)', () => {
    // Seed "12345678901234567890" (RFC 6238 appendix B).
    const rfc = new Secret({ buffer: new TextEncoder().encode('12345678901234567890').buffer }).base32;
    for (const [t, code] of [
      [59, '94287082'],
      [1111111109, '07081804'],
      [1234567890, '89005924'],
      [2000000000, '69279037'],
    ] as const) {
      expect(verifyTotp(rfc, code.slice(2), { now: t * 1000, window: 0 })).toBe(Math.floor(t / 30));
    }
  });
});

describe('recovery codes', () => {
  it('makes ten different codes shaped xxxx-xxxx-xxxx, and their hashes', () => {
    const { codes, hashes } = newRecoveryCodes();
    expect(codes).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    for (const c of codes) expect(c).toMatch(/^[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}$/);
    expect(hashes).toEqual(codes.map(hashRecoveryCode));
    for (const h of hashes) expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(newRecoveryCodes(3).codes).toHaveLength(3);
    expect(() => newRecoveryCodes(0)).toThrow(RangeError);
  });

  it('forgives case, dashes, spaces and look-alike letters when typed back', () => {
    const code = '7k2m-q9xd-40tz';
    const h = hashRecoveryCode(code);
    expect(hashRecoveryCode('7K2MQ9XD40TZ')).toBe(h);
    expect(hashRecoveryCode(' 7k2m q9xd 4otz ')).toBe(h);
    expect(normalizeRecoveryCode('1111-llll-IIII')).toBe('111111111111');
    expect(hashRecoveryCode('7k2m-q9xd-40ty')).not.toBe(h);
  });

  it('gives what cannot be a code a hash no code has', () => {
    expect(normalizeRecoveryCode('7k2m-q9xd-40t')).toBeNull();
    expect(normalizeRecoveryCode('7k2m-q9xd-40tu')).toBeNull();
    expect(normalizeRecoveryCode('')).toBeNull();
    expect(hashRecoveryCode('7k2m-q9xd-40tu')).not.toBe(hashRecoveryCode('7k2m-q9xd-40t'));
    expect(hashRecoveryCode('')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('spreads characters evenly over the alphabet', () => {
    const counts = new Map<string, number>();
    const { codes } = newRecoveryCodes(100);
    for (const c of codes.join('').replace(/-/g, '')) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(32); // 1,200 draws over 32 symbols: each about 37 times
    for (const n of counts.values()) expect(n).toBeGreaterThan(10);
  });
});
