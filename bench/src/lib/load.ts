// Load generation against one target (a port on 127.0.0.1 plus the Host header to send):
// single-stream download and upload throughput, and small-GET latency with N keep-alive
// connections. Everything is bounded by a byte count, a request count or a deadline.
import http from 'node:http';
import https from 'node:https';
import WebSocket from 'ws';
import { PATTERN_BYTES, matchesPattern, pattern } from './origin.js';
import { percentileSorted } from './stats.js';

export interface Target {
  /** Port on `address`. */
  port: number;
  /** Where to connect; default 127.0.0.1. */
  address?: string;
  /** HTTPS: the CA to trust and the name to ask for (SNI) and check the certificate against. */
  tls?: { ca: string | Buffer; servername: string };
  /** Host header; default 127.0.0.1:port. */
  host?: string;
  /** Cookie header (Porthole: a signed-in owner's device session). */
  cookie?: string;
}

export interface TransferResult {
  bytes: number;
  seconds: number;
  /** 10^6 bytes per second. */
  mbps: number;
  /** Downloads: 10^6 bytes per second over the middle half (from 1/4 to 3/4 of the bytes), past any ramp-up. */
  midMbps?: number;
}

let pat: Buffer | undefined;
const thePattern = () => (pat ??= pattern());

function headersFor(t: Target, extra: http.OutgoingHttpHeaders = {}): http.OutgoingHttpHeaders {
  return { host: t.host ?? `127.0.0.1:${t.port}`, ...(t.cookie !== undefined ? { cookie: t.cookie } : {}), ...extra };
}

/** http(s).request to the target: its address and port, and with TLS its CA and server name. */
function requestTo(t: Target, o: http.RequestOptions, cb: (res: http.IncomingMessage) => void): http.ClientRequest {
  const base = { ...o, host: t.address ?? '127.0.0.1', port: t.port };
  if (t.tls === undefined) return http.request(base, cb);
  return https.request({ ...base, ca: t.tls.ca, servername: t.tls.servername }, cb);
}

/** A keep-alive pool of `n` connections for the target (https with TLS). */
function poolFor(t: Target, n: number): http.Agent {
  const o = { keepAlive: true, maxSockets: n, maxFreeSockets: n };
  return t.tls === undefined ? new http.Agent(o) : new https.Agent(o);
}

/** GET /bytes?n=bytes on a fresh connection; checks every byte against the pattern. */
export function download(t: Target, bytes: number, timeoutMs = 300_000): Promise<TransferResult> {
  const p = thePattern();
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let got = 0;
    let bad = false;
    let quarter: { at: number; got: number } | undefined;
    let threeQuarters: { at: number; got: number } | undefined;
    const req = requestTo(
      t,
      { path: `/bytes?n=${bytes}`, headers: headersFor(t), agent: false },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`download: status ${res.statusCode}`));
          return;
        }
        res.on('data', (c: Buffer) => {
          if (!bad && !matchesPattern(p, c, got)) bad = true;
          got += c.length;
          if (quarter === undefined && got >= bytes / 4) quarter = { at: performance.now(), got };
          if (threeQuarters === undefined && got >= (bytes * 3) / 4) threeQuarters = { at: performance.now(), got };
        });
        res.on('end', () => {
          clearTimeout(timer);
          const seconds = (performance.now() - started) / 1000;
          if (got !== bytes) reject(new Error(`download: got ${got} of ${bytes} bytes`));
          else if (bad) reject(new Error('download: bytes differ from what the origin sent'));
          else {
            const mid = quarter && threeQuarters && threeQuarters.at > quarter.at ? (threeQuarters.got - quarter.got) / 1e6 / ((threeQuarters.at - quarter.at) / 1000) : undefined;
            resolve({ bytes, seconds, mbps: bytes / 1e6 / seconds, ...(mid !== undefined ? { midMbps: mid } : {}) });
          }
        });
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`download: not done within ${timeoutMs} ms (${got} bytes)`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}

/** POST /upload with a Content-Length body of `bytes` (the pattern repeated), flow-controlled. */
export function upload(t: Target, bytes: number, timeoutMs = 300_000): Promise<TransferResult> {
  const p = thePattern();
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = requestTo(
      t,
      {
        method: 'POST',
        path: '/upload',
        headers: headersFor(t, { 'content-type': 'application/octet-stream', 'content-length': bytes }),
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const seconds = (performance.now() - started) / 1000;
          let answer: { bytes?: number; ok?: boolean } = {};
          try {
            answer = JSON.parse(Buffer.concat(chunks).toString()) as typeof answer;
          } catch {
            /* checked below */
          }
          if (res.statusCode !== 200) reject(new Error(`upload: status ${res.statusCode}`));
          else if (answer.bytes !== bytes) reject(new Error(`upload: origin got ${answer.bytes} of ${bytes} bytes`));
          else if (!answer.ok) reject(new Error('upload: origin got different bytes than were sent'));
          else resolve({ bytes, seconds, mbps: bytes / 1e6 / seconds });
        });
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`upload: not done within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        const take = Math.min(PATTERN_BYTES, bytes - sent);
        sent += take;
        if (!req.write(take === PATTERN_BYTES ? p : p.subarray(0, take))) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

export interface LatencyOptions {
  /** Concurrent keep-alive connections, each with one request in flight. */
  connections: number;
  /** Measured phase length. */
  durationMs: number;
  /** Unmeasured warm-up (connections opened, caches warm). Default 500 ms. */
  warmupMs?: number;
  /** Stop the measured phase after this many requests. Default 500 000. */
  maxRequests?: number;
  path?: string;
}

export interface LatencyResult {
  connections: number;
  requests: number;
  errors: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

function getOnce(t: Target, agent: http.Agent, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = requestTo(t, { path, headers: headersFor(t), agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`status ${res.statusCode}`));
        return;
      }
      res.on('data', () => undefined);
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Small-GET latency and throughput with `connections` keep-alive connections; with several
 * targets (devices on one relay), connection k asks targets[k % targets.length].
 */
export async function latency(target: Target | readonly Target[], opts: LatencyOptions): Promise<LatencyResult> {
  const targets: readonly Target[] = Array.isArray(target) ? target : [target as Target];
  const t = targets[0];
  if (t === undefined) throw new Error('latency: no target');
  const path = opts.path ?? '/small';
  const agent = poolFor(t, opts.connections);
  const maxRequests = opts.maxRequests ?? 500_000;
  const samples = new Float64Array(maxRequests);
  let n = 0;
  let errors = 0;
  const phase = async (ms: number, record: boolean) => {
    const deadline = performance.now() + ms;
    const worker = async (k: number) => {
      const tk = targets[k % targets.length] as Target;
      while (performance.now() < deadline && (!record || n < maxRequests)) {
        const t0 = performance.now();
        try {
          await getOnce(tk, agent, path);
          if (record && n < maxRequests) samples[n++] = performance.now() - t0;
        } catch {
          errors++;
          if (errors > 1000) throw new Error('more than 1000 failed requests');
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: opts.connections }, (_, k) => worker(k)));
    return (performance.now() - started) / 1000;
  };
  try {
    await phase(opts.warmupMs ?? 500, false);
    errors = 0;
    const seconds = await phase(opts.durationMs, true);
    const sorted = samples.subarray(0, n).sort();
    return {
      connections: opts.connections,
      requests: n,
      errors,
      seconds,
      rps: n / seconds,
      p50Ms: percentileSorted(sorted, 50),
      p90Ms: percentileSorted(sorted, 90),
      p99Ms: percentileSorted(sorted, 99),
      maxMs: n > 0 ? (sorted[n - 1] as number) : NaN,
    };
  } finally {
    agent.destroy();
  }
}

/** Polls GET path until it answers 200 (the path is ready) or the deadline passes. */
export async function waitReady(t: Target, timeoutMs = 15_000, path = '/small'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  const agent = t.tls === undefined ? new http.Agent({ keepAlive: false }) : new https.Agent({ keepAlive: false });
  try {
    while (Date.now() < deadline) {
      try {
        await getOnce(t, agent, path);
        return;
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    agent.destroy();
  }
  throw new Error(`not ready within ${timeoutMs} ms: ${last instanceof Error ? last.message : String(last)}`);
}

/**
 * `streams` transfers at once in one direction, `totalBytes` split evenly between them, each on
 * its own connection; MB/s is the total over the time until the last one finished.
 */
export async function parallel(t: Target, dir: 'down' | 'up', streams: number, totalBytes: number): Promise<TransferResult> {
  const each = Math.floor(totalBytes / streams);
  const started = performance.now();
  await Promise.all(Array.from({ length: streams }, () => (dir === 'down' ? download(t, each) : upload(t, each))));
  const seconds = (performance.now() - started) / 1000;
  const bytes = each * streams;
  return { bytes, seconds, mbps: bytes / 1e6 / seconds };
}

export interface EchoResult {
  messages: number;
  bytes: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * WebSocket round trips to the origin's /echo through the target: one message in flight at a
 * time (a printer UI's live socket), each answer checked; `warmup` round trips not counted.
 */
export async function wsEcho(t: Target, opts: { messages: number; bytes?: number; warmup?: number; timeoutMs?: number }): Promise<EchoResult> {
  const size = opts.bytes ?? 128;
  const warmup = opts.warmup ?? 50;
  const scheme = t.tls === undefined ? 'ws' : 'wss';
  const ws = new WebSocket(`${scheme}://${t.address ?? '127.0.0.1'}:${t.port}/echo`, {
    headers: headersFor(t),
    perMessageDeflate: false,
    handshakeTimeout: 10_000,
    ...(t.tls !== undefined ? { ca: t.tls.ca, servername: t.tls.servername } : {}),
  });
  const deadline = setTimeout(() => ws.terminate(), opts.timeoutMs ?? 60_000);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`echo: status ${res.statusCode}`)));
    });
    const samples = new Float64Array(opts.messages);
    const payload = Buffer.alloc(size, 0x61);
    for (let i = 0; i < warmup + opts.messages; i++) {
      payload.writeUInt32BE(i, 0);
      const t0 = performance.now();
      const back = await new Promise<Buffer>((resolve, reject) => {
        const onClose = () => reject(new Error(`echo: closed after ${i} round trips`));
        ws.once('close', onClose);
        ws.once('message', (d: Buffer) => {
          ws.off('close', onClose);
          resolve(d);
        });
        ws.send(payload);
      });
      if (!back.equals(payload)) throw new Error(`echo: round trip ${i} came back different`);
      if (i >= warmup) samples[i - warmup] = performance.now() - t0;
    }
    const sorted = samples.sort();
    return {
      messages: opts.messages,
      bytes: size,
      p50Ms: percentileSorted(sorted, 50),
      p99Ms: percentileSorted(sorted, 99),
      maxMs: sorted[sorted.length - 1] ?? NaN,
    };
  } finally {
    clearTimeout(deadline);
    ws.terminate();
  }
}
