import http from 'node:http';
import {
  AgentCloseCode,
  encodeOpenRequest,
  ErrorCode,
  OpenStatus,
  readOpenReply,
  type Hello,
  type HelloRoute,
  type HelloService,
  type Session,
} from '@porthole/protocol';
import type WebSocket from 'ws';
import { asSocket, type TunnelSocket } from './socket-like.js';

/** Why a stream to a service could not be opened; maps to a page the phone understands. */
export class OpenStreamError extends Error {
  constructor(
    readonly kind: 'offline' | 'unknown-service' | 'connect-failed' | 'timeout' | 'busy',
    message: string,
  ) {
    super(message);
  }
}

export interface TunnelInfo {
  deviceId: string;
  slug: string;
  name: string;
  remote: string;
  hello: Hello;
}

export interface TunnelOptions {
  /** How long to wait for the agent's open reply. */
  openTimeoutMs: number;
  /** Keep-alive connections per service kept idle for reuse. */
  maxFreeStreams: number;
  /** Idle keep-alive streams are closed after this long (shorter than typical printer servers'). */
  idleStreamMs: number;
  /** Exchanges (HTTP requests, WebSockets) proxied to this device at once; beyond it the proxy answers 503. */
  maxExchanges?: number;
}

/**
 * One connected agent: its session, its route table, and an http.Agent per service whose
 * "sockets" are tunnel streams, so HTTP/1.1 keep-alive reuses streams across requests.
 */
export class DeviceTunnel {
  readonly connectedAt = new Date();
  private readonly agents = new Map<string, http.Agent>();
  private readonly routes: HelloRoute[];
  private readonly services: Map<string, HelloService>;
  private exchanges = 0;

  constructor(
    readonly info: TunnelInfo,
    readonly session: Session,
    private readonly ws: WebSocket,
    private readonly opts: TunnelOptions,
  ) {
    this.routes = [...info.hello.routes].sort((a, b) => b.path.length - a.path.length);
    this.services = new Map(info.hello.services.map((s) => [s.name, s]));
  }

  get closed(): boolean {
    return this.session.closed;
  }

  /** Exchanges in flight (counted by `tryAcquire`). */
  get activeExchanges(): number {
    return this.exchanges;
  }

  /**
   * Counts one exchange against the device's cap: the release function (call it once, when the
   * exchange ends), or undefined when the device is at its cap. Requests beyond the per-service
   * keep-alive pool would otherwise queue on the relay without bound.
   */
  tryAcquire(): (() => void) | undefined {
    if (this.exchanges >= (this.opts.maxExchanges ?? Infinity)) return undefined;
    this.exchanges++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.exchanges--;
    };
  }

  /** Longest-prefix route for a path (the path is already normalised by the caller). */
  route(path: string): { route: HelloRoute; service: HelloService } | undefined {
    for (const route of this.routes) {
      const bare = route.path.slice(0, -1);
      if (path === bare || path.startsWith(route.path) || route.path === '/') {
        const service = this.services.get(route.service);
        if (service !== undefined) return { route, service };
      }
    }
    return undefined;
  }

  /** Opens a stream to a service: open header out, wait for the agent's reply. */
  async openStream(service: string, meta: Record<string, string>): Promise<TunnelSocket> {
    if (this.session.closed || this.session.goingAway) throw new OpenStreamError('offline', 'the tunnel is closing');
    let stream;
    try {
      stream = this.session.openStream();
    } catch (e) {
      throw new OpenStreamError('busy', (e as Error).message);
    }
    stream.write(encodeOpenRequest({ service, meta }));
    try {
      const reply = await readOpenReply(stream, this.opts.openTimeoutMs);
      if (reply.status !== OpenStatus.Ok) {
        stream.destroy();
        throw new OpenStreamError(
          reply.status === OpenStatus.UnknownService ? 'unknown-service' : 'connect-failed',
          reply.message ?? reply.status,
        );
      }
    } catch (e) {
      stream.destroy();
      if (e instanceof OpenStreamError) throw e;
      const msg = (e as Error).message;
      // The agent reset a stream it never answered while the tunnel stays up: it is at its own
      // stream limit (a Pi allows 128), which the phone should hear as "busy", not "offline".
      const refused = (e as { code?: string }).code === ErrorCode.StreamReset && !this.session.closed && !this.session.goingAway;
      throw new OpenStreamError(refused ? 'busy' : /within/.test(msg) ? 'timeout' : 'offline', msg);
    }
    return asSocket(stream);
  }

  /** The keep-alive pool for one service. */
  agentFor(service: string): http.Agent {
    let agent = this.agents.get(service);
    if (agent === undefined) {
      agent = new http.Agent({
        keepAlive: true,
        // Beyond this many concurrent exchanges per service, requests queue here on the relay
        // instead of opening streams the agent (128 at most on a Pi) would refuse.
        maxSockets: 48,
        maxFreeSockets: this.opts.maxFreeStreams,
        timeout: this.opts.idleStreamMs,
        scheduling: 'lifo',
      });
      (agent as unknown as { createConnection: unknown }).createConnection = (
        _opts: unknown,
        cb: (err: Error | null, s?: TunnelSocket) => void,
      ) => {
        this.openStream(service, { via: 'http' }).then(
          (s) => cb(null, s),
          (e: Error) => cb(e),
        );
        return undefined;
      };
      this.agents.set(service, agent);
    }
    return agent;
  }

  /** Graceful: no new streams, the open ones finish. */
  goAway(): void {
    this.session.goAway();
    for (const a of this.agents.values()) a.destroy();
  }

  /** Ends the tunnel now with a WebSocket close code the agent acts on. */
  close(code: number = AgentCloseCode.GoingAway, reason = ''): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
    if (!this.session.closed) this.session.goAway();
    this.ws.close(code, reason);
    // Do not wait for a peer that may be gone: the WebSocket close handshake has its own timer,
    // but the session ends here.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}
