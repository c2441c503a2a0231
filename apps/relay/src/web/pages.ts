import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { safeNext } from '../accounts/handoff.js';
import { totpUri } from '../accounts/totp.js';
import { RelayError } from '../errors.js';
import type { PairingInfo } from '../pairing/service.js';
import {
  beginTotp,
  changePassword,
  clientOf,
  completeSetup,
  disableTotp,
  enableTotp,
  listSessions,
  revokeOwnSession,
  signIn,
  signOut,
  startSession,
  type SessionView,
} from './account-routes.js';
import { authOf, clearSessionCookie, CSRF_FIELD, requireUser } from './auth-plugin.js';
import type { Auth, WebDeps } from './deps.js';
import { approvePairing, denyPairing, listDevices, lookupPairing, openDevice, type DeviceView } from './device-routes.js';
import { html, layout, relative, when, type Html } from './html.js';
import { toProblem } from './http.js';

/** Form bodies are tiny: a few fields. */
const FORM_LIMIT = 16 * 1024;

type Form = Record<string, string>;

/** A urlencoded body as a plain record (own properties only, last value wins). */
function parseForm(body: string): Form {
  const out: Form = Object.create(null) as Form;
  for (const [k, v] of new URLSearchParams(body)) out[k] = v;
  return out;
}

function field(body: unknown, name: string, max = 4096): string {
  const v = (body as Form | null | undefined)?.[name];
  return typeof v === 'string' ? v.slice(0, max) : '';
}

function query(req: FastifyRequest, name: string): string {
  const v = (req.query as Record<string, unknown> | undefined)?.[name];
  return typeof v === 'string' ? v.slice(0, 2048) : '';
}

/**
 * The plain pages: sign-in, first-run setup, the printer list with an Open button, pairing,
 * and the account page. Server-rendered HTML with classic forms (no script at all: the CSP
 * forbids inline script and there is none to load); every form that changes anything for a
 * signed-in user carries the session's CSRF token in a hidden `_csrf` field, and the web
 * layer's hooks check it, the Origin and Sec-Fetch-Site. The full phone dashboard is built on
 * the JSON API later; these stay simple and always work.
 */
export async function pageRoutes(scope: FastifyInstance, deps: WebDeps): Promise<void> {
  scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_LIMIT }, (_req, body, done) => {
    done(null, parseForm(body as string));
  });

  const csrfOf = (auth: Auth) => deps.sessions.csrfToken(auth.session.id);
  const hiddenCsrf = (auth: Auth) => html`<input type="hidden" name="${CSRF_FIELD}" value="${csrfOf(auth)}">`;
  const now = () => deps.now?.() ?? new Date();

  function send(req: FastifyRequest, reply: FastifyReply, status: number, title: string, body: Html): FastifyReply {
    const user = req.auth ? { username: req.auth.user.username, csrf: csrfOf(req.auth) } : undefined;
    return reply
      .code(status)
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(layout({ title, body, ...(user ? { user } : {}) }));
  }

  /** Renders a failed form: the catalogue message, its status, Retry-After when throttled. */
  function failed(reply: FastifyReply, err: unknown): { status: number; message: string } {
    if (!(err instanceof RelayError) || err.statusCode >= 500) throw err;
    const p = toProblem(err);
    reply.headers(p.headers);
    return { status: p.status, message: p.message };
  }

  const errorBox = (message: string | undefined) => (message ? html`<p class="error" role="alert">${message}</p>` : html``);
  const noticeBox = (message: string | undefined) => (message ? html`<p class="notice" role="status">${message}</p>` : html``);

  // ---- printers ----

  scope.get('/', async (req, reply) => {
    if (req.auth === null) return reply.redirect((await deps.users.count()) === 0 ? '/setup' : '/login', 302);
    const auth = req.auth;
    const devices = await listDevices(deps, auth);
    const t = now();
    const card = (d: DeviceView) => {
      const state = d.revoked
        ? html`<span class="offline">Revoked</span>`
        : d.online
          ? html`<span class="online">Online</span>${d.onlineSince ? html` <span class="muted">since ${relative(d.onlineSince, t)}</span>` : ''}`
          : html`<span class="offline">Offline</span>${d.offlineSince ? html` <span class="muted">since ${when(d.offlineSince)} (${relative(d.offlineSince, t)})</span>` : ''}`;
      const open = d.revoked
        ? html``
        : html`<form method="post" action="/devices/${encodeURIComponent(d.id)}/open">${hiddenCsrf(auth)}<button type="submit" aria-label="Open ${d.name}">Open</button></form>`;
      return html`<li class="card"><h2>${d.name}</h2><p>${state}</p><p class="muted"><span class="mono">${d.url}</span> · ${d.role}</p>${open}</li>`;
    };
    const list =
      devices.length === 0
        ? html`<p>No printers yet. Install the Porthole agent on your printer's Pi; it shows a pairing code to enter below.</p>`
        : html`<ul class="plain">${devices.map(card)}</ul>`;
    const pair = deps.pairing
      ? html`<h2>Pair a printer</h2><form method="get" action="/pair"><label for="pair-code">Pairing code shown by the agent</label><input id="pair-code" name="code" autocomplete="off" autocapitalize="characters" placeholder="ABCD-EFGH" required><div class="actions"><button type="submit">Continue</button></div></form>`
      : html``;
    return send(req, reply, 200, 'Printers', html`<h1>Printers</h1>${list}${pair}`);
  });

  scope.post('/devices/:id/open', { preHandler: requireUser }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const { url } = await openDevice(deps, authOf(req), String(id).slice(0, 128), undefined, clientOf(req));
    return reply.redirect(url, 303);
  });

  // ---- sign-in ----

  function loginPage(
    req: FastifyRequest,
    reply: FastifyReply,
    o: { status?: number; next: string; username?: string; error?: string; needCode?: boolean },
  ) {
    const code = o.needCode
      ? html`<label for="code">Code from your authenticator app (or a recovery code)</label><input id="code" name="code" inputmode="text" autocomplete="one-time-code" autocapitalize="off" required autofocus>`
      : html``;
    return send(
      req,
      reply,
      o.status ?? 200,
      'Sign in',
      html`<h1>Sign in</h1>${errorBox(o.error)}<form method="post" action="/login">
<input type="hidden" name="next" value="${o.next}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" autocapitalize="off" spellcheck="false" value="${o.username ?? ''}" required${o.username ? '' : ' autofocus'}>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
${code}<div class="actions"><button type="submit">Sign in</button></div></form>`,
    );
  }

  scope.get('/login', async (req, reply) => {
    const next = safeNext(query(req, 'next'));
    if (req.auth !== null) return reply.redirect(next, 302);
    if ((await deps.users.count()) === 0) return reply.redirect('/setup', 302);
    return loginPage(req, reply, { next });
  });

  scope.post('/login', async (req, reply) => {
    const next = safeNext(field(req.body, 'next', 2048));
    const username = field(req.body, 'username', 256);
    const code = field(req.body, 'code', 64);
    try {
      const signedIn = await signIn(
        deps,
        { username, password: field(req.body, 'password'), ...(code ? { code } : {}) },
        clientOf(req),
      );
      startSession(deps, reply, signedIn);
      return reply.redirect(next, 303);
    } catch (err) {
      const f = failed(reply, err);
      const needCode = err instanceof RelayError && (err.code === 'RELAY_SECOND_FACTOR_REQUIRED' || (err.code === 'RELAY_LOGIN_FAILED' && code !== ''));
      return loginPage(req, reply, { status: f.status, next, username, error: f.message, needCode });
    }
  });

  scope.get('/logout', async (req, reply) => {
    if (req.auth === null) return reply.redirect('/login', 302);
    return send(
      req,
      reply,
      200,
      'Sign out',
      html`<h1>Sign out</h1><p>This also closes the printers you opened from this sign-in.</p><form method="post" action="/logout">${hiddenCsrf(req.auth)}<div class="actions"><button type="submit">Sign out</button></div></form>`,
    );
  });

  scope.post('/logout', { preHandler: requireUser }, async (req, reply) => {
    await signOut(deps, authOf(req), clientOf(req));
    clearSessionCookie(reply, deps.config);
    return reply.redirect('/login', 303);
  });

  // ---- first run ----

  function setupPage(req: FastifyRequest, reply: FastifyReply, o: { status?: number; token: string; username?: string; error?: string }) {
    const token = o.token
      ? html`<input type="hidden" name="token" value="${o.token}">`
      : html`<label for="token">Setup token (from the link the relay printed when it started)</label><input id="token" name="token" autocomplete="off" autocapitalize="off" spellcheck="false" required>`;
    return send(
      req,
      reply,
      o.status ?? 200,
      'Set up Porthole',
      html`<h1>Set up Porthole</h1><p>Make the first account. It will be an administrator and can add others.</p>${errorBox(o.error)}<form method="post" action="/setup">${token}
<label for="username">Username</label><input id="username" name="username" autocomplete="username" autocapitalize="off" spellcheck="false" value="${o.username ?? ''}" required>
<label for="password">Password (at least 10 characters, not a common one)</label><input id="password" name="password" type="password" autocomplete="new-password" minlength="10" required>
<label for="confirm">Password again</label><input id="confirm" name="confirm" type="password" autocomplete="new-password" minlength="10" required>
<div class="actions"><button type="submit">Create account</button></div></form>`,
    );
  }

  scope.get('/setup', async (req, reply) => {
    if ((await deps.users.count()) > 0) return reply.redirect(req.auth ? '/' : '/login', 302);
    return setupPage(req, reply, { token: query(req, 'token') });
  });

  scope.post('/setup', async (req, reply) => {
    const token = field(req.body, 'token', 256);
    const username = field(req.body, 'username', 256);
    const password = field(req.body, 'password');
    try {
      if (password !== field(req.body, 'confirm')) throw new RelayError('RELAY_BAD_REQUEST', ['the two passwords differ']);
      const signedIn = await completeSetup(deps, { token, username, password }, clientOf(req));
      startSession(deps, reply, signedIn);
      return reply.redirect('/', 303);
    } catch (err) {
      if (err instanceof RelayError && err.code === 'RELAY_SETUP_DONE') return reply.redirect('/login', 303);
      const f = failed(reply, err);
      // A wrong token is not shown back (nor kept hidden): the visible field asks for it again.
      return setupPage(req, reply, { status: f.status, token: err instanceof RelayError && err.code === 'RELAY_SETUP_TOKEN' ? '' : token, username, error: f.message });
    }
  });

  // ---- pairing ----

  function pairPage(req: FastifyRequest, reply: FastifyReply, auth: Auth, o: { status?: number; code: string; info?: PairingInfo; error?: string; name?: string; slug?: string }) {
    const ask = html`<form method="get" action="/pair"><label for="pair-code">Pairing code shown by the agent</label><input id="pair-code" name="code" value="${o.code}" autocomplete="off" autocapitalize="characters" placeholder="ABCD-EFGH" required><div class="actions"><button type="submit">Look up</button></div></form>`;
    if (o.info === undefined) {
      return send(req, reply, o.status ?? 200, 'Pair a printer', html`<h1>Pair a printer</h1>${errorBox(o.error)}${ask}`);
    }
    const i = o.info;
    return send(
      req,
      reply,
      o.status ?? 200,
      'Pair a printer',
      html`<h1>Pair a printer</h1>${errorBox(o.error)}
<div class="card"><p>A Porthole agent asks to connect as <strong>${i.name}</strong>.</p>
<p class="muted">Code <span class="mono">${i.code}</span> · agent ${i.agent} · from ${i.remote} · expires ${relative(i.expiresAt, now())}</p>
<p class="muted">Approve only if this is your printer and you started the pairing on it just now: whoever you approve gets a tunnel to this relay, and you become its owner.</p></div>
<form method="post" action="/pair">${hiddenCsrf(auth)}<input type="hidden" name="code" value="${i.code}">
<label for="name">Name</label><input id="name" name="name" value="${o.name ?? i.name}" maxlength="100" required>
<label for="slug">Address (optional: lowercase letters, digits and "-"; derived from the name when empty)</label><input id="slug" name="slug" value="${o.slug ?? ''}" autocapitalize="off" spellcheck="false" maxlength="63">
<div class="actions"><button type="submit" name="action" value="approve">Approve</button><button class="danger" type="submit" name="action" value="deny">Deny</button></div></form>`,
    );
  }

  scope.get('/pair', { preHandler: requireUser }, async (req, reply) => {
    const auth = authOf(req);
    if (deps.pairing === undefined) throw new RelayError('RELAY_NOT_FOUND', ['pairing is not enabled on this relay']);
    const code = query(req, 'code').slice(0, 64);
    if (code === '') return pairPage(req, reply, auth, { code });
    try {
      return pairPage(req, reply, auth, { code, info: lookupPairing(deps, code) });
    } catch (err) {
      const f = failed(reply, err);
      return pairPage(req, reply, auth, { status: f.status, code, error: f.message });
    }
  });

  scope.post('/pair', { preHandler: requireUser }, async (req, reply) => {
    const auth = authOf(req);
    const code = field(req.body, 'code', 64);
    const name = field(req.body, 'name', 1000).trim();
    const slug = field(req.body, 'slug', 100).trim().toLowerCase();
    try {
      if (field(req.body, 'action') === 'deny') {
        const info = denyPairing(deps, code);
        return send(req, reply, 200, 'Pairing denied', html`<h1>Pairing denied</h1><p>The agent asking as <strong>${info.name}</strong> was refused.</p><p><a href="/">Back to printers</a></p>`);
      }
      const { device } = await approvePairing(deps, auth, { code, name, slug }, clientOf(req));
      return send(
        req,
        reply,
        201,
        'Printer paired',
        html`<h1>${device.name} is paired</h1><p>The agent picks up its credential within a few seconds and connects. Its address is <span class="mono">${device.url}</span>.</p><p><a href="/">Back to printers</a></p>`,
      );
    } catch (err) {
      const f = failed(reply, err);
      let info: PairingInfo | undefined;
      try {
        info = lookupPairing(deps, code);
      } catch {
        info = undefined;
      }
      return pairPage(req, reply, auth, { status: f.status, code, error: f.message, name, slug, ...(info ? { info } : {}) });
    }
  });

  // ---- account ----

  const DONE: Record<string, string> = {
    password: 'Password changed. Every other sign-in has ended.',
    session: 'Session ended.',
    'totp-off': 'Two-factor sign-in is off.',
  };

  async function accountPage(req: FastifyRequest, reply: FastifyReply, o: { status?: number; error?: string; notice?: string } = {}) {
    const auth = authOf(req);
    const sessions = await listSessions(deps, auth);
    const t = now();
    const session = (s: SessionView) =>
      html`<li><strong>${s.kind === 'dashboard' ? 'Dashboard' : s.kind === 'device' ? 'Printer' : s.kind}</strong>${s.current ? html` <span class="online">(this one)</span>` : ''}
<div class="muted">${s.userAgent ?? 'unknown browser'} · ${s.ip ?? 'unknown address'} · signed in ${relative(s.createdAt, t)} · last seen ${relative(s.lastSeenAt, t)}</div>
<form class="inline" method="post" action="/account/sessions/revoke">${hiddenCsrf(auth)}<input type="hidden" name="id" value="${s.id}"><button class="danger" type="submit">End${s.current ? ' (signs you out)' : ''}</button></form></li>`;
    const totp =
      auth.user.totpEnabledAt !== null
        ? html`<p>Two-factor sign-in is <strong>on</strong> since ${when(auth.user.totpEnabledAt)}; ${await deps.users.remainingRecoveryCodes(auth.user.id)} recovery codes left.</p>
<form method="post" action="/account/totp/disable">${hiddenCsrf(auth)}<label for="totp-password">Password, to turn it off</label><input id="totp-password" name="password" type="password" autocomplete="current-password" required><div class="actions"><button class="danger" type="submit">Turn off two-factor</button></div></form>`
        : html`<p>Two-factor sign-in is <strong>off</strong>. With it on, signing in also asks for a code from an authenticator app.</p>
<form method="post" action="/account/totp/setup">${hiddenCsrf(auth)}<div class="actions"><button type="submit">Set up two-factor</button></div></form>`;
    return send(
      req,
      reply,
      o.status ?? 200,
      'Account',
      html`<h1>Account: ${auth.user.username}</h1>${noticeBox(o.notice)}${errorBox(o.error)}
<h2>Password</h2><form method="post" action="/account/password">${hiddenCsrf(auth)}
<input type="text" name="username" value="${auth.user.username}" autocomplete="username" hidden>
<label for="old">Current password</label><input id="old" name="old" type="password" autocomplete="current-password" required>
<label for="new">New password (at least 10 characters, not a common one)</label><input id="new" name="new" type="password" autocomplete="new-password" minlength="10" required>
<label for="confirm">New password again</label><input id="confirm" name="confirm" type="password" autocomplete="new-password" minlength="10" required>
<div class="actions"><button type="submit">Change password</button></div></form>
<h2>Two-factor sign-in</h2>${totp}
<h2>Where you are signed in</h2><ul class="plain">${sessions.map(session)}</ul>`,
    );
  }

  scope.get('/account', { preHandler: requireUser }, async (req, reply) => {
    return accountPage(req, reply, { notice: DONE[query(req, 'done')] });
  });

  scope.post('/account/password', { preHandler: requireUser }, async (req, reply) => {
    try {
      const next = field(req.body, 'new');
      if (next !== field(req.body, 'confirm')) throw new RelayError('RELAY_BAD_REQUEST', ['the two new passwords differ']);
      const signedIn = await changePassword(deps, authOf(req), { old: field(req.body, 'old'), new: next }, clientOf(req));
      startSession(deps, reply, signedIn);
      return reply.redirect('/account?done=password', 303);
    } catch (err) {
      const f = failed(reply, err);
      return accountPage(req, reply, { status: f.status, error: f.message });
    }
  });

  scope.post('/account/sessions/revoke', { preHandler: requireUser }, async (req, reply) => {
    try {
      const current = await revokeOwnSession(deps, authOf(req), field(req.body, 'id', 128), clientOf(req));
      if (current) {
        clearSessionCookie(reply, deps.config);
        return reply.redirect('/login', 303);
      }
      return reply.redirect('/account?done=session', 303);
    } catch (err) {
      const f = failed(reply, err);
      return accountPage(req, reply, { status: f.status, error: f.message });
    }
  });

  function totpSetupPage(req: FastifyRequest, reply: FastifyReply, auth: Auth, secret: string, o: { status?: number; error?: string } = {}) {
    const uri = totpUri(secret, auth.user.username);
    const grouped = secret.replace(/(.{4})/g, '$1 ').trim();
    return send(
      req,
      reply,
      o.status ?? 200,
      'Set up two-factor',
      html`<h1>Set up two-factor sign-in</h1>${errorBox(o.error)}
<p>Add this account to an authenticator app: on this phone, <a href="${uri}">open it in the app</a>; elsewhere, enter the key by hand (time-based, 6 digits, 30 seconds).</p>
<p class="mono" aria-label="Key">${grouped}</p>
<form method="post" action="/account/totp/enable">${hiddenCsrf(auth)}<input type="hidden" name="secret" value="${secret}">
<label for="code">Code the app shows now</label><input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" required autofocus>
<div class="actions"><button type="submit">Turn on</button><a href="/account">Cancel</a></div></form>`,
    );
  }

  scope.post('/account/totp/setup', { preHandler: requireUser }, async (req, reply) => {
    const auth = authOf(req);
    try {
      const { secret } = await beginTotp(deps, auth);
      return totpSetupPage(req, reply, auth, secret);
    } catch (err) {
      const f = failed(reply, err);
      return accountPage(req, reply, { status: f.status, error: f.message });
    }
  });

  scope.post('/account/totp/enable', { preHandler: requireUser }, async (req, reply) => {
    const auth = authOf(req);
    try {
      const codes = await enableTotp(deps, auth, field(req.body, 'code', 64), clientOf(req));
      return send(
        req,
        reply,
        200,
        'Two-factor is on',
        html`<h1>Two-factor sign-in is on</h1><p>Keep these recovery codes somewhere safe, away from your phone. Each works once, in place of a code, if you lose the app. They are shown only now.</p>
<ul class="plain mono">${codes.map((c) => html`<li>${c}</li>`)}</ul><p><a href="/account">Done</a></p>`,
      );
    } catch (err) {
      const f = failed(reply, err);
      // The key is only shown back to the same user (it is theirs, and enabling checks the stored one).
      const secret = field(req.body, 'secret', 64);
      if (/^[A-Z2-7]{16,64}$/.test(secret) && err instanceof RelayError && err.code === 'RELAY_TOTP_INVALID') {
        return totpSetupPage(req, reply, auth, secret, { status: f.status, error: f.message });
      }
      return accountPage(req, reply, { status: f.status, error: f.message });
    }
  });

  scope.post('/account/totp/disable', { preHandler: requireUser }, async (req, reply) => {
    try {
      await disableTotp(deps, authOf(req), field(req.body, 'password'), clientOf(req));
      return reply.redirect('/account?done=totp-off', 303);
    } catch (err) {
      const f = failed(reply, err);
      return accountPage(req, reply, { status: f.status, error: f.message });
    }
  });
}

/** The page shown for an error no form handled (unknown device, CSRF refusal…). */
export function errorPageHtml(status: number, message: string, auth: { username: string; csrf: string } | undefined): string {
  const title = status === 404 ? 'Not found' : status === 403 ? 'Not allowed' : status >= 500 ? 'Something went wrong' : 'Cannot do that';
  const hint = status === 403 ? html`<p class="muted">If you were using a form, reload the page and try again.</p>` : html``;
  return layout({ title, body: html`<h1>${title}</h1><p>${message}</p>${hint}<p><a href="/">Back to Porthole</a></p>`, ...(auth ? { user: auth } : {}) });
}
