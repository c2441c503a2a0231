import http from 'node:http';
import https from 'node:https';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AGENT_PATH, type SessionConfig } from '@porthole/protocol';
import { checkRequest, clientErrorHandler, DEFAULT_HTTP_LIMITS, refuseSocket, serverOptions, watchBody, type HttpLimits } from './http-limits.js';
import { agentDownloadRoutes } from './ops/agent-download.js';
import { HealthChecks } from './ops/health.js';
import { RelayMetrics, requestTarget } from './ops/metrics.js';
import { opsRoutes } from './ops/routes.js';
import { classifyHost } from './proxy/host.js';
import { createProxy, type Authorize, type DeviceLookup, type Proxy } from './proxy/proxy.js';
import { sendPage } from './proxy/pages.js';
import { pairingRoutes } from './pairing/routes.js';
import type { PairingService } from './pairing/service.js';
import { createAgentEndpoint, type AgentAuthenticator } from './tunnel/agent-endpoint.js';
import { TunnelRegistry } from './tunnel/registry.js';
import { WebcamHub, type WebcamOptions } from './webcam/hub.js';
import { TLS_SERVER_OPTIONS } from './tls/ciphers.js';

export interface RelayAppOptions {
  domain: string;
  trustProxy: boolean;
  log: Logger;
  devices: DeviceLookup & AgentAuthenticator;
  /** Decides every request to a device. Required: there is no default that lets anyone in. */
  authorize: Authorize;
  /** /_porthole/* on device hosts (handoff, share links): the relay's, never forwarded. */
  relayPaths?: (req: http.IncomingMessage, res: http.ServerResponse, slug: string) => Promise<boolean>;
  /** The relay's own routes (dashboard, API), registered before the app is ready. */
  routes?: (app: FastifyInstance, registry: TunnelRegistry, webcam: WebcamHub) => Promise<void>;
  /** Device pairing: the agent-facing /_porthole/pair/* routes. Off when absent. */
  pairing?: PairingService;
  session?: Partial<SessionConfig>;
  responseTimeoutMs?: number;
  openTimeoutMs?: number;
  /**
   * Serve HTTPS: the server is a TLS server whose certificate is set (and swapped) with
   * `server.setSecureContext()`, and every response carries `hsts` as Strict-Transport-Security.
   */
  https?: { hsts: string };
  /** Webcam fan-out settings (grace period, viewers' default frame rate…). */
  webcam?: Partial<WebcamOptions>;
  /** Bearer token for /metrics from anywhere; without one only loopback may scrape. */
  metricsToken?: string;
  /** What a request may be (target and header sizes, header and body timeouts); see http-limits.ts. */
  limits?: Partial<HttpLimits>;
  /** Exchanges proxied to one device at once; beyond it 503 + Retry-After. Default 256. */
  maxStreamsPerDevice?: number;
  /** Agent endpoint: failed attempts per address before 429 (burst, earned back per minute). */
  agentThrottle?: { burst: number; perMinute: number };
}

export interface RelayApp {
  app: FastifyInstance;
  server: http.Server;
  registry: TunnelRegistry;
  proxy: Proxy;
  /** The webcam fan-out; `webcam.stats()` for metrics. */
  webcam: WebcamHub;
  /** Prometheus metrics (GET /metrics). */
  metrics: RelayMetrics;
  /** Readiness checks (GET /readyz): register one for anything that must work before traffic. */
  health: HealthChecks;
}

/**
 * Builds the relay without listening: Fastify serves the relay's own pages on the bare domain;
 * requests for SLUG.DOMAIN go to the proxy before Fastify sees them; upgrades are dispatched to
 * the agent endpoint or the device's WebSocket.
 */
export async function buildRelay(opts: RelayAppOptions): Promise<RelayApp> {
  const registry = new TunnelRegistry();
  const webcam = new WebcamHub({ tunnel: (deviceId) => registry.get(deviceId), log: opts.log.child({ component: 'webcam' }) }, opts.webcam);
  const metrics = new RelayMetrics({ tunnels: registry, webcam: () => webcam.stats().totals });
  const health = new HealthChecks();
  const proxy = createProxy({
    registry,
    devices: opts.devices,
    authorize: opts.authorize,
    log: opts.log.child({ component: 'proxy' }),
    trustProxy: opts.trustProxy,
    responseTimeoutMs: opts.responseTimeoutMs ?? 60_000,
    ...(opts.relayPaths !== undefined ? { relayPaths: opts.relayPaths } : {}),
    webcam,
  });
  const agents = createAgentEndpoint({
    registry,
    auth: opts.devices,
    log: opts.log.child({ component: 'agents' }),
    session: opts.session,
    tunnel: { openTimeoutMs: opts.openTimeoutMs ?? 10_000, maxFreeStreams: 48, idleStreamMs: 4_000, maxExchanges: opts.maxStreamsPerDevice ?? 256 },
    maxPayload: 8 * 1024 * 1024,
    onRefused: () => metrics.authFailure('agent'),
    ...(opts.agentThrottle !== undefined ? { throttle: opts.agentThrottle } : {}),
  });
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...opts.limits };

  let server!: http.Server;
  const app = Fastify({
    loggerInstance: opts.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: opts.trustProxy,
    // Parse errors (every request-smuggling shape), oversized and slow heads: refused here, never routed.
    clientErrorHandler,
    serverFactory: (handler) => {
      const dispatch: http.RequestListener = (req, res) => {
        const refusal = checkRequest(req, limits);
        if (refusal !== undefined) {
          sendPage(res, refusal.status, refusal.title, `<h1>${refusal.title}</h1><p>${refusal.detail}</p>`, { connection: 'close' });
          return;
        }
        watchBody(req, res, limits.bodyIdleTimeoutMs);
        const target = classifyHost(req.headers.host, req.url, opts.domain);
        if (target.kind === 'device') proxy.handleRequest(req, res, target.slug);
        else if (target.kind === 'invalid') sendPage(res, 400, 'Bad request', `<h1>Bad request</h1><p>${target.reason}</p>`);
        else handler(req, res);
      };
      const hsts = opts.https?.hsts;
      server =
        hsts === undefined
          ? http.createServer(serverOptions(limits), dispatch)
          : https.createServer({ ...serverOptions(limits), ...TLS_SERVER_OPTIONS, ALPNProtocols: ['http/1.1'] }, (req, res) => {
              res.setHeader('strict-transport-security', hsts);
              dispatch(req, res);
            });
      return server;
    },
  });

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => metrics.timeRequest(res, requestTarget(req, opts.domain)));
  server.on('upgrade', (req, socket, head) => {
    const refusal = checkRequest(req, limits);
    if (refusal !== undefined) {
      socket.on('error', () => socket.destroy());
      refuseSocket(socket, refusal.status, `${refusal.title}: ${refusal.detail}`);
      return;
    }
    const target = classifyHost(req.headers.host, req.url, opts.domain);
    if (target.kind === 'device') {
      proxy.handleUpgrade(req, socket, head, target.slug);
      return;
    }
    const path = (req.url ?? '').split('?')[0];
    if (target.kind !== 'invalid' && path === AGENT_PATH) {
      metrics.trackTunnelSocket(socket);
      agents.handleUpgrade(req, socket, head);
      return;
    }
    socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  });
  // requestTimeout (0: long uploads at a printer's pace) and headersTimeout are in serverOptions().
  server.keepAliveTimeout = 65_000;

  app.get('/healthz', async () => ({ ok: true }));
  await app.register(opsRoutes, { health, metrics, ...(opts.metricsToken !== undefined ? { metricsToken: opts.metricsToken } : {}) });
  await app.register(agentDownloadRoutes, {});
  if (opts.routes !== undefined) await opts.routes(app, registry, webcam);
  if (opts.pairing !== undefined) await app.register(pairingRoutes, { pairing: opts.pairing });
  app.addHook('onClose', async () => agents.close());
  app.addHook('onClose', async () => webcam.close());
  await app.ready();
  return { app, server, registry, proxy, webcam, metrics, health };
}
