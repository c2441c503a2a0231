import { createHash, randomBytes } from 'node:crypto';
import type { PrismaClient } from '../generated/prisma/client.js';
import { RelayError } from '../errors.js';

/** How long a share link lives, as the dashboard offers it. */
export const SHARE_EXPIRIES = {
  '1h': 3600_000,
  '1d': 24 * 3600_000,
  '1w': 7 * 24 * 3600_000,
  never: null,
} as const satisfies Record<string, number | null>;
export type ShareExpiry = keyof typeof SHARE_EXPIRIES;

export const SHARE_LABEL_MAX = 100;

/** A share link row: never the token, which exists only in the URL handed out once. */
export interface ShareLink {
  id: string;
  deviceId: string;
  label: string | null;
  createdById: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  uses: number;
  lastUsedAt: Date | null;
}

const SELECT = {
  id: true,
  deviceId: true,
  label: true,
  createdById: true,
  createdAt: true,
  expiresAt: true,
  revokedAt: true,
  uses: true,
  lastUsedAt: true,
} as const;

/** 32 random bytes, base64url: 43 characters. */
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

/** Lowercase hex SHA-256: with 256 random bits a plain hash is the right one (nothing to brute-force). */
export function hashShareToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface ShareLinkStoreOptions {
  prisma: PrismaClient;
  now?: () => Date;
}

/**
 * Viewer links for people without an account. The token is shown once, at creation; the
 * database keeps its SHA-256, so a leaked database does not open anyone's webcam.
 */
export class ShareLinkStore {
  readonly #prisma: PrismaClient;
  readonly #now: () => Date;

  constructor(opts: ShareLinkStoreOptions) {
    this.#prisma = opts.prisma;
    this.#now = opts.now ?? (() => new Date());
  }

  async create(input: {
    deviceId: string;
    createdById?: string | null;
    expiresIn: ShareExpiry;
    label?: string | null;
  }): Promise<{ link: ShareLink; token: string }> {
    if (!Object.hasOwn(SHARE_EXPIRIES, input.expiresIn)) {
      throw new RelayError('RELAY_BAD_REQUEST', [`expiresIn must be one of ${Object.keys(SHARE_EXPIRIES).join(', ')}`]);
    }
    const ttl = SHARE_EXPIRIES[input.expiresIn];
    const label = normalizeLabel(input.label);
    const now = this.#now();
    const token = randomBytes(32).toString('base64url');
    const link = await this.#prisma.shareLink.create({
      data: {
        deviceId: input.deviceId,
        tokenHash: hashShareToken(token),
        label,
        createdById: input.createdById ?? null,
        createdAt: now,
        expiresAt: ttl === null ? null : new Date(now.getTime() + ttl),
      },
      select: SELECT,
    });
    return { link, token };
  }

  /** The link `token` opens on `deviceId`, if it is not revoked nor expired; else null. */
  async findValidByToken(token: string | undefined, deviceId: string, now: Date = this.#now()): Promise<ShareLink | null> {
    if (typeof token !== 'string' || !TOKEN_RE.test(token)) return null;
    const link = await this.#prisma.shareLink.findUnique({ where: { tokenHash: hashShareToken(token) }, select: SELECT });
    if (link === null || link.deviceId !== deviceId || link.revokedAt !== null) return null;
    if (link.expiresAt !== null && link.expiresAt <= now) return null;
    return link;
  }

  /** Counts one use. */
  async recordUse(id: string): Promise<void> {
    await this.#prisma.shareLink.updateMany({ where: { id }, data: { uses: { increment: 1 }, lastUsedAt: this.#now() } });
  }

  findById(id: string): Promise<ShareLink | null> {
    return this.#prisma.shareLink.findUnique({ where: { id }, select: SELECT });
  }

  /** A device's links, newest first, revoked and expired ones included. */
  list(deviceId: string): Promise<ShareLink[]> {
    return this.#prisma.shareLink.findMany({ where: { deviceId }, orderBy: { createdAt: 'desc' }, select: SELECT });
  }

  /** Revokes a link; revoking twice keeps the first time. Returns false if there is no such link. */
  async revoke(id: string, at: Date = this.#now()): Promise<boolean> {
    await this.#prisma.shareLink.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: at } });
    return (await this.findById(id)) !== null;
  }
}

/** Whether a link can still be used at `now`. */
export function shareIsActive(link: Pick<ShareLink, 'revokedAt' | 'expiresAt'>, now: Date): boolean {
  return link.revokedAt === null && (link.expiresAt === null || link.expiresAt > now);
}

function normalizeLabel(label: string | null | undefined): string | null {
  if (label === undefined || label === null) return null;
  const l = label.trim();
  if (l.length === 0) return null;
  if (l.length > SHARE_LABEL_MAX) throw new RelayError('RELAY_BAD_REQUEST', [`label must be at most ${SHARE_LABEL_MAX} characters`]);
  if (/[\p{Cc}\p{Cf}]/u.test(l)) throw new RelayError('RELAY_BAD_REQUEST', ['label must not contain control characters']);
  return l;
}
