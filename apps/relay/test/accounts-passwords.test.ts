import { randomBytes } from 'node:crypto';
import * as argon2 from 'argon2';
import { describe, expect, it } from 'vitest';
import {
  commonPasswordList,
  dummyVerify,
  hashPassword,
  needsRehash,
  OWASP_MIN_PARAMS,
  PASSWORD_HASH_PARAMS,
  PASSWORD_MAX_LENGTH,
  PASSWORD_MIN_LENGTH,
  passwordProblem,
  verifyPassword,
} from '../src/accounts/passwords.js';

/** The m, t, p of a PHC string. */
function phcParams(hash: string): { m: number; t: number; p: number } {
  const m = /^\$argon2id\$v=19\$([a-z=0-9,]+)\$/.exec(hash);
  if (!m?.[1]) throw new Error(`not an argon2id v19 hash: ${hash}`);
  const kv = Object.fromEntries(m[1].split(',').map((s) => s.split('=')));
  return { m: Number(kv.m), t: Number(kv.t), p: Number(kv.p) };
}

async function median(n: number, f: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)] ?? 0;
}

describe('password hashing (real cost)', () => {
  it('uses argon2id at or above the OWASP floor', async () => {
    expect(PASSWORD_HASH_PARAMS.memoryCost * PASSWORD_HASH_PARAMS.timeCost).toBeGreaterThanOrEqual(
      OWASP_MIN_PARAMS.memoryCost * OWASP_MIN_PARAMS.timeCost,
    );
    expect(PASSWORD_HASH_PARAMS.memoryCost).toBeGreaterThanOrEqual(OWASP_MIN_PARAMS.memoryCost);
    expect(Object.isFrozen(PASSWORD_HASH_PARAMS)).toBe(true);
    const hash = await hashPassword('mauve tiger lantern');
    expect(phcParams(hash)).toEqual({
      m: PASSWORD_HASH_PARAMS.memoryCost,
      t: PASSWORD_HASH_PARAMS.timeCost,
      p: PASSWORD_HASH_PARAMS.parallelism,
    });
  });

  it('salts every hash and verifies only the right password', async () => {
    const [a, b] = await Promise.all([hashPassword('mauve tiger lantern'), hashPassword('mauve tiger lantern')]);
    expect(a).not.toBe(b);
    expect(await verifyPassword(a, 'mauve tiger lantern')).toBe(true);
    expect(await verifyPassword(b, 'mauve tiger lantern')).toBe(true);
    expect(await verifyPassword(a, 'mauve tiger lanterN')).toBe(false);
    expect(await verifyPassword(a, '')).toBe(false);
  });

  it('matches a password however its accents were composed (NFKC)', async () => {
    const composed = 'caf\u00e9 cr\u00e8me br\u00fbl\u00e9e';
    const decomposed = composed.normalize('NFD');
    expect(decomposed).not.toBe(composed);
    const hash = await hashPassword(composed);
    expect(await verifyPassword(hash, decomposed)).toBe(true);
  });

  it('never matches a malformed or non-argon2id hash', async () => {
    const argon2i = await argon2.hash('mauve tiger lantern', { type: argon2.argon2i, ...OWASP_MIN_PARAMS });
    expect(await verifyPassword(argon2i, 'mauve tiger lantern')).toBe(false);
    expect(await verifyPassword('', 'x')).toBe(false);
    expect(await verifyPassword('$argon2id$v=19$m=1,t=1,p=1$garbage', 'x')).toBe(false);
    expect(await verifyPassword('plaintext', 'plaintext')).toBe(false);
  });

  it('asks for a rehash when the parameters, algorithm or format differ', async () => {
    const current = await hashPassword('mauve tiger lantern');
    const old = await hashPassword('mauve tiger lantern', OWASP_MIN_PARAMS);
    expect(needsRehash(current)).toBe(false);
    expect(needsRehash(old)).toBe(true);
    expect(needsRehash(old, OWASP_MIN_PARAMS)).toBe(false);
    expect(needsRehash(current, OWASP_MIN_PARAMS)).toBe(true);
    const argon2i = await argon2.hash('x', { type: argon2.argon2i, ...PASSWORD_HASH_PARAMS });
    expect(needsRehash(argon2i)).toBe(true);
    expect(needsRehash('garbage')).toBe(true);
  });

  it('spends about as long on an unknown user as on a real verification', async () => {
    const hash = await hashPassword('mauve tiger lantern');
    expect(await dummyVerify('mauve tiger lantern')).toBe(false);
    const real = await median(3, () => verifyPassword(hash, 'wrong guess here'));
    const dummy = await median(3, () => dummyVerify('wrong guess here'));
    expect(dummy / real).toBeGreaterThan(0.4);
    expect(dummy / real).toBeLessThan(2.5);
  });
});

describe('password policy', () => {
  it('loads the common-password list once', () => {
    const list = commonPasswordList();
    expect(list.size).toBeGreaterThan(40_000);
    expect(list.has('password')).toBe(true);
    expect(list.has('123456')).toBe(true);
    expect(commonPasswordList()).toBe(list);
  });

  it.each([
    ['short', 'at least 10'],
    ['a1b2c3d4e', 'at least 10'],
    // 9 code points, 18 UTF-16 units: still too short.
    ['🔥🧯🔩🧵🧲🔧🔨🪛🪚', 'at least 10'],
    ['x'.repeat(PASSWORD_MAX_LENGTH - 5) + 'abcdef', 'at most 256'],
    ['alice-in-wonderland', 'username'],
    ['ALICE wonderland 77', 'username'],
    ['my name is alice!', 'username'],
    ['aaaaaaaaaaaa', 'repeats'],
    ['abababababab', 'repeats'],
    ['abcabcabcabc', 'repeats'],
    ['abcdefghijkl', 'sequence'],
    ['9876543210', 'sequence'],
    ['qwertyuiop', 'common'],
    ['1234567890', 'common'],
    ['password123', 'common'],
    ['password123!', 'common'],
    ['Password123!', 'common'],
    ['P@ssw0rd2024', 'common'],
    ['p@$$w0rd!!!!', 'common'],
    ['iloveyou!!!!', 'common'],
    ['Sunshine2024!', 'common'],
    ['2024#football', 'common'],
    ['letmein12345', 'common'],
    ['Dragon1234!', 'common'],
    ['trustno1trustno1'.slice(0, 8) + '!!', 'common'],
    ['porthole123', 'common'],
    ['Octoprint2024', 'common'],
  ])('refuses %j (%s)', (password, why) => {
    expect(passwordProblem(password, { username: 'alice' })).toContain(why);
  });

  it.each([
    'correct horse battery staple',
    'mauve-tiger-lantern-42',
    'purple kettle on the moon',
    'xK8#mQ2$vL9p',
    'Zw7!rT0#qP4@',
    'caf\u00e9 cr\u00e8me br\u00fbl\u00e9e',
    '🔥🧯🔩🧵🧲🔧🔨🪛🪚⚙',
  ])('accepts %j', (password) => {
    expect(passwordProblem(password, { username: 'alice' })).toBeUndefined();
  });

  it('accepts random passphrases and passwords', () => {
    // The username has a '.', which base64url never produces: a random password cannot contain
    // it by chance (with 'bob' about one run in fifteen failed).
    for (let i = 0; i < 50; i++) {
      expect(passwordProblem(randomBytes(12).toString('base64url'), { username: 'bob.smith' })).toBeUndefined();
    }
  });

  it('speaks in sentences and takes the bounds inclusively', () => {
    expect(passwordProblem('x'.repeat(3))).toMatch(/^[A-Z].*\.$/);
    expect(PASSWORD_MIN_LENGTH).toBe(10);
    const tenRandom = 'Zq8!vT2#kW';
    expect(passwordProblem(tenRandom)).toBeUndefined();
    expect(passwordProblem(tenRandom.slice(0, 9))).toContain('at least');
    const max = 'Zq8!vT2#kW'.repeat(26).slice(0, PASSWORD_MAX_LENGTH);
    expect(passwordProblem(max)).toBeUndefined();
    expect(passwordProblem(max + 'x')).toContain('at most');
  });
});
