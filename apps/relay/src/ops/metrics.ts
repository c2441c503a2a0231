import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { AuditKind } from '../accounts/audit.js';
import type { TunnelRegistry } from '../tunnel/registry.js';

/**
 * The relay's Prometheus metrics, on a registry of its own (two relays in one test process do not
 * share series). The hot paths only add to numbers: bytes are read from each tunnel socket's own
 * counters when it closes and at scrape time; gauges are computed at scrape time from the live
 * state (tunnel registry, webcam hub, TLS status).
 */

/** Read at scrape time; each source is optional (the webcam hub or TLS may not exist). */
export interface MetricsSources {
  tunnels: TunnelRegistry;
  /** Webcam fan-out: cameras pulled and viewers watching right now. */
  webcam?: () => { cameras: number; viewers: number };
}

/** The served certificate's end of validity (TLS status); undefined while there is none. */
export type CertificateSource = () => { notAfter: Date | undefined } | undefined;

export type AuthFailureKind = 'login' | 'share' | 'agent';
export type RequestTarget = 'relay' | 'device';

const START = Symbol('porthole.requestStart');
const TARGET = Symbol('porthole.requestTarget');
type Timed = ServerResponse & { [START]?: number; [TARGET]?: number };

const CERT_EXPIRY = 'porthole_tls_certificate_expiry_timestamp_seconds';
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const TARGETS: readonly RequestTarget[] = ['relay', 'device'];

export class RelayMetrics {
  readonly registry = new Registry();
  private readonly liveSockets = new Set<Duplex>();
  /** Bytes of tunnel sockets already closed. */
  private closedIn = 0;
  private closedOut = 0;
  private readonly authFailures: Counter<'kind'>;
  private readonly lockoutCounter: Counter;
  /** [target][status class] → bound observe. */
  private readonly observe: Array<Array<(seconds: number) => void>>;
  private readonly onFinish: (this: Timed) => void;

  constructor(private readonly sources: MetricsSources) {
    const register = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    new Gauge({
      name: 'porthole_agents_connected',
      help: 'Agents (printers) with a tunnel to this relay.',
      registers: register,
      collect() {
        this.set(sources.tunnels.size);
      },
    });
    new Gauge({
      name: 'porthole_streams_open',
      help: 'Streams open inside all tunnels (HTTP keep-alive connections, WebSockets, camera pulls).',
      registers: register,
      collect() {
        let n = 0;
        for (const t of sources.tunnels.all()) if (!t.closed) n += t.session.streamCount;
        this.set(n);
      },
    });
    const traffic = (): { in: number; out: number } => {
      let inBytes = this.closedIn;
      let outBytes = this.closedOut;
      for (const s of this.liveSockets) {
        inBytes += (s as Socket).bytesRead ?? 0;
        outBytes += (s as Socket).bytesWritten ?? 0;
      }
      return { in: inBytes, out: outBytes };
    };
    new Counter({
      name: 'porthole_tunnel_bytes_total',
      help: 'Bytes on agent tunnel connections (WebSocket and tunnel framing included): from_agent is the printer to the phones, to_agent the other way.',
      labelNames: ['direction'],
      registers: register,
      collect() {
        const t = traffic();
        this.reset();
        this.inc({ direction: 'from_agent' }, t.in);
        this.inc({ direction: 'to_agent' }, t.out);
      },
    });
    const latency = new Histogram({
      name: 'porthole_http_request_duration_seconds',
      help: 'Time from request to the end of the response, for the relay\'s own pages and API (relay) and requests carried to printers (device). Long streams count when they end; WebSockets not at all.',
      labelNames: ['target', 'code'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
      registers: register,
    });
    this.observe = TARGETS.map((target) => CLASSES.map((code) => latency.labels(target, code).observe));
    this.authFailures = new Counter({
      name: 'porthole_auth_failures_total',
      help: 'Refused authentication: login (wrong password, code or a locked account), share (an unknown, expired or revoked share link), agent (an unknown or revoked device credential).',
      labelNames: ['kind'],
      registers: register,
    });
    for (const kind of ['login', 'share', 'agent'] as const) this.authFailures.inc({ kind }, 0);
    this.lockoutCounter = new Counter({
      name: 'porthole_login_lockouts_total',
      help: 'Accounts or addresses locked out after repeated failed logins.',
      registers: register,
    });
    if (sources.webcam !== undefined) {
      const webcam = sources.webcam;
      new Gauge({
        name: 'porthole_webcam_viewers',
        help: 'Viewers watching a camera through the relay\'s fan-out.',
        registers: register,
        collect() {
          this.set(webcam().viewers);
        },
      });
      new Gauge({
        name: 'porthole_webcam_cameras',
        help: 'Cameras the relay pulls from printers (one upstream each, whatever the viewers).',
        registers: register,
        collect() {
          this.set(webcam().cameras);
        },
      });
    }
    const observe = this.observe;
    this.onFinish = function (this: Timed) {
      const start = this[START];
      if (start === undefined) return;
      const cls = Math.floor(this.statusCode / 100) - 1;
      observe[this[TARGET] ?? 0]![cls >= 0 && cls < 5 ? cls : 4]!((performance.now() - start) / 1000);
    };
  }

  /** TLS is on: expose when the served certificate expires. Called once, by whatever serves TLS. */
  watchCertificate(certificate: CertificateSource): void {
    if (this.registry.getSingleMetric(CERT_EXPIRY) !== undefined) throw new Error('certificate already watched');
    new Gauge({
      name: CERT_EXPIRY,
      help: 'When the served certificate expires (Unix time); 0 while there is none, so an alert on it minus time() fires then too.',
      registers: [this.registry],
      collect() {
        const at = certificate()?.notAfter;
        this.set(at === undefined ? 0 : Math.floor(at.getTime() / 1000));
      },
    });
  }

  /** Times one request until its response finishes; `target` says whose it is. */
  timeRequest(res: ServerResponse, target: RequestTarget): void {
    const r = res as Timed;
    r[START] = performance.now();
    r[TARGET] = target === 'device' ? 1 : 0;
    res.on('finish', this.onFinish);
  }

  /** Counts the bytes of an agent tunnel's connection, for as long as it lives. */
  trackTunnelSocket(socket: Duplex): void {
    if (this.liveSockets.has(socket)) return;
    this.liveSockets.add(socket);
    socket.once('close', () => {
      this.liveSockets.delete(socket);
      this.closedIn += (socket as Socket).bytesRead ?? 0;
      this.closedOut += (socket as Socket).bytesWritten ?? 0;
    });
  }

  authFailure(kind: AuthFailureKind): void {
    this.authFailures.inc({ kind });
  }

  lockout(): void {
    this.lockoutCounter.inc();
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** Which requests the relay's own HTTP server times: the relay's domain, or a device's host. */
export function requestTarget(req: IncomingMessage, domain: string): RequestTarget {
  const host = req.headers.host ?? '';
  const colon = host.lastIndexOf(':');
  const name = (colon > host.lastIndexOf(']') ? host.slice(0, colon) : host).toLowerCase();
  return name.endsWith(`.${domain}`) ? 'device' : 'relay';
}

/** Counts authentication failures and lockouts from the audit log's events. */
export function countAuditEvents(metrics: RelayMetrics): (kind: AuditKind) => void {
  return (kind) => {
    if (kind === AuditKind.LoginFailed) metrics.authFailure('login');
    else if (kind === AuditKind.ShareRefused) metrics.authFailure('share');
    else if (kind === AuditKind.LoginLocked) metrics.lockout();
  };
}
