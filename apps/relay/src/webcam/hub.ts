import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HelloService } from '@porthole/protocol';
import type { Logger } from 'pino';
import { profileOf } from '../access/policy.js';
import type { HeaderMap } from '../proxy/headers.js';
import type { DeviceTunnel } from '../tunnel/device-tunnel.js';
import { CameraChannel, type CameraStats, type ChannelSettings, type HubTotals } from './channel.js';
import { servicePrefix, webcamTarget, type WebcamTarget } from './detect.js';
import { isMultipartReplace } from './parser.js';
import { RateMeter } from './rate.js';
import { Viewer, type DeliveryTotals } from './viewer.js';

export interface WebcamOptions extends ChannelSettings {
  /** Frame-rate cap for viewers (share links, the viewer role) who ask for none; 0: no cap. */
  viewerFps: number;
}

export const WEBCAM_DEFAULTS: Readonly<WebcamOptions> = Object.freeze({
  graceMs: 5_000,
  viewerFps: 5,
  stallMs: 5_000,
  retryMinMs: 250,
  retryMaxMs: 2_000,
  placeholderEveryMs: 1_000,
  connectTimeoutMs: 10_000,
  maxFrameBytes: 8 * 1024 * 1024,
});

/** Lets the hub take over a response the proxy already has (a multipart answer on a camera route). */
export type AdoptHook = (proxyReq: http.ClientRequest, proxyRes: http.IncomingMessage) => boolean;

/** One authorized request to a device, as the proxy hands it over. */
export interface WebcamRequest {
  req: IncomingMessage;
  res: ServerResponse;
  deviceId: string;
  slug: string;
  tunnel: DeviceTunnel;
  service: HelloService;
  /** Path and query as the printer will see them. */
  target: string;
  /** The request headers for the printer (hop-by-hop and relay cookies removed). */
  headers: HeaderMap;
  /** The requester's role on the device (viewers get the default frame-rate cap). */
  role: string | undefined;
  /** Came in on one of the relay's own webcam endpoints. */
  relayPath?: WebcamRelayPath | undefined;
  /** Forwards the request as a plain proxy request; with `adopt`, the response may be taken over. */
  forward: (adopt?: AdoptHook) => void;
}

/** `/_porthole/snapshot` (the newest picture) and `/_porthole/webcam` (owner stats), per device. */
export type WebcamRelayPath = 'snapshot' | 'stats';

export interface WebcamStats {
  cameras: CameraStats[];
  totals: DeliveryTotals &
    HubTotals & {
      cameras: number;
      viewers: number;
      upstreamFps: number;
      deliveredFps: number;
    };
}

/**
 * The webcam fan-out: every viewer of one camera (device, service, path and query, minus `fps`
 * and cache busters) is served from one upstream pull through the tunnel. It sits inside the
 * proxy, after authorization: what reaches `handle()` was already allowed, and its response is
 * already tracked for revocation.
 */
export class WebcamHub {
  private readonly channels = new Map<string, CameraChannel>();
  private readonly o: WebcamOptions;
  private readonly now: () => number;
  private readonly hubTotals: HubTotals = { framesIn: 0, bytesIn: 0, corrupt: 0, reconnects: 0 };
  /** Delivery counts of cameras already closed (the live ones are summed on demand). */
  private readonly retired: DeliveryTotals = { delivered: 0, dropped: 0, skipped: 0 };
  private closed = false;

  constructor(
    private readonly deps: { tunnel: (deviceId: string) => DeviceTunnel | undefined; log: Logger; now?: () => number },
    opts: Partial<WebcamOptions> = {},
  ) {
    this.o = { ...WEBCAM_DEFAULTS, ...opts };
    this.now = deps.now ?? (() => performance.now());
  }

  get options(): Readonly<WebcamOptions> {
    return this.o;
  }

  /**
   * `/_porthole/snapshot` and `/_porthole/webcam` on a device host, as the URL of the device's
   * camera snapshot (`?camera=SERVICE` picks one when there are several), so that they pass
   * the same access decision as the printer's own snapshot URL. undefined: not ours, or no
   * camera on this device. Without a tunnel the URL stays as it is (the device is offline).
   */
  relayAlias(url: string, tunnel: DeviceTunnel | undefined): { url: string; kind: WebcamRelayPath } | undefined {
    const u = new URL(url, 'http://device.invalid');
    const kind = u.pathname === '/_porthole/snapshot' ? 'snapshot' : u.pathname === '/_porthole/webcam' ? 'stats' : undefined;
    if (kind === undefined) return undefined;
    if (tunnel === undefined) return { url, kind };
    const want = u.searchParams.get('camera');
    const { routes, services } = tunnel.info.hello;
    const route = routes.find((r) => {
      const svc = services.find((s) => s.name === r.service);
      return svc !== undefined && (want !== null ? svc.name === want : profileOf(svc) === 'camera');
    });
    if (route === undefined) return undefined;
    return { url: `${route.path}?action=snapshot`, kind };
  }

  /** Serves an authorized request: fan-out, snapshot, stats, or a plain forward. */
  handle(w: WebcamRequest): void {
    if (w.relayPath === 'stats') {
      this.sendStats(w);
      return;
    }
    if (this.closed || w.req.method !== 'GET') {
      w.forward();
      return;
    }
    const auth = w.service.passAuthorization === true ? w.req.headers.authorization : undefined;
    const t = webcamTarget(w.service, w.deviceId, w.target, auth);
    if (t === undefined) {
      w.forward();
      return;
    }
    if (t.kind === 'snapshot') {
      this.snapshot(w, t);
      return;
    }
    const existing = this.channels.get(t.key);
    if (existing !== undefined) {
      existing.add(this.viewer(w, t, existing));
      w.req.resume();
      return;
    }
    if (t.kind === 'maybe') {
      // Not a known stream URL: forward, and take the response over if it is MJPEG.
      w.forward((proxyReq, proxyRes) => this.adopt(w, t, proxyReq, proxyRes));
      return;
    }
    const ch = this.open(w, t);
    ch.add(this.viewer(w, t, ch));
    w.req.resume();
    ch.start();
  }

  private adopt(w: WebcamRequest, t: WebcamTarget, proxyReq: http.ClientRequest, proxyRes: http.IncomingMessage): boolean {
    if (this.closed || w.res.destroyed || !isMultipartReplace(proxyRes.headers['content-type'])) return false;
    let ch = this.channels.get(t.key);
    if (ch !== undefined) {
      // Another viewer opened the same camera meanwhile: join it, drop this pull.
      proxyRes.destroy();
      proxyReq.destroy();
    } else {
      ch = this.open(w, t);
      ch.adopt(proxyReq, proxyRes, w.tunnel);
    }
    ch.add(this.viewer(w, t, ch));
    return true;
  }

  private open(w: WebcamRequest, t: WebcamTarget): CameraChannel {
    const ch = new CameraChannel({
      key: t.key,
      deviceId: w.deviceId,
      slug: w.slug,
      service: w.service.name,
      upstream: t.upstream,
      headers: { ...w.headers },
      tunnel: this.deps.tunnel,
      settings: this.o,
      log: this.deps.log,
      now: this.now,
      hubTotals: this.hubTotals,
      onClosed: (c) => {
        if (this.channels.get(c.key) === c) this.channels.delete(c.key);
        this.retired.delivered += c.totals.delivered;
        this.retired.dropped += c.totals.dropped;
        this.retired.skipped += c.totals.skipped;
      },
    });
    this.channels.set(t.key, ch);
    this.deps.log.debug({ device: w.slug, service: w.service.name, path: t.upstream }, 'camera upstream opened');
    return ch;
  }

  private viewer(w: WebcamRequest, t: WebcamTarget, ch: CameraChannel): Viewer {
    const fps = t.fps ?? (w.role === 'viewer' && this.o.viewerFps > 0 ? this.o.viewerFps : undefined);
    const v = new Viewer(w.res, { fps, now: this.now, totals: ch.totals, meter: ch.deliveredMeter, ownMeter: new RateMeter(this.now, 5_000, 512) });
    v.fallback = () => w.forward();
    return v;
  }

  /** The newest frame of a live stream of this camera, else one request to the camera. */
  private snapshot(w: WebcamRequest, t: WebcamTarget): void {
    let ch = this.channels.get(t.streamKey);
    if (ch?.snapshot() === undefined && profileOf(w.service) === 'camera') {
      // Any live stream of the same camera service will do.
      const prefix = servicePrefix(w.deviceId, w.service.name);
      for (const c of this.channels.values()) {
        if (c.key.startsWith(prefix) && c.snapshot() !== undefined && c.snapshot()?.placeholder === undefined) {
          ch = c;
          break;
        }
      }
    }
    const frame = ch?.snapshot();
    if (frame === undefined) {
      w.forward();
      return;
    }
    w.req.resume();
    w.res.writeHead(frame.placeholder !== undefined ? 503 : 200, {
      'content-type': 'image/jpeg',
      'content-length': frame.jpeg.length,
      'cache-control': 'no-store, no-cache, must-revalidate, max-age=0',
      'x-content-type-options': 'nosniff',
      'x-porthole-snapshot': frame.placeholder !== undefined ? `placeholder; ${frame.placeholder} offline` : 'live',
      ...(frame.placeholder !== undefined ? { 'retry-after': '5' } : {}),
    });
    w.res.end(frame.jpeg);
  }

  private sendStats(w: WebcamRequest): void {
    w.req.resume();
    const allowed = w.role === 'owner' || w.role === 'operator';
    const body = JSON.stringify(allowed ? this.stats(w.deviceId) : { error: { code: 'RELAY_FORBIDDEN', message: 'webcam statistics are for the owner and operators' } });
    w.res.writeHead(allowed ? 200 : 403, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    w.res.end(body);
  }

  /**
   * Viewers per camera, upstream and delivered frame rates, dropped frames; counters are totals
   * since the relay started (including cameras already closed). For metrics and the owner's
   * `/_porthole/webcam`.
   */
  stats(deviceId?: string): WebcamStats {
    const cameras = [...this.channels.values()].filter((c) => deviceId === undefined || c.deviceId === deviceId).map((c) => c.stats());
    const all = [...this.channels.values()];
    const sum = (f: (c: CameraChannel) => number) => all.reduce((a, c) => a + f(c), 0);
    const t = deviceId === undefined ? cameras : all.map((c) => c.stats());
    return {
      cameras,
      totals: {
        cameras: all.length,
        viewers: sum((c) => c.viewers.size),
        upstreamFps: Math.round(t.reduce((a, c) => a + c.upstreamFps, 0) * 100) / 100,
        deliveredFps: Math.round(t.reduce((a, c) => a + c.deliveredFps, 0) * 100) / 100,
        ...this.hubTotals,
        delivered: this.retired.delivered + sum((c) => c.totals.delivered),
        dropped: this.retired.dropped + sum((c) => c.totals.dropped),
        skipped: this.retired.skipped + sum((c) => c.totals.skipped),
      },
    };
  }

  /** Shutdown: every upstream closes and every viewer's stream ends. */
  close(): void {
    this.closed = true;
    for (const c of [...this.channels.values()]) c.close('relay shutting down', true);
    this.channels.clear();
  }
}
