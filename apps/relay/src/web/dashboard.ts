import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { WebDeps } from './deps.js';

/** Where the phone dashboard is served from on the relay's own domain. */
export const DASHBOARD_PREFIX = '/app/';

/**
 * The built dashboard (apps/dashboard/dist): $PORTHOLE_DASHBOARD_DIR, else the workspace's
 * build beside this package (the same two levels up from src/web and dist/web).
 */
export function defaultDashboardDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.PORTHOLE_DASHBOARD_DIR;
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  return fileURLToPath(new URL('../../../dashboard/dist/', import.meta.url));
}

const IMMUTABLE = 'public, max-age=31536000, immutable';

/** Hashed build output never changes under its name; the page, the worker and the manifest always revalidate. */
function cacheControlFor(path: string): string {
  if (/[\\/]assets[\\/]/.test(path)) return IMMUTABLE;
  if (/\.(png|svg)$/.test(path)) return 'public, max-age=604800';
  return 'no-cache';
}

/**
 * Serves the dashboard's static build under /app/: files as they are (long-cached hashed
 * assets, no-cache page, worker and manifest), and the page itself for every other /app/ path
 * (the dashboard routes on the client). Without a build, /app/ says how to make one. The
 * security headers (CSP without inline script, nosniff, frame-ancestors) come from the web
 * layer's onSend hook like every other page of the relay's domain.
 */
export async function dashboardRoutes(scope: FastifyInstance, deps: Pick<WebDeps, 'dashboardDir'>): Promise<void> {
  const dir = deps.dashboardDir ?? defaultDashboardDir();
  const indexPath = resolve(dir, 'index.html');
  scope.get('/app', async (_req, reply) => reply.redirect(DASHBOARD_PREFIX, 301));

  if (!existsSync(indexPath)) {
    scope.log.warn({ dir }, 'dashboard not built: /app/ shows how to build it (npm run build)');
    const missing = async (_req: unknown, reply: FastifyReply) =>
      reply
        .code(503)
        .type('text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .send('<!doctype html><html lang="en"><title>Dashboard not built</title><h1>The dashboard is not built</h1><p>Run <code>npm run build</code> on the relay, or set PORTHOLE_DASHBOARD_DIR. The <a href="/">basic pages</a> work meanwhile.</p></html>');
    scope.get('/app/', missing);
    scope.get('/app/*', missing);
    return;
  }

  const index = readFileSync(indexPath);
  await scope.register(fastifyStatic, {
    root: dir,
    prefix: DASHBOARD_PREFIX,
    // One route per built file, found now: nothing outside the build can be asked for.
    wildcard: false,
    index: false,
    cacheControl: false,
    etag: true,
    lastModified: false,
    dotfiles: 'deny',
    decorateReply: false,
    setHeaders: (reply: FastifyReply, path: string) => {
      reply.header('cache-control', cacheControlFor(path));
    },
  });

  const page = async (_req: unknown, reply: FastifyReply) =>
    reply.code(200).type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(index);
  scope.get('/app/', page);
  scope.get('/app/*', async (req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    // A missing hashed file is a 404, not the page: a stale tab must not parse HTML as a script.
    if (path.startsWith('/app/assets/') || /\.[a-z0-9]+$/i.test(path)) {
      return reply.code(404).type('text/plain; charset=utf-8').send('Not found\n');
    }
    return page(req, reply);
  });
}
