import type { AddressInfo } from 'node:net';
import { buildRelay, type RelayApp } from './app.js';
import type { RelayConfig } from './config.js';
import { openDatabase } from './db/index.js';
import { DeviceStore } from './devices.js';
import { createLogger } from './log.js';
import type { Authorize } from './proxy/proxy.js';

export interface RunningRelay extends RelayApp {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Until accounts exist (issue #4) every request to a connected device is allowed: this is the
 * single hook that decides access, and the accounts layer replaces it.
 */
const openAccess: Authorize = () => ({ allow: true });

/** Opens the database (applying migrations), builds the app, listens, and wires shutdown. */
export async function startRelay(config: RelayConfig): Promise<RunningRelay> {
  const log = createLogger(config);
  const db = await openDatabase(config, log);
  const devices = new DeviceStore(db);
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
    authorize: openAccess,
  });

  relay.registry.on('online', (t) => {
    devices.markSeen(t.info.deviceId, true, new Date()).catch((e: Error) => log.warn({ err: e }, 'could not record device online'));
  });
  relay.registry.on('offline', (t) => {
    devices.markSeen(t.info.deviceId, false, new Date()).catch((e: Error) => log.warn({ err: e }, 'could not record device offline'));
  });

  await relay.app.listen({ host: config.host, port: config.port });
  const port = (relay.server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  log.info({ url, port, domain: config.domain }, 'relay listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      log.info({ graceMs: config.shutdownGraceMs }, 'relay shutting down');
      relay.server.close();
      relay.server.closeIdleConnections();
      // GoAway to every agent: no new streams; the open ones finish within the grace period.
      await relay.registry.drain(config.shutdownGraceMs);
      relay.server.closeAllConnections();
      await relay.app.close();
      await db.close();
      log.info('relay stopped');
    })());
  return { ...relay, url, port, close };
}
