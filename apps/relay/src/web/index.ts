import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RelayError } from '../errors.js';
import { accountRoutes } from './account-routes.js';
import { dashboardRoutes } from './dashboard.js';
import { registerAuth } from './auth-plugin.js';
import type { WebDeps } from './deps.js';
import { deviceRoutes } from './device-routes.js';
import { BODY_LIMIT, toProblem } from './http.js';
import { errorPageHtml, pageRoutes } from './pages.js';
import { isApiPath, securityHeaders } from './security.js';
import { webcamRoutes } from './webcam-routes.js';

export type { Auth, WebConfig, WebDeps } from './deps.js';
export { DASHBOARD_SESSION_TTL_MS, deviceOrigin } from './deps.js';
export { DASHBOARD_PREFIX, defaultDashboardDir } from './dashboard.js';
export type { DashboardWebcam } from './webcam-routes.js';

/**
 * The relay's dashboard: the JSON API under /api, the phone dashboard (a static build) under
 * /app/, and the plain no-script pages, on the relay's own domain. Call it on the app before any other route is added and before `ready()`:
 *
 * - on the root: the `request.auth` decorator and the security headers (CSP, nosniff,
 *   frame-ancestors/X-Frame-Options, Referrer-Policy, HSTS over TLS, no-store on /api) on every
 *   response Fastify sends;
 * - in one encapsulated scope: authentication, the same-origin/CSRF checks, the error handler
 *   (JSON `{error:{code,message}}` under /api, a page elsewhere), the API and the pages.
 */
export async function registerWeb(app: FastifyInstance, deps: WebDeps): Promise<void> {
  if (!app.hasRequestDecorator('auth')) app.decorateRequest('auth', null);
  app.addHook('onSend', securityHeaders(deps.config));
  await app.register(async (web) => {
    web.addHook('onRoute', (route) => {
      route.bodyLimit ??= BODY_LIMIT;
    });
    registerAuth(web, deps);
    web.setErrorHandler((err: FastifyError | RelayError, req: FastifyRequest, reply: FastifyReply) => {
      const p = toProblem(err);
      if (p.internal) req.log.error({ err }, 'dashboard request failed');
      else req.log.debug({ code: p.code, status: p.status }, 'dashboard request refused');
      reply.headers(p.headers);
      if (isApiPath(req.url)) {
        return reply.code(p.status).type('application/json; charset=utf-8').send({ error: { code: p.code, message: p.message } });
      }
      if (p.code === 'RELAY_UNAUTHENTICATED') {
        const next = req.method === 'GET' ? req.url : '/';
        return reply.redirect(`/login?next=${encodeURIComponent(next)}`, req.method === 'GET' ? 302 : 303);
      }
      const auth = req.auth ? { username: req.auth.user.username, csrf: deps.sessions.csrfToken(req.auth.session.id) } : undefined;
      return reply.code(p.status).type('text/html; charset=utf-8').send(errorPageHtml(p.status, p.message, auth));
    });

    await web.register(
      async (api) => {
        api.setNotFoundHandler(async () => {
          throw new RelayError('RELAY_NOT_FOUND', ['no such API route']);
        });
        await api.register(accountRoutes, deps);
        await api.register(deviceRoutes, deps);
        await api.register(webcamRoutes, deps);
      },
      { prefix: '/api' },
    );
    await web.register(pageRoutes, deps);
    await web.register(dashboardRoutes, deps);
  });
}
