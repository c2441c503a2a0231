// A recording HTTP origin standing in for a printer's web service (OctoPrint, Moonraker,
// mjpg-streamer) on 127.0.0.1. It records every request, including whether its body arrived
// whole or the connection died first: an upload cut mid-body is `aborted`, never `complete`.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { deterministicBlocks, expectedSha256 } from './bytes.js';
import { stampJpeg, testFrames, tinyJpeg } from './jpeg.js';

export type BodyState = 'pending' | 'complete' | 'aborted';

export interface RecordedRequest {
  /** Order of arrival, from 1. */
  id: number;
  method: string;
  /** The request target as received (path and query). */
  url: string;
  /** The path without the query. */
  path: string;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** Which accepted connection carried it (1 = first); shows keep-alive reuse. */
  connectionId: number;
  /** A WebSocket upgrade (recorded as complete once the handshake is done). */
  upgrade: boolean;
  /** Body bytes received so far. */
  bodyBytes: number;
  /** Hex sha256 of the body, set when the body completed. */
  sha256: string | undefined;
  /** complete: the declared or chunked body ended properly; aborted: the connection died first. */
  state: BodyState;
  startedAt: number;
  settledAt: number | undefined;
  /** Response status once sent. */
  status: number | undefined;
  /** Response body bytes written. */
  responseBytes: number;
  /** The whole response was handed to the socket (false: it was cut or is still going). */
  responseFinished: boolean;
}

export type RequestMatch = string | RegExp | ((r: RecordedRequest) => boolean);

export interface WaitOptions {
  /** Wait for this body state; 'settled' means complete or aborted. Default 'settled'. */
  state?: BodyState | 'settled';
  timeoutMs?: number;
}

export interface OriginOptions {
  /** MJPEG frame rate of /webcam/?action=stream. Default 10. */
  fps?: number;
  /** Source JPEGs: 'ffmpeg' (test pattern, default; falls back to tiny) or 'tiny'. */
  frames?: 'ffmpeg' | 'tiny';
  /** Extra routes tried before the built-in ones; return true when handled. */
  handler?: (req: IncomingMessage, res: ServerResponse, rec: RecordedRequest) => boolean | Promise<boolean>;
}

export interface Origin {
  port: number;
  /** http://127.0.0.1:PORT */
  url: string;
  requests: RecordedRequest[];
  /** Emits 'request' (RecordedRequest) on arrival, 'settled' when its body completes or aborts,
   * and 'response-aborted' when its response was cut before the end. */
  events: EventEmitter;
  /** Accepted TCP connections so far. */
  readonly connections: number;
  /** Currently open TCP connections. */
  readonly openConnections: number;
  /** WebSocket messages received by the echo endpoints. */
  readonly wsMessages: number;
  /** MJPEG frames written to clients, and frames skipped because a client was not keeping up. */
  readonly mjpeg: { framesSent: number; framesDropped: number; clients: number };
  /** Requests matching `match` (exact url or path, RegExp on url, or predicate). */
  find(match: RequestMatch): RecordedRequest[];
  /** Resolves with the first (already recorded or future) request matching, once in the wanted state. */
  waitFor(match: RequestMatch, opts?: WaitOptions): Promise<RecordedRequest>;
  /** Forgets recorded requests. */
  reset(): void;
  close(): Promise<void>;
}

/** The JPEG source shared by the origin's MJPEG stream and snapshot. */
export interface MjpegSource {
  next(): Buffer;
  readonly frameCount: number;
}

export async function makeMjpegSource(kind: 'ffmpeg' | 'tiny' = 'ffmpeg'): Promise<MjpegSource> {
  const base = kind === 'ffmpeg' ? await testFrames({ count: 20, width: 320, height: 240 }) : [tinyJpeg()];
  let seq = 0;
  return {
    next() {
      const frame = base[seq % base.length] as Buffer;
      return stampJpeg(frame, `porthole-frame ${seq++}`);
    },
    get frameCount() {
      return seq;
    },
  };
}

export const MJPEG_BOUNDARY = 'boundarydonotcross';

/**
 * Serves an mjpg-streamer style stream on res at fps until the client goes or stop() is
 * called. A client that is not keeping up has frames dropped (never queued without bound).
 */
export function serveMjpeg(
  res: ServerResponse,
  source: MjpegSource,
  fps: number,
  stats?: { framesSent: number; framesDropped: number },
): () => void {
  res.writeHead(200, {
    'content-type': `multipart/x-mixed-replace;boundary=${MJPEG_BOUNDARY}`,
    'cache-control': 'no-store, no-cache, must-revalidate, max-age=0',
    pragma: 'no-cache',
    connection: 'close',
  });
  const send = () => {
    if (res.writableNeedDrain) {
      if (stats) stats.framesDropped++;
      return;
    }
    const jpeg = source.next();
    const now = Date.now();
    res.write(
      `--${MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n` +
        `X-Timestamp: ${Math.floor(now / 1000)}.${String((now % 1000) * 1000).padStart(6, '0')}\r\n\r\n`,
    );
    res.write(jpeg);
    res.write('\r\n');
    if (stats) stats.framesSent++;
  };
  send();
  const timer = setInterval(send, Math.max(1, Math.round(1000 / fps)));
  const stop = () => {
    clearInterval(timer);
    if (!res.writableEnded) res.end();
  };
  res.on('close', () => clearInterval(timer));
  return stop;
}

/** An OctoPrint-flavoured status object whose temperatures drift with time. */
export function printerStatus(now = Date.now()): Record<string, unknown> {
  const t = now / 1000;
  return {
    state: { text: 'Printing', flags: { operational: true, printing: true, paused: false, error: false } },
    temperature: {
      tool0: { actual: Math.round((214.6 + Math.sin(t / 3) * 0.8) * 10) / 10, target: 215 },
      bed: { actual: Math.round((59.7 + Math.sin(t / 7) * 0.4) * 10) / 10, target: 60 },
    },
    job: { file: 'benchy.gcode', progress: Math.round(((t / 6) % 100) * 10) / 10 },
    time: new Date(now).toISOString(),
  };
}

function matches(r: RecordedRequest, m: RequestMatch): boolean {
  if (typeof m === 'string') return r.url === m || r.path === m;
  if (m instanceof RegExp) return m.test(r.url);
  return m(r);
}

function inState(r: RecordedRequest, s: BodyState | 'settled'): boolean {
  return s === 'settled' ? r.state !== 'pending' : r.state === s;
}

export async function startOrigin(opts: OriginOptions = {}): Promise<Origin> {
  const fps = opts.fps ?? 10;
  const source = await makeMjpegSource(opts.frames ?? 'ffmpeg');
  const events = new EventEmitter();
  events.setMaxListeners(0);
  let requests: RecordedRequest[] = [];
  let nextId = 1;
  let connectionCount = 0;
  let wsMessages = 0;
  const mjpegStats = { framesSent: 0, framesDropped: 0, clients: 0 };
  const sockets = new Set<Socket>();
  const connIds = new WeakMap<Socket, number>();
  const stoppers = new Set<() => void>();
  const timers = new Set<NodeJS.Timeout>();

  const record = (req: IncomingMessage, upgrade: boolean): RecordedRequest => {
    const url = req.url ?? '/';
    const rec: RecordedRequest = {
      id: nextId++,
      method: req.method ?? 'GET',
      url,
      path: url.split('?')[0] ?? url,
      httpVersion: req.httpVersion,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      remoteAddress: req.socket.remoteAddress,
      remotePort: req.socket.remotePort,
      connectionId: connIds.get(req.socket) ?? 0,
      upgrade,
      bodyBytes: 0,
      sha256: undefined,
      state: 'pending',
      startedAt: Date.now(),
      settledAt: undefined,
      status: undefined,
      responseBytes: 0,
      responseFinished: false,
    };
    requests.push(rec);
    events.emit('request', rec);
    return rec;
  };

  const settle = (rec: RecordedRequest, state: 'complete' | 'aborted') => {
    if (rec.state !== 'pending') return;
    rec.state = state;
    rec.settledAt = Date.now();
    events.emit('settled', rec);
    events.emit(state, rec);
  };

  /** Consumes and records the request body; resolves true when complete, false when aborted. */
  const consumeBody = (req: IncomingMessage, rec: RecordedRequest, rateBps?: number): Promise<boolean> =>
    new Promise((resolve) => {
      const hash = createHash('sha256');
      const started = performance.now();
      req.on('data', (chunk: Buffer) => {
        rec.bodyBytes += chunk.length;
        hash.update(chunk);
        if (rateBps && rateBps > 0) {
          const due = (rec.bodyBytes / rateBps) * 1000 - (performance.now() - started);
          if (due > 5) {
            req.pause();
            const t = setTimeout(() => {
              timers.delete(t);
              req.resume();
            }, due);
            timers.add(t);
          }
        }
      });
      req.on('end', () => {
        // 'end' is only emitted when the declared/chunked body ended properly.
        rec.sha256 = hash.digest('hex');
        settle(rec, 'complete');
        resolve(true);
      });
      req.on('close', () => {
        // Closed before the parser saw the end of the body: the upload was cut.
        if (!req.complete) {
          settle(rec, 'aborted');
          resolve(false);
        }
      });
      req.on('error', () => {
        /* recorded through 'close' */
      });
    });

  const json = (res: ServerResponse, status: number, body: unknown) => {
    const data = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
    res.end(data);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, rec: RecordedRequest) => {
    const u = new URL(rec.url, 'http://origin.invalid');
    const q = u.searchParams;
    const method = rec.method;
    const path = u.pathname;
    const rate = Number(q.get('rate') ?? 0) || undefined;
    const body = consumeBody(req, rec, path === '/upload' ? rate : undefined);

    if (opts.handler && (await opts.handler(req, res, rec))) return;

    if (path === '/upload' && (method === 'POST' || method === 'PUT')) {
      if (!(await body)) return; // the client is gone; nothing to answer
      json(res, 200, { bytes: rec.bodyBytes, sha256: rec.sha256 });
      return;
    }
    // Every other route answers without waiting for a body (most have none).
    if (method !== 'GET' && method !== 'HEAD') {
      if (path === '/echo-headers') {
        await body;
      } else {
        json(res, 405, { error: 'method not allowed', method, path });
        return;
      }
    }
    const action = q.get('action');
    if ((path === '/webcam/' || path === '/webcam' || path === '/') && action) {
      if (action === 'stream') {
        mjpegStats.clients++;
        const stop = serveMjpeg(res, source, Number(q.get('fps') ?? fps) || fps, mjpegStats);
        stoppers.add(stop);
        res.on('close', () => {
          mjpegStats.clients--;
          stoppers.delete(stop);
        });
        return;
      }
      if (action === 'snapshot') {
        const jpeg = source.next();
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length, 'cache-control': 'no-store' });
        res.end(jpeg);
        return;
      }
    }
    switch (path) {
      case '/': {
        const html = Buffer.from(
          '<!doctype html><html><head><meta charset="utf-8"><title>Test printer</title></head>' +
            '<body><h1>Test printer</h1><img src="/webcam/?action=stream" alt="webcam"></body></html>',
        );
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': html.length });
        res.end(html);
        return;
      }
      case '/bytes': {
        const n = Math.max(0, Math.floor(Number(q.get('n') ?? 1024)));
        const seed = q.get('seed') ?? '0';
        const headers: http.OutgoingHttpHeaders = {
          'content-type': 'application/octet-stream',
          'content-length': n,
        };
        if (q.get('sha') !== 'none') headers['x-sha256'] = expectedSha256(n, seed);
        res.writeHead(200, headers);
        if (method === 'HEAD') {
          res.end();
          return;
        }
        for (const block of deterministicBlocks(n, seed)) {
          if (res.destroyed) return;
          if (!res.write(block)) {
            await new Promise<void>((resolve) => {
              const done = () => {
                res.off('drain', done);
                res.off('close', done);
                resolve();
              };
              res.on('drain', done);
              res.on('close', done);
            });
          }
        }
        res.end();
        return;
      }
      case '/slow': {
        const ms = Math.max(0, Number(q.get('ms') ?? 1000) || 0);
        const t = setTimeout(() => {
          timers.delete(t);
          json(res, 200, { slept: ms });
        }, ms);
        timers.add(t);
        res.on('close', () => {
          clearTimeout(t);
          timers.delete(t);
        });
        return;
      }
      case '/stall': {
        const bytes = Math.max(0, Number(q.get('bytes') ?? 1024) || 0);
        const length = q.get('length');
        const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' };
        if (length) headers['content-length'] = Number(length);
        res.writeHead(200, headers);
        res.write(Buffer.alloc(bytes, 0x2e));
        const stop = () => res.destroy();
        stoppers.add(stop);
        res.on('close', () => stoppers.delete(stop));
        return; // and never more
      }
      case '/api/status':
        json(res, 200, printerStatus());
        return;
      case '/echo-headers':
        json(res, 200, {
          method,
          url: rec.url,
          httpVersion: rec.httpVersion,
          headers: rec.headers,
          rawHeaders: rec.rawHeaders,
          remoteAddress: rec.remoteAddress,
        });
        return;
      default:
        // Printer API reads (OctoPrint /api/*, Moonraker /printer/* and /server/*) answer like a
        // printer would, so access tests can tell "reached the printer" from "refused".
        if (/^\/(api|printer|server|machine)\//.test(path)) {
          json(res, 200, { ok: true, path });
          return;
        }
        json(res, 404, { error: 'not found', path });
    }
  };

  const server = http.createServer({ keepAliveTimeout: 30_000, requestTimeout: 0, headersTimeout: 60_000 });
  server.on('connection', (socket: Socket) => {
    connIds.set(socket, ++connectionCount);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const rec = record(req, false);
    const write = res.write.bind(res) as (...a: unknown[]) => boolean;
    const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
    const count = (chunk: unknown) => {
      if (typeof chunk === 'string') rec.responseBytes += Buffer.byteLength(chunk);
      else if (chunk instanceof Uint8Array) rec.responseBytes += chunk.length;
    };
    res.write = ((...a: unknown[]) => {
      count(a[0]);
      return write(...a);
    }) as typeof res.write;
    res.end = ((...a: unknown[]) => {
      if (typeof a[0] !== 'function') count(a[0]);
      return end(...a);
    }) as typeof res.end;
    res.on('finish', () => {
      rec.responseFinished = true;
    });
    // The response's connection went away before the whole response was written: the client
    // (or the tunnel) aborted the download, and the origin saw it.
    res.on('close', () => {
      if (!rec.responseFinished) events.emit('response-aborted', rec);
    });
    const origWriteHead = res.writeHead.bind(res) as (...a: unknown[]) => ServerResponse;
    res.writeHead = ((...a: unknown[]) => {
      rec.status = a[0] as number;
      return origWriteHead(...a);
    }) as typeof res.writeHead;
    handle(req, res, rec).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: String(err) });
      else res.destroy();
    });
  });

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const rec = record(req, true);
    const path = rec.path;
    const ok = path === '/websocket' || /^\/sockjs\/(.*\/)?websocket$/.test(path);
    if (!ok || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      rec.status = 404;
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      settle(rec, 'complete');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      rec.status = 101;
      settle(rec, 'complete');
      ws.on('message', (data, isBinary) => {
        wsMessages++;
        if (!isBinary) {
          const text = data.toString();
          const m = /^__close (\d{4})$/.exec(text);
          if (m) {
            ws.close(Number(m[1]), 'asked to close');
            return;
          }
        }
        ws.send(data, { binary: isBinary });
      });
      ws.on('error', () => {
        /* the peer went away */
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  const origin: Origin = {
    port,
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    events,
    get connections() {
      return connectionCount;
    },
    get openConnections() {
      return sockets.size;
    },
    get wsMessages() {
      return wsMessages;
    },
    mjpeg: mjpegStats,
    find: (m) => requests.filter((r) => matches(r, m)),
    waitFor(m, wopts = {}) {
      const state = wopts.state ?? 'settled';
      const timeoutMs = wopts.timeoutMs ?? 10_000;
      const hit = requests.find((r) => matches(r, m) && inState(r, state));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const check = (r: RecordedRequest) => {
          if (matches(r, m) && inState(r, state)) {
            cleanup();
            resolve(r);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          const seen = requests
            .slice(-10)
            .map((r) => `${r.method} ${r.url} ${r.state}`)
            .join('; ');
          reject(new Error(`origin: no request matching ${String(m)} in state ${state} within ${timeoutMs} ms (last: ${seen || 'none'})`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          events.off('request', check);
          events.off('settled', check);
        };
        events.on('request', check);
        events.on('settled', check);
      });
    },
    reset() {
      requests = [];
    },
    async close() {
      for (const stop of stoppers) stop();
      stoppers.clear();
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
  return origin;
}
