// The benchmark's origin: the "printer's web service", in its own process so its CPU never
// shares an event loop with the load generator. Lean on purpose: bodies are a fixed 1 MiB
// pseudo-random pattern repeated (no per-byte work on either side), uploads are compared with
// the same pattern (a memcmp), small GETs answer a ~300-byte JSON status, and a WebSocket on
// /echo sends every message back (the printer UI's live socket, for round-trip times).
import { createCipheriv, createHash } from 'node:crypto';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import type { ManagedProcess } from '@porthole/e2e/procs';
import { serveInChild, startChildServer } from './child-server.js';

export const PATTERN_BYTES = 1024 * 1024;

/** The 1 MiB pattern: AES-128-CTR keystream under a fixed key (same bytes everywhere). */
export function pattern(): Buffer {
  const key = createHash('sha256').update('porthole-bench').digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(PATTERN_BYTES));
}

/** Checks that chunk equals the repeated pattern at byte offset `offset`. */
export function matchesPattern(pat: Buffer, chunk: Buffer, offset: number): boolean {
  let pos = offset % pat.length;
  let i = 0;
  while (i < chunk.length) {
    const n = Math.min(chunk.length - i, pat.length - pos);
    if (pat.compare(chunk, i, i + n, pos, pos + n) !== 0) return false;
    i += n;
    pos = 0;
  }
  return true;
}

const STATUS = Buffer.from(
  JSON.stringify({
    state: { text: 'Operational', flags: { operational: true, printing: false, paused: false, error: false } },
    temperature: { tool0: { actual: 214.8, target: 215, offset: 0 }, bed: { actual: 59.9, target: 60, offset: 0 } },
    job: { file: 'benchy.gcode', progress: 42.4, printTimeLeft: 1834 },
  }),
);

function serve(): void {
  const pat = pattern();
  const server = http.createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 }, (req, res) => {
    const u = new URL(req.url ?? '/', 'http://o.invalid');
    if (u.pathname === '/small') {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': STATUS.length });
      res.end(STATUS);
      return;
    }
    if (u.pathname === '/bytes') {
      req.resume();
      const n = Math.max(0, Math.floor(Number(u.searchParams.get('n') ?? 0)));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      let sent = 0;
      const pump = () => {
        while (sent < n) {
          const take = Math.min(pat.length, n - sent);
          sent += take;
          if (!res.write(take === pat.length ? pat : pat.subarray(0, take))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    if (u.pathname === '/upload') {
      let bytes = 0;
      let ok = true;
      req.on('data', (c: Buffer) => {
        if (ok && !matchesPattern(pat, c, bytes)) ok = false;
        bytes += c.length;
      });
      req.on('end', () => {
        const body = Buffer.from(JSON.stringify({ bytes, ok }));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        res.end(body);
      });
      req.on('error', () => undefined);
      return;
    }
    req.resume();
    res.writeHead(404, { 'content-length': 0 });
    res.end();
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 * 1024 });
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    if (new URL(req.url ?? '/', 'http://o.invalid').pathname !== '/echo') {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('error', () => ws.terminate());
    });
  });
  serveInChild(server, 'origin listening');
}

export interface BenchOrigin {
  port: number;
  proc: ManagedProcess;
  close(): Promise<void>;
}

/** Starts the origin in a child process (in a network namespace: wrap) and resolves once it listens. */
export async function startBenchOrigin(wrap: string[] = []): Promise<BenchOrigin> {
  const c = await startChildServer('origin', fileURLToPath(import.meta.url), ['--serve'], 'origin listening', 10_000, wrap);
  return { port: c.port, proc: c.proc, close: c.close };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--serve')) serve();
