// The webcam benchmark's camera: an mjpg-streamer-like MJPEG source in its own process (so its
// timing never shares an event loop with the viewers). Frames are ffmpeg test-pattern JPEGs,
// each stamped with a JPEG comment `pb SEQ T` (T: the source's clock, ms since the epoch with
// sub-ms precision, when the frame was written), so a viewer can tell how old a frame is.
// GET /?action=stream streams; GET /stats says what each client was sent (socket bytes); any
// other path is a small page (the "printer UI").
import http from 'node:http';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { jpegStamp, stampJpeg, testFrames } from '@porthole/e2e/jpeg';
import type { ManagedProcess } from '@porthole/e2e/procs';
import { serveInChild, startChildServer } from './child-server.js';

export const SOURCE_BOUNDARY = 'boundarydonotcross';

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
export const wallMs = () => performance.timeOrigin + performance.now();

/** The stamp of a frame written by the source: its sequence number and write time. */
export function frameStamp(jpeg: Buffer): { seq: number; t: number } | undefined {
  const s = jpegStamp(jpeg);
  const m = s === undefined ? null : /^pb (\d+) ([\d.]+)$/.exec(s);
  return m === null ? undefined : { seq: Number(m[1]), t: Number(m[2]) };
}

export interface SourceClientStats {
  id: number;
  remotePort: number;
  /** Bytes written to this client's socket so far. */
  bytes: number;
  frames: number;
  /** Frames skipped because this client was not keeping up. */
  skipped: number;
  /** Still connected. */
  open: boolean;
}

export interface SourceStats {
  framesMade: number;
  clients: SourceClientStats[];
}

async function serve(fps: number, width: number, height: number): Promise<void> {
  const base = await testFrames({ count: 30, width, height });
  interface Client {
    id: number;
    res: http.ServerResponse;
    socket: Socket;
    frames: number;
    skipped: number;
  }
  const clients = new Set<Client>();
  const gone: SourceClientStats[] = [];
  let seq = 0;
  let nextId = 1;

  const tick = () => {
    const jpeg = stampJpeg(base[seq % base.length]!, `pb ${seq} ${wallMs().toFixed(3)}`);
    seq++;
    const head = Buffer.from(`--${SOURCE_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`);
    for (const c of clients) {
      if (c.res.writableNeedDrain) {
        c.skipped++;
        continue;
      }
      c.res.cork();
      c.res.write(head);
      c.res.write(jpeg);
      c.res.write('\r\n');
      c.res.uncork();
      c.frames++;
    }
  };
  // A steady cadence: each deadline from the start, not from the previous (late) tick.
  const started = performance.now();
  let n = 0;
  const schedule = () => {
    n++;
    setTimeout(() => {
      tick();
      schedule();
    }, Math.max(0, started + (n * 1000) / fps - performance.now()));
  };
  schedule();

  const statsOf = (c: Client, open = true): SourceClientStats => ({
    id: c.id,
    remotePort: c.socket.remotePort ?? 0,
    bytes: c.socket.bytesWritten,
    frames: c.frames,
    skipped: c.skipped,
    open,
  });
  const server = http.createServer((req, res) => {
    req.resume();
    const u = new URL(req.url ?? '/', 'http://source.invalid');
    if (u.pathname === '/stats') {
      const body: SourceStats = { framesMade: seq, clients: [...[...clients].map((c) => statsOf(c)), ...gone] };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
      return;
    }
    if (u.searchParams.get('action') !== 'stream') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>bench printer</title><img src="/webcam/?action=stream">');
      return;
    }
    res.writeHead(200, {
      'content-type': `multipart/x-mixed-replace;boundary=${SOURCE_BOUNDARY}`,
      'cache-control': 'no-store',
      connection: 'close',
    });
    const c: Client = { id: nextId++, res, socket: req.socket, frames: 0, skipped: 0 };
    clients.add(c);
    res.on('close', () => {
      clients.delete(c);
      gone.push(statsOf(c, false));
    });
  });
  serveInChild(server, 'source listening', { frameBytes: base.map((b) => b.length) });
}

export interface MjpegSourceProcess {
  port: number;
  url: string;
  /** Sizes of the source JPEGs (before stamping). */
  frameBytes: number[];
  proc: ManagedProcess;
  stats(): Promise<SourceStats>;
  close(): Promise<void>;
}

/** Starts the source in a child process and resolves once it listens. */
export async function startMjpegSource(o: { fps: number; width: number; height: number }): Promise<MjpegSourceProcess> {
  const { port, line, proc, close } = await startChildServer(
    'mjpeg-source',
    fileURLToPath(import.meta.url),
    ['--serve', String(o.fps), String(o.width), String(o.height)],
    'source listening',
    30_000,
  );
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    frameBytes: (line.json?.frameBytes as number[] | undefined) ?? [],
    proc,
    stats: () =>
      new Promise<SourceStats>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/stats', agent: false }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as SourceStats));
            res.on('error', reject);
          })
          .on('error', reject);
      }),
    close,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--serve') {
  void serve(Number(process.argv[3] ?? 15), Number(process.argv[4] ?? 640), Number(process.argv[5] ?? 480));
}
