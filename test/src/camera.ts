// A real MJPEG camera: ffmpeg renders its lavfi test source (colour bars, a moving gradient,
// a frame counter) in real time as multipart JPEG, and a tiny HTTP server re-serves that to
// any number of clients, like mjpg-streamer or ustreamer on a printer's Pi.
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { MultipartParser } from './mjpeg.js';
import { spawnManaged } from './procs.js';
import type { ManagedProcess } from './procs.js';

export interface CameraOptions {
  fps?: number;
  width?: number;
  height?: number;
  /** ffmpeg's -q:v, 2 (best) to 31. Default 5. */
  quality?: number;
  /** How long to wait for ffmpeg's first frame. Default 15 s. */
  startTimeoutMs?: number;
  /** Port on 127.0.0.1; default any free one (a camera "coming back" reuses its old port). */
  port?: number;
  /** ffmpeg noise strength (0–100): noisy frames compress badly, so they are big (a 640×480
   * frame at 40 is ~350 KB). Default none. */
  noise?: number;
}

export interface FfmpegCamera {
  port: number;
  /** http://127.0.0.1:PORT — the stream is at /?action=stream (any path), a still at ?action=snapshot. */
  url: string;
  streamUrl: string;
  snapshotUrl: string;
  /** The multipart boundary ffmpeg uses and the server re-serves. */
  boundary: string;
  fps: number;
  width: number;
  height: number;
  ffmpeg: ManagedProcess;
  /** Frames read from ffmpeg so far. */
  readonly frames: number;
  readonly latest: Buffer | undefined;
  readonly clients: number;
  /** Snapshot requests answered so far. */
  readonly snapshots: number;
  /** 'frame' (jpeg: Buffer, index: number) for every frame from ffmpeg. */
  events: EventEmitter;
  close(): Promise<void>;
}

export const FFMPEG_BOUNDARY = 'ffmpeg';

/** ffmpeg's arguments for a real-time test-pattern MJPEG stream on stdout. */
export function ffmpegCameraArgs(o: { fps: number; width: number; height: number; quality: number; noise?: number }): string[] {
  return [
    '-hide_banner', '-loglevel', 'error', '-nostdin',
    // -re: read the (infinite, synthetic) input at its native rate, as a camera would.
    '-re', '-f', 'lavfi', '-i', `testsrc=size=${o.width}x${o.height}:rate=${o.fps}`,
    ...(o.noise !== undefined && o.noise > 0 ? ['-vf', `noise=alls=${o.noise}:allf=t`] : []),
    '-f', 'mpjpeg', '-boundary_tag', FFMPEG_BOUNDARY, '-q:v', String(o.quality),
    'pipe:1',
  ];
}

export async function startFfmpegCamera(opts: CameraOptions = {}): Promise<FfmpegCamera> {
  const fps = opts.fps ?? 15;
  const width = opts.width ?? 640;
  const height = opts.height ?? 480;
  const quality = opts.quality ?? 5;
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const ffmpeg = spawnManaged('ffmpeg', 'ffmpeg', ffmpegCameraArgs({ fps, width, height, quality, ...(opts.noise !== undefined ? { noise: opts.noise } : {}) }), { stdout: 'raw' });
  const parser = new MultipartParser(FFMPEG_BOUNDARY);
  let frames = 0;
  let latest: Buffer | undefined;
  const clients = new Set<ServerResponse>();
  let snapshots = 0;

  const sendFrame = (res: ServerResponse, jpeg: Buffer) => {
    if (res.writableNeedDrain) return; // this client is behind: drop, never queue
    res.write(`--${FFMPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`);
    res.write(jpeg);
    res.write('\r\n');
  };

  ffmpeg.child.stdout?.on('data', (chunk: Buffer) => {
    let parts;
    try {
      parts = parser.push(chunk);
    } catch {
      return;
    }
    for (const part of parts) {
      latest = part.body;
      const index = frames++;
      events.emit('frame', part.body, index);
      for (const res of clients) sendFrame(res, part.body);
    }
  });

  const firstFrame = new Promise<void>((resolve, reject) => {
    const timeoutMs = opts.startTimeoutMs ?? 15_000;
    const timer = setTimeout(() => reject(new Error(`ffmpeg camera: no frame within ${timeoutMs} ms\n${ffmpeg.tail()}`)), timeoutMs);
    events.once('frame', () => {
      clearTimeout(timer);
      resolve();
    });
    void ffmpeg.waitExit().then((e) => {
      clearTimeout(timer);
      reject(new Error(`ffmpeg exited (code ${e.code}, signal ${e.signal}) before its first frame\n${ffmpeg.tail()}`));
    });
  });

  void firstFrame.catch(() => undefined); // awaited below; this only keeps a late rejection handled
  const sockets = new Set<Socket>();
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://camera.invalid');
    req.resume();
    if (u.searchParams.get('action') === 'snapshot') {
      snapshots++;
      const send = (jpeg: Buffer) => {
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length, 'cache-control': 'no-store' });
        res.end(jpeg);
      };
      if (latest) send(latest);
      else events.once('frame', send);
      return;
    }
    res.writeHead(200, {
      'content-type': `multipart/x-mixed-replace;boundary=${FFMPEG_BOUNDARY}`,
      'cache-control': 'no-store, no-cache, must-revalidate, max-age=0',
      pragma: 'no-cache',
      connection: 'close',
    });
    if (latest) sendFrame(res, latest);
    clients.add(res);
    res.on('close', () => clients.delete(res));
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const close = async () => {
    for (const res of clients) res.destroy();
    clients.clear();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await Promise.all([ffmpeg.stop(2_000), closed]);
  };

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
    });
    await firstFrame;
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    port,
    url,
    streamUrl: `${url}/?action=stream`,
    snapshotUrl: `${url}/?action=snapshot`,
    boundary: FFMPEG_BOUNDARY,
    fps,
    width,
    height,
    ffmpeg,
    get frames() {
      return frames;
    },
    get latest() {
      return latest;
    },
    get clients() {
      return clients.size;
    },
    get snapshots() {
      return snapshots;
    },
    events,
    close,
  };
}
