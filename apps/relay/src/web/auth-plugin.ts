import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { cookieName, parseCookies, serializeCookie } from '../accounts/cookies.js';
import { RelayError } from '../errors.js';
import { classifyHost } from '../proxy/host.js';
import { relayOrigin, type Auth, type WebConfig, type WebDeps } from './deps.js';
import { safeEqual } from './http.js';
import { hasBody, isApiPath, mediaType, STATE_CHANGING } from './security.js';

/** The header the dashboard's scripts send the CSRF token in. */
export const CSRF_HEADER = 'x-csrf-token';
/** The hidden form field plain pages send it in. */
export const CSRF_FIELD = '_csrf';

/**
 * Who is asking, and may they change anything. Adds to `scope` (not a child of it, so the hooks
 * cover every route the web layer registers):
 *
 * - onRequest `authenticate`: on the relay's own domain only, reads the dashboard cookie, verifies
 *   the token and its session row and loads the user; `request.auth` is `{ session, user }` or
 *   null. A token re-issued by the session layer is set as the cookie again; a dead one is cleared.
 * - onRequest `checkSameOrigin`: a state-changing request (POST, PUT, PATCH, DELETE) must not come
 *   from another origin (Origin header, when present, equal to the public URL's; Sec-Fetch-Site,
 *   when present, same-origin) and, when it has a body, must send JSON to /api and a urlencoded
 *   form to pages.
 * - preHandler `checkCsrfToken`: a signed-in state-changing request must carry the session's CSRF
 *   token: the `x-csrf-token` header for /api, the `_csrf` form field for pages.
 *
 * Preconditions per route are `requireUser` and `requireAdmin` (preHandler hooks).
 */
export function registerAuth(scope: FastifyInstance, deps: WebDeps): void {
  const { config, sessions, users } = deps;
  const expectedOrigin = relayOrigin(config);

  scope.addHook('onRequest', async function authenticate(req, reply) {
    req.auth = null;
    if (classifyHost(req.headers.host, req.raw.url, config.domain).kind !== 'relay') return;
    const token = parseCookies(req.headers.cookie).get(cookieName('dashboard', config.secureCookies));
    if (token === undefined || token === '') return;
    const verified = await sessions.verify(token, { kind: 'dashboard' });
    const userId = verified?.session.userId ?? null;
    const user = userId === null ? null : await users.findById(userId);
    if (verified === null || user === null || user.disabledAt !== null || verified.session.createdAt < user.passwordChangedAt) {
      // Signed out elsewhere, revoked, disabled, or a session from before the password changed.
      clearSessionCookie(reply, config);
      return;
    }
    req.auth = { session: verified.session, user };
    if (verified.refreshed !== undefined) setSessionCookie(reply, config, verified.refreshed, verified.session.expiresAt, deps.now);
  });

  scope.addHook('onRequest', async function checkSameOrigin(req) {
    if (!STATE_CHANGING.has(req.method)) return;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== expectedOrigin) {
      throw new RelayError('RELAY_CSRF', ['the Origin header names another site']);
    }
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') {
      throw new RelayError('RELAY_CSRF', [`the browser says it came from a ${site} page`]);
    }
    if (hasBody(req)) {
      const want = isApiPath(req.url) ? 'application/json' : 'application/x-www-form-urlencoded';
      if (mediaType(req) !== want) throw new RelayError('RELAY_UNSUPPORTED_MEDIA_TYPE', [want]);
    }
  });

  scope.addHook('preHandler', async function checkCsrfToken(req) {
    if (!STATE_CHANGING.has(req.method) || req.auth === null) return;
    const presented = isApiPath(req.url)
      ? req.headers[CSRF_HEADER]
      : (req.body as Record<string, unknown> | null | undefined)?.[CSRF_FIELD];
    if (!safeEqual(presented, sessions.csrfToken(req.auth.session.id))) {
      throw new RelayError('RELAY_CSRF', ['missing or wrong CSRF token']);
    }
  });
}

/** preHandler: signed in, or 401 (API) / a redirect to the sign-in page (pages). */
export async function requireUser(req: FastifyRequest): Promise<void> {
  if (req.auth === null) throw new RelayError('RELAY_UNAUTHENTICATED');
}

/** preHandler: signed in as an administrator. */
export async function requireAdmin(req: FastifyRequest): Promise<void> {
  if (req.auth === null) throw new RelayError('RELAY_UNAUTHENTICATED');
  if (!req.auth.user.isAdmin) throw new RelayError('RELAY_FORBIDDEN', ['administrators only']);
}

/** The request's Auth, for handlers behind requireUser. */
export function authOf(req: FastifyRequest): Auth {
  if (req.auth === null) throw new RelayError('RELAY_UNAUTHENTICATED');
  return req.auth;
}

/** Sets the dashboard cookie: host-only, HttpOnly, SameSite=Lax, Secure over TLS, until the session ends. */
export function setSessionCookie(
  reply: FastifyReply,
  config: Pick<WebConfig, 'secureCookies'>,
  token: string,
  expiresAt: Date,
  now: () => Date = () => new Date(),
): void {
  const maxAge = Math.max(1, Math.floor((expiresAt.getTime() - now().getTime()) / 1000));
  reply.removeHeader('set-cookie');
  reply.header(
    'set-cookie',
    serializeCookie(cookieName('dashboard', config.secureCookies), token, { secure: config.secureCookies, maxAge, sameSite: 'Lax' }),
  );
}

export function clearSessionCookie(reply: FastifyReply, config: Pick<WebConfig, 'secureCookies'>): void {
  reply.removeHeader('set-cookie');
  reply.header(
    'set-cookie',
    serializeCookie(cookieName('dashboard', config.secureCookies), '', { secure: config.secureCookies, maxAge: 0, sameSite: 'Lax' }),
  );
}
