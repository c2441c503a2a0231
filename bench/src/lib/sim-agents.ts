// Simulated agents for the scale and reconnect benchmarks: many devices in one process, each
// with the agent's real WebSocket options, the real yamux Session (client role, the agent's
// window settings and keep-alives), the real Hello, and the real agent's backoff (full jitter,
// GoAway answered at once) — but instead of piping to local services, every stream is answered by
// a tiny in-process HTTP responder. Each simulated agent dials from its own 127.x.y.z address,
// as a fleet of printers would from their own homes.
//
// The child is controlled over a small HTTP API on 127.0.0.1 (POST /start, GET /stats).
import http from 'node:http';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { AGENT_PATH, encodeHello, encodeOpenReply, HELLO_HEADER, OpenStatus, readOpenRequest, sessionOverWebSocket } from '@porthole/protocol';
import type { Session, SessionConfig, Stream } from '@porthole/protocol';
import { repoRoot } from '@porthole/e2e/procs';
import { serveInChild, startChildServer } from './child-server.js';
import type { ChildServer } from './child-server.js';

export interface SimAgentSpec {
  slug: string;
  credential: string;
  /** Source address to dial from (127.x.y.z). */
  localAddress: string;
}

export interface SimConfig {
  relayPort: number;
  agents: SimAgentSpec[];
  /** Dials in flight at once during the first connect (later reconnects follow the backoff). */
  concurrency: number;
}

export interface SimStats {
  agents: number;
  connected: number;
  /** Dial attempts that failed, by reason (status code or error). */
  failures: Record<string, number>;
  /** Wall-clock ms (ms since the epoch) of each agent's latest connect; 0: never. */
  connectedAt: number[];
  /** Wall-clock ms of each agent's latest disconnect; 0: never. */
  disconnectedAt: number[];
  streams: number;
  requests: number;
}

interface BackoffLike {
  attempt: number;
  next(): number;
  connected(): void;
  disconnected(): void;
}

const wallMs = () => performance.timeOrigin + performance.now();

/** The agent's own modules, loaded from its build (apps/agent/dist) at run time. */
async function agentModules(): Promise<{ Backoff: new () => BackoffLike; session: Partial<SessionConfig>; version: string }> {
  const dist = resolve(repoRoot, 'apps/agent/dist');
  const backoff = (await import(pathToFileURL(resolve(dist, 'retry/backoff.js')).href)) as { Backoff: new () => BackoffLike };
  const dial = (await import(pathToFileURL(resolve(dist, 'connection/dial.js')).href)) as { DIAL_DEFAULTS: { session: Partial<SessionConfig> } };
  const version = (await import(pathToFileURL(resolve(dist, 'version.js')).href)) as { AGENT_VERSION: string };
  return { Backoff: backoff.Backoff, session: dial.DIAL_DEFAULTS.session, version: version.AGENT_VERSION };
}

const STATUS = Buffer.from(JSON.stringify({ state: { text: 'Operational' }, temperature: { tool0: { actual: 214.8, target: 215 } } }));

async function serve(configFile: string): Promise<void> {
  const cfg = JSON.parse(readFileSync(configFile, 'utf8')) as SimConfig;
  const mods = await agentModules();
  const hello = encodeHello({
    v: 1,
    agent: `porthole-agent/${mods.version} (bench simulation)`,
    services: [{ name: 'ui', profile: 'generic' }],
    routes: [{ path: '/', service: 'ui' }],
  });
  const stats: SimStats = {
    agents: cfg.agents.length,
    connected: 0,
    failures: {},
    connectedAt: cfg.agents.map(() => 0),
    disconnectedAt: cfg.agents.map(() => 0),
    streams: 0,
    requests: 0,
  };
  const responder = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    stats.requests++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': STATUS.length });
    res.end(STATUS);
  });
  const onStream = (stream: Stream) => {
    stats.streams++;
    stream.on('error', () => undefined);
    readOpenRequest(stream).then(
      (open) => {
        if (open.service !== 'ui') {
          stream.end(encodeOpenReply({ status: OpenStatus.UnknownService }));
          return;
        }
        stream.write(encodeOpenReply({ status: OpenStatus.Ok }));
        responder.emit('connection', stream);
      },
      () => stream.destroy(),
    );
  };
  const fail = (why: string) => {
    stats.failures[why] = (stats.failures[why] ?? 0) + 1;
  };

  /** One agent: dial; on an end, reconnect as the real supervisor does. */
  const run = (i: number, spec: SimAgentSpec) => {
    const backoff = new mods.Backoff();
    const dial = (): Promise<{ session: Session; goAway: Promise<'goaway'> } | { error: string; retryAfterMs?: number }> =>
      new Promise((done) => {
        const ws = new WebSocket(`ws://127.0.0.1:${cfg.relayPort}${AGENT_PATH}`, {
          headers: { Authorization: `Bearer ${spec.credential}`, [HELLO_HEADER]: hello },
          localAddress: spec.localAddress,
          handshakeTimeout: 15_000,
          perMessageDeflate: false,
          followRedirects: false,
          maxPayload: 16 * 1024 * 1024,
          skipUTF8Validation: true,
          generateMask: (mask: Buffer) => {
            mask.fill(0);
          },
        });
        let settled = false;
        const settle = (v: Awaited<ReturnType<typeof dial>>) => {
          if (settled) return;
          settled = true;
          done(v);
        };
        ws.on('error', (e: Error & { code?: string }) => settle({ error: e.code ?? e.message }));
        ws.on('close', () => settle({ error: 'closed' }));
        ws.on('unexpected-response', (_req, res) => {
          res.resume();
          const ra = Number(res.headers['retry-after']);
          settle({ error: String(res.statusCode), ...(Number.isFinite(ra) ? { retryAfterMs: ra * 1000 } : {}) });
          ws.terminate();
        });
        ws.once('open', () => {
          const session = sessionOverWebSocket(ws, { role: 'client', config: mods.session });
          session.on('stream', onStream);
          const goAway = new Promise<'goaway'>((r) => session.once('goaway', () => r('goaway')));
          const timer = setTimeout(() => {
            session.close();
            ws.terminate();
            settle({ error: 'ping timeout' });
          }, 15_000);
          session.ping().then(
            () => {
              clearTimeout(timer);
              settle({ session, goAway });
            },
            () => {
              clearTimeout(timer);
              settle({ error: 'ping failed' });
            },
          );
        });
      });
    const loop = async (delayMs: number, dialed?: () => void): Promise<void> => {
      await new Promise((r) => setTimeout(r, delayMs));
      const r = await dial();
      dialed?.();
      if ('error' in r) {
        fail(r.error);
        const d = Math.max(backoff.next(), Math.min(r.retryAfterMs ?? 0, 60_000));
        return loop(d);
      }
      backoff.connected();
      stats.connected++;
      stats.connectedAt[i] = wallMs();
      const closed = new Promise<'closed'>((res) => {
        if (r.session.closed) res('closed');
        else r.session.once('close', () => res('closed'));
      });
      const why = await Promise.race([closed, r.goAway]);
      stats.connected--;
      stats.disconnectedAt[i] = wallMs();
      backoff.disconnected();
      // GoAway: go at once, but only once per stable period (as the supervisor does).
      let d: number;
      if (why === 'goaway' && backoff.attempt === 0) {
        backoff.next();
        d = 0;
      } else d = backoff.next();
      return loop(d);
    };
    return loop;
  };

  const control = http.createServer((req, res) => {
    req.resume();
    if (req.method === 'POST' && req.url === '/start') {
      // The first connect: `concurrency` dials in flight at once, each agent's reconnects
      // afterwards on its own backoff.
      let next = 0;
      const starter = async () => {
        while (next < cfg.agents.length) {
          const i = next++;
          const loop = run(i, cfg.agents[i]!);
          await new Promise<void>((ready) => void loop(0, ready));
        }
      };
      for (let k = 0; k < cfg.concurrency; k++) void starter();
      res.end('{}');
      return;
    }
    if (req.url === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  serveInChild(control, 'sim agents listening');
}

/** A child process running a group of simulated agents. */
export interface SimAgents {
  proc: ChildServer['proc'];
  start(): Promise<void>;
  stats(): Promise<SimStats>;
  close(): Promise<void>;
}

function call(port: number, method: string, path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolvePromise(Buffer.concat(chunks).toString()));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`sim agents: ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export async function startSimAgents(configFile: string): Promise<SimAgents> {
  const c = await startChildServer('sim-agents', fileURLToPath(import.meta.url), ['--serve', configFile], 'sim agents listening', 30_000);
  return {
    proc: c.proc,
    async start() {
      await call(c.port, 'POST', '/start');
    },
    async stats() {
      return JSON.parse(await call(c.port, 'GET', '/stats')) as SimStats;
    },
    close: c.close,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--serve') {
  void serve(process.argv[3] ?? '');
}
