import http from 'node:http';
import type { Logger } from 'pino';
import type { HeaderMap } from '../proxy/headers.js';
import { OpenStreamError, type DeviceTunnel } from '../tunnel/device-tunnel.js';
import { makeFrame, type Frame } from './frame.js';
import { boundaryOf, isMultipartReplace, MjpegParser } from './parser.js';
import { placeholderJpeg, type PlaceholderReason } from './placeholder.js';
import { RateMeter } from './rate.js';
import type { DeliveryTotals, Viewer } from './viewer.js';

export interface ChannelSettings {
  /** Keep the upstream this long after the last viewer left. */
  graceMs: number;
  /** No frame for this long: the camera is stuck; reconnect. */
  stallMs: number;
  /** Reconnect backoff (doubling, jittered) while the camera or printer is away. */
  retryMinMs: number;
  retryMaxMs: number;
  /** How often viewers get the placeholder again while the camera is away. */
  placeholderEveryMs: number;
  /** Time for the camera to answer a (re)connect with its response head. */
  connectTimeoutMs: number;
  maxFrameBytes: number;
}

export interface ChannelInit {
  key: string;
  deviceId: string;
  slug: string;
  service: string;
  /** Path and query the camera is asked for. */
  upstream: string;
  /** Request headers (those of the viewer who opened it) for every (re)connect. */
  headers: HeaderMap;
  /** The device's current tunnel: after a reconnect of the printer it is a new one. */
  tunnel: (deviceId: string) => DeviceTunnel | undefined;
  settings: ChannelSettings;
  log: Logger;
  now: () => number;
  /** Hub-wide totals, updated as frames arrive and are delivered. */
  hubTotals: HubTotals;
  onClosed: (channel: CameraChannel) => void;
}

export interface HubTotals {
  framesIn: number;
  bytesIn: number;
  corrupt: number;
  reconnects: number;
}

export type ChannelState = 'connecting' | 'live' | 'offline' | 'closed';

export interface CameraStats {
  device: string;
  slug: string;
  service: string;
  path: string;
  state: ChannelState;
  /** Why there is no picture, while offline. */
  offline?: PlaceholderReason;
  viewers: number;
  /** Frames per second arriving from the camera (last 5 s). */
  upstreamFps: number;
  /** Bytes per second arriving from the camera (last 5 s average over frames). */
  upstreamBytesPerSec: number;
  /** Frames per second written to all viewers together (last 5 s). */
  deliveredFps: number;
  framesIn: number;
  bytesIn: number;
  corrupt: number;
  delivered: number;
  dropped: number;
  skipped: number;
  reconnects: number;
  /** Size of the latest frame. */
  frameBytes: number;
  perViewer: {
    id: number;
    since: string;
    fps: number | null;
    deliveredFps: number;
    delivered: number;
    dropped: number;
    skipped: number;
    bufferedBytes: number;
    heldBytes: number;
  }[];
}

/**
 * One camera behind one device, pulled once through the tunnel and handed to every viewer.
 *
 * connecting ─▶ live ─▶ offline (placeholder, retry with backoff) ─▶ live …
 *       │                                            ▲
 *       └──── no stream at this URL: every waiting viewer is forwarded as a plain request
 *
 * The upstream is read as fast as it comes (never paused: a slow viewer drops frames instead), so
 * its only memory is the parser's one partial frame. When the last viewer leaves, the upstream
 * stays `graceMs` longer (a page reload should not cost a reconnect), then closes.
 */
export class CameraChannel {
  state: ChannelState = 'connecting';
  readonly viewers = new Set<Viewer>();
  readonly totals: DeliveryTotals = { delivered: 0, dropped: 0, skipped: 0 };
  readonly deliveredMeter: RateMeter;
  private readonly upMeter: RateMeter;
  private latest: Frame | undefined;
  private placeholder: Frame | undefined;
  private offlineReason: PlaceholderReason | undefined;
  private seq = 0;
  private everLive = false;
  private attempts = 0;
  private upstreamReq: http.ClientRequest | undefined;
  private upstreamRes: http.IncomingMessage | undefined;
  private lastFrameAt = 0;
  /** The tunnel the current upstream runs through. */
  private tunnelNow: DeviceTunnel | undefined;
  private framesIn = 0;
  private bytesIn = 0;
  private corrupt = 0;
  private reconnects = 0;
  private graceTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private placeholderTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private readonly s: ChannelSettings;

  constructor(private readonly o: ChannelInit) {
    this.s = o.settings;
    this.upMeter = new RateMeter(o.now);
    this.deliveredMeter = new RateMeter(o.now, 5_000, 8192);
  }

  get key(): string {
    return this.o.key;
  }

  get deviceId(): string {
    return this.o.deviceId;
  }

  get service(): string {
    return this.o.service;
  }

  /** Pulls the stream itself (a known stream URL). */
  start(): void {
    this.connect();
  }

  /** Takes over a stream the proxy already opened (a multipart response on a camera route). */
  adopt(req: http.ClientRequest, res: http.IncomingMessage, tunnel: DeviceTunnel): void {
    this.upstreamReq = req;
    req.on('error', (err: Error) => {
      if (req === this.upstreamReq) this.fail(reasonOf(err, tunnel), err.message);
    });
    req.on('timeout', () => undefined);
    this.attach(req, res, tunnel);
  }

  /** A new viewer. Until the first answer from the camera it waits (headers not sent). */
  add(viewer: Viewer): void {
    if (this.graceTimer !== undefined) {
      clearTimeout(this.graceTimer);
      this.graceTimer = undefined;
    }
    this.viewers.add(viewer);
    viewer.res.once('close', () => this.remove(viewer));
    if (this.state === 'connecting') return;
    viewer.start();
    if (this.state === 'live' && this.latest !== undefined && this.o.now() - this.latest.at < this.s.stallMs) viewer.offer(this.latest);
    else if (this.state === 'offline' && this.placeholder !== undefined) viewer.offer(this.placeholder);
  }

  remove(viewer: Viewer): void {
    if (!this.viewers.delete(viewer)) return;
    viewer.close();
    if (this.viewers.size > 0 || this.state === 'closed') return;
    if (this.state !== 'live') {
      this.close('no viewers left');
      return;
    }
    this.graceTimer = setTimeout(() => this.close('no viewers left'), this.s.graceMs);
    this.graceTimer.unref();
  }

  /** The newest picture for a snapshot: a live frame, or the placeholder while offline. */
  snapshot(): Frame | undefined {
    if (this.state === 'live' && this.latest !== undefined && this.o.now() - this.latest.at < this.s.stallMs) return this.latest;
    if (this.state === 'offline') return this.placeholder;
    return undefined;
  }

  private connect(): void {
    if (this.state === 'closed') return;
    const tunnel = this.o.tunnel(this.o.deviceId);
    if (tunnel === undefined || tunnel.closed) {
      this.fail('device', 'the printer is offline');
      return;
    }
    const req = http.request({
      agent: tunnel.agentFor(this.o.service),
      method: 'GET',
      path: this.o.upstream,
      headers: this.o.headers,
      setHost: false,
    });
    this.upstreamReq = req;
    const timer = setTimeout(() => {
      req.destroy(new OpenStreamError('timeout', `no answer from the camera within ${this.s.connectTimeoutMs} ms`));
    }, this.s.connectTimeoutMs);
    timer.unref();
    req.on('response', (res) => {
      clearTimeout(timer);
      if (req !== this.upstreamReq) {
        res.destroy();
        return;
      }
      if (!isMultipartReplace(res.headers['content-type'])) {
        res.resume();
        req.destroy();
        this.upstreamReq = undefined;
        if (!this.everLive) {
          this.notAStream(res.statusCode ?? 0);
          return;
        }
        this.fail('camera', `the camera answered ${res.statusCode} ${res.headers['content-type'] ?? ''}`);
        return;
      }
      this.attach(req, res, tunnel);
    });
    req.on('error', (err: Error) => {
      clearTimeout(timer);
      if (req === this.upstreamReq) this.fail(reasonOf(err, tunnel), err.message);
    });
    // The tunnel's idle keep-alive timer fires on long requests too: the stall check decides.
    req.on('timeout', () => undefined);
    req.end();
  }

  private attach(req: http.ClientRequest, res: http.IncomingMessage, tunnel: DeviceTunnel): void {
    this.upstreamReq = req;
    this.upstreamRes = res;
    this.tunnelNow = tunnel;
    const parser = new MjpegParser(boundaryOf(res.headers['content-type']), { maxFrameBytes: this.s.maxFrameBytes });
    if (this.state === 'offline') this.o.log.info({ device: this.o.slug, path: this.o.upstream }, 'camera back');
    this.state = 'live';
    this.everLive = true;
    this.attempts = 0;
    this.offlineReason = undefined;
    this.lastFrameAt = this.o.now();
    this.stopPlaceholder();
    for (const v of this.viewers) v.start();
    res.on('data', (chunk: Buffer) => {
      if (res !== this.upstreamRes) return;
      this.bytesIn += chunk.length;
      this.o.hubTotals.bytesIn += chunk.length;
      const before = parser.stats.corrupt;
      const frames = parser.push(chunk);
      if (parser.stats.corrupt !== before) {
        this.corrupt += parser.stats.corrupt - before;
        this.o.hubTotals.corrupt += parser.stats.corrupt - before;
      }
      for (const jpeg of frames) this.publish(jpeg);
    });
    const lost = (why: string) => {
      if (res === this.upstreamRes) this.fail(tunnel.closed ? 'device' : 'camera', why);
    };
    res.on('end', () => lost('the camera ended the stream'));
    res.on('error', (err: Error) => lost(err.message));
    res.on('close', () => lost('the stream from the camera closed'));
    if (this.stallTimer === undefined) {
      this.stallTimer = setInterval(() => {
        if (this.state === 'live' && this.o.now() - this.lastFrameAt > this.s.stallMs) {
          this.fail(this.tunnelNow?.closed === true ? 'device' : 'camera', `no frame for ${this.s.stallMs} ms`);
        }
      }, Math.min(1_000, Math.max(50, this.s.stallMs / 4)));
      this.stallTimer.unref();
    }
  }

  private publish(jpeg: Buffer): void {
    const now = this.o.now();
    const frame = makeFrame(++this.seq, jpeg, now);
    this.latest = frame;
    this.lastFrameAt = now;
    this.framesIn++;
    this.o.hubTotals.framesIn++;
    this.upMeter.mark();
    for (const v of this.viewers) v.offer(frame);
  }

  /** The URL answered without a stream: every waiting viewer gets a plain proxied request. */
  private notAStream(status: number): void {
    this.o.log.debug({ device: this.o.slug, path: this.o.upstream, status }, 'not a camera stream, forwarding');
    const waiting = [...this.viewers];
    this.viewers.clear();
    this.close('not a stream');
    for (const v of waiting) {
      v.close();
      if (!v.res.destroyed) v.fallback?.();
    }
  }

  private fail(reason: PlaceholderReason, detail: string): void {
    if (this.state === 'closed') return;
    this.dropUpstream();
    if (this.viewers.size === 0) {
      this.close(detail);
      return;
    }
    if (this.state !== 'offline' || this.offlineReason !== reason) {
      this.o.log.info({ device: this.o.slug, path: this.o.upstream, reason, detail }, 'camera unavailable, showing a placeholder');
    }
    this.state = 'offline';
    this.offlineReason = reason;
    for (const v of this.viewers) v.start();
    this.showPlaceholder();
    if (this.placeholderTimer === undefined) {
      this.placeholderTimer = setInterval(() => this.showPlaceholder(), this.s.placeholderEveryMs);
      this.placeholderTimer.unref();
    }
    const delay = Math.min(this.s.retryMaxMs, this.s.retryMinMs * 2 ** this.attempts) * (0.5 + Math.random() * 0.5);
    this.attempts++;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.reconnects++;
      this.o.hubTotals.reconnects++;
      this.connect();
    }, delay);
    this.retryTimer.unref();
  }

  private showPlaceholder(): void {
    const reason = this.offlineReason ?? 'camera';
    this.placeholder = makeFrame(++this.seq, placeholderJpeg(reason), this.o.now(), reason);
    for (const v of this.viewers) v.offer(this.placeholder);
  }

  private stopPlaceholder(): void {
    if (this.placeholderTimer !== undefined) clearInterval(this.placeholderTimer);
    this.placeholderTimer = undefined;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private dropUpstream(): void {
    const req = this.upstreamReq;
    const res = this.upstreamRes;
    this.upstreamReq = undefined;
    this.upstreamRes = undefined;
    // Destroying the request resets its tunnel stream: the agent closes its connection to the camera.
    res?.destroy();
    req?.destroy();
  }

  /** Ends the channel: the upstream closes; `endViewers` also ends their responses (shutdown). */
  close(why: string, endViewers = false): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    for (const t of [this.graceTimer, this.retryTimer]) if (t !== undefined) clearTimeout(t);
    for (const t of [this.placeholderTimer, this.stallTimer]) if (t !== undefined) clearInterval(t);
    this.graceTimer = this.retryTimer = this.placeholderTimer = this.stallTimer = undefined;
    this.dropUpstream();
    for (const v of this.viewers) v.close(endViewers);
    this.viewers.clear();
    this.latest = undefined;
    this.o.log.debug({ device: this.o.slug, path: this.o.upstream, why }, 'camera upstream closed');
    this.o.onClosed(this);
  }

  stats(): CameraStats {
    const rate = this.upMeter.rate();
    return {
      device: this.o.deviceId,
      slug: this.o.slug,
      service: this.o.service,
      path: this.o.upstream,
      state: this.state,
      ...(this.offlineReason !== undefined ? { offline: this.offlineReason } : {}),
      viewers: this.viewers.size,
      upstreamFps: round(rate),
      upstreamBytesPerSec: Math.round(this.framesIn > 0 ? (rate * this.bytesIn) / this.framesIn : 0),
      deliveredFps: round(this.deliveredMeter.rate()),
      framesIn: this.framesIn,
      bytesIn: this.bytesIn,
      corrupt: this.corrupt,
      delivered: this.totals.delivered,
      dropped: this.totals.dropped,
      skipped: this.totals.skipped,
      reconnects: this.reconnects,
      frameBytes: this.latest?.jpeg.length ?? 0,
      perViewer: [...this.viewers].map((v) => ({
        id: v.id,
        since: new Date(v.joinedAt).toISOString(),
        fps: v.fps ?? null,
        deliveredFps: round(v.deliveredFps),
        delivered: v.delivered,
        dropped: v.dropped,
        skipped: v.skipped,
        bufferedBytes: v.bufferedBytes,
        heldBytes: v.heldBytes,
      })),
    };
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function reasonOf(err: Error, tunnel: DeviceTunnel): PlaceholderReason {
  if (err instanceof OpenStreamError && err.kind === 'offline') return 'device';
  return tunnel.closed ? 'device' : 'camera';
}
