import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import {
  encodeOpenRequest,
  memoryPair,
  OpenStatus,
  readOpenReply,
  type Session,
  type Stream,
} from '@porthole/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServiceConfig } from '../src/config/index.js';
import { Ingress, type IngressOptions } from '../src/ingress/index.js';
import { captureLogger, closedPort, readAll, until } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function svc(name: string, port: number): ServiceConfig {
  return { name, url: `http://127.0.0.1:${port}`, host: '127.0.0.1', port };
}

async function listen(server: net.Server): Promise<number> {
  // Tests provoke resets on purpose; a socket error must not count as an uncaught one.
  server.on('connection', (s: net.Socket) => s.on('error', () => undefined));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    (server as http.Server).closeAllConnections?.();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as net.AddressInfo).port;
}

/** Relay and agent sessions joined in memory; the agent side runs the ingress under test. */
function setup(services: ServiceConfig[], opts: Partial<IngressOptions> = {}) {
  const { client: agent, server: relay } = memoryPair({ config: { keepAliveInterval: 0 } });
  const log = captureLogger();
  const connects: net.NetConnectOpts[] = [];
  const ingress = new Ingress({
    services: Object.fromEntries(services.map((s) => [s.name, s])),
    logger: log.logger,
    connect: (o) => {
      connects.push(o);
      return net.connect(o);
    },
    ...opts,
  });
  agent.on('stream', ingress.handle);
  cleanups.push(() => {
    relay.close();
    agent.close();
  });
  return { agent, relay, ingress, log, connects };
}

async function openService(relay: Session, service: string): Promise<{ stream: Stream; status: string; message?: string }> {
  const stream = relay.openStream();
  stream.on('error', () => undefined); // tests that care listen themselves
  stream.write(encodeOpenRequest({ service }));
  const reply = await readOpenReply(stream, 5_000);
  return { stream, status: reply.status, ...(reply.message !== undefined ? { message: reply.message } : {}) };
}

function errorOf(s: NodeJS.EventEmitter): Promise<NodeJS.ErrnoException> {
  return new Promise((resolve) => s.once('error', resolve));
}

describe('ingress', () => {
  it('pipes an HTTP upload and a download both ways, byte for byte', async () => {
    const download = randomBytes(3 * 1024 * 1024);
    const server = http.createServer((req, res) => {
      if (req.url === '/download') {
        res.writeHead(200, { 'content-length': download.length }).end(download);
        return;
      }
      const hash = createHash('sha256');
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
        hash.update(c);
      });
      req.on('end', () => res.end(JSON.stringify({ n, sha: hash.digest('hex') })));
    });
    const port = await listen(server);
    const { relay, ingress } = setup([svc('ui', port)]);

    const up = await openService(relay, 'ui');
    expect(up.status).toBe(OpenStatus.Ok);
    const body = randomBytes(2 * 1024 * 1024 + 17);
    up.stream.write(`POST /upload HTTP/1.1\r\nHost: printer\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
    up.stream.end(body);
    const upResponse = (await readAll(up.stream)).toString('utf8');
    expect(upResponse).toMatch(/^HTTP\/1\.1 200/);
    expect(JSON.parse(upResponse.slice(upResponse.indexOf('\r\n\r\n') + 4))).toEqual({
      n: body.length,
      sha: createHash('sha256').update(body).digest('hex'),
    });

    const down = await openService(relay, 'ui');
    down.stream.end('GET /download HTTP/1.1\r\nHost: printer\r\nConnection: close\r\n\r\n');
    const raw = await readAll(down.stream);
    const payload = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
    expect(payload.equals(download)).toBe(true);
    await until(() => ingress.openStreams === 0, 2_000, 'streams to close');
  });

  it('refuses an unknown service with unknown-service and connects to nothing', async () => {
    let connections = 0;
    const server = net.createServer(() => connections++);
    const port = await listen(server);
    const { relay, connects } = setup([svc('ui', port)]);

    for (const name of ['webcam', 'constructor', 'tostring']) {
      const r = await openService(relay, name);
      expect(r.status).toBe(OpenStatus.UnknownService);
      expect(r.message).toContain(name);
      await readAll(r.stream); // the agent ends its side after the reply
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(connects).toEqual([]);
    expect(connections).toBe(0);
  });

  it('connects only to the configured host:port, whatever the open header carries', async () => {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.end();
    });
    const port = await listen(server);
    const { relay, connects } = setup([svc('ui', port)]);
    const stream = relay.openStream();
    stream.on('error', () => undefined);
    stream.write(encodeOpenRequest({ service: 'ui', meta: { host: '10.0.0.1', port: '22' } }));
    expect((await readOpenReply(stream)).status).toBe(OpenStatus.Ok);
    expect(connects).toEqual([expect.objectContaining({ host: '127.0.0.1', port })]);
    await until(() => connections === 1);
  });

  it('answers connect-failed when the service port is closed', async () => {
    const port = await closedPort();
    const { relay, log } = setup([svc('ui', port)]);
    const r = await openService(relay, 'ui');
    expect(r.status).toBe(OpenStatus.ConnectFailed);
    expect(r.message).toContain('ECONNREFUSED');
    await readAll(r.stream);
    expect(log.lines().some((l) => l.msg === 'local service connect failed' && l.service === 'ui')).toBe(true);
  });

  it('answers connect-failed when the service does not answer in time', async () => {
    const { relay } = setup([svc('ui', 9)], { connect: () => new net.Socket(), connectTimeoutMs: 100 });
    const started = Date.now();
    const r = await openService(relay, 'ui');
    expect(r.status).toBe(OpenStatus.ConnectFailed);
    expect(r.message).toContain('ETIMEDOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
  });

  it('drops a pending local connect when the relay resets the stream first', async () => {
    const pending = new net.Socket();
    const { relay, ingress } = setup([svc('ui', 9)], { connect: () => pending });
    const stream = relay.openStream();
    stream.on('error', () => undefined);
    stream.write(encodeOpenRequest({ service: 'ui' }));
    await until(() => ingress.openStreams === 1);
    await new Promise((r) => setTimeout(r, 20)); // the agent is now "connecting"
    stream.destroy();
    await until(() => pending.destroyed, 2_000, 'the pending socket to be dropped');
    await until(() => ingress.openStreams === 0);
  });

  it('reaches a service named by host name through the LAN-only lookup', async () => {
    const server = net.createServer((s) => s.end('hi'));
    const port = await listen(server);
    const { relay, connects } = setup([{ name: 'ui', url: `http://localhost:${port}`, host: 'localhost', port }]);
    const r = await openService(relay, 'ui');
    expect(r.status).toBe(OpenStatus.Ok);
    expect((await readAll(r.stream)).toString()).toBe('hi');
    expect(typeof (connects[0] as net.TcpNetConnectOpts).lookup).toBe('function');
  });

  it('resets the local connection when the tunnel stream is reset mid-upload', async () => {
    let received = 0;
    let ended = false;
    const seen: string[] = [];
    const server = http.createServer((req) => {
      req.on('data', (c: Buffer) => (received += c.length));
      req.on('end', () => (ended = true));
      req.on('aborted', () => seen.push('aborted'));
      req.on('error', (e: NodeJS.ErrnoException) => seen.push(`error:${e.code ?? e.message}`));
    });
    const port = await listen(server);
    const { relay, ingress } = setup([svc('ui', port)]);

    const r = await openService(relay, 'ui');
    r.stream.write(`POST /api/files/local HTTP/1.1\r\nHost: printer\r\nContent-Length: ${1024 * 1024}\r\n\r\n`);
    r.stream.write(randomBytes(200 * 1024));
    await until(() => received > 0, 5_000, 'the upload to start');
    r.stream.destroy(); // RST on the tunnel

    await until(() => seen.length > 0, 5_000, 'the server to notice');
    expect(ended).toBe(false);
    expect(received).toBeLessThan(1024 * 1024);
    expect(seen.some((s) => s === 'aborted' || s === 'error:ECONNRESET')).toBe(true);
    await until(() => ingress.openStreams === 0, 2_000, 'the stream to be released');
  });

  it('a tunnel reset reaches the service as a TCP reset, not a FIN', async () => {
    const events: string[] = [];
    const server = net.createServer((s) => {
      s.on('data', () => events.includes('data') || events.push('data'));
      s.on('end', () => events.push('end'));
      s.on('error', (e: NodeJS.ErrnoException) => events.push(`error:${e.code}`));
    });
    const port = await listen(server);
    const { relay } = setup([svc('raw', port)]);
    const r = await openService(relay, 'raw');
    r.stream.write(Buffer.alloc(1000, 1));
    await until(() => events.includes('data'));
    r.stream.destroy();
    await until(() => events.length > 1);
    expect(events).toEqual(['data', 'error:ECONNRESET']);
  });

  it('the whole tunnel dropping resets every local connection', async () => {
    const events: string[] = [];
    const server = net.createServer((s) => {
      s.on('end', () => events.push('end'));
      s.on('error', (e: NodeJS.ErrnoException) => events.push(`error:${e.code}`));
    });
    const port = await listen(server);
    const { relay } = setup([svc('raw', port)]);
    await openService(relay, 'raw');
    await openService(relay, 'raw');
    relay.close(new Error('relay crashed'));
    await until(() => events.length === 2);
    expect(events).toEqual(['error:ECONNRESET', 'error:ECONNRESET']);
  });

  it('a local reset reaches the relay as a stream reset', async () => {
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.resetAndDestroy());
    });
    const port = await listen(server);
    const { relay } = setup([svc('raw', port)]);
    const r = await openService(relay, 'raw');
    const err = errorOf(r.stream);
    r.stream.write('hello');
    expect((await err).code).toBe('ERR_STREAM_RESET');
  });

  it('passes a half-close from the relay on and still carries the answer back', async () => {
    const server = net.createServer((s) => {
      let n = 0;
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => s.end(`got ${n}`));
    });
    const port = await listen(server);
    const { relay } = setup([svc('raw', port)]);
    const r = await openService(relay, 'raw');
    let errored = false;
    r.stream.on('error', () => (errored = true));
    r.stream.end(Buffer.alloc(100_000, 7)); // FIN after the data
    expect((await readAll(r.stream)).toString()).toBe('got 100000');
    await until(() => r.stream.destroyed, 2_000, 'the stream to close');
    expect(errored).toBe(false);
    expect(r.stream.state).toBe('closed');
  });

  it('passes a half-close from the service on and still carries the request after it', async () => {
    let got = -1;
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      let n = 0;
      s.end('hello'); // the service is done talking first
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => (got = n));
    });
    const port = await listen(server);
    const { relay } = setup([svc('raw', port)]);
    const r = await openService(relay, 'raw');
    expect((await readAll(r.stream)).toString()).toBe('hello'); // 'end' seen on the relay side
    r.stream.end(Buffer.alloc(50_000, 3)); // and the relay can still send
    await until(() => got !== -1);
    expect(got).toBe(50_000);
  });

  it('pushes back on the relay while the service does not read, and loses nothing', async () => {
    const total = 32 * 1024 * 1024;
    let received = 0;
    let serverSocket: net.Socket | undefined;
    const server = net.createServer((s) => {
      serverSocket = s;
      s.pause();
      s.on('data', (c: Buffer) => (received += c.length));
    });
    const port = await listen(server);
    const { relay, agent } = setup([svc('raw', port)]);
    const r = await openService(relay, 'raw');

    const chunk = Buffer.alloc(64 * 1024, 5);
    let sent = 0;
    let blocked = false;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!r.stream.write(chunk)) {
          blocked = true;
          r.stream.once('drain', () => {
            blocked = false;
            pump();
          });
          return;
        }
      }
      r.stream.end();
    };
    pump();
    // Wait for the sender to stall against the paused service.
    let last = -1;
    for (;;) {
      await new Promise((res) => setTimeout(res, 150));
      if (blocked && sent === last) break;
      last = sent;
    }
    expect(serverSocket).toBeDefined();
    expect(sent).toBeLessThan(total / 2);
    // The agent holds at most a stream window plus a socket buffer, not the upload.
    const agentStream = [...(agent as unknown as { streams: Map<number, Stream> }).streams.values()][0]!;
    expect(agentStream.bufferedBytes).toBeLessThanOrEqual(agentStream.receiveWindowSize);

    serverSocket!.resume();
    await until(() => received === total, 20_000, 'all bytes to arrive');
    expect(received).toBe(total);
  });

  it('answers agent busy beyond the stream cap and frees slots as streams close', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => sockets.push(s));
    const port = await listen(server);
    const { relay, ingress } = setup([svc('raw', port)], { maxStreams: 2 });
    const a = await openService(relay, 'raw');
    const b = await openService(relay, 'raw');
    expect([a.status, b.status]).toEqual([OpenStatus.Ok, OpenStatus.Ok]);
    const c = await openService(relay, 'raw');
    expect(c).toMatchObject({ status: OpenStatus.ConnectFailed, message: 'agent busy' });
    c.stream.end();
    await readAll(c.stream);
    a.stream.end();
    b.stream.end();
    for (const s of sockets) s.end();
    await until(() => ingress.openStreams === 0, 2_000, 'slots to free');
    const d = await openService(relay, 'raw');
    expect(d.status).toBe(OpenStatus.Ok);
  });

  it('resets a stream whose open header is garbage', async () => {
    const { relay, connects } = setup([svc('ui', 1)]);
    const stream = relay.openStream();
    const err = errorOf(stream);
    stream.write(Buffer.from([9, 9, 9, 9]));
    expect((await err).code).toBe('ERR_STREAM_RESET');
    expect(connects).toEqual([]);
  });
});
