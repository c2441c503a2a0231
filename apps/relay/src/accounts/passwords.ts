import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as ZxcvbnCommon from '@zxcvbn-ts/language-common';
import * as argon2 from 'argon2';

/** argon2 cost parameters; the algorithm is always argon2id. */
export interface Argon2Params {
  /** KiB. */
  readonly memoryCost: number;
  /** Passes over memory. */
  readonly timeCost: number;
  /** Lanes. */
  readonly parallelism: number;
}

/**
 * What new hashes use. Stronger than both OWASP argon2id minimums (m=19456 t=2, m=47104 t=1):
 * 32 MiB × 3 passes, one lane, ~75 ms a hash on the 2-core reference machine, at most 128 MiB
 * with libuv's four pool threads all hashing. Hashes made with other parameters still verify;
 * `needsRehash` tells the caller to store a fresh one after a successful sign-in.
 */
export const PASSWORD_HASH_PARAMS: Argon2Params = Object.freeze({ memoryCost: 32_768, timeCost: 3, parallelism: 1 });

/** The OWASP floor; nothing weaker is accepted as a parameter set. */
export const OWASP_MIN_PARAMS: Argon2Params = Object.freeze({ memoryCost: 19_456, timeCost: 2, parallelism: 1 });

export const PASSWORD_MIN_LENGTH = 10;
export const PASSWORD_MAX_LENGTH = 256;

/**
 * Unicode passwords are hashed in NFKC, so the same password typed on another keyboard (composed
 * or decomposed accents, full-width digits) still matches. Length is counted in code points.
 */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/** An argon2id PHC string of `password`. */
export async function hashPassword(password: string, params: Argon2Params = PASSWORD_HASH_PARAMS): Promise<string> {
  return argon2.hash(normalizePassword(password), { type: argon2.argon2id, ...params });
}

/** Whether `password` matches `hash`. A malformed or non-argon2id hash never matches. */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  if (!hash.startsWith('$argon2id$')) return false;
  try {
    return await argon2.verify(hash, normalizePassword(password));
  } catch {
    return false;
  }
}

/** Whether `hash` should be replaced by one made with `params` (other algorithm, version or cost). */
export function needsRehash(hash: string, params: Argon2Params = PASSWORD_HASH_PARAMS): boolean {
  if (!hash.startsWith('$argon2id$')) return true;
  try {
    return argon2.needsRehash(hash, { ...params });
  } catch {
    return true;
  }
}

const dummyHashes = new Map<string, Promise<string>>();

/**
 * Makes (once per parameter set) the hash `dummyVerify` checks against. Call it at start-up so the
 * first unknown username does not also pay for making it.
 */
export function prepareDummyHash(params: Argon2Params = PASSWORD_HASH_PARAMS): Promise<string> {
  const key = `${params.memoryCost},${params.timeCost},${params.parallelism}`;
  let dummy = dummyHashes.get(key);
  if (!dummy) {
    dummy = hashPassword(randomBytes(32).toString('base64url'), params);
    dummyHashes.set(key, dummy);
    dummy.catch(() => dummyHashes.delete(key));
  }
  return dummy;
}

/**
 * Spends the time a real verification with `params` would, and returns false. Call it when the
 * username is unknown (or malformed) so the response time does not tell whether an account exists.
 */
export async function dummyVerify(password: string, params: Argon2Params = PASSWORD_HASH_PARAMS): Promise<false> {
  await verifyPassword(await prepareDummyHash(params), password);
  return false;
}

// ---- policy ------------------------------------------------------------------------------

/** Words that would be the first guesses against this service in particular. */
const CONTEXT_WORDS: readonly string[] = [
  'porthole', 'printer', '3dprinter', 'printing', 'octoprint', 'klipper', 'moonraker', 'mainsail', 'fluidd',
  'prusa', 'prusalink', 'creality', 'ender', 'bambu', 'voron', 'filament', 'raspberry', 'raspberrypi',
];

let commonPasswords: ReadonlySet<string> | undefined;

/**
 * The ~49,000 most common passwords, lowercase: the `passwords-common` dictionary of
 * @zxcvbn-ts/language-common (MIT). Loaded on first use with a synchronous require so the policy
 * stays a plain function.
 */
export function commonPasswordList(): ReadonlySet<string> {
  if (!commonPasswords) {
    const require = createRequire(import.meta.url);
    const pkg = require('@zxcvbn-ts/language-common') as typeof ZxcvbnCommon;
    const list: unknown = pkg.dictionary['passwords-common'];
    if (!Array.isArray(list) || list.length < 10_000) throw new Error('@zxcvbn-ts/language-common has no password list');
    commonPasswords = new Set([...(list as string[]), ...CONTEXT_WORDS]);
  }
  return commonPasswords;
}

const LEET: Readonly<Record<string, string>> = {
  '@': 'a', '4': 'a', '8': 'b', '(': 'c', '3': 'e', '6': 'g', '9': 'g', '!': 'i', '1': 'i', '|': 'l', '0': 'o',
  '$': 's', '5': 's', '7': 't', '+': 't', '2': 'z',
};

function unleet(s: string, one: 'i' | 'l'): string {
  return s.replace(/[@48(3691!|0$57+2]/g, (c) => (c === '1' ? one : (LEET[c] ?? c)));
}

/** "abcdefghij", "9876543210": every character one after (or before) the last. */
function isRun(chars: readonly string[]): boolean {
  const codes = chars.map((c) => c.codePointAt(0) ?? 0);
  const step = (codes[1] ?? 0) - (codes[0] ?? 0);
  return (step === 1 || step === -1) && codes.every((c, i) => i === 0 || c - (codes[i - 1] ?? 0) === step);
}

const stripStart = (s: string) => s.replace(/^[^\p{L}]+/u, '');
const stripEnd = (s: string) => s.replace(/[^\p{L}]+$/u, '');

/**
 * The forms of a password to look up in the common list: as typed (lowercase), without the digits
 * and symbols people pad a common word with ("Password123!" → "password", "2024summer" →
 * "summer"), each also with the usual letter-for-digit swaps undone ("P@ssw0rd" → "password").
 */
function commonForms(lower: string): Set<string> {
  const bases = new Set([lower]);
  for (const s of [stripEnd(lower), stripStart(lower), stripStart(stripEnd(lower))]) if (s.length >= 4) bases.add(s);
  const forms = new Set<string>();
  for (const b of bases) forms.add(b).add(unleet(b, 'i')).add(unleet(b, 'l'));
  return forms;
}

/**
 * Why `password` is not acceptable, as a sentence to show the user; undefined if it is. Rules (NIST
 * SP 800-63B style: length and a blocklist, no composition rules): 10 to 256 characters, not the
 * username nor containing it, not one of the most common passwords (also when padded with digits
 * or symbols or written in leetspeak), not three characters or fewer repeated, not a plain run
 * like "abcdefghij".
 */
export function passwordProblem(password: string, context: { username?: string } = {}): string | undefined {
  const normalized = normalizePassword(password);
  const chars = [...normalized];
  if (chars.length < PASSWORD_MIN_LENGTH) return `Use at least ${PASSWORD_MIN_LENGTH} characters.`;
  if (chars.length > PASSWORD_MAX_LENGTH) return `Use at most ${PASSWORD_MAX_LENGTH} characters.`;
  const lower = normalized.toLowerCase();
  const username = context.username?.trim().toLowerCase();
  if (username && lower.includes(username)) return 'Do not use your username in your password.';
  if (new Set(chars).size < 4) return 'This password repeats too few characters; use more variety.';
  if (isRun(chars)) return 'This password is a plain sequence of characters and would be guessed quickly.';
  const common = commonPasswordList();
  if ([...commonForms(lower)].some((f) => common.has(f))) {
    return 'This password is too common and would be guessed quickly; choose another.';
  }
  return undefined;
}
