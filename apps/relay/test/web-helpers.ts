import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { Secret, TOTP } from 'otpauth';
import { AuditLog } from '../src/accounts/audit.js';
import { HandoffStore } from '../src/accounts/handoff.js';
import { OWASP_MIN_PARAMS } from '../src/accounts/passwords.js';
import { SessionService } from '../src/accounts/sessions.js';
import { SetupTokens } from '../src/accounts/setup.js';
import { ShareLinkStore } from '../src/accounts/shares.js';
import { LoginThrottle, type LoginThrottleOptions } from '../src/accounts/throttle.js';
import { UserStore, type User } from '../src/accounts/users.js';
import { openDatabase, type Database } from '../src/db/index.js';
import { DeviceStore } from '../src/devices.js';
import { PairingService } from '../src/pairing/service.js';
import { registerWeb, type WebDeps } from '../src/web/index.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';

export const DOMAIN = 'relay.test';
export const PORT = 8080;
export const HOST = `${DOMAIN}:${PORT}`;
export const ORIGIN = `http://${HOST}`;
/** A password the policy accepts. */
export const PASSWORD = 'correct horse battery staple 42';

export interface WebFixture {
  app: FastifyInstance;
  deps: WebDeps;
  db: Database;
  users: UserStore;
  sessions: SessionService;
  setup: SetupTokens;
  pairing: PairingService;
  /** The shared test clock, milliseconds; `advance` moves it. */
  clock: { now: number; advance(ms: number): void };
  online: Map<string, { online: boolean; since?: Date }>;
  dropped: { deviceId: string; reason: string }[];
  key: Uint8Array;
  browser(): Browser;
  /** A user and a signed-in browser for them. */
  signedIn(username: string, opts?: { isAdmin?: boolean }): Promise<{ user: User; b: Browser }>;
  close(): Promise<void>;
}

export interface FixtureOptions {
  secureCookies?: boolean;
  throttle?: LoginThrottleOptions;
}

/** The web layer on its own Fastify app, over a real SQLite file, with real argon2 (OWASP floor cost). */
export async function webFixture(opts: FixtureOptions = {}): Promise<WebFixture> {
  const tmp = tempDir('porthole-web-');
  const config = testConfig(tmp.dir, { domain: DOMAIN, port: PORT });
  const { log } = memoryLogger('warn');
  const db = await openDatabase(config, log);
  const prisma = db.prisma;
  const clock = {
    now: Date.now(),
    advance(ms: number) {
      this.now += ms;
    },
  };
  const now = () => new Date(clock.now);
  const key = new Uint8Array(randomBytes(32));
  const users = new UserStore({ prisma, clock: () => clock.now, hashParams: OWASP_MIN_PARAMS });
  const sessions = new SessionService({ prisma, key, log, now });
  const devices = new DeviceStore(db, { now });
  const setup = new SetupTokens();
  const pairing = new PairingService({ devices, prisma, log, publicUrl: config.publicUrl });
  const online = new Map<string, { online: boolean; since?: Date }>();
  const dropped: { deviceId: string; reason: string }[] = [];
  const deps: WebDeps = {
    prisma,
    users,
    sessions,
    throttle: new LoginThrottle({ clock: () => clock.now, ...opts.throttle }),
    audit: new AuditLog(prisma, log),
    devices,
    handoffs: new HandoffStore(60_000, () => clock.now),
    shares: new ShareLinkStore({ prisma, now }),
    pairing,
    setup,
    online: (id) => online.get(id) ?? { online: false },
    dropDevice: (deviceId, reason) => void dropped.push({ deviceId, reason }),
    config: { publicUrl: config.publicUrl, domain: config.domain, secureCookies: opts.secureCookies ?? false },
    now,
  };
  const app = Fastify({ loggerInstance: log as FastifyBaseLogger });
  // A route of the app's own, added before the web layer (as app.ts has /healthz): the security
  // headers must cover it too.
  app.get('/healthz', async () => ({ ok: true }));
  await registerWeb(app, deps);
  await app.ready();

  const fixture: WebFixture = {
    app,
    deps,
    db,
    users,
    sessions,
    setup,
    pairing,
    clock,
    online,
    dropped,
    key,
    browser: () => new Browser(app, opts.secureCookies ?? false),
    async signedIn(username, o = {}) {
      const user = await users.create({ username, password: PASSWORD, isAdmin: o.isAdmin ?? false });
      const b = fixture.browser();
      const res = await b.api('POST', '/api/login', { username, password: PASSWORD });
      if (res.statusCode !== 200) throw new Error(`login failed: ${res.body}`);
      return { user, b };
    },
    async close() {
      await app.close();
      await pairing.close();
      await deps.audit.flush();
      await db.close();
      tmp.cleanup();
    },
  };
  return fixture;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** Skip the CSRF header even when the browser has a token. */
  noCsrf?: boolean;
  host?: string;
}

/**
 * A browser-like client over app.inject: keeps the dashboard cookie it is given, sends the Origin
 * a browser sends on POST, and the CSRF token it learnt from /api/login or /api/me.
 */
export class Browser {
  cookie: string | undefined;
  csrf: string | undefined;

  constructor(
    private readonly app: FastifyInstance,
    private readonly secure: boolean,
  ) {}

  get cookieName(): string {
    return this.secure ? '__Host-porthole_session' : 'porthole_session';
  }

  /** The JSON API: JSON body, Origin, x-csrf-token. */
  async api(method: string, url: string, body?: unknown, o: RequestOptions = {}): Promise<LightMyRequestResponse> {
    const headers: Record<string, string> = { host: o.host ?? HOST };
    if (method !== 'GET') headers.origin = ORIGIN;
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.csrf !== undefined && !o.noCsrf && method !== 'GET') headers['x-csrf-token'] = this.csrf;
    return this.send(method, url, headers, body === undefined ? undefined : JSON.stringify(body), o);
  }

  /** A page: GET, or a urlencoded form POST (with the _csrf field when known). */
  async page(method: 'GET' | 'POST', url: string, form?: Record<string, string>, o: RequestOptions = {}): Promise<LightMyRequestResponse> {
    const headers: Record<string, string> = { host: o.host ?? HOST };
    let payload: string | undefined;
    if (method === 'POST') {
      headers.origin = ORIGIN;
      headers['content-type'] = 'application/x-www-form-urlencoded';
      const fields = { ...(this.csrf !== undefined && !o.noCsrf ? { _csrf: this.csrf } : {}), ...form };
      payload = new URLSearchParams(fields).toString();
    }
    return this.send(method, url, headers, payload, o);
  }

  async send(method: string, url: string, headers: Record<string, string>, payload: string | undefined, o: RequestOptions = {}) {
    const all = { ...headers, ...o.headers };
    if (this.cookie !== undefined && all.cookie === undefined) all.cookie = `${this.cookieName}=${this.cookie}`;
    const res = await this.app.inject({ method: method as 'GET', url, headers: all, ...(payload !== undefined ? { payload } : {}) });
    this.remember(res);
    return res;
  }

  private remember(res: LightMyRequestResponse): void {
    const raw = res.headers['set-cookie'];
    for (const c of raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]) {
      const m = new RegExp(`^${this.cookieName.replace(/[$]/g, '\\$')}=([^;]*)`).exec(c);
      if (!m) continue;
      this.cookie = /Max-Age=0\b/.test(c) || m[1] === '' ? undefined : m[1];
    }
    if (res.headers['content-type']?.toString().startsWith('application/json')) {
      try {
        const body = JSON.parse(res.body) as { csrf?: unknown };
        if (typeof body?.csrf === 'string') this.csrf = body.csrf;
      } catch {
        // not ours to parse
      }
    }
  }
}

/** The JSON error code of a response. */
export function errorCode(res: LightMyRequestResponse): string | undefined {
  try {
    return (JSON.parse(res.body) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

/** A TOTP code for `secret` at `now` (ms). */
export function totpCode(secret: string, now: number): string {
  return new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 }).generate({ timestamp: now });
}
