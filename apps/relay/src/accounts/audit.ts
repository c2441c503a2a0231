import type { Logger } from 'pino';
import type { PrismaClient } from '../generated/prisma/client.js';

/** Every kind of event the audit log records. */
export const AuditKind = {
  SetupCompleted: 'setup.completed',
  LoginSucceeded: 'login.succeeded',
  LoginFailed: 'login.failed',
  LoginLocked: 'login.locked',
  Logout: 'logout',
  PasswordChanged: 'password.changed',
  SessionRevoked: 'session.revoked',
  TotpEnabled: 'totp.enabled',
  TotpDisabled: 'totp.disabled',
  RecoveryCodeUsed: 'totp.recovery_used',
  UserCreated: 'user.created',
  UserDisabled: 'user.disabled',
  DeviceOpened: 'device.opened',
  DeviceAccessDenied: 'device.denied',
  DevicePaired: 'device.paired',
  DeviceRenamed: 'device.renamed',
  DeviceRevoked: 'device.revoked',
  DeviceRemoved: 'device.removed',
  MemberAdded: 'member.added',
  MemberRemoved: 'member.removed',
  ShareCreated: 'share.created',
  ShareUsed: 'share.used',
  ShareRevoked: 'share.revoked',
  ShareRefused: 'share.refused',
  AgentRefused: 'agent.refused',
} as const;
export type AuditKind = (typeof AuditKind)[keyof typeof AuditKind];

export interface AuditFields {
  userId?: string | null;
  deviceId?: string | null;
  ip?: string | null;
  detail?: Record<string, unknown>;
}

export interface AuditEntry {
  id: string;
  at: Date;
  kind: string;
  userId: string | null;
  deviceId: string | null;
  ip: string | null;
  detail: Record<string, unknown> | null;
}

/** Writes audit events without slowing the request that caused them; failures are logged. */
export class AuditLog {
  private pending = new Set<Promise<unknown>>();
  private readonly observers: Array<(kind: AuditKind, f: AuditFields) => void> = [];

  constructor(
    private readonly prisma: PrismaClient,
    private readonly log: Logger,
  ) {}

  record(kind: AuditKind, f: AuditFields = {}): void {
    const p = this.prisma.auditEvent
      .create({
        data: {
          kind,
          userId: f.userId ?? null,
          deviceId: f.deviceId ?? null,
          ip: f.ip?.slice(0, 64) ?? null,
          detail: f.detail === undefined ? null : JSON.stringify(f.detail).slice(0, 4000),
        },
      })
      .catch((e: Error) => this.log.error({ err: e, kind }, 'could not write audit event'))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
    for (const o of this.observers) o(kind, f);
    this.log.info({ audit: kind, userId: f.userId ?? undefined, deviceId: f.deviceId ?? undefined, remote: f.ip ?? undefined, ...f.detail }, 'audit');
  }

  /** Calls `fn` for every event as it is recorded (metrics count failures and lockouts this way). */
  observe(fn: (kind: AuditKind, f: AuditFields) => void): void {
    this.observers.push(fn);
  }

  /** Resolves once every event recorded so far is written (tests, shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  async list(filter: { deviceId?: string; userId?: string; limit?: number; before?: Date }): Promise<AuditEntry[]> {
    const rows = await this.prisma.auditEvent.findMany({
      where: {
        ...(filter.deviceId !== undefined ? { deviceId: filter.deviceId } : {}),
        ...(filter.userId !== undefined ? { userId: filter.userId } : {}),
        ...(filter.before !== undefined ? { at: { lt: filter.before } } : {}),
      },
      orderBy: { at: 'desc' },
      take: Math.min(Math.max(filter.limit ?? 50, 1), 500),
    });
    return rows.map((r) => ({ ...r, detail: r.detail === null ? null : (JSON.parse(r.detail) as Record<string, unknown>) }));
  }
}
