import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import {
  AGENT_PATH,
  decodeHello,
  HELLO_HEADER,
  sessionOverWebSocket,
  type Hello,
  type Session,
} from '@porthole/protocol';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Clock } from '../src/clock.js';
import { createLogger, type Logger } from '../src/log.js';

export const CREDENTIAL = 'pdc_test_secret_0123456789';

/** A logger whose JSON lines tests can read. */
export function captureLogger(level: 'debug' | 'info' = 'debug'): { logger: Logger; lines: () => Record<string, unknown>[]; text: () => string } {
  const chunks: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const logger = createLogger({ level, destination: dest });
  const text = () => chunks.join('');
  return {
    logger,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/**
 * A clock whose timers fire on the next turn of the event loop whatever their delay, and whose
 * time jumps by that delay: backoffs are recorded, never slept through.
 */
export function fastClock(): Clock & { delays: number[]; advance(ms: number): void } {
  let now = 0;
  const delays: number[] = [];
  return {
    delays,
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
    setTimeout(fn, ms) {
      delays.push(ms);
      return setImmediate(() => {
        now += ms;
        fn();
      });
    },
    clearTimeout(h) {
      if (h !== undefined) clearImmediate(h as NodeJS.Immediate);
    },
  };
}

export interface AgentConnection {
  ws: WebSocket;
  session: Session;
  hello: Hello;
  authorization: string | undefined;
}

export type Answer = 'accept' | number;

export interface Upgrade {
  path: string | undefined;
  authorization: string | undefined;
  hello: string | undefined;
  answer: Answer;
}

/**
 * A fake relay on 127.0.0.1: checks the bearer credential (401 when wrong), then answers each
 * upgrade as `answers` says (an HTTP status, or accept). Accepted agents get a server-role session.
 */
export class FakeRelay extends EventEmitter<{ connection: [AgentConnection] }> {
  readonly upgrades: Upgrade[] = [];
  readonly connections: AgentConnection[] = [];
  /** Consumed in order; when empty, `fallback` answers. */
  answers: Answer[] = [];
  fallback: Answer = 'accept';
  retryAfter: string | undefined;
  private readonly server: http.Server;
  private readonly wss: WebSocketServer;

  private constructor(server: http.Server) {
    super();
    this.server = server;
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    server.on('upgrade', (req, socket, head) => {
      const authorization = req.headers.authorization;
      const helloHeader = req.headers[HELLO_HEADER] as string | undefined;
      let answer: Answer = this.answers.length > 0 ? this.answers.shift()! : this.fallback;
      if (req.url !== AGENT_PATH) answer = 404;
      else if (authorization !== `Bearer ${CREDENTIAL}`) answer = 401;
      this.upgrades.push({ path: req.url, authorization, hello: helloHeader, answer });
      if (answer !== 'accept') {
        const extra = this.retryAfter !== undefined ? `Retry-After: ${this.retryAfter}\r\n` : '';
        socket.end(`HTTP/1.1 ${answer} Refused\r\nConnection: close\r\n${extra}Content-Length: 0\r\n\r\n`);
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const session = sessionOverWebSocket(ws, { role: 'server', config: { keepAliveInterval: 0 } });
        const conn: AgentConnection = { ws, session, hello: decodeHello(helloHeader), authorization };
        this.connections.push(conn);
        this.emit('connection', conn);
      });
    });
  }

  static async start(port = 0): Promise<FakeRelay> {
    const server = http.createServer((_req, res) => res.writeHead(404).end());
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    return new FakeRelay(server);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Resolves with the next accepted connection (or one already accepted but not yet taken). */
  nextConnection(index = this.connections.length): Promise<AgentConnection> {
    const have = this.connections[index];
    if (have !== undefined) return Promise.resolve(have);
    return new Promise((resolve) => {
      const on = () => {
        const c = this.connections[index];
        if (c !== undefined) {
          this.off('connection', on);
          resolve(c);
        }
      };
      this.on('connection', on);
    });
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.ws.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A TCP port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Waits until `cond` holds, polling; fails the test after `ms`. */
export async function until(cond: () => boolean, ms = 5_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Reads a readable to its end without destroying it (a Duplex keeps its writable half;
 * `for await` would destroy it). Rejects on error. */
export function readAll(r: NodeJS.ReadableStream & { readableEnded?: boolean }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // 'end' may already have fired (the open-header reader consumed the last bytes).
    if (r.readableEnded === true) {
      resolve(Buffer.alloc(0));
      return;
    }
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    r.once('end', () => resolve(Buffer.concat(chunks)));
    r.once('error', reject);
  });
}
