import { randomBytes } from 'node:crypto';

/**
 * Pairing codes: 8 characters of Crockford's base32 (digits and letters without I, L, O and U),
 * shown as `ABCD-EFGH`. 40 random bits: with at most a hundred codes pending for ten minutes, a
 * mistyped or guessed code hits a live one about once in ten billion tries.
 */
export const CODE_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
export const CODE_LENGTH = 8;

const CANONICAL = /^[0-9A-HJKMNP-TV-Z]{8}$/;

/** `ABCDEFGH` → `ABCD-EFGH`. */
function format(canonical: string): string {
  return `${canonical.slice(0, 4)}-${canonical.slice(4)}`;
}

/** A fresh random code, formatted `XXXX-XXXX`. */
export function generateCode(): string {
  // 256 is a multiple of 32: the low five bits of a random byte are uniform over the alphabet.
  const bytes = randomBytes(CODE_LENGTH);
  let s = '';
  for (const b of bytes) s += CODE_ALPHABET[b & 31]!;
  return format(s);
}

/**
 * What a person typed → the code as shown (`XXXX-XXXX`), or undefined when it cannot be one.
 * Case-insensitive; spaces and dashes are ignored; as in Crockford's base32, O reads as 0 and
 * I and L read as 1.
 */
export function normalizeCode(input: string): string | undefined {
  if (input.length > 64) return undefined;
  const s = input
    .replace(/[\s-]+/g, '')
    .toUpperCase()
    .replace(/O/g, '0')
    .replace(/[IL]/g, '1');
  return CANONICAL.test(s) ? format(s) : undefined;
}
