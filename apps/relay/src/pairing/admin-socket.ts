import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { AuditKind, type AuditLog } from '../accounts/audit.js';
import type { PrismaClient } from '../db/index.js';
import { RelayError } from '../errors.js';
import { LogField, type Logger } from '../log.js';
import type { PairingInfo, PairingService } from './service.js';

/**
 * The relay's local admin socket: `<dataDir>/admin.sock`, mode 0600 in a 0700 directory, so only
 * the relay's own user (and root) can use it. Pending pairings live in the running relay's
 * memory, so `porthole-relay pair approve` asks the running relay through this socket.
 *
 * One JSON request per connection, one JSON response, newline-terminated both ways:
 *   → {"op":"pair.approve","code":"ABCD-EFGH","owner":"alice","name":"MK3S","slug":"mk3s"}
 *   ← {"ok":true,"device":{"id":"…","slug":"mk3s","name":"MK3S"}}
 *   ← {"ok":false,"code":"RELAY_PAIRING_NOT_FOUND","message":"No pending pairing with code …"}
 */

export const ADMIN_SOCKET_NAME = 'admin.sock';

/** Where the relay with this data directory listens. */
export function adminSocketPath(dataDir: string): string {
  return path.join(path.resolve(dataDir), ADMIN_SOCKET_NAME);
}

/** Largest request read. */
const MAX_REQUEST = 8 * 1024;
/** A client that says nothing for this long is dropped. */
const IDLE_MS = 10_000;
const MAX_CONNECTIONS = 16;

export type AdminRequest =
  | { op: 'pair.approve'; code: string; owner: string; name?: string; slug?: string }
  | { op: 'pair.deny'; code: string }
  | { op: 'pair.lookup'; code: string }
  | { op: 'pair.list' };

/** PairingInfo with its dates as ISO strings, as it crosses the socket. */
export type PairingInfoJson = Omit<PairingInfo, 'createdAt' | 'expiresAt'> & { createdAt: string; expiresAt: string };

export type AdminResponse =
  | { ok: true; device: { id: string; slug: string; name: string } }
  | { ok: true; pairing: PairingInfoJson | null }
  | { ok: true; pairings: PairingInfoJson[] }
  | { ok: false; code: string; message: string };

export interface AdminSocketOptions {
  /** Socket path, normally adminSocketPath(config.dataDir). */
  path: string;
  pairing: Pick<PairingService, 'approve' | 'deny' | 'lookup' | 'list'>;
  /** Owners are named by username. */
  prisma: Pick<PrismaClient, 'user'>;
  log: Logger;
  /** Records approvals as the dashboard does (device.paired), marked `via: "admin-socket"`. */
  audit?: Pick<AuditLog, 'record'>;
}

export interface AdminSocket {
  readonly path: string;
  /** Stops listening, drops open connections and removes the socket file. */
  close(): Promise<void>;
}

/**
 * Listens on `opts.path` (mode 0600). A stale socket left by a relay that died is replaced; a
 * live one (another relay on the same data directory) is an error, as is a non-socket file there.
 */
export async function startAdminSocket(opts: AdminSocketOptions): Promise<AdminSocket> {
  const log = opts.log.child({ component: 'admin-socket' });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serve(socket, opts, log);
  });
  server.maxConnections = MAX_CONNECTIONS;

  try {
    await listen(server, opts.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    if (!lstatSync(opts.path).isSocket()) throw new Error(`${opts.path} exists and is not a socket; remove it`);
    if (await answers(opts.path)) {
      throw new Error(`another relay is already using ${opts.path} (two relays on one data directory?)`);
    }
    unlinkSync(opts.path);
    await listen(server, opts.path);
  }
  chmodSync(opts.path, 0o600);
  log.debug({ path: opts.path }, 'admin socket listening');

  let closing: Promise<void> | undefined;
  return {
    path: opts.path,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          try {
            if (lstatSync(opts.path).isSocket()) unlinkSync(opts.path);
          } catch {
            /* already gone */
          }
          resolve();
        });
      })),
  };
}

/** Listens with a umask that leaves the socket 0600 from its first moment. */
function listen(server: net.Server, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let previous: number | undefined;
    try {
      previous = process.umask(0o177);
    } catch {
      // Worker threads cannot change the umask; the chmod after listen and the 0700 data dir cover it.
    }
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    try {
      server.listen(file, () => {
        server.off('error', onError);
        resolve();
      });
    } finally {
      // The bind happened synchronously inside listen().
      if (previous !== undefined) process.umask(previous);
    }
  });
}

/** Whether something accepts connections on the socket. */
function answers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(file);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

function serve(socket: net.Socket, opts: AdminSocketOptions, log: Logger): void {
  socket.setTimeout(IDLE_MS, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  let buf = '';
  let done = false;
  const reply = (r: AdminResponse) => {
    socket.end(`${JSON.stringify(r)}\n`);
  };
  const handleLine = (line: string) => {
    done = true;
    socket.pause();
    handle(line, opts)
      .then(reply, (err: unknown) => {
        if (err instanceof RelayError) {
          reply({ ok: false, code: err.code, message: err.message });
          return;
        }
        log.error({ [LogField.err]: err }, 'admin request failed');
        reply({ ok: false, code: 'RELAY_INTERNAL', message: `Internal error: ${(err as Error).message}` });
      })
      .catch(() => socket.destroy());
  };
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    if (done) return;
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl >= 0) handleLine(buf.slice(0, nl));
    else if (buf.length > MAX_REQUEST) {
      done = true;
      reply({ ok: false, code: 'RELAY_BAD_REQUEST', message: 'Bad request: request too large' });
    }
  });
  socket.on('end', () => {
    if (!done) handleLine(buf);
  });
}

const str = (v: unknown, what: string, max = 256): string => {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new RelayError('RELAY_BAD_REQUEST', [`${what} must be a string`]);
  return v;
};

const optStr = (v: unknown, what: string): string | undefined => (v === undefined ? undefined : str(v, what));

async function handle(line: string, opts: AdminSocketOptions): Promise<AdminResponse> {
  let req: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(line);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    req = v as Record<string, unknown>;
  } catch {
    throw new RelayError('RELAY_BAD_REQUEST', ['expected one JSON object']);
  }
  switch (req.op) {
    case 'pair.approve': {
      const code = str(req.code, 'code');
      const username = str(req.owner, 'owner').trim().toLowerCase();
      const name = optStr(req.name, 'name');
      const slug = optStr(req.slug, 'slug');
      const user = await opts.prisma.user.findUnique({ where: { username }, select: { id: true, disabledAt: true } });
      if (user === null) throw new RelayError('RELAY_PAIRING_OWNER', [username, 'no such user']);
      if (user.disabledAt !== null) throw new RelayError('RELAY_PAIRING_OWNER', [username, 'the account is disabled']);
      const { device, pairing } = await opts.pairing.approve({
        code,
        ownerUserId: user.id,
        ...(name !== undefined ? { name } : {}),
        ...(slug !== undefined ? { slug } : {}),
      });
      opts.audit?.record(AuditKind.DevicePaired, {
        userId: user.id,
        deviceId: device.id,
        detail: { slug: device.slug, name: device.name, agent: pairing.agent, agentAddress: pairing.remote, via: 'admin-socket' },
      });
      return { ok: true, device: { id: device.id, slug: device.slug, name: device.name } };
    }
    case 'pair.deny':
      return { ok: true, pairing: toJson(opts.pairing.deny(str(req.code, 'code'))) };
    case 'pair.lookup': {
      const p = opts.pairing.lookup(str(req.code, 'code'));
      return { ok: true, pairing: p === undefined ? null : toJson(p) };
    }
    case 'pair.list':
      return { ok: true, pairings: opts.pairing.list().map(toJson) };
    default:
      throw new RelayError('RELAY_BAD_REQUEST', [`unknown op ${JSON.stringify(req.op)}`.slice(0, 80)]);
  }
}

function toJson(p: PairingInfo): PairingInfoJson {
  return { ...p, createdAt: p.createdAt.toISOString(), expiresAt: p.expiresAt.toISOString() };
}

/** Thrown by adminRequest when the relay cannot be reached (not running, no permission). */
export class AdminSocketUnavailable extends Error {
  readonly code: string;
  constructor(file: string, cause: NodeJS.ErrnoException) {
    const why =
      cause.code === 'ENOENT' || cause.code === 'ECONNREFUSED'
        ? 'the relay is not running (or runs with another data directory)'
        : cause.code === 'EACCES'
          ? 'permission denied (run as the user the relay runs as)'
          : cause.message;
    super(`cannot reach the relay's admin socket ${file}: ${why}`, { cause });
    this.name = 'AdminSocketUnavailable';
    this.code = cause.code ?? 'ERR_ADMIN_SOCKET';
  }
}

/** Sends one request to a running relay's admin socket; resolves its response. */
export function adminRequest(file: string, request: AdminRequest, timeoutMs = 30_000): Promise<AdminResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(file);
    let buf = '';
    let connected = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the relay did not answer on ${file} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      connected = true;
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 1024 * 1024) socket.destroy(new Error('admin response too large'));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connected ? err : new AdminSocketUnavailable(file, err));
    });
    socket.once('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as AdminResponse);
      } catch {
        reject(new Error(`the relay sent an unreadable answer on ${file}`));
      }
    });
  });
}
