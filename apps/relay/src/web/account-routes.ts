import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AuditKind } from '../accounts/audit.js';
import { passwordProblem } from '../accounts/passwords.js';
import type { SessionInfo } from '../accounts/sessions.js';
import { normalizeTotpCode } from '../accounts/totp.js';
import { normalizeUsername, type User } from '../accounts/users.js';
import { isRelayError, RelayError } from '../errors.js';
import { authOf, clearSessionCookie, requireAdmin, requireUser, setSessionCookie } from './auth-plugin.js';
import { DASHBOARD_SESSION_TTL_MS, userView, type Auth, type WebDeps } from './deps.js';
import { formatWait, parse, RetryLaterError } from './http.js';

// ---- the actions, shared by the JSON API and the plain pages ------------------------------

/** Where a request comes from, for sessions, throttling and the audit log. */
export interface Client {
  ip: string;
  userAgent?: string;
}

export function clientOf(req: FastifyRequest): Client {
  const ua = req.headers['user-agent'];
  return { ip: req.ip, ...(typeof ua === 'string' ? { userAgent: ua } : {}) };
}

export interface SignedIn {
  user: User;
  session: SessionInfo;
  token: string;
}

const str = (max: number) => z.string().max(max);

export const LoginBody = z.object({
  username: str(256),
  password: str(4096),
  code: str(64).optional(),
});
export type LoginInput = z.output<typeof LoginBody>;

function throttled(d: { retryAfterMs: number }): RetryLaterError {
  return new RetryLaterError('RELAY_TOO_MANY_ATTEMPTS', d.retryAfterMs, [formatWait(d.retryAfterMs)]);
}

/**
 * Signs in. The throttle is asked first: while it says no, nothing is verified, so the right
 * password during a lockout gets the same 429 as a wrong one. Every failure says the same thing
 * (RELAY_LOGIN_FAILED) whatever was wrong; only after a right password does a user with two-factor
 * on and no code given learn that a code is needed.
 */
export async function signIn(deps: WebDeps, input: LoginInput, client: Client): Promise<SignedIn> {
  const keys = { account: input.username, ip: client.ip };
  const decision = deps.throttle.check(keys);
  if (!decision.allowed) throw throttled(decision);

  const fail = async (reason: 'password' | 'code', userId?: string): Promise<never> => {
    const r = deps.throttle.fail(keys);
    const id = userId ?? (await deps.users.findByUsername(input.username).catch(() => null))?.id ?? null;
    const detail = { username: input.username.slice(0, 64), reason };
    deps.audit.record(AuditKind.LoginFailed, { userId: id, ip: client.ip, detail });
    if (r.locked) {
      deps.audit.record(AuditKind.LoginLocked, { userId: id, ip: client.ip, detail: { ...detail, account: r.accountLocked, address: r.ipLocked } });
    }
    throw new RelayError('RELAY_LOGIN_FAILED');
  };

  const user = await deps.users.verifyLogin(input.username, input.password);
  if (user === null) return fail('password');
  if (user.totpEnabledAt !== null) {
    const code = input.code?.trim() ?? '';
    if (code === '') throw new RelayError('RELAY_SECOND_FACTOR_REQUIRED');
    if (!(await deps.users.checkSecondFactor(user, code))) return fail('code', user.id);
    if (normalizeTotpCode(code) === null) {
      deps.audit.record(AuditKind.RecoveryCodeUsed, { userId: user.id, ip: client.ip });
    }
  }
  deps.throttle.succeed(keys);
  const signedIn = await issueDashboardSession(deps, user, client);
  deps.audit.record(AuditKind.LoginSucceeded, { userId: user.id, ip: client.ip, detail: { session: signedIn.session.id } });
  return signedIn;
}

async function issueDashboardSession(deps: WebDeps, user: User, client: Client): Promise<SignedIn> {
  const { token, session } = await deps.sessions.issue({
    kind: 'dashboard',
    userId: user.id,
    ttlMs: DASHBOARD_SESSION_TTL_MS,
    ip: client.ip,
    ...(client.userAgent !== undefined ? { userAgent: client.userAgent } : {}),
  });
  return { user, session, token };
}

export const SetupBody = z.object({ token: str(256), username: str(256), password: str(4096) });
export type SetupInput = z.output<typeof SetupBody>;

/**
 * First run: with the one-time token the relay printed, makes the first admin and signs them
 * in. Refused once any user exists. The input is checked before the token is used up, and a
 * failure after that gives it back, so a weak password does not burn the printed link.
 */
export async function completeSetup(deps: WebDeps, input: SetupInput, client: Client): Promise<SignedIn> {
  if ((await deps.users.count()) > 0) {
    deps.setup.close();
    throw new RelayError('RELAY_SETUP_DONE');
  }
  if (!deps.setup.check(input.token)) throw new RelayError('RELAY_SETUP_TOKEN');
  const username = normalizeUsername(input.username);
  const problem = passwordProblem(input.password, { username });
  if (problem !== undefined) throw new RelayError('RELAY_WEAK_PASSWORD', [problem]);
  if (!deps.setup.consume(input.token)) throw new RelayError('RELAY_SETUP_TOKEN');
  let user: User;
  try {
    if ((await deps.users.count()) > 0) throw new RelayError('RELAY_SETUP_DONE');
    user = await deps.users.create({ username, password: input.password, isAdmin: true });
  } catch (err) {
    if (isRelayError(err, 'RELAY_SETUP_DONE')) deps.setup.close();
    else deps.setup.restore(input.token);
    throw err;
  }
  deps.setup.close();
  deps.audit.record(AuditKind.SetupCompleted, { userId: user.id, ip: client.ip, detail: { username: user.username } });
  const signedIn = await issueDashboardSession(deps, user, client);
  deps.audit.record(AuditKind.LoginSucceeded, { userId: user.id, ip: client.ip, detail: { session: signedIn.session.id, setup: true } });
  return signedIn;
}

/** Ends the dashboard session and every device session opened from it. */
export async function signOut(deps: WebDeps, auth: Auth, client: Client): Promise<void> {
  await deps.sessions.revoke(auth.session.id);
  deps.audit.record(AuditKind.Logout, { userId: auth.user.id, ip: client.ip, detail: { session: auth.session.id } });
}

export const PasswordBody = z.object({ old: str(4096), new: str(4096) });

/**
 * Changes the password after checking the old one (throttled like a sign-in: a stolen session
 * must not become a password oracle). Every session of the user ends, this one included, and a
 * fresh one replaces it: a session older than the password is dead (see the auth hook), here and
 * on any other relay sharing the database.
 */
export async function changePassword(
  deps: WebDeps,
  auth: Auth,
  input: z.output<typeof PasswordBody>,
  client: Client,
): Promise<SignedIn> {
  await withPasswordThrottle(deps, auth, client, () => deps.users.changePassword(auth.user.id, input.old, input.new));
  await deps.sessions.revokeFor({ userId: auth.user.id });
  const user = (await deps.users.findById(auth.user.id)) ?? auth.user;
  const signedIn = await issueDashboardSession(deps, user, client);
  deps.audit.record(AuditKind.PasswordChanged, { userId: user.id, ip: client.ip });
  return signedIn;
}

/** Runs `fn` (which checks the user's password) under the sign-in throttle of their account. */
async function withPasswordThrottle(deps: WebDeps, auth: Auth, client: Client, fn: () => Promise<void>): Promise<void> {
  const keys = { account: auth.user.username, ip: client.ip };
  const decision = deps.throttle.check(keys);
  if (!decision.allowed) throw throttled(decision);
  try {
    await fn();
  } catch (err) {
    if (isRelayError(err, 'RELAY_WRONG_PASSWORD')) {
      const r = deps.throttle.fail(keys);
      if (r.locked) deps.audit.record(AuditKind.LoginLocked, { userId: auth.user.id, ip: client.ip, detail: { during: 'password check' } });
    }
    throw err;
  }
}

export interface SessionView {
  id: string;
  kind: string;
  deviceId: string | null;
  ip: string | null;
  userAgent: string | null;
  createdAt: Date;
  lastSeenAt: Date;
  expiresAt: Date;
  current: boolean;
}

export async function listSessions(deps: WebDeps, auth: Auth): Promise<SessionView[]> {
  const list = await deps.sessions.listForUser(auth.user.id);
  return list.map((s) => ({
    id: s.id,
    kind: s.kind,
    deviceId: s.deviceId,
    ip: s.ip,
    userAgent: s.userAgent,
    createdAt: s.createdAt,
    lastSeenAt: s.lastSeenAt,
    expiresAt: s.expiresAt,
    current: s.id === auth.session.id,
  }));
}

/** Ends one of the caller's own sessions (and those opened from it). Returns whether it was the current one. */
export async function revokeOwnSession(deps: WebDeps, auth: Auth, id: string, client: Client): Promise<boolean> {
  const mine = await deps.sessions.listForUser(auth.user.id);
  if (!mine.some((s) => s.id === id)) throw new RelayError('RELAY_NOT_FOUND', ['no such session']);
  await deps.sessions.revoke(id);
  deps.audit.record(AuditKind.SessionRevoked, { userId: auth.user.id, ip: client.ip, detail: { session: id } });
  return id === auth.session.id;
}

export async function beginTotp(deps: WebDeps, auth: Auth): Promise<{ secret: string; uri: string }> {
  return deps.users.beginTotp(auth.user.id);
}

export const TotpEnableBody = z.object({ code: str(64) });

/** Turns two-factor on; the user's other sessions end (whoever else was signed in must now show a code). */
export async function enableTotp(deps: WebDeps, auth: Auth, code: string, client: Client): Promise<string[]> {
  const recoveryCodes = await deps.users.enableTotp(auth.user.id, code);
  await revokeOtherSessions(deps, auth);
  deps.audit.record(AuditKind.TotpEnabled, { userId: auth.user.id, ip: client.ip });
  return recoveryCodes;
}

/**
 * Ends every session of the user but this one and the device sessions opened from it. (Not
 * `revokeFor({ exceptId })`: its NOT on the nullable parentId also spares every session without
 * a parent, in SQL's three-valued logic.)
 */
async function revokeOtherSessions(deps: WebDeps, auth: Auth): Promise<void> {
  const keep = auth.session.id;
  for (const s of await deps.sessions.listForUser(auth.user.id)) {
    if (s.id !== keep && s.parentId !== keep) await deps.sessions.revoke(s.id);
  }
}

export const TotpDisableBody = z.object({ password: str(4096) });

export async function disableTotp(deps: WebDeps, auth: Auth, password: string, client: Client): Promise<void> {
  await withPasswordThrottle(deps, auth, client, () => deps.users.disableTotp(auth.user.id, password));
  deps.audit.record(AuditKind.TotpDisabled, { userId: auth.user.id, ip: client.ip });
}

/** Sets the cookie for a new sign-in and answers what the API returns for it. */
export function startSession(deps: WebDeps, reply: FastifyReply, s: SignedIn) {
  setSessionCookie(reply, deps.config, s.token, s.session.expiresAt, deps.now);
  return { user: userView(s.user), csrf: deps.sessions.csrfToken(s.session.id) };
}

// ---- the JSON API --------------------------------------------------------------------------

const IdParams = z.object({ id: z.string().min(1).max(128) });

const CreateUserBody = z.object({ username: str(256), password: str(4096), isAdmin: z.boolean().optional() });

/**
 * /api: setup, sign-in and out, the signed-in user's account (password, sessions, two-factor),
 * and user administration. Registered under the '/api' prefix.
 */
export async function accountRoutes(api: FastifyInstance, deps: WebDeps): Promise<void> {
  api.get('/setup/status', async () => ({ needsSetup: (await deps.users.count()) === 0 }));

  api.post('/setup', async (req, reply) => {
    const signedIn = await completeSetup(deps, parse(SetupBody, req.body), clientOf(req));
    return startSession(deps, reply, signedIn);
  });

  api.post('/login', async (req, reply) => {
    const signedIn = await signIn(deps, parse(LoginBody, req.body), clientOf(req));
    return startSession(deps, reply, signedIn);
  });

  api.post('/logout', { preHandler: requireUser }, async (req, reply) => {
    await signOut(deps, authOf(req), clientOf(req));
    clearSessionCookie(reply, deps.config);
    return { ok: true };
  });

  api.get('/me', { preHandler: requireUser }, async (req) => {
    const auth = authOf(req);
    return { user: userView(auth.user), csrf: deps.sessions.csrfToken(auth.session.id) };
  });

  api.post('/password', { preHandler: requireUser }, async (req, reply) => {
    const signedIn = await changePassword(deps, authOf(req), parse(PasswordBody, req.body), clientOf(req));
    return startSession(deps, reply, signedIn);
  });

  api.get('/sessions', { preHandler: requireUser }, async (req) => listSessions(deps, authOf(req)));

  api.delete('/sessions/:id', { preHandler: requireUser }, async (req, reply) => {
    const { id } = parse(IdParams, req.params);
    const current = await revokeOwnSession(deps, authOf(req), id, clientOf(req));
    if (current) clearSessionCookie(reply, deps.config);
    return { ok: true, current };
  });

  api.post('/totp/setup', { preHandler: requireUser }, async (req) => beginTotp(deps, authOf(req)));

  api.post('/totp/enable', { preHandler: requireUser }, async (req) => {
    const { code } = parse(TotpEnableBody, req.body);
    return { recoveryCodes: await enableTotp(deps, authOf(req), code, clientOf(req)) };
  });

  api.post('/totp/disable', { preHandler: requireUser }, async (req) => {
    const { password } = parse(TotpDisableBody, req.body);
    await disableTotp(deps, authOf(req), password, clientOf(req));
    return { ok: true };
  });

  // ---- administration ----

  api.get('/users', { preHandler: requireAdmin }, async () => (await deps.users.list()).map(userView));

  api.post('/users', { preHandler: requireAdmin }, async (req, reply) => {
    const auth = authOf(req);
    const body = parse(CreateUserBody, req.body);
    const user = await deps.users.create({ username: body.username, password: body.password, isAdmin: body.isAdmin ?? false });
    deps.audit.record(AuditKind.UserCreated, {
      userId: auth.user.id,
      ip: req.ip,
      detail: { created: user.id, username: user.username, isAdmin: user.isAdmin },
    });
    return reply.code(201).send(userView(user));
  });

  api.post('/users/:id/disable', { preHandler: requireAdmin }, async (req) => {
    const auth = authOf(req);
    const { id } = parse(IdParams, req.params);
    if (id === auth.user.id) throw new RelayError('RELAY_FORBIDDEN', ['you cannot disable your own account']);
    const user = await deps.users.disable(id);
    await deps.sessions.revokeFor({ userId: id });
    deps.audit.record(AuditKind.UserDisabled, { userId: auth.user.id, ip: req.ip, detail: { disabled: id, username: user.username } });
    return userView(user);
  });
}
