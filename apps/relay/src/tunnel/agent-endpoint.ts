import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { AGENT_PATH, decodeHello, HELLO_HEADER, sessionOverWebSocket, type SessionConfig } from '@porthole/protocol';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { DeviceTunnel, type TunnelOptions } from './device-tunnel.js';
import { RefusalThrottle } from './refusal-throttle.js';
import type { TunnelRegistry } from './registry.js';

export interface AuthenticatedDevice {
  id: string;
  slug: string;
  name: string;
}

export type AuthResult = { ok: true; device: AuthenticatedDevice } | { ok: false; reason: 'unknown' | 'revoked' | 'malformed' };

export interface AgentAuthenticator {
  authenticate(credential: string): Promise<AuthResult>;
}

export interface AgentEndpointOptions {
  registry: TunnelRegistry;
  auth: AgentAuthenticator;
  log: Logger;
  session?: Partial<SessionConfig>;
  tunnel: TunnelOptions;
  /**
   * Largest WebSocket message accepted from an agent while ws gathers messages, which it does only
   * when the session could not take the reading over (sessionOverWebSocket's readDirect): the
   * session's own reader holds no message, only the bytes of the socket read in hand.
   */
  maxPayload: number;
  /** A credential was refused (metrics). */
  onRefused?: (reason: 'unknown' | 'revoked' | 'malformed' | 'missing' | 'throttled') => void;
  /** Failed attempts per source address before 429 (see RefusalThrottle); default 10 in a row, 30 a minute. */
  throttle?: { burst: number; perMinute: number; now?: () => number };
}

export { AGENT_PATH };

/**
 * `porthole-agent doctor` sends this header to check its credential without opening a tunnel:
 * an accepted credential gets 204 and no WebSocket, so a running agent's tunnel is not replaced.
 * Same name as the agent's (apps/agent/src/doctor/doctor.ts).
 */
export const CHECK_HEADER = 'porthole-check';

function refuse(socket: Duplex, status: number, reason: string, extraHeaders = ''): void {
  const body = `${reason}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extraHeaders}\r\n${body}`,
  );
  // A peer that never reads its answer does not keep the socket.
  setTimeout(() => socket.destroy(), 5_000).unref();
}

/** The throttle's key: an IPv4 address, or an IPv6 address's /64 (one home or one VPS). */
export function throttleKey(remote: string): string {
  if (!remote.includes(':')) return remote;
  const [head = '', tail] = remote.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/**
 * The agent endpoint: authenticates the device in the upgrade request itself (a wrong, unknown
 * or revoked credential gets 401/403 before any WebSocket or tunnel exists), checks the hello,
 * then runs a server-role session and registers the tunnel, replacing any stale one at once.
 */
export function createAgentEndpoint(opts: AgentEndpointOptions) {
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayload, perMessageDeflate: false, clientTracking: false });
  const throttle = new RefusalThrottle({ burst: 10, perMinute: 30, ...opts.throttle });

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const remote = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const log = opts.log.child({ remote });
    // An address whose attempts keep failing is refused before any credential work.
    const key = throttleKey(remote);
    const waitMs = throttle.begin(key);
    if (waitMs > 0) {
      log.debug({ retryAfterMs: waitMs }, 'agent refused: too many failed attempts');
      opts.onRefused?.('throttled');
      refuse(socket, 429, 'Too Many Requests', `retry-after: ${Math.ceil(waitMs / 1000)}\r\n`);
      return;
    }
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer ([A-Za-z0-9_-]{1,256})$/.exec(auth);
    if (m === null) {
      log.warn('agent refused: no credential');
      opts.onRefused?.('missing');
      throttle.settle(key, false);
      refuse(socket, 401, 'Unauthorized');
      return;
    }
    let hello;
    try {
      hello = decodeHello(req.headers[HELLO_HEADER] as string | undefined);
    } catch (e) {
      log.warn({ reason: (e as Error).message }, 'agent refused: bad hello');
      throttle.settle(key, false);
      refuse(socket, 400, 'Bad Request');
      return;
    }
    const h = hello;
    opts.auth
      .authenticate(m[1]!)
      .then((result) => {
        throttle.settle(key, result.ok);
        if (!result.ok) {
          log.warn({ reason: result.reason }, 'agent refused: credential');
          opts.onRefused?.(result.reason);
          refuse(socket, result.reason === 'revoked' ? 403 : 401, result.reason === 'revoked' ? 'Forbidden' : 'Unauthorized');
          return;
        }
        if (socket.destroyed) return;
        if (req.headers[CHECK_HEADER] === '1') {
          log.info({ device: result.device.slug }, 'agent credential checked');
          socket.end('HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n');
          return;
        }
        const device = result.device;
        wss.handleUpgrade(req, socket, head, (ws) => {
          const session = sessionOverWebSocket(ws, { role: 'server', config: opts.session, readDirect: true });
          const tunnel = new DeviceTunnel(
            { deviceId: device.id, slug: device.slug, name: device.name, remote, hello: h },
            session,
            ws,
            opts.tunnel,
          );
          const dlog = log.child({ device: device.slug });
          session.once('close', (err) => dlog.info({ reason: err?.message ?? 'closed' }, 'agent disconnected'));
          opts.registry.attach(tunnel);
          dlog.info({ agent: h.agent, services: h.services.map((s) => s.name) }, 'agent connected');
        });
      })
      .catch((e: Error) => {
        throttle.settle(key, true); // our failure, not the agent's
        log.error({ err: e }, 'agent authentication failed');
        refuse(socket, 503, 'Service Unavailable');
      });
  }

  return { handleUpgrade, close: () => wss.close() };
}
