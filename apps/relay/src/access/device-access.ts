import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AuditKind, type AuditLog } from '../accounts/audit.js';
import { cookieName, parseCookies, serializeCookie } from '../accounts/cookies.js';
import { safeNext, type HandoffStore } from '../accounts/handoff.js';
import type { SessionService } from '../accounts/sessions.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import { clientAddress } from '../proxy/headers.js';
import { page, sendPage } from '../proxy/pages.js';
import type { AccessContext, Authorize, Decision } from '../proxy/proxy.js';
import type { TunnelRegistry } from '../tunnel/registry.js';
import { shareViewHtml } from '../web/share-view.js';
import { LiveConnections } from './live.js';
import { isRole, moonrakerMessageAllowed, profileOf, viewerMay, type Role } from './policy.js';

/** What the device side needs from share links (accounts/shares.ts). */
export interface ShareLinks {
  findValidByToken(token: string, deviceId: string, now?: Date): Promise<{ id: string; deviceId: string; expiresAt: Date | null } | null>;
  recordUse(id: string): Promise<unknown>;
}

export interface DeviceAccessOptions {
  prisma: PrismaClient;
  sessions: SessionService;
  handoffs: HandoffStore;
  shares: ShareLinks;
  audit: AuditLog;
  registry: TunnelRegistry;
  devices: { findBySlug(slug: string): Promise<{ id: string; name: string; slug: string; revokedAt: Date | null } | null> };
  log: Logger;
  /** The relay's own origin, e.g. https://relay.example or http://localhost:8080. */
  publicUrl: string;
  domain: string;
  secureCookies: boolean;
  /** How long a device session (from a handoff) and a share visit last. */
  deviceSessionMs?: number;
  shareSessionMs?: number;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Everything about who may reach a device through its subdomain:
 * - the handoff landing that turns a one-time code into a cookie for this device alone;
 * - the share-link landing (viewer, no account) and its small viewer page;
 * - the per-request decision (the proxy's one authorization hook): a valid device or share
 *   session for THIS device, the member's role, and for viewers the printer profile's reads;
 * - cutting open WebSockets and streams the moment their session ends.
 */
export function createDeviceAccess(o: DeviceAccessOptions) {
  const live = new LiveConnections();
  o.sessions.on('revoked', (ids) => {
    const n = live.cut(ids);
    if (n > 0) o.log.info({ sessions: ids.length, connections: n }, 'cut connections of ended sessions');
  });
  const deviceCookie = cookieName('device', o.secureCookies);
  const deviceSessionMs = o.deviceSessionMs ?? 12 * 3600_000;
  const shareSessionMs = o.shareSessionMs ?? 12 * 3600_000;
  const publicOrigin = new URL(o.publicUrl);

  const roleCache = new Map<string, { role: Role | null; at: number }>();
  async function roleOf(userId: string, deviceId: string): Promise<Role | null> {
    const k = `${userId}:${deviceId}`;
    const c = roleCache.get(k);
    if (c !== undefined && Date.now() - c.at < 2_000) return c.role;
    const m = await o.prisma.membership.findUnique({ where: { userId_deviceId: { userId, deviceId } }, select: { role: true } });
    const role = m !== null && isRole(m.role) ? m.role : null;
    if (roleCache.size > 20_000) roleCache.clear();
    roleCache.set(k, { role, at: Date.now() });
    return role;
  }

  function deviceOrigin(slug: string): string {
    const port = publicOrigin.port === '' ? '' : `:${publicOrigin.port}`;
    return `${publicOrigin.protocol}//${slug}.${o.domain}${port}`;
  }

  function cookieFor(token: string, maxAgeMs: number): string {
    return serializeCookie(deviceCookie, token, { secure: o.secureCookies, maxAge: maxAgeMs / 1000 });
  }

  function wantsHtml(req: IncomingMessage): boolean {
    return (req.method === 'GET' || req.method === 'HEAD') && /text\/html/.test(req.headers.accept ?? '');
  }

  const deny = (status: number, title: string, body: string, headers?: Record<string, string>): Decision => ({
    allow: false,
    status,
    title,
    body,
    ...(headers !== undefined ? { headers } : {}),
  });

  const authorize: Authorize = async (ctx: AccessContext) => {
    const { req, slug, deviceId } = ctx;
    const token = parseCookies(req.headers.cookie).get(deviceCookie);
    const v = await o.sessions.verify(token, { kind: ['device', 'share'], deviceId });
    if (v === null) {
      if (wantsHtml(req) && !ctx.upgrade) {
        const next = `${ctx.req.url ?? '/'}`;
        return deny(302, 'Sign in', '<h1>Sign in to open this printer</h1>', {
          location: `${o.publicUrl}/open/${slug}?next=${encodeURIComponent(safeNext(next))}`,
        });
      }
      return deny(401, 'Sign in required', '<h1>Sign in required</h1><p>Open this printer from your Porthole dashboard.</p>');
    }
    const s = v.session;
    let role: Role | null;
    if (s.kind === 'share') role = 'viewer';
    else role = s.userId === null ? null : await roleOf(s.userId, deviceId);
    if (role === null) {
      return deny(403, 'No access', '<h1>You no longer have access to this printer</h1><p>Ask its owner to invite you again.</p>');
    }
    let wsFilter: ((text: string) => boolean) | undefined;
    if (role === 'viewer' && ctx.service.name !== 'offline') {
      const verdict = viewerMay(ctx.service, req.method ?? 'GET', ctx.path, ctx.query, ctx.upgrade);
      if (!verdict.allow) {
        o.log.info({ device: slug, session: s.id, method: req.method, path: ctx.path, reason: verdict.reason }, 'viewer request refused');
        return deny(403, 'View only', `<h1>View only</h1><p>This link shows the webcam and status; it cannot control the printer.</p><p>${esc(verdict.reason)}</p>`);
      }
      if (verdict.wsFilter === 'moonraker') wsFilter = moonrakerMessageAllowed;
    }
    return {
      allow: true,
      role,
      track: (cut) => live.track(s.id, s.expiresAt, cut),
      ...(wsFilter !== undefined ? { wsFilter } : {}),
      ...(v.refreshed !== undefined ? { setCookie: cookieFor(v.refreshed, s.expiresAt.getTime() - Date.now()) } : {}),
    };
  };

  function redirect(res: ServerResponse, location: string, cookie?: string): void {
    const headers: Record<string, string | string[]> = { location, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' };
    if (cookie !== undefined) headers['set-cookie'] = cookie;
    res.writeHead(302, headers);
    res.end();
  }

  /** /_porthole/* on a device subdomain: handled here, never forwarded to the printer. */
  async function relayPaths(req: IncomingMessage, res: ServerResponse, slug: string): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://device.invalid');
    const ip = clientAddress(req);
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const device = await o.devices.findBySlug(slug);
    if (device === null || device.revokedAt !== null) {
      sendPage(res, 404, 'No such printer', '<h1>No such printer</h1>');
      return true;
    }
    if (url.pathname === '/_porthole/handoff') {
      const h = o.handoffs.take(url.searchParams.get('code') ?? undefined, device.id);
      if (h === undefined) {
        redirect(res, `${o.publicUrl}/open/${slug}`);
        return true;
      }
      const { token } = await o.sessions.issue({
        kind: 'device',
        userId: h.userId,
        deviceId: device.id,
        parentId: h.parentSessionId,
        ttlMs: deviceSessionMs,
        ip,
        userAgent: req.headers['user-agent'],
      });
      o.audit.record(AuditKind.DeviceOpened, { userId: h.userId, deviceId: device.id, ip });
      redirect(res, safeNext(h.next), cookieFor(token, deviceSessionMs));
      return true;
    }
    const share = /^\/_porthole\/share\/([A-Za-z0-9_-]{20,100})$/.exec(url.pathname);
    if (share !== null) {
      const link = await o.shares.findValidByToken(share[1]!, device.id, new Date());
      if (link === null) {
        o.audit.record(AuditKind.ShareRefused, { deviceId: device.id, ip });
        sendPage(res, 410, 'Link expired', '<h1>This link has expired or was revoked</h1><p>Ask the printer\'s owner for a new one.</p>');
        return true;
      }
      await o.shares.recordUse(link.id);
      const { token } = await o.sessions.issue({
        kind: 'share',
        shareLinkId: link.id,
        deviceId: device.id,
        ttlMs: shareSessionMs,
        notAfter: link.expiresAt,
        ip,
        userAgent: req.headers['user-agent'],
      });
      o.audit.record(AuditKind.ShareUsed, { deviceId: device.id, ip, detail: { shareLinkId: link.id } });
      const until = link.expiresAt === null ? shareSessionMs : Math.min(shareSessionMs, link.expiresAt.getTime() - Date.now());
      redirect(res, '/_porthole/view', cookieFor(token, until));
      return true;
    }
    if (url.pathname === '/_porthole/view') {
      const v = await o.sessions.verify(parseCookies(req.headers.cookie).get(deviceCookie), { kind: ['device', 'share'], deviceId: device.id });
      if (v === null) {
        sendPage(res, 401, 'Link expired', '<h1>This view has expired</h1><p>Open the share link again, or ask for a new one.</p>');
        return true;
      }
      const tunnel = o.registry.getBySlug(slug);
      const cam = tunnel?.info.hello.routes.find((r) => {
        const svc = tunnel.info.hello.services.find((s) => s.name === r.service);
        return svc !== undefined && profileOf(svc) === 'camera';
      });
      const html = shareViewHtml({
        name: device.name,
        streamPath: cam === undefined ? undefined : `${cam.path}?action=stream`,
        online: tunnel !== undefined,
        since: tunnel?.connectedAt ?? o.registry.lastOffline(device.id),
        endsAt: v.session.expiresAt,
      });
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(html);
      return true;
    }
    if (url.pathname === '/_porthole/logout') {
      const v = await o.sessions.verify(parseCookies(req.headers.cookie).get(deviceCookie), { deviceId: device.id });
      if (v !== null) await o.sessions.revoke(v.session.id);
      res.writeHead(302, { location: o.publicUrl, 'set-cookie': serializeCookie(deviceCookie, '', { secure: o.secureCookies, maxAge: 0 }) });
      res.end();
      return true;
    }
    return false;
  }

  /**
   * GET /open/:slug on the relay's domain: a signed-in member is sent to the device with a
   * one-time handoff code; anyone else signs in first.
   */
  function registerOpenRoute(app: FastifyInstance): void {
    app.get<{ Params: { slug: string }; Querystring: { next?: string } }>('/open/:slug', async (request, reply) => {
      const next = safeNext(request.query.next);
      const here = `/open/${encodeURIComponent(request.params.slug)}?next=${encodeURIComponent(next)}`;
      const token = parseCookies(request.headers.cookie).get(cookieName('dashboard', o.secureCookies));
      const v = await o.sessions.verify(token, { kind: 'dashboard' });
      if (v === null || v.session.userId === null) return reply.redirect(`/login?next=${encodeURIComponent(here)}`, 302);
      const found = await o.devices.findBySlug(request.params.slug);
      // A revoked device is closed to everyone, its owner included.
      const device = found?.revokedAt == null ? found : null;
      const role = device == null ? null : await roleOf(v.session.userId, device.id);
      if (device == null || role === null) {
        reply.code(404).type('text/html; charset=utf-8');
        return page('No such printer', '<h1>No such printer</h1><p>There is no printer here that you have access to.</p>');
      }
      const code = o.handoffs.create({ userId: v.session.userId, deviceId: device.id, parentSessionId: v.session.id, next });
      reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
      return reply.redirect(`${deviceOrigin(device.slug)}/_porthole/handoff?code=${code}`, 302);
    });
  }

  return { authorize, relayPaths, registerOpenRoute, live, deviceOrigin };
}
