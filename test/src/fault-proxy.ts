// A small TCP fault proxy of the tests' own, put between an agent and the relay (the agent's
// relay URL names the proxy). Loopback only. Modes:
//
// - pass: bytes flow both ways with backpressure; a close on one side closes the other.
// - black-hole: nothing crosses, in either direction, and nothing is closed — a network
//   partition. The proxy keeps reading (so it sees when an endpoint gives up on its socket and
//   the tests can tell a reaped half-open connection from a hung one) but holds what it reads,
//   bounded per direction (past the bound it stops reading). New connections are accepted and
//   not connected upstream, as a SYN lost in a partition would be.
// - heal: back to pass. Held bytes are delivered in order; a connection whose other side was
//   closed during the partition is reset, as the peer's kernel would answer its retransmissions.
// - cut: every connection is reset (RST) at once, both sides.
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

export type FaultMode = 'pass' | 'black-hole';

export interface ProxiedConnection {
  readonly id: number;
  readonly openedAt: number;
  /** When the client side (the agent) closed its socket, as the proxy saw it. */
  clientClosedAt: number | undefined;
  /** When the upstream side (the relay) closed its socket. */
  upstreamClosedAt: number | undefined;
  /** Bytes forwarded client → upstream and upstream → client. */
  bytesUp: number;
  bytesDown: number;
  /** Connected upstream (false while held in a partition, or when the upstream refused). */
  upstreamConnected: boolean;
}

export interface FaultProxyCounters {
  accepted: number;
  /** Connections with at least one side still open. */
  open: number;
  /** Connections reset by cut() or by heal(). */
  reset: number;
  /** Upstream connects that failed (the relay is down). */
  upstreamFailures: number;
}

export interface FaultProxy {
  readonly port: number;
  /** ws://127.0.0.1:PORT — what the agent's config names as its relay. */
  readonly wsUrl: string;
  readonly mode: FaultMode;
  readonly connections: readonly ProxiedConnection[];
  readonly counters: FaultProxyCounters;
  blackHole(): void;
  heal(): void;
  cut(): void;
  /** Connections whose two sides are both still open. */
  live(): ProxiedConnection[];
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** Where to forward: the relay's port on 127.0.0.1. */
  targetPort: number;
  targetHost?: string;
  /** Bytes held per direction per connection during a partition before reading stops. Default 8 MiB. */
  holdLimit?: number;
}

interface Pair {
  info: ProxiedConnection;
  client: Socket;
  upstream: Socket | undefined;
  /** Held during a partition: client → upstream, upstream → client. */
  heldUp: Buffer[];
  heldDown: Buffer[];
  heldUpBytes: number;
  heldDownBytes: number;
  clientEnded: boolean;
  upstreamEnded: boolean;
}

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const targetHost = opts.targetHost ?? '127.0.0.1';
  const holdLimit = opts.holdLimit ?? 8 * 1024 * 1024;
  let mode: FaultMode = 'pass';
  let nextId = 1;
  const pairs = new Set<Pair>();
  const connections: ProxiedConnection[] = [];
  const counters: FaultProxyCounters = { accepted: 0, open: 0, reset: 0, upstreamFailures: 0 };

  const isOpen = (p: Pair) => p.info.clientClosedAt === undefined || (p.upstream !== undefined && p.info.upstreamClosedAt === undefined);
  const recount = () => {
    counters.open = [...pairs].filter(isOpen).length;
  };
  const forget = (p: Pair) => {
    if (p.client.destroyed && (p.upstream === undefined || p.upstream.destroyed)) pairs.delete(p);
    recount();
  };

  const reset = (s: Socket | undefined) => {
    if (s === undefined || s.destroyed) return;
    try {
      s.resetAndDestroy();
    } catch {
      s.destroy();
    }
  };

  /** Moves `data` from one side to the other, honouring the mode and backpressure. */
  const forward = (p: Pair, dir: 'up' | 'down', data: Buffer) => {
    const from = dir === 'up' ? p.client : p.upstream!;
    const to = dir === 'up' ? p.upstream : p.client;
    if (mode === 'black-hole' || to === undefined) {
      if (dir === 'up') {
        p.heldUp.push(data);
        p.heldUpBytes += data.length;
        if (p.heldUpBytes >= holdLimit) from.pause();
      } else {
        p.heldDown.push(data);
        p.heldDownBytes += data.length;
        if (p.heldDownBytes >= holdLimit) from.pause();
      }
      return;
    }
    if (to.destroyed) return;
    if (dir === 'up') p.info.bytesUp += data.length;
    else p.info.bytesDown += data.length;
    if (!to.write(data)) {
      from.pause();
      to.once('drain', () => {
        if (mode === 'pass') from.resume();
      });
    }
  };

  const flush = (p: Pair) => {
    if (p.upstream === undefined) return;
    for (const b of p.heldUp.splice(0)) {
      p.info.bytesUp += b.length;
      if (!p.upstream.destroyed) p.upstream.write(b);
    }
    for (const b of p.heldDown.splice(0)) {
      p.info.bytesDown += b.length;
      if (!p.client.destroyed) p.client.write(b);
    }
    p.heldUpBytes = 0;
    p.heldDownBytes = 0;
    if (p.clientEnded && !p.upstream.destroyed) p.upstream.end();
    if (p.upstreamEnded && !p.client.destroyed) p.client.end();
    p.client.resume();
    p.upstream.resume();
  };

  const attachUpstream = (p: Pair) => {
    const upstream = net.connect({ host: targetHost, port: opts.targetPort });
    p.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('connect', () => {
      p.info.upstreamConnected = true;
      if (mode === 'pass') flush(p);
    });
    upstream.on('data', (d: Buffer) => forward(p, 'down', d));
    upstream.on('end', () => {
      p.upstreamEnded = true;
      if (mode === 'pass' && !p.client.destroyed) p.client.end();
    });
    upstream.on('error', () => {
      if (!p.info.upstreamConnected) counters.upstreamFailures++;
    });
    upstream.on('close', (hadError) => {
      p.info.upstreamClosedAt ??= Date.now();
      // A relay that went away (or refused) is seen by the agent at once, unless partitioned.
      if (mode === 'pass') {
        if (hadError || !p.info.upstreamConnected) reset(p.client);
        else if (!p.client.destroyed) p.client.end();
      }
      forget(p);
    });
  };

  const server = net.createServer({ pauseOnConnect: false }, (client) => {
    counters.accepted++;
    client.setNoDelay(true);
    const info: ProxiedConnection = {
      id: nextId++,
      openedAt: Date.now(),
      clientClosedAt: undefined,
      upstreamClosedAt: undefined,
      bytesUp: 0,
      bytesDown: 0,
      upstreamConnected: false,
    };
    connections.push(info);
    const p: Pair = {
      info,
      client,
      upstream: undefined,
      heldUp: [],
      heldDown: [],
      heldUpBytes: 0,
      heldDownBytes: 0,
      clientEnded: false,
      upstreamEnded: false,
    };
    pairs.add(p);
    recount();
    client.on('data', (d: Buffer) => forward(p, 'up', d));
    client.on('end', () => {
      p.clientEnded = true;
      if (mode === 'pass' && p.upstream !== undefined && !p.upstream.destroyed) p.upstream.end();
    });
    client.on('error', () => {
      /* seen through close */
    });
    client.on('close', (hadError) => {
      info.clientClosedAt ??= Date.now();
      if (mode === 'pass' && p.upstream !== undefined) {
        if (hadError) reset(p.upstream);
        else if (!p.upstream.destroyed) p.upstream.end();
      }
      forget(p);
    });
    if (mode === 'pass') attachUpstream(p);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    wsUrl: `ws://127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    connections,
    counters,
    blackHole() {
      mode = 'black-hole';
    },
    heal() {
      if (mode === 'pass') return;
      mode = 'pass';
      for (const p of [...pairs]) {
        const clientGone = p.info.clientClosedAt !== undefined;
        const upstreamGone = p.upstream !== undefined && p.info.upstreamClosedAt !== undefined;
        if (clientGone || upstreamGone) {
          // One side gave up during the partition: the survivor learns it now, the hard way.
          if (!clientGone || (p.upstream !== undefined && !upstreamGone)) counters.reset++;
          reset(p.client);
          reset(p.upstream);
          forget(p);
          continue;
        }
        if (p.upstream === undefined) attachUpstream(p);
        else if (p.info.upstreamConnected) flush(p);
      }
    },
    cut() {
      for (const p of [...pairs]) {
        counters.reset++;
        reset(p.client);
        reset(p.upstream);
        forget(p);
      }
    },
    live() {
      return [...pairs].filter((p) => p.info.clientClosedAt === undefined && p.upstream !== undefined && p.info.upstreamClosedAt === undefined).map((p) => p.info);
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const p of [...pairs]) {
        p.client.destroy();
        p.upstream?.destroy();
      }
      pairs.clear();
      recount();
      await closed;
    },
  };
}
