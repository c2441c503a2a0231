import {
  AGENT_PATH,
  encodeHello,
  HELLO_HEADER,
  sessionOverWebSocket,
  type Hello,
  type Session,
  type SessionConfig,
  type Stream,
} from '@porthole/protocol';
import type { LookupFunction } from 'node:net';
import { isIP } from 'node:net';
import WebSocket from 'ws';
import { agentCiphers } from './ciphers.js';
import {
  errorFromClose,
  errorFromNetwork,
  errorFromStatus,
  TransientError,
  TunnelErrorCode,
  type TunnelError,
} from './errors.js';

export interface DialOptions {
  /** ws(s):// base URL of the relay, as in the validated config. */
  relay: string;
  credential: string;
  hello: Hello;
  /** Extra trusted CA certificate(s) (PEM) for a wss:// relay. */
  ca?: Buffer;
  /** TLS cipher preference for a wss:// relay; default `agentCiphers()`: ChaCha20 first on a CPU
   * without AES instructions (a Pi 3 or 4), else Node's own. */
  ciphers?: string;
  /** Connect to this IP instead of resolving the relay's host; the certificate is still checked for the host. */
  relayAddress?: string;
  /** Bound on the upgrade and on the first ping round trip. */
  handshakeTimeoutMs?: number;
  /** yamux settings for the agent side (keep-alive, windows). */
  session?: Partial<SessionConfig>;
  /** Every stream the relay opens. Attached before the first byte can arrive. */
  onStream: (stream: Stream) => void;
  signal?: AbortSignal;
}

/** A Pi 3 has little RAM: a stream's receive window grows with RTT up to 4 MiB (plenty for a
 * home uplink), 16 MiB of growth across all streams. Frames the relay batches stay well below 16 MiB. */
export const DIAL_DEFAULTS = Object.freeze({
  handshakeTimeoutMs: 15_000,
  maxPayload: 16 * 1024 * 1024,
  // A Pi 3 has 1 GB: unread data is bounded by streams × 256 KiB plus the growth budget,
  // so at most 128 streams (32 MiB) + 16 MiB of growth, whatever the relay does.
  session: Object.freeze({ maxStreamWindow: 4 * 1024 * 1024, maxSessionReceiveWindow: 16 * 1024 * 1024, maxConcurrentStreams: 128 }),
});

let cachedCiphers: { value: string | undefined } | undefined;
/** agentCiphers() for this machine, read from /proc/cpuinfo once. */
function defaultCiphers(): string | undefined {
  cachedCiphers ??= { value: agentCiphers() };
  return cachedCiphers.value;
}

/** Grace for the WebSocket close handshake before the socket is dropped. */
const CLOSE_HANDSHAKE_MS = 2_000;

export function agentUrl(relay: string): string {
  return `${relay}${AGENT_PATH}`;
}

/**
 * A DNS lookup that always answers `address`: the TCP connection goes there while TLS still
 * sends the URL's host name (SNI) and checks the certificate against it.
 */
export function fixedLookup(address: string): LookupFunction {
  const family = isIP(address);
  if (family === 0) throw new TypeError(`not an IP address: ${address}`);
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options.all === true) callback(null, [{ address, family }]);
    else callback(null, address, family);
  }) as LookupFunction;
}

/** The upgrade request's headers. */
export function dialHeaders(credential: string, hello: Hello): Record<string, string> {
  return { Authorization: `Bearer ${credential}`, [HELLO_HEADER]: encodeHello(hello) };
}

interface CloseInfo {
  code: number;
  reason: string;
}

/** One established tunnel: a WebSocket to the relay and the yamux session over it. */
export class Tunnel {
  readonly relay: string;
  readonly session: Session;
  /** Resolves once, when the session ends, with why (never rejects). */
  readonly closed: Promise<TunnelError>;
  /** Resolves when the relay sends GoAway: no new streams will come, open ones may finish. */
  readonly goingAway: Promise<void>;
  private readonly ws: WebSocket;
  private _error: TunnelError | undefined;

  /** @internal made by dial() */
  constructor(relay: string, ws: WebSocket, session: Session, closeInfo: () => CloseInfo | undefined) {
    this.relay = relay;
    this.ws = ws;
    this.session = session;
    this.closed = new Promise((resolve) => {
      const onClose = (err?: Error) => {
        const info = closeInfo();
        this._error = errorFromClose(info?.code, info?.reason ?? '', err);
        resolve(this._error);
      };
      if (session.closed) onClose(session.closeError);
      else session.once('close', onClose);
    });
    this.goingAway = new Promise((resolve) => {
      session.once('goaway', () => resolve());
    });
  }

  /** Why the tunnel ended; undefined while it is up. */
  get error(): TunnelError | undefined {
    return this._error;
  }

  /** Latest measured round trip in ms (the dial's ping, then keep-alive pings). */
  get rtt(): number | undefined {
    return this.session.rtt;
  }

  get streams(): number {
    return this.session.streamCount;
  }

  /** Graceful: tell the relay to open no more streams; the session closes once the open ones finish. */
  goAway(): void {
    this.session.goAway();
  }

  /** Ends the tunnel now (open streams are reset); resolves once the WebSocket is closed. */
  close(): Promise<void> {
    if (!this.session.closed) this.session.close();
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    if (this.ws.readyState !== WebSocket.CLOSING) this.ws.close(1000);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.ws.terminate(), CLOSE_HANDSHAKE_MS);
      this.ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/**
 * Dials the relay's agent endpoint, runs a client-role yamux session over it and proves it works
 * with a ping. Rejects with PermanentError (401, 403, close 4001) or TransientError (everything else).
 */
export function dial(opts: DialOptions): Promise<Tunnel> {
  const timeoutMs = opts.handshakeTimeoutMs ?? DIAL_DEFAULTS.handshakeTimeoutMs;
  return new Promise<Tunnel>((resolve, reject) => {
    if (opts.signal?.aborted === true) {
      reject(new TransientError(TunnelErrorCode.Aborted, 'dial aborted'));
      return;
    }
    const ciphers = opts.ciphers ?? defaultCiphers();
    const ws = new WebSocket(agentUrl(opts.relay), {
      headers: dialHeaders(opts.credential, opts.hello),
      handshakeTimeout: timeoutMs,
      perMessageDeflate: false,
      followRedirects: false,
      maxPayload: DIAL_DEFAULTS.maxPayload,
      skipUTF8Validation: true,
      // RFC 6455 masking protects proxy caches from attacker-chosen bytes sent by *browsers*.
      // The agent is not a browser and its payload is the tunnel protocol; an all-zero mask lets
      // ws skip XOR-ing every byte on both ends, which is most of the agent's CPU per GiB.
      generateMask: (mask: Buffer) => {
        mask.fill(0);
      },
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      ...(ciphers !== undefined ? { ciphers } : {}),
      // Always verify a wss:// relay's certificate: there is no switch, and an explicit true also
      // overrides NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment.
      rejectUnauthorized: true,
      ...(opts.relayAddress !== undefined ? { lookup: fixedLookup(opts.relayAddress) } : {}),
    });
    let settled = false;
    let closeInfo: CloseInfo | undefined;
    let pingTimer: NodeJS.Timeout | undefined;

    const settle = (err: TunnelError | undefined, tunnel?: Tunnel) => {
      if (settled) return;
      settled = true;
      clearTimeout(pingTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err === undefined) {
        resolve(tunnel!);
        return;
      }
      if (tunnel !== undefined) void tunnel.close();
      else ws.terminate();
      reject(err);
    };
    const onAbort = () => settle(new TransientError(TunnelErrorCode.Aborted, 'dial aborted'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    // Registered before sessionOverWebSocket's own listener, so the code is known by the time
    // the session reports its end.
    ws.on('close', (code: number, reason: Buffer) => {
      closeInfo = { code, reason: reason.toString('utf8') };
      settle(errorFromClose(code, closeInfo.reason));
    });
    ws.on('error', (err: Error) => settle(errorFromNetwork(err)));
    ws.on('unexpected-response', (_req, res) => {
      const retryAfter = res.headers['retry-after'];
      res.resume();
      settle(errorFromStatus(res.statusCode ?? 0, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter));
    });
    ws.once('open', () => {
      if (settled) return;
      const session = sessionOverWebSocket(ws, {
        role: 'client',
        config: { ...DIAL_DEFAULTS.session, ...opts.session },
        zeroMask: true, // as generateMask above
        readDirect: true, // payloads straight from the socket's reads, no copy into whole messages
      });
      session.on('stream', opts.onStream);
      const tunnel = new Tunnel(opts.relay, ws, session, () => closeInfo);
      pingTimer = setTimeout(() => {
        settle(new TransientError(TunnelErrorCode.HandshakeTimeout, `relay did not answer a ping within ${timeoutMs} ms`), tunnel);
      }, timeoutMs);
      session.ping().then(
        () => settle(undefined, tunnel),
        () => settle(errorFromClose(closeInfo?.code, closeInfo?.reason ?? '', session.closeError), tunnel),
      );
    });
  });
}
