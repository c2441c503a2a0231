import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { profileOf } from '../access/policy.js';
import { LiveConnections } from '../access/live.js';
import { RelayError } from '../errors.js';
import type { DeviceTunnel } from '../tunnel/device-tunnel.js';
import type { WebcamHub } from '../webcam/hub.js';
import { authOf, requireUser } from './auth-plugin.js';
import type { Auth, WebDeps } from './deps.js';
import { ANY_ROLE, requireRole } from './device-routes.js';
import { parse } from './http.js';

/** What the dashboard's webcam endpoints need from the relay: the fan-out and the live tunnels. */
export interface DashboardWebcam {
  hub: WebcamHub;
  tunnel: (deviceId: string) => DeviceTunnel | undefined;
}

/** A camera that sends no headers in this long is not answering. */
const CAMERA_HEADERS_TIMEOUT_MS = 15_000;
/** A camera snapshot is one JPEG: a few MB at most. */
const MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024;
/** The dashboard's own stream: a phone on cellular needs no more. */
const MAX_DASHBOARD_FPS = 15;
/** How often an open stream checks that its viewer still has a role on the device. */
const RECHECK_MS = 5_000;

const Params = z.object({ id: z.string().min(1).max(128) });
const StreamQuery = z.object({ fps: z.coerce.number().min(0.1).max(MAX_DASHBOARD_FPS).optional() }).loose();

/**
 * The webcam on the relay's own domain, for the dashboard's thumbnails and its printer page:
 *
 * - GET /api/devices/:id/snapshot: the newest frame (the fan-out cuts it from a live stream when
 *   one is open, else one request to the camera), for thumbnails that poll every few seconds;
 * - GET /api/devices/:id/webcam?fps=N: the MJPEG stream from the fan-out (one pull from the
 *   printer, shared with every other viewer), capped at 15 fps.
 *
 * Same rules as the device's own camera URLs: signed in, a member with any role (viewers get
 * the viewer frame-rate cap), the device not revoked. A stream is cut when its dashboard session
 * ends (sign-out, revoke) and when the viewer's membership goes (checked every few seconds).
 */
export async function webcamRoutes(api: FastifyInstance, deps: WebDeps): Promise<void> {
  const webcam = deps.webcam;
  if (webcam === undefined) return;
  const live = new LiveConnections();
  deps.sessions.on('revoked', (ids) => {
    live.cut(ids);
  });

  async function camera(req: FastifyRequest, auth: Auth) {
    const { id } = parse(Params, req.params);
    const { device, role } = await requireRole(deps, auth, id, ANY_ROLE);
    if (device.revokedAt !== null) throw new RelayError('RELAY_DEVICE_REVOKED', [device.slug]);
    const tunnel = webcam!.tunnel(device.id);
    if (tunnel === undefined) throw new RelayError('RELAY_DEVICE_OFFLINE', [device.name]);
    const alias = webcam!.hub.relayAlias('/_porthole/snapshot', tunnel);
    const snapshotUrl = alias?.url;
    const routed = snapshotUrl === undefined ? undefined : tunnel.route(snapshotUrl.split('?')[0]!);
    if (snapshotUrl === undefined || routed === undefined || profileOf(routed.service) !== 'camera') {
      throw new RelayError('RELAY_NOT_FOUND', [`no webcam is configured on ${device.name}`]);
    }
    const [path, query = ''] = snapshotUrl.split('?');
    const prefix = routed.route.path;
    const stripped = routed.route.stripPrefix === true ? `/${path!.slice(prefix.length)}` : path!;
    return { device, role, tunnel, service: routed.service, path: stripped, query };
  }

  function serve(req: FastifyRequest, reply: FastifyReply, cam: Awaited<ReturnType<typeof camera>>, target: string, auth: Auth, stream: boolean): void {
    reply.hijack();
    const res = reply.raw;
    const headers: Record<string, string> = {
      host: cam.service.hostHeader ?? `${cam.device.slug}.${deps.config.domain}`,
      accept: 'image/jpeg, multipart/x-mixed-replace, */*;q=0.5',
      'user-agent': 'porthole-relay (dashboard webcam)',
      'x-forwarded-for': req.ip,
      'x-forwarded-proto': new URL(deps.config.publicUrl).protocol.replace(':', ''),
    };
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('cross-origin-resource-policy', 'same-origin');
    res.setHeader('content-security-policy', "default-src 'none'; frame-ancestors 'none'");
    res.setHeader('referrer-policy', 'no-referrer');
    if (stream) {
      const untrack = live.track(auth.session.id, auth.session.expiresAt, () => {
        req.raw.destroy();
        res.destroy();
      });
      const recheck = setInterval(() => {
        requireRole(deps, auth, cam.device.id, ANY_ROLE).catch(() => res.destroy());
      }, RECHECK_MS);
      recheck.unref();
      res.once('close', () => {
        untrack();
        clearInterval(recheck);
      });
    }
    webcam!.hub.handle({
      req: req.raw,
      res,
      deviceId: cam.device.id,
      slug: cam.device.slug,
      tunnel: cam.tunnel,
      service: cam.service,
      target,
      headers,
      role: cam.role,
      forward: () => forwardCamera(req.raw, res, cam.tunnel, cam.service.name, target, headers, stream),
    });
  }

  api.get('/devices/:id/snapshot', { preHandler: requireUser }, async (req, reply) => {
    const auth = authOf(req);
    const cam = await camera(req, auth);
    serve(req, reply, cam, `${cam.path}?${cam.query}`, auth, false);
  });

  api.get('/devices/:id/webcam', { preHandler: requireUser }, async (req, reply) => {
    const auth = authOf(req);
    const q = parse(StreamQuery, req.query);
    const cam = await camera(req, auth);
    const query = cam.query.replace(/(^|&)action=snapshot(?=&|$)/, '$1action=stream');
    const fps = q.fps ?? MAX_DASHBOARD_FPS;
    serve(req, reply, cam, `${cam.path}?${query}&fps=${fps}`, auth, true);
  });
}

/**
 * Asks the camera directly (no live stream to cut a frame from, or a camera the fan-out cannot
 * share): GET through the tunnel, only pictures come back, bounded in time and (snapshots) size.
 */
function forwardCamera(
  req: IncomingMessage,
  res: ServerResponse,
  tunnel: DeviceTunnel,
  service: string,
  target: string,
  headers: Record<string, string>,
  stream: boolean,
): void {
  const fail = (status: number, message: string) => {
    if (res.destroyed) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ error: { code: status === 504 ? 'RELAY_UPSTREAM_TIMEOUT' : 'RELAY_SERVICE_UNAVAILABLE', message } });
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
  };
  const upstream = http.request({ agent: tunnel.agentFor(service), method: 'GET', path: target, headers, setHost: false });
  const timer = setTimeout(() => upstream.destroy(new Error('timeout')), CAMERA_HEADERS_TIMEOUT_MS);
  timer.unref();
  res.once('close', () => {
    clearTimeout(timer);
    upstream.destroy();
  });
  upstream.on('error', (err) => {
    clearTimeout(timer);
    fail(err.message === 'timeout' ? 504 : 502, err.message === 'timeout' ? `Printer service "${service}" did not answer in time` : `Printer service "${service}" is not reachable`);
  });
  upstream.on('response', (up) => {
    clearTimeout(timer);
    const type = String(up.headers['content-type'] ?? '');
    const picture = /^image\//i.test(type) || (stream && /^multipart\/x-mixed-replace/i.test(type));
    if ((up.statusCode ?? 502) !== 200 || !picture) {
      up.resume();
      fail(502, `the camera answered ${up.statusCode ?? '?'} ${type || 'without a content type'}`);
      return;
    }
    const length = Number(up.headers['content-length'] ?? NaN);
    if (!stream && Number.isFinite(length) && length > MAX_SNAPSHOT_BYTES) {
      up.destroy();
      fail(502, 'the camera sent a picture too large to relay');
      return;
    }
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', ...(Number.isFinite(length) ? { 'content-length': String(length) } : {}) });
    let seen = 0;
    up.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (!stream && seen > MAX_SNAPSHOT_BYTES) {
        up.destroy();
        res.destroy();
      }
    });
    up.pipe(res);
    up.on('aborted', () => res.destroy());
    up.on('close', () => {
      if (!up.complete) res.destroy();
    });
  });
  req.resume();
  upstream.end();
}
