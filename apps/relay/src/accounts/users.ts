import { Prisma, type PrismaClient } from '../db/index.js';
import { RelayError } from '../errors.js';
import {
  dummyVerify,
  hashPassword,
  needsRehash,
  normalizePassword,
  prepareDummyHash,
  PASSWORD_HASH_PARAMS,
  PASSWORD_MAX_LENGTH,
  passwordProblem,
  verifyPassword,
  type Argon2Params,
} from './passwords.js';
import {
  hashRecoveryCode,
  newRecoveryCodes,
  newTotpSecret,
  normalizeRecoveryCode,
  normalizeTotpCode,
  totpUri,
  TOTP_WINDOW,
  verifyTotp,
} from './totp.js';

/** A user as the rest of the relay sees it: never the password hash or the TOTP secret. */
export type User = Prisma.UserGetPayload<{ omit: { passwordHash: true; totpSecret: true } }>;

type UserRow = Prisma.UserGetPayload<object>;

const OMIT = { passwordHash: true, totpSecret: true } as const;

// ---- usernames ---------------------------------------------------------------------------

export const USERNAME_MIN = 3;
export const USERNAME_MAX = 32;

/** Why `username` (as typed) cannot be a username, or null if it can. Case does not matter. */
export function usernameProblem(username: string): string | null {
  const u = username.trim();
  if (u.length < USERNAME_MIN) return `must be at least ${USERNAME_MIN} characters`;
  if (u.length > USERNAME_MAX) return `must be at most ${USERNAME_MAX} characters`;
  // Checked before lowercasing: "K" (Kelvin sign) lowercases to an ASCII "k".
  if (!/^[A-Za-z0-9._-]+$/.test(u)) return 'may contain only letters a-z, digits, ".", "_" and "-"';
  // A leading "-" would read as an option on the command line (`porthole-relay user add -x`).
  if (!/^[A-Za-z0-9]/.test(u)) return 'must start with a letter or a digit';
  return null;
}

/** The stored form of `username`: trimmed, lowercase. Throws RELAY_INVALID_USERNAME. */
export function normalizeUsername(username: string): string {
  const problem = usernameProblem(username);
  if (problem) throw new RelayError('RELAY_INVALID_USERNAME', [shorten(username), problem]);
  return username.trim().toLowerCase();
}

function shorten(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

// ---- the store ---------------------------------------------------------------------------

export interface UserStoreOptions {
  prisma: PrismaClient;
  /** Milliseconds since the epoch: TOTP and the timestamps written. */
  clock?: () => number;
  /** Cost of new password hashes (tests lower it; production keeps the default). */
  hashParams?: Argon2Params;
  /** TOTP steps accepted either side of now's. Default 1. */
  totpWindow?: number;
}

/**
 * Users, their passwords and their second factor. Methods that name a user by id throw
 * RELAY_USER_NOT_FOUND if there is none. Passwords are checked against the policy (RELAY_WEAK_PASSWORD)
 * whenever one is set. Ending sessions when a password changes or a user is disabled is the session
 * layer's job: `passwordChangedAt` and `disabledAt` are what it compares against.
 */
export class UserStore {
  readonly #prisma: PrismaClient;
  readonly #clock: () => number;
  readonly #params: Argon2Params;
  readonly #totpWindow: number;

  constructor(opts: UserStoreOptions) {
    this.#prisma = opts.prisma;
    this.#clock = opts.clock ?? Date.now;
    this.#params = opts.hashParams ?? PASSWORD_HASH_PARAMS;
    this.#totpWindow = opts.totpWindow ?? TOTP_WINDOW;
    // Ready before the first unknown username arrives (a failure here shows up there instead).
    prepareDummyHash(this.#params).catch(() => {});
  }

  /**
   * Adds a user. Throws RELAY_INVALID_USERNAME, RELAY_WEAK_PASSWORD or RELAY_USERNAME_TAKEN.
   */
  async create(input: { username: string; password: string; isAdmin?: boolean }): Promise<User> {
    const username = normalizeUsername(input.username);
    this.#assertPolicy(input.password, username);
    if (await this.#prisma.user.findUnique({ where: { username }, select: { id: true } })) {
      throw new RelayError('RELAY_USERNAME_TAKEN', [username]);
    }
    const passwordHash = await hashPassword(input.password, this.#params);
    const now = this.#now();
    try {
      return await this.#prisma.user.create({
        data: { username, passwordHash, isAdmin: input.isAdmin ?? false, createdAt: now, passwordChangedAt: now },
        omit: OMIT,
      });
    } catch (err) {
      if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002') {
        throw new RelayError('RELAY_USERNAME_TAKEN', [username], { cause: err });
      }
      throw err;
    }
  }

  count(): Promise<number> {
    return this.#prisma.user.count();
  }

  /** Case-insensitive; null for a name that cannot exist. */
  async findByUsername(username: string): Promise<User | null> {
    if (usernameProblem(username)) return null;
    return this.#prisma.user.findUnique({ where: { username: username.trim().toLowerCase() }, omit: OMIT });
  }

  findById(id: string): Promise<User | null> {
    return this.#prisma.user.findUnique({ where: { id }, omit: OMIT });
  }

  /** Every user, by username. */
  list(): Promise<User[]> {
    return this.#prisma.user.findMany({ orderBy: { username: 'asc' }, omit: OMIT });
  }

  /**
   * The user if `password` is theirs and they are not disabled, else null. An unknown or malformed
   * username costs the same argon2 verification as a known one, and a disabled user's password is
   * still verified, so the time taken tells nothing. A hash made with older parameters is
   * replaced on success. The second factor is checked apart (`checkSecondFactor`).
   */
  async verifyLogin(username: string, password: string): Promise<User | null> {
    // Far past anything the policy lets anyone set: refuse without spending a hash on it.
    if (password.length > 4 * PASSWORD_MAX_LENGTH) return null;
    const name = usernameProblem(username) ? null : username.trim().toLowerCase();
    const row = name === null ? null : await this.#prisma.user.findUnique({ where: { username: name } });
    if (!row) return dummyVerify(password, this.#params).then(() => null);
    const ok = await verifyPassword(row.passwordHash, password);
    if (!ok || row.disabledAt !== null) return null;
    if (needsRehash(row.passwordHash, this.#params)) {
      const passwordHash = await hashPassword(password, this.#params);
      // Only if nobody changed the password meanwhile; passwordChangedAt stays: same password.
      await this.#prisma.user.updateMany({ where: { id: row.id, passwordHash: row.passwordHash }, data: { passwordHash } });
    }
    return toUser(row);
  }

  /** The user changes their own password. Throws RELAY_WRONG_PASSWORD if `oldPassword` is not theirs. */
  async changePassword(id: string, oldPassword: string, newPassword: string): Promise<void> {
    const row = await this.#row(id);
    if (row.disabledAt !== null) throw new RelayError('RELAY_USER_NOT_FOUND', [id]);
    if (!(await verifyPassword(row.passwordHash, oldPassword))) throw new RelayError('RELAY_WRONG_PASSWORD');
    this.#assertPolicy(newPassword, row.username);
    if (normalizePassword(newPassword) === normalizePassword(oldPassword)) {
      throw new RelayError('RELAY_WEAK_PASSWORD', ['Choose a password different from the current one.']);
    }
    const passwordHash = await hashPassword(newPassword, this.#params);
    const { count } = await this.#prisma.user.updateMany({
      where: { id, passwordHash: row.passwordHash },
      data: { passwordHash, passwordChangedAt: this.#now() },
    });
    // Changed by someone else between our read and our write: the old password we checked is gone.
    if (count !== 1) throw new RelayError('RELAY_WRONG_PASSWORD');
  }

  /** An admin sets someone's password. */
  async setPassword(id: string, newPassword: string): Promise<void> {
    const row = await this.#row(id);
    this.#assertPolicy(newPassword, row.username);
    const passwordHash = await hashPassword(newPassword, this.#params);
    await this.#update(id, { passwordHash, passwordChangedAt: this.#now() });
  }

  /** The user can no longer sign in; their sessions must be treated as dead. Idempotent. */
  async disable(id: string): Promise<User> {
    const row = await this.#row(id);
    if (row.disabledAt !== null) return toUser(row);
    return this.#update(id, { disabledAt: this.#now() });
  }

  /** Undoes `disable`. */
  async enable(id: string): Promise<User> {
    await this.#row(id);
    return this.#update(id, { disabledAt: null });
  }

  /**
   * Starts setting up TOTP: a fresh secret, kept pending until `enableTotp` confirms a code from
   * it. Calling it again replaces the pending secret. Throws RELAY_TOTP_STATE if TOTP is already on.
   */
  async beginTotp(id: string): Promise<{ secret: string; uri: string }> {
    const row = await this.#row(id);
    if (row.totpEnabledAt !== null) throw new RelayError('RELAY_TOTP_STATE', ['is already on; turn it off first']);
    const secret = newTotpSecret();
    const { count } = await this.#prisma.user.updateMany({ where: { id, totpEnabledAt: null }, data: { totpSecret: secret, totpLastStep: null } });
    if (count !== 1) throw new RelayError('RELAY_TOTP_STATE', ['is already on; turn it off first']);
    return { secret, uri: totpUri(secret, row.username) };
  }

  /**
   * Turns TOTP on once the user shows a current code from the pending secret, and returns fresh
   * recovery codes (to show once; any earlier ones are gone). Throws RELAY_TOTP_INVALID for a wrong
   * code, RELAY_TOTP_STATE if TOTP is already on or was not begun.
   */
  async enableTotp(id: string, code: string): Promise<string[]> {
    const row = await this.#row(id);
    if (row.totpEnabledAt !== null) throw new RelayError('RELAY_TOTP_STATE', ['is already on']);
    const secret = row.totpSecret;
    if (secret === null) throw new RelayError('RELAY_TOTP_STATE', ['has not been set up; start again']);
    const step = await this.#verifyTotpStep(id, secret, code, row.totpLastStep);
    if (step === null) throw new RelayError('RELAY_TOTP_INVALID', ['wrong or expired code']);
    const { codes, hashes } = newRecoveryCodes();
    const now = this.#now();
    await this.#prisma.$transaction(async (tx) => {
      const { count } = await tx.user.updateMany({
        where: { id, totpSecret: secret, totpEnabledAt: null },
        data: { totpEnabledAt: now },
      });
      if (count !== 1) throw new RelayError('RELAY_TOTP_STATE', ['changed while being set up; start again']);
      await tx.recoveryCode.deleteMany({ where: { userId: id } });
      await tx.recoveryCode.createMany({ data: hashes.map((codeHash) => ({ userId: id, codeHash })) });
    });
    return codes;
  }

  /** Turns TOTP off (secret and recovery codes deleted). Throws RELAY_WRONG_PASSWORD. */
  async disableTotp(id: string, password: string): Promise<void> {
    const row = await this.#row(id);
    if (!(await verifyPassword(row.passwordHash, password))) throw new RelayError('RELAY_WRONG_PASSWORD');
    await this.#prisma.$transaction([
      this.#prisma.user.update({
        where: { id },
        data: { totpSecret: null, totpEnabledAt: null, totpLastStep: null },
        select: { id: true },
      }),
      this.#prisma.recoveryCode.deleteMany({ where: { userId: id } }),
    ]);
  }

  /** Unused recovery codes left. */
  remainingRecoveryCodes(id: string): Promise<number> {
    return this.#prisma.recoveryCode.count({ where: { userId: id, usedAt: null } });
  }

  /**
   * Spends one recovery code: true if `code` is one of the user's unused ones (it is then marked
   * used, atomically, so two requests cannot both spend it). Only while TOTP is on and the user is
   * not disabled.
   */
  async useRecoveryCode(id: string, code: string): Promise<boolean> {
    if (normalizeRecoveryCode(code) === null) return false;
    const { count } = await this.#prisma.recoveryCode.updateMany({
      where: {
        userId: id,
        codeHash: hashRecoveryCode(code),
        usedAt: null,
        user: { is: { totpEnabledAt: { not: null }, disabledAt: null } },
      },
      data: { usedAt: this.#now() },
    });
    return count > 0;
  }

  /**
   * Whether `code` is a current TOTP code (not used before) or an unused recovery code of `user`.
   * False when TOTP is not on for them or they are disabled: the caller asks only users with
   * `totpEnabledAt` set.
   */
  async checkSecondFactor(user: Pick<User, 'id'>, code: string): Promise<boolean> {
    const row = await this.#prisma.user.findUnique({ where: { id: user.id } });
    if (!row || row.disabledAt !== null || row.totpEnabledAt === null || row.totpSecret === null) return false;
    if (normalizeTotpCode(code) !== null) {
      return (await this.#verifyTotpStep(row.id, row.totpSecret, code, row.totpLastStep)) !== null;
    }
    return this.useRecoveryCode(row.id, code);
  }

  /**
   * Verifies and, if good, consumes the code's time step. The step is stored with the user by one
   * conditional UPDATE, so of two requests with the same code only one wins, and a code stays used
   * after a restart.
   */
  async #verifyTotpStep(id: string, secret: string, code: string, lastStep: number | null): Promise<number | null> {
    const step = verifyTotp(secret, code, { now: this.#clock(), window: this.#totpWindow, lastStep });
    if (step === null) return null;
    const { count } = await this.#prisma.user.updateMany({
      where: { id, totpSecret: secret, OR: [{ totpLastStep: null }, { totpLastStep: { lt: step } }] },
      data: { totpLastStep: step },
    });
    return count === 1 ? step : null;
  }

  #assertPolicy(password: string, username: string): void {
    const problem = passwordProblem(password, { username });
    if (problem) throw new RelayError('RELAY_WEAK_PASSWORD', [problem]);
  }

  async #row(id: string): Promise<UserRow> {
    const row = await this.#prisma.user.findUnique({ where: { id } });
    if (!row) throw new RelayError('RELAY_USER_NOT_FOUND', [id]);
    return row;
  }

  async #update(id: string, data: Prisma.UserUpdateInput): Promise<User> {
    try {
      return await this.#prisma.user.update({ where: { id }, data, omit: OMIT });
    } catch (err) {
      if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2025') {
        throw new RelayError('RELAY_USER_NOT_FOUND', [id], { cause: err });
      }
      throw err;
    }
  }

  #now(): Date {
    return new Date(this.#clock());
  }
}

function toUser(row: UserRow): User {
  const { passwordHash: _hash, totpSecret: _secret, ...user } = row;
  return user;
}
