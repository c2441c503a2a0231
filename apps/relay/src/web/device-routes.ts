import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AuditKind } from '../accounts/audit.js';
import { SHARE_EXPIRIES, SHARE_LABEL_MAX, shareIsActive, type ShareExpiry, type ShareLink } from '../accounts/shares.js';
import type { Device } from '../devices.js';
import { RelayError } from '../errors.js';
import type { PairingInfo } from '../pairing/service.js';
import { clientOf, type Client } from './account-routes.js';
import { authOf, requireUser } from './auth-plugin.js';
import { deviceOrigin, isRole, ROLES, type Auth, type Role, type WebDeps } from './deps.js';
import { parse } from './http.js';

// ---- access ------------------------------------------------------------------------------

export const ANY_ROLE: readonly Role[] = ROLES;
export const OWNER: readonly Role[] = ['owner'];
/** Owner and operator: full control of the printer, so they may also hand out viewer links. */
export const CONTROL: readonly Role[] = ['owner', 'operator'];

/**
 * The device and the caller's role on it, if the role is one of `allowed`. No membership (or a
 * role this relay does not know) is RELAY_DEVICE_NOT_FOUND, the same as no device: a stranger
 * learns nothing about which ids exist. A member with too weak a role gets RELAY_FORBIDDEN.
 */
export async function requireRole(
  deps: WebDeps,
  auth: Auth,
  deviceId: string,
  allowed: readonly Role[],
): Promise<{ device: Device; role: Role }> {
  const m = await deps.prisma.membership.findUnique({
    where: { userId_deviceId: { userId: auth.user.id, deviceId } },
    select: { role: true },
  });
  const device = m === null || !isRole(m.role) ? null : await deps.devices.findById(deviceId);
  if (m === null || device === null || !isRole(m.role)) throw new RelayError('RELAY_DEVICE_NOT_FOUND', [deviceId]);
  if (!allowed.includes(m.role)) {
    throw new RelayError('RELAY_FORBIDDEN', [`this needs the ${allowed.join(' or ')} role on the device; you are ${m.role}`]);
  }
  return { device, role: m.role };
}

// ---- views -------------------------------------------------------------------------------

export interface DeviceView {
  id: string;
  name: string;
  slug: string;
  role: Role;
  online: boolean;
  onlineSince: Date | null;
  offlineSince: Date | null;
  lastSeenAt: Date | null;
  createdAt: Date;
  revoked: boolean;
  /** The device's own origin: its printer UI, once a handoff signed the browser in there. */
  url: string;
}

export function deviceView(deps: WebDeps, device: Device, role: Role): DeviceView {
  const state = device.revokedAt === null ? deps.online(device.id) : { online: false };
  return {
    id: device.id,
    name: device.name,
    slug: device.slug,
    role,
    online: state.online,
    onlineSince: state.online ? (state.since ?? null) : null,
    offlineSince: state.online ? null : (state.since ?? device.offlineSince ?? null),
    lastSeenAt: device.lastSeenAt,
    createdAt: device.createdAt,
    revoked: device.revokedAt !== null,
    url: deviceOrigin(deps.config, device.slug),
  };
}

export function shareView(link: ShareLink, now: Date) {
  return {
    id: link.id,
    label: link.label,
    createdById: link.createdById,
    createdAt: link.createdAt,
    expiresAt: link.expiresAt,
    revokedAt: link.revokedAt,
    uses: link.uses,
    lastUsedAt: link.lastUsedAt,
    active: shareIsActive(link, now),
  };
}

// ---- actions -----------------------------------------------------------------------------

/** The caller's devices, oldest membership first. */
export async function listDevices(deps: WebDeps, auth: Auth): Promise<DeviceView[]> {
  const rows = await deps.prisma.membership.findMany({
    where: { userId: auth.user.id },
    orderBy: { createdAt: 'asc' },
    select: { role: true, device: { omit: { credentialHash: true } } },
  });
  return rows.flatMap((r) => (isRole(r.role) ? [deviceView(deps, r.device, r.role)] : []));
}

/**
 * A one-time handoff code that carries the caller to the device's subdomain, where the relay
 * swaps it for a device session hanging from this dashboard session. Any role may open; what
 * the role allows there is enforced per request on the device side.
 */
export async function openDevice(
  deps: WebDeps,
  auth: Auth,
  deviceId: string,
  next: string | undefined,
  client: Client,
): Promise<{ url: string }> {
  const { device, role } = await requireRole(deps, auth, deviceId, ANY_ROLE);
  if (device.revokedAt !== null) throw new RelayError('RELAY_DEVICE_REVOKED', [device.slug]);
  const code = deps.handoffs.create({ userId: auth.user.id, deviceId: device.id, parentSessionId: auth.session.id, next });
  deps.audit.record(AuditKind.DeviceOpened, { userId: auth.user.id, deviceId: device.id, ip: client.ip, detail: { role } });
  return { url: `${deviceOrigin(deps.config, device.slug)}/_porthole/handoff?code=${encodeURIComponent(code)}` };
}

/** Approves a pending pairing code: the caller owns the new device. */
export async function approvePairing(
  deps: WebDeps,
  auth: Auth,
  input: { code: string; name?: string | undefined; slug?: string | undefined },
  client: Client,
): Promise<{ device: DeviceView; pairing: PairingInfo }> {
  const pairing = pairingOf(deps);
  const r = await pairing.approve({
    code: input.code,
    ownerUserId: auth.user.id,
    ...(input.name ? { name: input.name } : {}),
    ...(input.slug ? { slug: input.slug } : {}),
  });
  deps.audit.record(AuditKind.DevicePaired, {
    userId: auth.user.id,
    deviceId: r.device.id,
    ip: client.ip,
    detail: { slug: r.device.slug, name: r.device.name, agent: r.pairing.agent, agentAddress: r.pairing.remote },
  });
  return { device: deviceView(deps, r.device, 'owner'), pairing: r.pairing };
}

export function lookupPairing(deps: WebDeps, code: string): PairingInfo {
  const info = pairingOf(deps).lookup(code);
  if (info === undefined) throw new RelayError('RELAY_PAIRING_NOT_FOUND', [code.slice(0, 20)]);
  return info;
}

export function denyPairing(deps: WebDeps, code: string): PairingInfo {
  return pairingOf(deps).deny(code);
}

function pairingOf(deps: WebDeps) {
  if (deps.pairing === undefined) throw new RelayError('RELAY_NOT_FOUND', ['pairing is not enabled on this relay']);
  return deps.pairing;
}

// ---- the JSON API --------------------------------------------------------------------------

const Id = z.string().min(1).max(128);
const DeviceParams = z.object({ id: Id });
const MemberParams = z.object({ id: Id, userId: Id });
const ShareParams = z.object({ id: Id, shareId: Id });
const RenameBody = z.object({ name: z.string().max(1000) });
const OpenBody = z.object({ next: z.string().max(2048).optional() });
const MemberBody = z.object({ username: z.string().max(256), role: z.enum(ROLES) });
const ShareBody = z.object({
  expiresIn: z.enum(Object.keys(SHARE_EXPIRIES) as [ShareExpiry, ...ShareExpiry[]]),
  label: z.string().max(SHARE_LABEL_MAX).optional(),
});
const AuditQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).optional(),
  before: z.coerce.date().optional(),
});
const PairingParams = z.object({ code: z.string().min(1).max(64) });
const ApproveBody = z.object({
  code: z.string().min(1).max(64),
  name: z.string().max(1000).optional(),
  slug: z.string().max(100).optional(),
});
const DenyBody = z.object({ code: z.string().min(1).max(64) });

/**
 * /api/devices and /api/pairing. Every device route looks the caller's membership up first
 * (`requireRole`): no membership is a 404, a weaker role a 403. Registered under '/api'.
 */
export async function deviceRoutes(api: FastifyInstance, deps: WebDeps): Promise<void> {
  const now = () => deps.now?.() ?? new Date();

  api.addHook('preHandler', requireUser);

  api.get('/devices', async (req) => listDevices(deps, authOf(req)));

  api.get('/devices/:id', async (req) => {
    const { id } = parse(DeviceParams, req.params);
    const { device, role } = await requireRole(deps, authOf(req), id, ANY_ROLE);
    return deviceView(deps, device, role);
  });

  api.patch('/devices/:id', async (req) => {
    const auth = authOf(req);
    const { id } = parse(DeviceParams, req.params);
    const { name } = parse(RenameBody, req.body);
    const { device: before } = await requireRole(deps, auth, id, OWNER);
    const device = await deps.devices.rename(id, name);
    deps.audit.record(AuditKind.DeviceRenamed, { userId: auth.user.id, deviceId: id, ip: req.ip, detail: { from: before.name, to: device.name } });
    return deviceView(deps, device, 'owner');
  });

  api.post('/devices/:id/revoke', async (req) => {
    const auth = authOf(req);
    const { id } = parse(DeviceParams, req.params);
    await requireRole(deps, auth, id, OWNER);
    const device = await deps.devices.revoke(id);
    deps.dropDevice(id, 'revoked');
    await deps.sessions.revokeFor({ deviceId: id });
    deps.audit.record(AuditKind.DeviceRevoked, { userId: auth.user.id, deviceId: id, ip: req.ip, detail: { slug: device.slug } });
    return deviceView(deps, device, 'owner');
  });

  api.delete('/devices/:id', async (req) => {
    const auth = authOf(req);
    const { id } = parse(DeviceParams, req.params);
    const { device } = await requireRole(deps, auth, id, OWNER);
    await deps.devices.remove(id);
    deps.dropDevice(id, 'removed');
    await deps.sessions.revokeFor({ deviceId: id });
    deps.audit.record(AuditKind.DeviceRemoved, { userId: auth.user.id, deviceId: id, ip: req.ip, detail: { slug: device.slug, name: device.name } });
    return { ok: true };
  });

  api.post('/devices/:id/open', async (req) => {
    const { id } = parse(DeviceParams, req.params);
    const { next } = parse(OpenBody, req.body);
    return openDevice(deps, authOf(req), id, next, clientOf(req));
  });

  // ---- members ----

  api.get('/devices/:id/members', async (req) => {
    const { id } = parse(DeviceParams, req.params);
    await requireRole(deps, authOf(req), id, OWNER);
    const rows = await deps.prisma.membership.findMany({
      where: { deviceId: id },
      orderBy: { createdAt: 'asc' },
      select: { role: true, createdAt: true, invitedById: true, user: { select: { id: true, username: true, disabledAt: true } } },
    });
    return rows.map((r) => ({
      userId: r.user.id,
      username: r.user.username,
      role: r.role,
      disabled: r.user.disabledAt !== null,
      createdAt: r.createdAt,
      invitedById: r.invitedById,
    }));
  });

  api.post('/devices/:id/members', async (req, reply) => {
    const auth = authOf(req);
    const { id } = parse(DeviceParams, req.params);
    const { username, role } = parse(MemberBody, req.body);
    await requireRole(deps, auth, id, OWNER);
    const target = await deps.users.findByUsername(username);
    if (target === null || target.disabledAt !== null) throw new RelayError('RELAY_UNKNOWN_USERNAME', [username.slice(0, 64)]);
    const previous = await deps.prisma.$transaction(async (tx) => {
      const key = { userId_deviceId: { userId: target.id, deviceId: id } };
      const existing = await tx.membership.findUnique({ where: key, select: { role: true } });
      if (existing?.role === 'owner' && role !== 'owner') {
        if ((await tx.membership.count({ where: { deviceId: id, role: 'owner' } })) <= 1) throw new RelayError('RELAY_LAST_OWNER');
      }
      await tx.membership.upsert({
        where: key,
        create: { userId: target.id, deviceId: id, role, invitedById: auth.user.id },
        update: { role },
      });
      return existing?.role ?? null;
    });
    // A changed role takes effect at once: their open device sessions end.
    if (previous !== null && previous !== role) await deps.sessions.revokeFor({ userId: target.id, deviceId: id });
    deps.audit.record(AuditKind.MemberAdded, {
      userId: auth.user.id,
      deviceId: id,
      ip: req.ip,
      detail: { member: target.id, username: target.username, role, previous },
    });
    return reply.code(previous === null ? 201 : 200).send({ userId: target.id, username: target.username, role });
  });

  api.delete('/devices/:id/members/:userId', async (req) => {
    const auth = authOf(req);
    const { id, userId } = parse(MemberParams, req.params);
    await requireRole(deps, auth, id, OWNER);
    const removed = await deps.prisma.$transaction(async (tx) => {
      const key = { userId_deviceId: { userId, deviceId: id } };
      const existing = await tx.membership.findUnique({ where: key, select: { role: true } });
      if (existing === null) throw new RelayError('RELAY_NOT_FOUND', ['no such member']);
      if (existing.role === 'owner' && (await tx.membership.count({ where: { deviceId: id, role: 'owner' } })) <= 1) {
        throw new RelayError('RELAY_LAST_OWNER');
      }
      await tx.membership.delete({ where: key });
      return existing.role;
    });
    await deps.sessions.revokeFor({ userId, deviceId: id });
    deps.audit.record(AuditKind.MemberRemoved, { userId: auth.user.id, deviceId: id, ip: req.ip, detail: { member: userId, role: removed } });
    return { ok: true };
  });

  // ---- share links ----

  api.get('/devices/:id/shares', async (req) => {
    const { id } = parse(DeviceParams, req.params);
    await requireRole(deps, authOf(req), id, CONTROL);
    const t = now();
    return (await deps.shares.list(id)).map((l) => shareView(l, t));
  });

  api.post('/devices/:id/shares', async (req, reply) => {
    const auth = authOf(req);
    const { id } = parse(DeviceParams, req.params);
    const body = parse(ShareBody, req.body);
    const { device } = await requireRole(deps, auth, id, CONTROL);
    if (device.revokedAt !== null) throw new RelayError('RELAY_DEVICE_REVOKED', [device.slug]);
    const { link, token } = await deps.shares.create({ deviceId: id, createdById: auth.user.id, expiresIn: body.expiresIn, label: body.label ?? null });
    deps.audit.record(AuditKind.ShareCreated, {
      userId: auth.user.id,
      deviceId: id,
      ip: req.ip,
      detail: { share: link.id, expiresAt: link.expiresAt?.toISOString() ?? null, label: link.label },
    });
    // The token is in this answer and nowhere else: the database keeps its hash.
    return reply.code(201).send({
      id: link.id,
      url: `${deviceOrigin(deps.config, device.slug)}/_porthole/share/${token}`,
      expiresAt: link.expiresAt,
      label: link.label,
    });
  });

  api.delete('/devices/:id/shares/:shareId', async (req) => {
    const auth = authOf(req);
    const { id, shareId } = parse(ShareParams, req.params);
    await requireRole(deps, auth, id, CONTROL);
    const link = await deps.shares.findById(shareId);
    if (link === null || link.deviceId !== id) throw new RelayError('RELAY_NOT_FOUND', ['no such share link']);
    await deps.shares.revoke(shareId);
    // Viewers who already opened the link are cut now, not when their token runs out.
    await deps.sessions.revokeFor({ shareLinkId: shareId });
    deps.audit.record(AuditKind.ShareRevoked, { userId: auth.user.id, deviceId: id, ip: req.ip, detail: { share: shareId } });
    return { ok: true };
  });

  api.get('/devices/:id/audit', async (req) => {
    const { id } = parse(DeviceParams, req.params);
    const q = parse(AuditQuery, req.query);
    await requireRole(deps, authOf(req), id, OWNER);
    return deps.audit.list({ deviceId: id, limit: q.limit ?? 100, ...(q.before !== undefined ? { before: q.before } : {}) });
  });

  // ---- pairing ----

  if (deps.pairing !== undefined) {
    api.get('/pairing/:code', async (req) => lookupPairing(deps, parse(PairingParams, req.params).code));

    api.post('/pairing/approve', async (req, reply) => {
      const body = parse(ApproveBody, req.body);
      const r = await approvePairing(deps, authOf(req), body, clientOf(req));
      return reply.code(201).send(r);
    });

    api.post('/pairing/deny', async (req) => {
      const { code } = parse(DenyBody, req.body);
      denyPairing(deps, code);
      return { ok: true };
    });
  }
}
