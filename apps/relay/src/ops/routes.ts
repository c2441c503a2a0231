import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RelayError } from '../errors.js';
import type { HealthChecks } from './health.js';
import type { RelayMetrics } from './metrics.js';

export interface OpsRoutesOptions {
  health: HealthChecks;
  metrics: RelayMetrics;
  /** Bearer token for /metrics from anywhere; without it only loopback may scrape. */
  metricsToken?: string;
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (m === null) return false;
  const a = Buffer.from(m[1]!);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Who may read /metrics: a request with the configured bearer token, or, with no token configured,
 * a direct connection from this machine. "Direct" means the peer address is loopback and nothing
 * forwarded it: behind a TLS proxy on the same host every request comes from loopback, so one
 * carrying X-Forwarded-For or Forwarded is treated as from outside.
 */
export function mayScrape(req: FastifyRequest, token: string | undefined): boolean {
  if (token !== undefined) return tokenMatches(req.headers.authorization, token);
  const peer = req.raw.socket.remoteAddress ?? '';
  return LOOPBACK.test(peer) && req.headers['x-forwarded-for'] === undefined && req.headers.forwarded === undefined;
}

/** GET /readyz (checks: 200 or 503) and GET /metrics (Prometheus text, protected). */
export async function opsRoutes(app: FastifyInstance, opts: OpsRoutesOptions): Promise<void> {
  app.get('/readyz', async (_req, reply) => {
    const r = await opts.health.run();
    reply.header('cache-control', 'no-store');
    return reply.code(r.ok ? 200 : 503).send(r);
  });

  app.get('/metrics', async (req, reply) => {
    if (!mayScrape(req, opts.metricsToken)) {
      reply.header('cache-control', 'no-store');
      if (opts.metricsToken !== undefined) reply.header('www-authenticate', 'Bearer realm="metrics"');
      const e = new RelayError('RELAY_FORBIDDEN', [
        opts.metricsToken !== undefined ? 'metrics need the bearer token' : 'metrics are served to this machine only (or set PORTHOLE_METRICS_TOKEN)',
      ]);
      return reply.code(opts.metricsToken !== undefined ? 401 : 403).send({ error: { code: e.code, message: e.message } });
    }
    const { contentType, body } = await opts.metrics.render();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}
