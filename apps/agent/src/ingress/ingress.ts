import net from 'node:net';
import { encodeOpenReply, ErrorCode, OpenStatus, readOpenRequest, type Stream } from '@porthole/protocol';
import { lanOnlyLookup, type ServiceConfig } from '../config/index.js';
import { LogField, type Logger } from '../log.js';
import { join, resetSocket } from './pipe.js';
import { PooledReader, ReadPool } from './read-pool.js';

export interface IngressOptions {
  services: Readonly<Record<string, ServiceConfig>>;
  logger: Logger;
  /** Streams open at once across all tunnels; beyond it new ones get connect-failed 'agent busy'. */
  maxStreams?: number;
  /** Bound on connecting to a local service. */
  connectTimeoutMs?: number;
  /** Bound on the relay sending a stream's open header. */
  openTimeoutMs?: number;
  /** How long a refused stream may linger for the relay to close it. */
  refuseLingerMs?: number;
  /** Read buffers for local-service sockets (one pool per agent by default). */
  readPool?: ReadPool;
  /** Injectable for tests: how to connect to a local service. */
  connect?: (opts: net.NetConnectOpts) => net.Socket;
}

const ignore = (): void => undefined;

export const INGRESS_DEFAULTS = Object.freeze({
  maxStreams: 256,
  connectTimeoutMs: 5_000,
  openTimeoutMs: 10_000,
  refuseLingerMs: 10_000,
});

/**
 * Turns streams the relay opens into connections to configured local services.
 * The relay names a service; the host:port always comes from the agent's own config, so a
 * compromised relay reaches nothing else on the home network. HTTP is not parsed here.
 */
export class Ingress {
  private readonly services: ReadonlyMap<string, ServiceConfig>;
  private readonly log: Logger;
  private readonly maxStreams: number;
  private readonly connectTimeoutMs: number;
  private readonly openTimeoutMs: number;
  private readonly refuseLingerMs: number;
  private readonly connect: (opts: net.NetConnectOpts) => net.Socket;
  private open = 0;
  private readonly readPool: ReadPool;

  constructor(opts: IngressOptions) {
    // A Map, so a relay asking for "constructor" or "__proto__" finds nothing.
    this.services = new Map(Object.values(opts.services).map((s) => [s.name, s]));
    this.log = opts.logger;
    this.maxStreams = opts.maxStreams ?? INGRESS_DEFAULTS.maxStreams;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? INGRESS_DEFAULTS.connectTimeoutMs;
    this.openTimeoutMs = opts.openTimeoutMs ?? INGRESS_DEFAULTS.openTimeoutMs;
    this.refuseLingerMs = opts.refuseLingerMs ?? INGRESS_DEFAULTS.refuseLingerMs;
    this.connect = opts.connect ?? net.connect;
    this.readPool = opts.readPool ?? new ReadPool();
  }

  /** Streams currently open (reading their header, connecting, or piping). */
  get openStreams(): number {
    return this.open;
  }

  /** Takes one stream the relay opened. Never throws; every failure ends in a reply or a reset. */
  readonly handle = (stream: Stream): void => {
    this.open++;
    stream.once('close', () => {
      this.open--;
    });
    stream.on('error', (err: Error) => {
      if (this.log.isLevelEnabled('debug')) {
        this.log.debug({ [LogField.streamId]: stream.id, [LogField.err]: err.message }, 'stream error');
      }
    });
    if (this.open > this.maxStreams) {
      this.refuse(stream, OpenStatus.ConnectFailed, 'agent busy');
      return;
    }
    readOpenRequest(stream, this.openTimeoutMs).then(
      (req) => this.route(stream, req.service),
      (err: NodeJS.ErrnoException) => {
        // A malformed header is worth a warning; a stream reset or a tunnel ending before it is not.
        const fields = { [LogField.streamId]: stream.id, [LogField.reason]: err.message };
        if (err.code === ErrorCode.InvalidOpenHeader) this.log.warn(fields, 'bad stream open header');
        else this.log.debug(fields, 'stream ended before its open header');
        stream.destroy();
      },
    );
  };

  private route(stream: Stream, name: string): void {
    if (stream.destroyed) return;
    const service = this.services.get(name);
    if (service === undefined) {
      this.log.warn({ [LogField.streamId]: stream.id, [LogField.service]: name }, 'relay asked for an unknown service');
      this.refuse(stream, OpenStatus.UnknownService, `no service named ${JSON.stringify(name)} on this agent`);
      return;
    }
    const reader = new PooledReader(this.readPool);
    const socket = this.connect({
      host: service.host,
      port: service.port,
      allowHalfOpen: true,
      noDelay: true,
      onread: reader.onread,
      ...(net.isIP(service.host) === 0 ? { lookup: lanOnlyLookup } : {}),
      // Room for what one turn of the tunnel brings, so pipe() does not pause after every piece
      // and the corked writes (pipe.ts) leave together; the stream's window still bounds it.
      // net.Socket passes it to its Writable (Node 18 too); @types/node does not list it.
      ...{ writableHighWaterMark: 256 * 1024 },
    });
    // Whatever happens below, a socket error must never go unhandled: the agent does not die.
    socket.on('error', ignore);
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error(`no answer within ${this.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, this.connectTimeoutMs).unref();
    // The relay gave up (reset) while we were still connecting.
    const onEarlyClose = () => {
      clearTimeout(timer);
      resetSocket(socket);
    };
    const onConnectError = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      stream.off('close', onEarlyClose);
      const why = err.code ?? err.message;
      this.log.warn({ [LogField.streamId]: stream.id, [LogField.service]: name, [LogField.reason]: why }, 'local service connect failed');
      this.refuse(stream, OpenStatus.ConnectFailed, `service ${name} is not answering (${why})`);
    };
    stream.once('close', onEarlyClose);
    socket.once('error', onConnectError);
    socket.once('connect', () => {
      clearTimeout(timer);
      stream.off('close', onEarlyClose);
      socket.off('error', onConnectError);
      if (stream.destroyed) {
        resetSocket(socket);
        return;
      }
      stream.write(encodeOpenReply({ status: OpenStatus.Ok }));
      const debug = this.log.isLevelEnabled('debug');
      if (debug) this.log.debug({ [LogField.streamId]: stream.id, [LogField.service]: name }, 'stream open');
      join(
        stream,
        socket,
        (r) => {
          if (debug) {
            this.log.debug(
              { [LogField.streamId]: stream.id, [LogField.service]: name, bytesIn: r.bytesToService, bytesOut: r.bytesFromService, clean: r.clean },
              'stream closed',
            );
          }
        },
        reader,
      );
    });
  }

  /** Answers with a refusal, ends our side, and discards whatever the relay still sends. */
  private refuse(stream: Stream, status: OpenStatus, message: string): void {
    if (stream.destroyed) return;
    stream.end(encodeOpenReply({ status, message }));
    stream.resume();
    const linger = setTimeout(() => stream.destroy(), this.refuseLingerMs).unref();
    stream.once('close', () => clearTimeout(linger));
  }
}
