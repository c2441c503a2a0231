import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { AgentCloseCode } from '@porthole/protocol';
import { createDeviceAccess } from './access/device-access.js';
import { AuditLog } from './accounts/audit.js';
import { HandoffStore } from './accounts/handoff.js';
import { loadOrCreateKey } from './accounts/keys.js';
import { SessionService } from './accounts/sessions.js';
import { SetupTokens } from './accounts/setup.js';
import { ShareLinkStore } from './accounts/shares.js';
import { LoginThrottle } from './accounts/throttle.js';
import { UserStore } from './accounts/users.js';
import { buildRelay, type RelayApp } from './app.js';
import type { RelayConfig } from './config.js';
import { openDatabase } from './db/index.js';
import { DeviceStore } from './devices.js';
import { createLogger, type Logger } from './log.js';
import { adminSocketPath, startAdminSocket, type AdminSocket } from './pairing/admin-socket.js';
import { PairingService } from './pairing/service.js';
import { certificateCheck, databaseCheck } from './ops/health.js';
import { countAuditEvents } from './ops/metrics.js';
import { registerWeb } from './web/index.js';
import { HSTS_HEADER, TlsService, type TlsOptions } from './tls/index.js';

export interface RunningRelay extends RelayApp {
  url: string;
  port: number;
  /** HTTPS: `tls.status()` is the certificate's state (expiry, last renewal error) for metrics and /readyz. */
  tls: TlsService;
  close(): Promise<void>;
}

/** Seams for tests (and embedders); the defaults are what `porthole-relay start` uses. */
export interface StartOptions {
  /** Default: JSON lines to stdout at config.logLevel. */
  log?: Logger;
  /** Clock, retry timings and DNS provider of the certificate manager. */
  tls?: TlsOptions;
}

/** Opens the database (applying migrations), builds the app, listens, and wires shutdown. */
export async function startRelay(config: RelayConfig, opts: StartOptions = {}): Promise<RunningRelay> {
  const log = opts.log ?? createLogger(config);
  const tlsService = new TlsService(config, log.child({ component: 'tls' }), opts.tls);
  const db = await openDatabase(config, log);
  const prisma = db.prisma;
  const secureCookies = config.publicUrl.startsWith('https:');
  const devices = new DeviceStore(db);
  const sessions = new SessionService({ prisma, key: await loadOrCreateKey(config.dataDir), log: log.child({ component: 'sessions' }) });
  const audit = new AuditLog(prisma, log.child({ component: 'audit' }));
  const users = new UserStore({ prisma });
  const handoffs = new HandoffStore();
  const shares = new ShareLinkStore({ prisma });
  const setup = new SetupTokens();
  const throttle = new LoginThrottle({ account: { baseDelayMs: config.loginDelayMs }, ip: { baseDelayMs: config.loginDelayMs } });
  const pairing = new PairingService({ devices, prisma, log: log.child({ component: 'pairing' }), publicUrl: config.publicUrl });

  let registryRef: RelayApp['registry'] | undefined;
  const access = createDeviceAccess({
    prisma,
    sessions,
    handoffs,
    shares,
    audit,
    get registry() {
      return registryRef!;
    },
    devices,
    log: log.child({ component: 'access' }),
    publicUrl: config.publicUrl,
    domain: config.domain,
    secureCookies,
  });

  const relay = await buildRelay({
    domain: config.domain,
    trustProxy: config.trustProxy,
    log,
    devices: {
      findBySlug: (slug) => devices.findBySlug(slug),
      authenticate: async (credential) => {
        const r = await devices.authenticate(credential);
        return r.ok ? { ok: true, device: { id: r.device.id, slug: r.device.slug, name: r.device.name } } : r;
      },
    },
    // Every request to a device goes through this one decision; nothing passes without it.
    authorize: access.authorize,
    relayPaths: access.relayPaths,
    pairing,
    ...(config.metricsToken !== undefined ? { metricsToken: config.metricsToken } : {}),
    ...(tlsService.enabled ? { https: { hsts: HSTS_HEADER } } : {}),
    webcam: { graceMs: config.webcamGraceMs, viewerFps: config.webcamViewerFps },
    session: { keepAliveInterval: config.keepAliveIntervalMs, keepAliveTimeout: config.keepAliveTimeoutMs },
    responseTimeoutMs: config.responseTimeoutMs,
    limits: {
      maxUrlBytes: config.maxUrlBytes,
      maxHeaderBytes: config.maxHeaderBytes,
      headersTimeoutMs: config.headersTimeoutMs,
      bodyIdleTimeoutMs: config.bodyIdleTimeoutMs,
    },
    maxStreamsPerDevice: config.maxStreamsPerDevice,
    agentThrottle: { burst: config.agentRefusalBurst, perMinute: config.agentRefusalsPerMinute },
    routes: async (app, registry, webcam) => {
      registryRef = registry;
      access.registerOpenRoute(app);
      await registerWeb(app, {
        prisma,
        users,
        sessions,
        throttle,
        audit,
        devices,
        handoffs,
        shares,
        pairing,
        setup,
        online: (deviceId) => {
          const t = registry.get(deviceId);
          if (t !== undefined) return { online: true, since: t.connectedAt };
          const since = registry.lastOffline(deviceId);
          return since !== undefined ? { online: false, since } : { online: false };
        },
        dropDevice: (deviceId, reason) => {
          // The credential is revoked or the device removed: its tunnel and every session on it end now.
          registry.drop(deviceId, AgentCloseCode.Revoked, reason);
          sessions.revokeFor({ deviceId }).catch((e: Error) => log.error({ err: e }, 'could not end device sessions'));
        },
        config: { publicUrl: config.publicUrl, domain: config.domain, secureCookies },
        webcam: { hub: webcam, tunnel: (deviceId) => registry.get(deviceId) },
      });
    },
  });

  // Operations: readiness checks (GET /readyz) and what the metrics count from elsewhere.
  relay.health.register('database', databaseCheck(() => prisma.$queryRawUnsafe('SELECT 1'), (err) => log.error({ err }, 'readiness: database query failed')));
  if (tlsService.enabled) {
    relay.health.register('certificate', certificateCheck(() => tlsService.status()));
    relay.metrics.watchCertificate(() => tlsService.status());
  }
  audit.observe(countAuditEvents(relay.metrics));

  relay.registry.on('online', (t) => {
    devices.markSeen(t.info.deviceId, true, new Date()).catch((e: Error) => log.warn({ err: e }, 'could not record device online'));
  });
  relay.registry.on('offline', (t) => {
    devices.markSeen(t.info.deviceId, false, new Date()).catch((e: Error) => log.warn({ err: e }, 'could not record device offline'));
  });

  await relay.app.listen({ host: config.host, port: config.port });
  if (tlsService.enabled) {
    try {
      // Port 80 for HTTP-01 and redirects, then the stored certificate or a first order.
      if (!(relay.server instanceof tls.Server)) throw new Error('TLS is on but the relay did not build a TLS server');
      await tlsService.start(relay.server);
    } catch (err) {
      relay.server.close();
      await tlsService.close();
      await relay.app.close();
      await db.close();
      throw err;
    }
  } else if (!config.trustProxy && !config.publicUrl.startsWith('https:') && !/(^|\.)localhost$|^[\d.]+$|^\[?[\d:a-f]+\]?$/.test(config.domain)) {
    log.warn({ domain: config.domain }, 'TLS is off for a public domain: passwords cross the network in clear (set tls to acme or files, or trustProxy behind your TLS proxy)');
  }
  const port = (relay.server.address() as AddressInfo).port;
  const url = `${tlsService.enabled ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  let admin: AdminSocket | undefined;
  try {
    admin = await startAdminSocket({ path: adminSocketPath(config.dataDir), pairing, prisma, log, audit });
  } catch (err) {
    log.warn({ err }, 'admin socket not started: `porthole-relay pair approve` cannot reach this relay');
  }
  log.info({ url, port, domain: config.domain, publicUrl: config.publicUrl, tls: config.tls, httpPort: tlsService.httpPort }, 'relay listening');
  if ((await users.count()) > 0) setup.close();
  else {
    const token = setup.current();
    if (token !== undefined) {
      const setupUrl = `${config.publicUrl}/setup?token=${token}`;
      log.info({ setupUrl }, 'no account yet: open the setup link to create the first admin');
      process.stderr.write(
        `\n  Porthole relay is running. Create the first admin account (on a phone or here):\n\n    ${config.publicUrl}/app/setup?token=${token}\n\n` +
          `  (without JavaScript: ${setupUrl}; or: porthole-relay user add --admin --username NAME)\n\n` +
          `  Then connect a printer: on its Pi run\n\n    porthole-agent pair --relay ${config.publicUrl}\n\n` +
          `  and approve the code it shows at ${config.publicUrl}/app/pair\n\n`,
      );
    }
  }
  const sweep = setInterval(() => {
    sessions.sweep().catch((e: Error) => log.warn({ err: e }, 'session sweep failed'));
  }, 3600_000);
  sweep.unref();

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      log.info({ graceMs: config.shutdownGraceMs }, 'relay shutting down');
      clearInterval(sweep);
      relay.server.close();
      relay.server.closeIdleConnections();
      await tlsService.close();
      await admin?.close();
      await pairing.close();
      // Camera streams never finish by themselves: end them, so they do not hold the drain.
      relay.webcam.close();
      // GoAway to every agent: no new streams; the open ones finish within the grace period.
      await relay.registry.drain(config.shutdownGraceMs);
      relay.server.closeAllConnections();
      await relay.app.close();
      await audit.flush();
      await db.close();
      log.info('relay stopped');
    })());
  return { ...relay, url, port, tls: tlsService, close };
}
