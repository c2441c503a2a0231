// A userspace link emulator, for machines whose kernel has no tc netem (the bench's fallback):
// a TCP proxy on 127.0.0.1 that carries each direction over an emulated line of `mbit` Mbit/s
// with `rtt`/2 of one-way delay. Bytes read from one side are serialised at the line rate and
// written to the other side after the delay; a queue of two bandwidth-delay products (the
// router's buffer) stops reading when full, so the sender feels the narrow, long pipe. Runs in
// its own process; GET /shape?rtt=MS&mbit=N on its control port changes the line for every
// connection. TCP's own behaviour on a long path (its congestion window over the real RTT) is
// not emulated: each side talks TCP to the proxy over loopback.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { serveInChild, startChildServer } from './child-server.js';

const line = { rttMs: 0, mbit: 100 };

function pipe(src: net.Socket, dst: net.Socket): void {
  const queue: { chunk: Buffer; at: number }[] = [];
  let queued = 0;
  let lineFreeAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const limit = () => Math.max(256 * 1024, 2 * ((line.mbit * 1e6) / 8) * (line.rttMs / 1000));
  const deliver = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && (queue[0] as { at: number }).at <= now) {
      const { chunk } = queue.shift() as { chunk: Buffer };
      queued -= chunk.length;
      dst.write(chunk);
    }
    if (src.isPaused() && queued < limit() / 2) src.resume();
    if (queue.length > 0) timer = setTimeout(deliver, Math.max(0, (queue[0] as { at: number }).at - performance.now()));
    else if (ended) dst.end();
  };
  src.on('data', (chunk: Buffer) => {
    const now = performance.now();
    const start = Math.max(now, lineFreeAt);
    lineFreeAt = start + (chunk.length * 8) / (line.mbit * 1e3);
    queue.push({ chunk, at: lineFreeAt + line.rttMs / 2 });
    queued += chunk.length;
    if (queued > limit()) src.pause();
    if (timer === undefined) timer = setTimeout(deliver, Math.max(0, (queue[0] as { at: number }).at - now));
  });
  src.on('end', () => {
    ended = true;
    if (queue.length === 0) dst.end();
  });
  src.on('close', () => {
    if (!ended) dst.destroy();
  });
  src.on('error', () => dst.destroy());
}

function serve(targetPort: number, rttMs: number, mbit: number): void {
  line.rttMs = rttMs;
  line.mbit = mbit;
  const proxy = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect(targetPort, '127.0.0.1');
    upstream.setNoDelay(true);
    pipe(client, upstream);
    pipe(upstream, client);
  });
  proxy.listen(0, '127.0.0.1', () => {
    const control = http.createServer((req, res) => {
      req.resume();
      const u = new URL(req.url ?? '/', 'http://shaper.invalid');
      if (u.pathname === '/shape') {
        line.rttMs = Number(u.searchParams.get('rtt') ?? line.rttMs);
        line.mbit = Number(u.searchParams.get('mbit') ?? line.mbit);
      }
      res.end(JSON.stringify(line));
    });
    serveInChild(control, 'shaper listening', { proxyPort: (proxy.address() as AddressInfo).port });
  });
}

export interface Shaper {
  /** Connect here to reach the target through the emulated line. */
  port: number;
  shape(rttMs: number, mbit: number): Promise<void>;
  close(): Promise<void>;
}

export async function startShaper(targetPort: number, rttMs: number, mbit: number): Promise<Shaper> {
  const c = await startChildServer('shaper', fileURLToPath(import.meta.url), ['--serve', String(targetPort), String(rttMs), String(mbit)], 'shaper listening');
  return {
    port: Number(c.line.json?.proxyPort),
    shape: (rtt, m) =>
      new Promise<void>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: c.port, path: `/shape?rtt=${rtt}&mbit=${m}`, agent: false }, (res) => {
            res.resume();
            res.on('end', resolve);
          })
          .on('error', reject);
      }),
    close: c.close,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--serve') {
  serve(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));
}
