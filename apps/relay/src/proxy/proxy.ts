import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { HelloService } from '@porthole/protocol';
import { WsClientFilter, WsServerGate } from '../access/ws-filter.js';
import type { DeviceTunnel } from '../tunnel/device-tunnel.js';
import { OpenStreamError } from '../tunnel/device-tunnel.js';
import type { TunnelRegistry } from '../tunnel/registry.js';
import type { AdoptHook, WebcamHub } from '../webcam/hub.js';
import { checkedPath } from './host.js';
import { clientAddress, forwardHeaders, requestHead, responseHeaders } from './headers.js';
import { errorPage, offlinePage, page, sendPage } from './pages.js';

/** What the proxy needs to know about a device that is not connected. */
export interface DeviceLookup {
  findBySlug(slug: string): Promise<{ id: string; name: string; offlineSince: Date | null } | null>;
}

/** The access decision for one request to a device. The accounts layer supplies it. */
export type Decision =
  | {
      allow: true;
      role?: string;
      /** Keep a long-lived exchange cuttable: `cut` runs when its session ends. Returns an untrack. */
      track?: (cut: () => void) => () => void;
      /** Check each client message of this WebSocket (viewers on Moonraker). */
      wsFilter?: (text: string) => boolean;
      /** A refreshed session cookie to send with the response. */
      setCookie?: string;
    }
  | { allow: false; status: number; headers?: Record<string, string>; title: string; body: string };

export interface AccessContext {
  req: IncomingMessage;
  slug: string;
  deviceId: string;
  /** The path and query as the printer will see them (after a route's prefix is stripped). */
  path: string;
  query: string;
  service: HelloService;
  upgrade: boolean;
}

/** One hook decides every request that would reach a printer; deny unless it says allow. */
export type Authorize = (ctx: AccessContext) => Decision | Promise<Decision>;

export interface ProxyOptions {
  registry: TunnelRegistry;
  devices: DeviceLookup;
  authorize: Authorize;
  log: Logger;
  trustProxy: boolean;
  /** Time to wait for the printer's response headers. */
  responseTimeoutMs: number;
  /** Paths under /_porthole/ on a device host belong to the relay (handoff, share links): never
   * forwarded. Return true when handled. */
  relayPaths?: (req: IncomingMessage, res: ServerResponse, slug: string) => Promise<boolean>;
  /** The webcam fan-out: camera streams and snapshots after authorization (src/webcam/). */
  webcam?: WebcamHub;
}

export interface Proxy {
  handleRequest(req: IncomingMessage, res: ServerResponse, slug: string): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, slug: string): void;
  /** Requests in flight, for graceful shutdown. */
  readonly inFlight: number;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The log calls a request makes, always as (fields, message). */
type LogCall = (fields: object, msg: string) => void;
export interface RequestLog {
  debug: LogCall;
  info: LogCall;
  warn: LogCall;
  error: LogCall;
}

/**
 * A request's logger (reqId, device) made on its first line: most requests log nothing, and a
 * pino child (with its redaction set up) plus a UUID for every request cost the relay measurable
 * CPU per request under small-request load (bench/proxy).
 */
function requestLog(log: Logger, slug: string): RequestLog {
  let child: Logger | undefined;
  const c = (): Logger => (child ??= log.child({ reqId: randomUUID(), device: slug }));
  return {
    debug: (fields, msg) => c().debug(fields, msg),
    info: (fields, msg) => c().info(fields, msg),
    warn: (fields, msg) => c().warn(fields, msg),
    error: (fields, msg) => c().error(fields, msg),
  };
}

/** Seconds a phone is asked to wait when a device is at its cap of concurrent exchanges. */
const BUSY_RETRY_AFTER = '5';

/** The page for an exchange refused at the device's cap (`tryAcquire` gave nothing), logged. */
function busyPage(tunnel: DeviceTunnel, rlog: RequestLog): ReturnType<typeof errorPage> {
  rlog.warn({ active: tunnel.activeExchanges }, 'device at its cap of concurrent exchanges');
  return errorPage('busy', tunnel.info.name, '');
}

/**
 * The proxy as a list of small passes (node-http-proxy's idea): check the path, find the tunnel
 * (or say the printer is offline), decide access, route by prefix, forward headers, stream both
 * ways with backpressure, and turn every failure into a page the phone can read.
 */
export function createProxy(opts: ProxyOptions): Proxy {
  const { registry, log } = opts;
  let inFlight = 0;

  async function offline(slug: string): Promise<{ status: number; title: string; body: string; headers?: Record<string, string> }> {
    const device = await opts.devices.findBySlug(slug).catch(() => null);
    if (device === null) {
      return { status: 404, title: 'No such printer', body: '<h1>No such printer</h1><p>No device uses this address.</p>' };
    }
    const since = registry.lastOffline(device.id) ?? device.offlineSince ?? undefined;
    const p = offlinePage(device.name, since);
    return { status: 503, title: p.title, body: p.body, headers: { 'retry-after': '10' } };
  }

  /** Shared front half of both paths: path check, tunnel, access, route. */
  async function resolve(
    req: IncomingMessage,
    slug: string,
    upgrade: boolean,
    url: string = req.url ?? '/',
  ): Promise<
    | {
        ok: true;
        tunnel: DeviceTunnel;
        service: ReturnType<DeviceTunnel['route']> & object;
        target: string;
        decision: Extract<Decision, { allow: true }>;
      }
    | { ok: false; status: number; title: string; body: string; headers?: Record<string, string> }
  > {
    const checked = checkedPath(url);
    if (checked === undefined) {
      return { ok: false, status: 400, title: 'Bad request', body: '<h1>Bad request</h1><p>This address is not allowed.</p>' };
    }
    const tunnel = registry.getBySlug(slug);
    if (tunnel === undefined) {
      // Offline: the page names the device, so it too is only for someone allowed to see it.
      const device = await opts.devices.findBySlug(slug).catch(() => null);
      if (device !== null) {
        const gate = await opts.authorize({ req, slug, deviceId: device.id, path: checked.path, query: checked.query, service: { name: 'offline' }, upgrade });
        if (!gate.allow) return { ok: false, ...gate };
      }
      return { ok: false, ...(await offline(slug)) };
    }
    const routed = tunnel.route(checked.path);
    let path = checked.path;
    if (routed !== undefined && routed.route.stripPrefix === true) {
      path = path.length >= routed.route.path.length ? `/${path.slice(routed.route.path.length)}` : '/';
    }
    const decision = await opts.authorize({
      req,
      slug,
      deviceId: tunnel.info.deviceId,
      path,
      query: checked.query,
      service: routed?.service ?? { name: 'none' },
      upgrade,
    });
    if (!decision.allow) return { ok: false, ...decision };
    if (routed === undefined) {
      return { ok: false, status: 404, title: 'Not found', body: '<h1>Not found</h1><p>No route on this printer for this path.</p>' };
    }
    return { ok: true, tunnel, service: routed, target: path + checked.query, decision };
  }

  function handleRequest(req: IncomingMessage, res: ServerResponse, slug: string): void {
    const rlog = requestLog(log, slug);
    inFlight++;
    res.once('close', () => inFlight--);
    const relayOwned = (req.url ?? '').startsWith('/_porthole/') && opts.relayPaths !== undefined;
    (relayOwned ? opts.relayPaths!(req, res, slug) : Promise.resolve(false))
      .then(async (handled) => {
        if (handled) return;
        // The relay's webcam endpoints stand for the device's camera URL, with its access rules.
        const alias = relayOwned ? opts.webcam?.relayAlias(req.url ?? '/', registry.getBySlug(slug)) : undefined;
        if (relayOwned && alias === undefined) {
          sendPage(res, 404, 'Not found', '<h1>Not found</h1>');
          return;
        }
        const r = await resolve(req, slug, false, alias?.url);
        if (!r.ok) {
          sendPage(res, r.status, r.title, r.body, r.headers);
          req.resume();
          return;
        }
        if (r.decision.setCookie !== undefined) res.appendHeader('set-cookie', r.decision.setCookie);
        if (r.decision.track !== undefined) {
          const untrack = r.decision.track(() => {
            req.destroy();
            res.destroy();
          });
          res.once('close', untrack);
        }
        const headers = forwardHeaders(req, { service: r.service.service, trustProxy: opts.trustProxy });
        const fwd = (adopt?: AdoptHook) => {
          // The device's cap on exchanges in flight: beyond it a clear 503, not an unbounded queue.
          const release = r.tunnel.tryAcquire();
          if (release === undefined) {
            const p = busyPage(r.tunnel, rlog);
            sendPage(res, p.status, p.title, p.body, { 'retry-after': BUSY_RETRY_AFTER });
            req.resume();
            return;
          }
          res.once('close', release);
          forward(req, res, r.tunnel, r.service.service.name, r.target, headers, rlog, true, adopt);
        };
        if (opts.webcam === undefined) fwd();
        else {
          opts.webcam.handle({
            req,
            res,
            deviceId: r.tunnel.info.deviceId,
            slug,
            tunnel: r.tunnel,
            service: r.service.service,
            target: r.target,
            headers,
            role: r.decision.role,
            relayPath: alias?.kind,
            forward: fwd,
          });
        }
      })
      .catch(
(e: Error) => {
        rlog.error({ err: e }, 'proxy failed');
        sendPage(res, 500, 'Relay error', '<h1>Something went wrong on the relay</h1>');
      });
  }

  function forward(
    req: IncomingMessage,
    res: ServerResponse,
    tunnel: DeviceTunnel,
    service: string,
    target: string,
    headers: Record<string, string | string[]>,
    rlog: RequestLog,
    mayRetry: boolean,
    /** The webcam fan-out may take the response over (then this exchange is no longer ours). */
    adopt?: AdoptHook,
  ): void {
    const method = req.method ?? 'GET';
    const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
    if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
    const proxyReq = http.request({
      agent: tunnel.agentFor(service),
      method,
      path: target,
      headers,
      setHost: false,
    });
    let responded = false;
    let adopted = false;
    const headersTimer = setTimeout(() => {
      proxyReq.destroy(new OpenStreamError('timeout', `no response within ${opts.responseTimeoutMs} ms`));
    }, opts.responseTimeoutMs);
    headersTimer.unref();

    proxyReq.on('response', (proxyRes) => {
      clearTimeout(headersTimer);
      responded = true;
      if (adopt !== undefined && adopt(proxyReq, proxyRes)) {
        adopted = true;
        return;
      }
      const outHeaders = responseHeaders(proxyRes.rawHeaders);
      const relayCookie = res.getHeader('set-cookie');
      if (relayCookie !== undefined) {
        res.removeHeader('set-cookie');
        for (const c of Array.isArray(relayCookie) ? relayCookie : [String(relayCookie)]) outHeaders.push('Set-Cookie', c);
      }
      res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, outHeaders);
      if (method === 'HEAD') res.flushHeaders();
      proxyRes.pipe(res);
      proxyRes.on('error', () => res.destroy());
      proxyRes.on('aborted', () => res.destroy());
      // A tunnel that breaks mid-body must not look like a complete response.
      proxyRes.on('close', () => {
        if (!proxyRes.complete) res.destroy();
      });
    });
    proxyReq.on('timeout', () => {
      /* idle keep-alive timer on an active request: the response-headers timer decides */
    });
    proxyReq.on('error', (err: Error & { code?: string }) => {
      clearTimeout(headersTimer);
      if (adopted) return;
      if (responded) {
        res.destroy();
        return;
      }
      // A reused keep-alive stream the printer closed just now: retry once when it is safe.
      // Never after our own response timeout: the printer did get the request, and a retry
      // would make the phone wait twice as long for the same 504.
      const timedOut = err instanceof OpenStreamError && err.kind === 'timeout';
      if (mayRetry && !timedOut && proxyReq.reusedSocket && IDEMPOTENT.has(method) && !hasBody && !res.headersSent && !req.destroyed) {
        rlog.debug({ err }, 'retrying on a fresh stream');
        forward(req, res, tunnel, service, target, headers, rlog, false, adopt);
        return;
      }
      const kind = err instanceof OpenStreamError ? err.kind : 'lost';
      if (kind !== 'lost') rlog.info({ kind, detail: err.message }, 'printer service unavailable');
      else rlog.warn({ err: err.message, code: err.code }, 'stream to printer failed');
      const p = kind === 'offline' ? { status: 503, ...offlinePage(tunnel.info.name, new Date()) } : errorPage(kind, tunnel.info.name, err.message);
      if (!res.headersSent) sendPage(res, p.status, p.title, p.body);
      else res.destroy();
    });

    // Client went away before the exchange finished: abort the printer's side too (RST through
    // the tunnel, then a reset TCP connection at the service).
    res.once('close', () => {
      if (!adopted && !res.writableFinished) proxyReq.destroy();
    });
    req.once('error', () => {
      if (!adopted) proxyReq.destroy();
    });
    req.once('close', () => {
      if (!adopted && !req.complete) proxyReq.destroy();
    });
    if (hasBody) req.pipe(proxyReq);
    else proxyReq.end();
  }

  function refuseUpgrade(socket: Duplex, status: number, title: string, body: string, extraHeaders = ''): void {
    const html = page(title, body);
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\nconnection: close\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(html)}\r\n${extraHeaders}\r\n${html}`,
    );
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, slug: string): void {
    const rlog = requestLog(log, slug);
    if ((req.url ?? '').startsWith('/_porthole/')) {
      refuseUpgrade(socket, 404, 'Not found', '<h1>Not found</h1>');
      return;
    }
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      refuseUpgrade(socket, 400, 'Bad request', '<h1>Only WebSocket upgrades are supported</h1>');
      return;
    }
    socket.on('error', () => socket.destroy());
    inFlight++;
    socket.once('close', () => inFlight--);
    resolve(req, slug, true)
      .then(async (r) => {
        if (!r.ok) {
          refuseUpgrade(socket, r.status, r.title, r.body);
          return;
        }
        const headers = forwardHeaders(req, { service: r.service.service, trustProxy: opts.trustProxy, upgrade: true });
        const filter = r.decision.wsFilter !== undefined ? new WsClientFilter(r.decision.wsFilter) : undefined;
        // A filtered socket must stay readable: no compression extension for the printer to accept.
        if (filter !== undefined) delete headers['sec-websocket-extensions'];
        const release = r.tunnel.tryAcquire();
        if (release === undefined) {
          const p = busyPage(r.tunnel, rlog);
          refuseUpgrade(socket, p.status, p.title, p.body, `retry-after: ${BUSY_RETRY_AFTER}\r\n`);
          return;
        }
        socket.once('close', release);
        let stream;
        try {
          stream = await r.tunnel.openStream(r.service.service.name, { via: 'websocket', remote: clientAddress(req) });
        } catch (e) {
          const err = e as OpenStreamError;
          const p = errorPage(err.kind ?? 'lost', r.tunnel.info.name, err.message);
          refuseUpgrade(socket, p.status, p.title, p.body);
          return;
        }
        if (socket.destroyed) {
          stream.destroy();
          return;
        }
        if (r.decision.track !== undefined) {
          const untrack = r.decision.track(() => {
            socket.destroy();
            stream.destroy();
          });
          socket.once('close', untrack);
        }
        stream.write(requestHead(req.method ?? 'GET', r.target, headers));
        // Both directions with backpressure; either side failing tears down the other
        // (a reset, never a clean close that could pass for a finished exchange).
        if (filter !== undefined) {
          // The printer's frames pass through a gate that knows their boundaries, so a refused
          // viewer gets a close frame with the reason's code (1008 policy, 1009 too big, 1002).
          const gate = new WsServerGate();
          const cut = () => {
            socket.destroy();
            stream.destroy();
          };
          filter.on('violation', (reason: string, code: number) => {
            rlog.warn({ reason, code }, 'viewer websocket message refused');
            socket.unpipe(filter);
            gate.once('end', () => stream.destroy());
            if (!gate.closeWith(code, reason)) cut();
            setTimeout(cut, 2_000).unref();
          });
          gate.on('error', cut);
          if (head.length > 0) filter.write(head);
          socket.pipe(filter).pipe(stream);
          stream.pipe(gate).pipe(socket);
        } else {
          if (head.length > 0) stream.write(head);
          socket.pipe(stream);
          stream.pipe(socket);
        }
        stream.on('error', () => socket.destroy());
        socket.on('error', () => stream.destroy());
        socket.on('close', () => {
          if (!stream.destroyed) stream.destroy();
        });
        stream.on('close', () => {
          if (!socket.destroyed) socket.end();
        });
      })
      .catch((e: Error) => {
        rlog.error({ err: e }, 'websocket proxy failed');
        socket.destroy();
      });
  }

  return {
    handleRequest,
    handleUpgrade,
    get inFlight() {
      return inFlight;
    },
  };
}
