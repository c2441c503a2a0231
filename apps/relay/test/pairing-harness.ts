// The relay's pairing side, real and in-process (SQLite file, PairingService, the Fastify routes
// on 127.0.0.1), for tests outside the relay: the agent's `pair` command test imports this file.
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { openDatabase } from '../src/db/index.js';
import { DeviceStore } from '../src/devices.js';
import { pairingRoutes } from '../src/pairing/routes.js';
import { PairingService, type PairingLimits } from '../src/pairing/service.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';

export interface PairingHarnessOptions {
  limits?: Partial<PairingLimits>;
  /** Serve HTTPS with this key and certificate (PEM). */
  tls?: { key: string | Buffer; cert: string | Buffer };
  publicUrl?: string;
}

export interface PairingHarness {
  /** http(s)://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** The current service (a new one after restart()). */
  readonly pairing: PairingService;
  readonly devices: DeviceStore;
  /** A user that can own devices. */
  readonly ownerId: string;
  /** Authenticates a credential against the relay's database. */
  authenticate(credential: string): Promise<{ ok: boolean; slug?: string }>;
  /** Owner memberships of a device, as user ids. */
  owners(deviceId: string): Promise<string[]>;
  /** Resolves when a pairing is pending; returns its code. */
  waitForCode(timeoutMs?: number): Promise<string>;
  /** Stops listening and forgets every pairing, then listens again on the same port (a relay restart). */
  restart(): Promise<void>;
  /** Stops listening; the port refuses connections until restart(). */
  stop(): Promise<void>;
  close(): Promise<void>;
}

export async function startPairingHarness(opts: PairingHarnessOptions = {}): Promise<PairingHarness> {
  const tmp = tempDir('porthole-pairing-');
  const { log } = memoryLogger('warn');
  const db = await openDatabase(testConfig(path.join(tmp.dir, 'data')), log);
  const devices = new DeviceStore(db);
  const owner = await db.prisma.user.create({ data: { username: 'owner', passwordHash: '$argon2id$placeholder' } });
  const scheme = opts.tls !== undefined ? 'https' : 'http';

  let port = 0;
  let pairing!: PairingService;
  let app: FastifyInstance | undefined;

  const listen = async () => {
    pairing = new PairingService({
      devices,
      prisma: db.prisma,
      log,
      publicUrl: opts.publicUrl ?? 'https://relay.example',
      ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
    });
    const a = Fastify({
      loggerInstance: log as FastifyBaseLogger,
      forceCloseConnections: true,
      ...(opts.tls !== undefined ? { https: opts.tls } : {}),
    }) as unknown as FastifyInstance;
    await a.register(pairingRoutes, { pairing });
    await a.listen({ host: '127.0.0.1', port });
    port = (a.server.address() as AddressInfo).port;
    app = a;
  };
  const stop = async () => {
    await pairing.close();
    await app?.close();
    app = undefined;
  };
  await listen();

  return {
    get url() {
      return `${scheme}://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    get pairing() {
      return pairing;
    },
    devices,
    ownerId: owner.id,
    async authenticate(credential) {
      const r = await devices.authenticate(credential);
      return r.ok ? { ok: true, slug: r.device.slug } : { ok: false };
    },
    async owners(deviceId) {
      const rows = await db.prisma.membership.findMany({ where: { deviceId, role: 'owner' } });
      return rows.map((m) => m.userId);
    },
    async waitForCode(timeoutMs = 10_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const p = pairing.list()[0];
        if (p !== undefined) return p.code;
        if (Date.now() > end) throw new Error('no pairing started');
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async restart() {
      await stop();
      await listen();
    },
    stop,
    async close() {
      await stop();
      await db.close();
      tmp.cleanup();
    },
  };
}
