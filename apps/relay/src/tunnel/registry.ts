import { EventEmitter } from 'node:events';
import { AgentCloseCode } from '@porthole/protocol';
import type { DeviceTunnel } from './device-tunnel.js';

interface RegistryEvents {
  online: [tunnel: DeviceTunnel];
  offline: [tunnel: DeviceTunnel, reason: string];
}

/** The live tunnels, one per device. A newer connection always replaces an older one at once. */
export class TunnelRegistry extends EventEmitter<RegistryEvents> {
  private readonly byDevice = new Map<string, DeviceTunnel>();
  /** When each device was last seen going offline (memory; the database keeps it across restarts). */
  private readonly offlineSince = new Map<string, Date>();
  private readonly slugs = new Map<string, string>();

  get size(): number {
    return this.byDevice.size;
  }

  /** The live tunnel of the device with this slug: the proxy's fast path, no database. */
  getBySlug(slug: string): DeviceTunnel | undefined {
    const id = this.slugs.get(slug);
    return id === undefined ? undefined : this.get(id);
  }

  get(deviceId: string): DeviceTunnel | undefined {
    const t = this.byDevice.get(deviceId);
    return t !== undefined && !t.closed ? t : undefined;
  }

  lastOffline(deviceId: string): Date | undefined {
    return this.offlineSince.get(deviceId);
  }

  all(): DeviceTunnel[] {
    return [...this.byDevice.values()];
  }

  attach(tunnel: DeviceTunnel): void {
    const id = tunnel.info.deviceId;
    const old = this.byDevice.get(id);
    this.byDevice.set(id, tunnel);
    this.slugs.set(tunnel.info.slug, id);
    this.offlineSince.delete(id);
    if (old !== undefined && old !== tunnel) old.close(AgentCloseCode.Replaced, 'replaced by a newer connection');
    tunnel.session.once('close', (err) => {
      if (this.byDevice.get(id) !== tunnel) return; // already replaced
      this.byDevice.delete(id);
      if (this.slugs.get(tunnel.info.slug) === id) this.slugs.delete(tunnel.info.slug);
      this.offlineSince.set(id, new Date());
      this.emit('offline', tunnel, err?.message ?? 'closed');
    });
    this.emit('online', tunnel);
  }

  /** Drops a device's tunnel (revoked, removed). */
  drop(deviceId: string, code: number, reason: string): void {
    const t = this.byDevice.get(deviceId);
    if (t !== undefined) t.close(code, reason);
  }

  /** Sends GoAway on every tunnel and resolves once all sessions ended or the grace ran out. */
  async drain(graceMs: number): Promise<void> {
    const tunnels = this.all();
    for (const t of tunnels) t.goAway();
    const done = Promise.all(
      tunnels.map((t) => (t.closed ? Promise.resolve() : new Promise<void>((r) => t.session.once('close', () => r())))),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    if (timer !== undefined) clearTimeout(timer);
    for (const t of this.all()) t.close(AgentCloseCode.GoingAway, 'relay shutting down');
  }
}
