import type { AuditLog } from '../accounts/audit.js';
import type { HandoffStore } from '../accounts/handoff.js';
import type { SessionInfo, SessionService } from '../accounts/sessions.js';
import type { SetupTokens } from '../accounts/setup.js';
import type { ShareLinkStore } from '../accounts/shares.js';
import type { LoginThrottle } from '../accounts/throttle.js';
import type { User, UserStore } from '../accounts/users.js';
import type { PrismaClient } from '../db/index.js';
import type { DeviceStore } from '../devices.js';
import type { PairingService } from '../pairing/service.js';
import type { DashboardWebcam } from './webcam-routes.js';

export interface WebConfig {
  /** The relay's public origin (scheme, host, port), as phones reach the dashboard. */
  readonly publicUrl: string;
  /** The relay's domain: devices are at SLUG.<domain>. */
  readonly domain: string;
  /** Cookies get Secure (and the __Host- prefix), and responses carry HSTS. True over TLS. */
  readonly secureCookies: boolean;
}

/** What the dashboard API and pages need from the rest of the relay. */
export interface WebDeps {
  prisma: PrismaClient;
  users: UserStore;
  sessions: SessionService;
  throttle: LoginThrottle;
  audit: AuditLog;
  devices: DeviceStore;
  handoffs: HandoffStore;
  shares: ShareLinkStore;
  /** Device pairing; without it the pairing routes are not registered. */
  pairing?: PairingService;
  setup: SetupTokens;
  /** Whether a device's tunnel is up, and since when (up or down) if known. */
  online: (deviceId: string) => { online: boolean; since?: Date };
  /** Cuts a device's tunnel now (after revoke or delete). */
  dropDevice: (deviceId: string, reason: string) => void;
  config: WebConfig;
  /** The webcam fan-out and live tunnels, for the dashboard's thumbnails and stream; without it those routes are absent. */
  webcam?: DashboardWebcam;
  /** The built dashboard; default: $PORTHOLE_DASHBOARD_DIR or apps/dashboard/dist. */
  dashboardDir?: string;
  /** Clock for expiry arithmetic; defaults to the real one. */
  now?: () => Date;
}

/** The signed-in user of a request on the relay's own domain. */
export interface Auth {
  session: SessionInfo;
  user: User;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the web plugin's auth hook: the dashboard session, or null when not signed in. */
    auth: Auth | null;
  }
}

/** How long a dashboard sign-in lasts (the signed token inside it is re-issued every few minutes). */
export const DASHBOARD_SESSION_TTL_MS = 7 * 24 * 3600_000;

/** Roles on a device, strongest first; one definition shared with the access policy. */
export { ROLES, isRole, type Role } from '../access/policy.js';

/** The origin of the relay's dashboard, from config.publicUrl. */
export function relayOrigin(config: Pick<WebConfig, 'publicUrl'>): string {
  return new URL(config.publicUrl).origin;
}

/** `http(s)://SLUG.DOMAIN(:port)`: the scheme and port of the public URL, the device's subdomain. */
export function deviceOrigin(config: Pick<WebConfig, 'publicUrl' | 'domain'>, slug: string): string {
  const u = new URL(config.publicUrl);
  return `${u.protocol}//${slug}.${config.domain}${u.port ? `:${u.port}` : ''}`;
}

/** The user as the API shows it. */
export function userView(u: User) {
  return {
    id: u.id,
    username: u.username,
    isAdmin: u.isAdmin,
    totpEnabled: u.totpEnabledAt !== null,
    createdAt: u.createdAt,
    passwordChangedAt: u.passwordChangedAt,
    disabled: u.disabledAt !== null,
  };
}
