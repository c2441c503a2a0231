import path from 'node:path';
import * as argon2 from 'argon2';
import { Secret, TOTP } from 'otpauth';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashPassword, type Argon2Params } from '../src/accounts/passwords.js';
import { normalizeUsername, UserStore, usernameProblem, type User } from '../src/accounts/users.js';
import { openDatabase, type Database } from '../src/db/index.js';
import { RelayError, type RelayErrorCode } from '../src/errors.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';

/** Cheap hashes: these tests are about the store, not argon2's cost (accounts-passwords tests that). */
const FAST: Argon2Params = { memoryCost: 1024, timeCost: 1, parallelism: 1 };
const FASTER: Argon2Params = { memoryCost: 512, timeCost: 1, parallelism: 1 };

const PW = 'mauve tiger lantern';
const PW2 = 'purple kettle on the moon';

async function rejects(p: Promise<unknown>, code: RelayErrorCode): Promise<RelayError> {
  const e = await p.then(
    () => {
      throw new Error(`expected ${code}`);
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RelayError);
  expect((e as RelayError).code).toBe(code);
  return e as RelayError;
}

function codeAt(secret: string, timestamp: number): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp });
}

describe('usernames', () => {
  it.each(['alice', 'Bob', 'j.doe', 'x_y-z', 'abc', 'a'.repeat(32), '3d-printer-guy', '  carol  '])('accepts %j', (u) => {
    expect(usernameProblem(u)).toBeNull();
  });

  it.each([
    ['ab', 'at least 3'],
    ['a'.repeat(33), 'at most 32'],
    ['al ice', 'only letters'],
    ['alice@example.com', 'only letters'],
    ['\u212Aate', 'only letters'], // Kelvin sign, lowercases to "k"
    ['zoë', 'only letters'],
    ['-rf', 'start with'],
    ['.hidden', 'start with'],
    ['', 'at least 3'],
  ])('refuses %j (%s)', (u, why) => {
    expect(usernameProblem(u)).toContain(why);
  });

  it('stores names trimmed and lowercase', () => {
    expect(normalizeUsername('  Alice ')).toBe('alice');
    expect(() => normalizeUsername('a b')).toThrow(RelayError);
  });
});

describe('UserStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let db: Database;
  let now: number;
  let users: UserStore;

  beforeEach(async () => {
    tmp = tempDir();
    db = await openDatabase(testConfig(path.join(tmp.dir, 'data')), memoryLogger().log);
    now = Date.UTC(2025, 0, 1, 0, 0, 10);
    users = new UserStore({ prisma: db.prisma, clock: () => now, hashParams: FAST });
  });

  afterEach(async () => {
    await db.close();
    tmp.cleanup();
  });

  const secrets = (u: Pick<User, 'id'>) =>
    db.prisma.user.findUniqueOrThrow({ where: { id: u.id }, select: { passwordHash: true, totpSecret: true } });

  describe('create and look up', () => {
    it('creates users without exposing their secrets', async () => {
      const alice = await users.create({ username: 'Alice', password: PW, isAdmin: true });
      expect(alice).toMatchObject({ username: 'alice', isAdmin: true, totpEnabledAt: null, disabledAt: null });
      expect(alice.createdAt.getTime()).toBe(now);
      expect(alice.passwordChangedAt.getTime()).toBe(now);
      expect(alice).not.toHaveProperty('passwordHash');
      expect(alice).not.toHaveProperty('totpSecret');
      const bob = await users.create({ username: 'bob', password: PW2 });
      expect(bob.isAdmin).toBe(false);

      const { passwordHash } = await secrets(alice);
      expect(passwordHash).toMatch(/^\$argon2id\$/);
      expect(passwordHash).not.toContain(PW);

      expect(await users.count()).toBe(2);
      expect((await users.list()).map((u) => u.username)).toEqual(['alice', 'bob']);
      for (const u of await users.list()) expect(u).not.toHaveProperty('passwordHash');
      expect(await users.findByUsername('ALICE')).toEqual(alice);
      expect(await users.findByUsername('nobody')).toBeNull();
      expect(await users.findByUsername('no such name!')).toBeNull();
      expect(await users.findById(bob.id)).toEqual(bob);
      expect(await users.findById('nope')).toBeNull();
    });

    it('refuses bad usernames, weak passwords and taken names', async () => {
      await rejects(users.create({ username: 'x', password: PW }), 'RELAY_INVALID_USERNAME');
      const weak = await rejects(users.create({ username: 'alice', password: 'Password123!' }), 'RELAY_WEAK_PASSWORD');
      expect(weak.statusCode).toBe(400);
      expect(weak.message).toContain('too common');
      await rejects(users.create({ username: 'alice', password: 'alice-in-wonderland' }), 'RELAY_WEAK_PASSWORD');
      await rejects(users.create({ username: 'alice', password: 'short' }), 'RELAY_WEAK_PASSWORD');
      await users.create({ username: 'alice', password: PW });
      const taken = await rejects(users.create({ username: 'ALICE', password: PW2 }), 'RELAY_USERNAME_TAKEN');
      expect(taken.statusCode).toBe(409);
      expect(await users.count()).toBe(1);
    });

    it('loses a creation race cleanly', async () => {
      const results = await Promise.allSettled([
        users.create({ username: 'alice', password: PW }),
        users.create({ username: 'alice', password: PW2 }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r) => r.status === 'rejected');
      expect((failed as PromiseRejectedResult).reason).toMatchObject({ code: 'RELAY_USERNAME_TAKEN' });
    });
  });

  describe('verifyLogin', () => {
    it('lets in the right password only', async () => {
      const alice = await users.create({ username: 'alice', password: PW });
      expect(await users.verifyLogin('alice', PW)).toEqual(alice);
      expect(await users.verifyLogin(' ALICE ', PW)).toEqual(alice);
      expect(await users.verifyLogin('alice', PW.toUpperCase())).toBeNull();
      expect(await users.verifyLogin('alice', '')).toBeNull();
      expect(await users.verifyLogin('alice', 'x'.repeat(5_000))).toBeNull();
      expect(await users.verifyLogin('bob', PW)).toBeNull();
      expect(await users.verifyLogin('', PW)).toBeNull();
      expect(await users.verifyLogin('not a username', PW)).toBeNull();
    });

    it('shuts out a disabled user, password or not, until enabled again', async () => {
      const alice = await users.create({ username: 'alice', password: PW });
      const disabled = await users.disable(alice.id);
      expect(disabled.disabledAt?.getTime()).toBe(now);
      now += 1000;
      expect((await users.disable(alice.id)).disabledAt?.getTime()).toBe(now - 1000);
      expect(await users.verifyLogin('alice', PW)).toBeNull();
      expect((await users.enable(alice.id)).disabledAt).toBeNull();
      expect(await users.verifyLogin('alice', PW)).not.toBeNull();
    });

    it('rehashes with the current parameters on success, without touching passwordChangedAt', async () => {
      const alice = await users.create({ username: 'alice', password: PW });
      const before = (await secrets(alice)).passwordHash;
      const upgraded = new UserStore({ prisma: db.prisma, clock: () => now + 5000, hashParams: FASTER });
      expect(await upgraded.verifyLogin('alice', 'wrong password')).toBeNull();
      expect((await secrets(alice)).passwordHash).toBe(before);
      const u = await upgraded.verifyLogin('alice', PW);
      expect(u?.passwordChangedAt.getTime()).toBe(now);
      const after = (await secrets(alice)).passwordHash;
      expect(after).not.toBe(before);
      expect(after).toContain('m=512,');
      expect(await users.verifyLogin('alice', PW)).not.toBeNull();
      expect((await users.findById(alice.id))?.passwordChangedAt.getTime()).toBe(now);
    });

    it('does not accept a hash that is not argon2id', async () => {
      const alice = await users.create({ username: 'alice', password: PW });
      const argon2i = await argon2.hash(PW, { type: argon2.argon2i, ...FAST });
      await db.prisma.user.update({ where: { id: alice.id }, data: { passwordHash: argon2i } });
      expect(await users.verifyLogin('alice', PW)).toBeNull();
    });
  });

  describe('passwords', () => {
    it('changes a password after checking the old one', async () => {
      const alice = await users.create({ username: 'alice', password: PW });
      now += 60_000;
      const wrong = await rejects(users.changePassword(alice.id, 'not my password', PW2), 'RELAY_WRONG_PASSWORD');
      expect(wrong.statusCode).toBe(403);
      await rejects(users.changePassword(alice.id, PW, 'letmein12345'), 'RELAY_WEAK_PASSWORD');
      await rejects(users.changePassword(alice.id, PW, 'alice-rocks-hard'), 'RELAY_WEAK_PASSWORD');
      await rejects(users.changePassword(alice.id, PW, PW), 'RELAY_WEAK_PASSWORD');
      expect((await users.findById(alice.id))?.passwordChangedAt.getTime()).toBe(now - 60_000);

      await users.changePassword(alice.id, PW, PW2);
      expect((await users.findById(alice.id))?.passwordChangedAt.getTime()).toBe(now);
      expect(await users.verifyLogin('alice', PW)).toBeNull();
      expect(await users.verifyLogin('alice', PW2)).not.toBeNull();
      await rejects(users.changePassword('nope', PW, PW2), 'RELAY_USER_NOT_FOUND');
    });

    it('lets an admin set a password, under the same policy', async () => {
      const alice = await users.create({ username: 'alice', password: PW });
      now += 60_000;
      await rejects(users.setPassword(alice.id, 'qwertyuiop'), 'RELAY_WEAK_PASSWORD');
      await users.setPassword(alice.id, PW2);
      expect((await users.findById(alice.id))?.passwordChangedAt.getTime()).toBe(now);
      expect(await users.verifyLogin('alice', PW2)).not.toBeNull();
      await rejects(users.setPassword('nope', PW2), 'RELAY_USER_NOT_FOUND');
      await rejects(users.disable('nope'), 'RELAY_USER_NOT_FOUND');
      await rejects(users.enable('nope'), 'RELAY_USER_NOT_FOUND');
    });
  });

  describe('two-factor', () => {
    async function withTotp(): Promise<{ user: User; secret: string; codes: string[] }> {
      const user = await users.create({ username: 'alice', password: PW });
      const { secret, uri } = await users.beginTotp(user.id);
      expect(uri).toContain(`secret=${secret}`);
      expect(uri).toContain('Porthole:alice');
      const codes = await users.enableTotp(user.id, codeAt(secret, now));
      return { user, secret, codes };
    }

    it('turns on only with a right code from the pending secret', async () => {
      const alice = await users.create({ username: 'alice', password: PW });
      await rejects(users.enableTotp(alice.id, '123456'), 'RELAY_TOTP_STATE');
      const first = await users.beginTotp(alice.id);
      const { secret } = await users.beginTotp(alice.id); // replaces the pending one
      expect(secret).not.toBe(first.secret);
      expect((await secrets(alice)).totpSecret).toBe(secret);
      expect(await users.checkSecondFactor(alice, codeAt(secret, now))).toBe(false); // pending is not on
      await rejects(users.enableTotp(alice.id, codeAt(first.secret, now)), 'RELAY_TOTP_INVALID');
      await rejects(users.enableTotp(alice.id, codeAt(secret, now - 120_000)), 'RELAY_TOTP_INVALID');
      expect((await users.findById(alice.id))?.totpEnabledAt).toBeNull();

      const codes = await users.enableTotp(alice.id, codeAt(secret, now));
      expect(codes).toHaveLength(10);
      expect((await users.findById(alice.id))?.totpEnabledAt?.getTime()).toBe(now);
      expect(await users.remainingRecoveryCodes(alice.id)).toBe(10);
      const stored = await db.prisma.recoveryCode.findMany({ where: { userId: alice.id } });
      for (const c of codes) expect(JSON.stringify(stored)).not.toContain(c);

      await rejects(users.beginTotp(alice.id), 'RELAY_TOTP_STATE');
      await rejects(users.enableTotp(alice.id, codeAt(secret, now)), 'RELAY_TOTP_STATE');
    });

    it('takes each TOTP code once, including the one that turned it on', async () => {
      const { user, secret } = await withTotp();
      expect(await users.checkSecondFactor(user, codeAt(secret, now))).toBe(false);
      now += 30_000;
      const code = codeAt(secret, now);
      expect(await users.checkSecondFactor(user, code)).toBe(true);
      expect(await users.checkSecondFactor(user, code)).toBe(false);
      // Two requests at once with the next code: one wins.
      now += 30_000;
      const next = codeAt(secret, now);
      const both = await Promise.all([users.checkSecondFactor(user, next), users.checkSecondFactor(user, next)]);
      expect(both.filter(Boolean)).toHaveLength(1);
      expect(await users.checkSecondFactor(user, '000000')).toBe(false);
      expect(await users.checkSecondFactor(user, 'garbage')).toBe(false);
    });

    it('keeps a used TOTP code used after a restart (a new store on the same database)', async () => {
      const { user, secret } = await withTotp();
      now += 30_000;
      const code = codeAt(secret, now);
      expect(await users.checkSecondFactor(user, code)).toBe(true);
      const restarted = new UserStore({ prisma: db.prisma, clock: () => now, hashParams: FAST });
      expect(await restarted.checkSecondFactor(user, code)).toBe(false);
      // An earlier code from the window is refused too; the next step's code is taken.
      expect(await restarted.checkSecondFactor(user, codeAt(secret, now - 30_000))).toBe(false);
      now += 30_000;
      expect(await restarted.checkSecondFactor(user, codeAt(secret, now))).toBe(true);
    });

    it('takes each recovery code once', async () => {
      const { user, codes } = await withTotp();
      const [c0 = '', c1 = ''] = codes;
      expect(await users.checkSecondFactor(user, c0)).toBe(true);
      expect(await users.checkSecondFactor(user, c0)).toBe(false);
      expect(await users.checkSecondFactor(user, c1.toUpperCase().replace(/-/g, ' '))).toBe(true);
      expect(await users.useRecoveryCode(user.id, c1)).toBe(false);
      expect(await users.remainingRecoveryCodes(user.id)).toBe(8);
      const used = await db.prisma.recoveryCode.count({ where: { userId: user.id, usedAt: new Date(now) } });
      expect(used).toBe(2);
      // Another user's code does nothing for this one.
      const bob = await users.create({ username: 'bob', password: PW2 });
      const bobSecret = (await users.beginTotp(bob.id)).secret;
      const bobCodes = await users.enableTotp(bob.id, codeAt(bobSecret, now));
      expect(await users.useRecoveryCode(user.id, bobCodes[0] ?? '')).toBe(false);
      expect(await users.useRecoveryCode(bob.id, bobCodes[0] ?? '')).toBe(true);
      const spend = await Promise.all([users.useRecoveryCode(user.id, codes[5] ?? ''), users.useRecoveryCode(user.id, codes[5] ?? '')]);
      expect(spend.filter(Boolean)).toHaveLength(1);
    });

    it('gives a disabled user no second factor', async () => {
      const { user, secret, codes } = await withTotp();
      await users.disable(user.id);
      now += 30_000;
      expect(await users.checkSecondFactor(user, codeAt(secret, now))).toBe(false);
      expect(await users.checkSecondFactor(user, codes[0] ?? '')).toBe(false);
      expect(await users.useRecoveryCode(user.id, codes[0] ?? '')).toBe(false);
    });

    it('turns off with the password, taking the secret and recovery codes along', async () => {
      const { user, secret, codes } = await withTotp();
      await rejects(users.disableTotp(user.id, 'not my password'), 'RELAY_WRONG_PASSWORD');
      expect((await users.findById(user.id))?.totpEnabledAt).not.toBeNull();
      await users.disableTotp(user.id, PW);
      expect((await users.findById(user.id))?.totpEnabledAt).toBeNull();
      expect((await secrets(user)).totpSecret).toBeNull();
      expect(await db.prisma.recoveryCode.count({ where: { userId: user.id } })).toBe(0);
      now += 30_000;
      expect(await users.checkSecondFactor(user, codeAt(secret, now))).toBe(false);
      expect(await users.checkSecondFactor(user, codes[1] ?? '')).toBe(false);
      // And can be set up again from scratch.
      const again = await users.beginTotp(user.id);
      expect(again.secret).not.toBe(secret);
      expect(await users.enableTotp(user.id, codeAt(again.secret, now))).toHaveLength(10);
    });
  });

  it('verifies hashes made with other parameters', async () => {
    const alice = await users.create({ username: 'alice', password: PW });
    await db.prisma.user.update({ where: { id: alice.id }, data: { passwordHash: await hashPassword(PW2, FASTER) } });
    expect(await users.verifyLogin('alice', PW2)).not.toBeNull();
  });
});
