import { createHmac, randomBytes, webcrypto } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { errors as joseErrors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import type { Logger } from 'pino';
import type { PrismaClient, Session as SessionRow } from '../generated/prisma/client.js';

export type SessionKind = 'dashboard' | 'device' | 'share';

export interface SessionInfo {
  id: string;
  kind: SessionKind;
  userId: string | null;
  deviceId: string | null;
  shareLinkId: string | null;
  parentId: string | null;
  createdAt: Date;
  expiresAt: Date;
  lastSeenAt: Date;
  ip: string | null;
  userAgent: string | null;
}

export interface IssueInput {
  kind: SessionKind;
  userId?: string;
  deviceId?: string;
  shareLinkId?: string;
  parentId?: string;
  /** How long the session row lives (the signed token is re-issued within it). */
  ttlMs: number;
  /** Never later than this (a share link's own expiry). */
  notAfter?: Date | null;
  ip?: string;
  userAgent?: string;
}

export interface Verified {
  session: SessionInfo;
  /** A fresh token when the presented one's short lifetime ran out; set it as the cookie. */
  refreshed?: string;
}

export interface SessionServiceOptions {
  prisma: PrismaClient;
  key: Uint8Array;
  log: Logger;
  now?: () => Date;
  /** Lifetime of the signed token itself. The row decides how long the session lives. */
  tokenTtlMs?: number;
  /** How long a checked row is trusted before it is read again (revocations here are instant). */
  cacheMs?: number;
}

interface SessionEvents {
  /** Sessions that just ended: open WebSockets and streams riding them are cut. */
  revoked: [ids: string[]];
}

const ISSUER = 'porthole-relay';
const ALG = 'HS256';

/**
 * Short-lived signed tokens (jose, HS256 only — `alg: none` or any other algorithm is refused)
 * backed by a server-side session row, so logout, password change and revocation take effect
 * at the next request. Verified rows are cached briefly; every revocation in this process
 * evicts at once and emits 'revoked'.
 */
export class SessionService extends EventEmitter<SessionEvents> {
  private readonly prisma: PrismaClient;
  private readonly key: Uint8Array;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly tokenTtlMs: number;
  private readonly cacheMs: number;
  private readonly cache = new Map<string, { info: SessionInfo | null; at: number }>();
  private readonly touched = new Map<string, number>();
  /** Tokens whose signature was verified, by their exact bytes. */
  private readonly verifiedTokens = new Map<string, JWTPayload>();
  private keyPromise: Promise<webcrypto.CryptoKey> | undefined;

  constructor(opts: SessionServiceOptions) {
    super();
    this.prisma = opts.prisma;
    this.key = opts.key;
    this.log = opts.log;
    this.now = opts.now ?? (() => new Date());
    this.tokenTtlMs = opts.tokenTtlMs ?? 10 * 60_000;
    this.cacheMs = opts.cacheMs ?? 5_000;
  }

  async issue(input: IssueInput): Promise<{ token: string; session: SessionInfo }> {
    const now = this.now();
    let expiresAt = new Date(now.getTime() + input.ttlMs);
    if (input.notAfter != null && input.notAfter < expiresAt) expiresAt = input.notAfter;
    const id = randomBytes(18).toString('base64url');
    const row = await this.prisma.session.create({
      data: {
        id,
        kind: input.kind,
        userId: input.userId ?? null,
        deviceId: input.deviceId ?? null,
        shareLinkId: input.shareLinkId ?? null,
        parentId: input.parentId ?? null,
        createdAt: now,
        lastSeenAt: now,
        expiresAt,
        ip: input.ip?.slice(0, 64) ?? null,
        userAgent: input.userAgent?.slice(0, 256) ?? null,
      },
    });
    const session = toInfo(row);
    return { token: await this.sign(session), session };
  }

  /** Checks a token: signature, algorithm, issuer, then the row (exists, not revoked, not expired). */
  async verify(token: string | undefined, expect?: { kind?: SessionKind | SessionKind[]; deviceId?: string }): Promise<Verified | null> {
    if (token === undefined || token.length === 0 || token.length > 2048) return null;
    let payload: JWTPayload;
    let expired = false;
    const known = this.verifiedTokens.get(token);
    if (known !== undefined) {
      // Same bytes as a token whose signature we already checked: skip the crypto (it is most of
      // the per-request cost); its expiry and its session row are still checked below.
      payload = known;
      expired = typeof known.exp === 'number' && known.exp * 1000 <= this.now().getTime();
    } else {
      try {
        ({ payload } = await jwtVerify(token, await this.cryptoKey(), { algorithms: [ALG], issuer: ISSUER, currentDate: this.now() }));
      } catch (e) {
        // The signature was checked before the expiry: an expired token is still ours, and the
        // row decides whether the session goes on (then the caller gets a fresh token).
        if (e instanceof joseErrors.JWTExpired) {
          payload = e.payload;
          expired = true;
        } else {
          return null;
        }
      }
      if (this.verifiedTokens.size >= 10_000) this.verifiedTokens.clear();
      this.verifiedTokens.set(token, payload);
    }
    const id = typeof payload.sid === 'string' ? payload.sid : undefined;
    if (id === undefined) return null;
    const session = await this.load(id);
    if (session === null) return null;
    if (session.kind !== payload.knd) return null;
    if (expect?.kind !== undefined && !(Array.isArray(expect.kind) ? expect.kind : [expect.kind]).includes(session.kind)) return null;
    if (expect?.deviceId !== undefined && session.deviceId !== expect.deviceId) return null;
    this.touch(session);
    return expired ? { session, refreshed: await this.sign(session) } : { session };
  }

  /** A per-session secret for CSRF tokens: never in the cookie, derived from the key. */
  csrfToken(sessionId: string): string {
    return createHmac('sha256', this.key).update(`csrf:${sessionId}`).digest('base64url');
  }

  /** Ends one session and every session handed off from it. */
  async revoke(id: string): Promise<string[]> {
    return this.revokeWhere({ OR: [{ id }, { parentId: id }] });
  }

  /** Ends sessions by owner, share link or device; `exceptId` keeps the caller's own. */
  async revokeFor(filter: { userId?: string; shareLinkId?: string; deviceId?: string; exceptId?: string }): Promise<string[]> {
    const where: Record<string, unknown> = {};
    if (filter.userId !== undefined) where.userId = filter.userId;
    if (filter.shareLinkId !== undefined) where.shareLinkId = filter.shareLinkId;
    if (filter.deviceId !== undefined) where.deviceId = filter.deviceId;
    if (Object.keys(where).length === 0) throw new Error('revokeFor needs a filter');
    if (filter.exceptId !== undefined) {
      // NOT (parentId = x) is never true when parentId is NULL in SQL: say "no parent, or another".
      where.AND = [{ NOT: { id: filter.exceptId } }, { OR: [{ parentId: null }, { NOT: { parentId: filter.exceptId } }] }];
    }
    return this.revokeWhere(where);
  }

  async listForUser(userId: string): Promise<SessionInfo[]> {
    const rows = await this.prisma.session.findMany({
      where: { userId, revokedAt: null, expiresAt: { gt: this.now() } },
      orderBy: { lastSeenAt: 'desc' },
    });
    return rows.map(toInfo);
  }

  /** Deletes rows that ended long ago, so the table does not grow without bound. */
  async sweep(olderThanMs = 30 * 24 * 3600_000): Promise<number> {
    const cutoff = new Date(this.now().getTime() - olderThanMs);
    const r = await this.prisma.session.deleteMany({ where: { OR: [{ expiresAt: { lt: cutoff } }, { revokedAt: { lt: cutoff } }] } });
    return r.count;
  }

  private async revokeWhere(where: Record<string, unknown>): Promise<string[]> {
    const now = this.now();
    const rows = await this.prisma.session.findMany({ where: { ...where, revokedAt: null }, select: { id: true } });
    const ids = rows.map((r) => r.id);
    // Children of these sessions go too (device sessions handed off from a dashboard session).
    if (ids.length > 0) {
      const children = await this.prisma.session.findMany({
        where: { parentId: { in: ids }, revokedAt: null },
        select: { id: true },
      });
      for (const c of children) if (!ids.includes(c.id)) ids.push(c.id);
      await this.prisma.session.updateMany({ where: { id: { in: ids } }, data: { revokedAt: now } });
    }
    for (const id of ids) this.cache.set(id, { info: null, at: Date.now() });
    if (ids.length > 0) this.emit('revoked', ids);
    return ids;
  }

  /** The HMAC key imported once (jose would import the raw bytes again on every call). */
  private cryptoKey(): Promise<webcrypto.CryptoKey> {
    this.keyPromise ??= webcrypto.subtle.importKey('raw', this.key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    return this.keyPromise;
  }

  private async sign(s: SessionInfo): Promise<string> {
    const nowSec = Math.floor(this.now().getTime() / 1000);
    const exp = Math.min(nowSec + Math.ceil(this.tokenTtlMs / 1000), Math.floor(s.expiresAt.getTime() / 1000));
    return new SignJWT({ sid: s.id, knd: s.kind, ...(s.deviceId !== null ? { dev: s.deviceId } : {}) })
      .setProtectedHeader({ alg: ALG, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setIssuedAt(nowSec)
      .setExpirationTime(exp)
      .sign(await this.cryptoKey());
  }

  private async load(id: string): Promise<SessionInfo | null> {
    const cached = this.cache.get(id);
    const t = Date.now();
    let info: SessionInfo | null;
    if (cached !== undefined && t - cached.at < this.cacheMs) {
      info = cached.info;
    } else {
      const row = await this.prisma.session.findUnique({
        where: { id },
        include: { user: { select: { disabledAt: true, passwordChangedAt: true } } },
      });
      // Dead: revoked, the user disabled, or the password changed after the session began.
      const dead =
        row === null ||
        row.revokedAt !== null ||
        row.user?.disabledAt != null ||
        (row.user != null && row.user.passwordChangedAt > row.createdAt);
      info = dead ? null : toInfo(row);
      if (this.cache.size > 50_000) this.cache.clear();
      this.cache.set(id, { info, at: t });
    }
    if (info === null || info.expiresAt <= this.now()) return null;
    return info;
  }

  /** Records activity at most once a minute per session. */
  private touch(s: SessionInfo): void {
    const t = Date.now();
    const last = this.touched.get(s.id) ?? 0;
    if (t - last < 60_000) return;
    if (this.touched.size > 50_000) this.touched.clear();
    this.touched.set(s.id, t);
    this.prisma.session
      .update({ where: { id: s.id }, data: { lastSeenAt: this.now() } })
      .catch((e: Error) => this.log.debug({ err: e }, 'could not record session activity'));
  }
}

function toInfo(row: SessionRow): SessionInfo {
  return {
    id: row.id,
    kind: row.kind as SessionKind,
    userId: row.userId,
    deviceId: row.deviceId,
    shareLinkId: row.shareLinkId,
    parentId: row.parentId,
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    lastSeenAt: row.lastSeenAt,
    ip: row.ip,
    userAgent: row.userAgent,
  };
}
