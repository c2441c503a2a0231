import http from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AGENT_PATH, type SessionConfig } from '@porthole/protocol';
import { classifyHost } from './proxy/host.js';
import { createProxy, type Authorize, type DeviceLookup, type Proxy } from './proxy/proxy.js';
import { sendPage } from './proxy/pages.js';
import { pairingRoutes } from './pairing/routes.js';
import type { PairingService } from './pairing/service.js';
import { createAgentEndpoint, type AgentAuthenticator } from './tunnel/agent-endpoint.js';
import { TunnelRegistry } from './tunnel/registry.js';

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
  routes?: (app: FastifyInstance, registry: TunnelRegistry) => Promise<void>;
  /** Device pairing: the agent-facing /_porthole/pair/* routes. Off when absent. */
  pairing?: PairingService;
  session?: Partial<SessionConfig>;
  responseTimeoutMs?: number;
  openTimeoutMs?: number;
}

export interface RelayApp {
  app: FastifyInstance;
  server: http.Server;
  registry: TunnelRegistry;
  proxy: Proxy;
}

/**
 * Builds the relay without listening: Fastify serves the relay's own pages on the bare domain;
 * requests for SLUG.DOMAIN go to the proxy before Fastify sees them; upgrades are dispatched to
 * the agent endpoint or the device's WebSocket.
 */
export async function buildRelay(opts: RelayAppOptions): Promise<RelayApp> {
  const registry = new TunnelRegistry();
  const proxy = createProxy({
    registry,
    devices: opts.devices,
    authorize: opts.authorize,
    log: opts.log.child({ component: 'proxy' }),
    trustProxy: opts.trustProxy,
    responseTimeoutMs: opts.responseTimeoutMs ?? 60_000,
    ...(opts.relayPaths !== undefined ? { relayPaths: opts.relayPaths } : {}),
  });
  const agents = createAgentEndpoint({
    registry,
    auth: opts.devices,
    log: opts.log.child({ component: 'agents' }),
    session: opts.session,
    tunnel: { openTimeoutMs: opts.openTimeoutMs ?? 10_000, maxFreeStreams: 48, idleStreamMs: 4_000 },
    maxPayload: 8 * 1024 * 1024,
  });

  let server!: http.Server;
  const app = Fastify({
    loggerInstance: opts.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: opts.trustProxy,
    serverFactory: (handler) => {
      server = http.createServer((req, res) => {
        const target = classifyHost(req.headers.host, req.url, opts.domain);
        if (target.kind === 'device') proxy.handleRequest(req, res, target.slug);
        else if (target.kind === 'invalid') sendPage(res, 400, 'Bad request', `<h1>Bad request</h1><p>${target.reason}</p>`);
        else handler(req, res);
      });
      return server;
    },
  });

  server.on('upgrade', (req, socket, head) => {
    const target = classifyHost(req.headers.host, req.url, opts.domain);
    if (target.kind === 'device') {
      proxy.handleUpgrade(req, socket, head, target.slug);
      return;
    }
    const path = (req.url ?? '').split('?')[0];
    if (target.kind !== 'invalid' && path === AGENT_PATH) {
      agents.handleUpgrade(req, socket, head);
      return;
    }
    socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  });
  // Long uploads at a printer's pace must not hit Node's 5-minute whole-request limit; slow
  // headers still time out.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 65_000;

  app.get('/healthz', async () => ({ ok: true }));
  if (opts.routes !== undefined) await opts.routes(app, registry);
  if (opts.pairing !== undefined) await app.register(pairingRoutes, { pairing: opts.pairing });
  app.addHook('onClose', async () => agents.close());
  await app.ready();
  return { app, server, registry, proxy };
}
