import type { Readable } from 'node:stream';
import { ErrorCode, StreamError } from './errors.js';

/**
 * The first bytes of every stream name the agent-side service (by name from the agent's config,
 * never a host:port) and carry small metadata; the agent answers with an open reply before the
 * service's bytes. Both are:  [version u8 = 1][kind u8][length u16 BE][UTF-8 JSON, `length` bytes]
 */
export const OPEN_HEADER_VERSION = 1;
export const OPEN_HEADER_MAX = 4096;
const PREFIX = 4;

const Kind = { Open: 1, Reply: 2 } as const;

export interface OpenRequest {
  /** Service name as in the agent's config: `[a-z0-9][a-z0-9_-]{0,62}`. */
  service: string;
  /** Free-form metadata (e.g. client address for the agent's logs). */
  meta?: Record<string, string>;
}

export const OpenStatus = {
  Ok: 'ok',
  /** The agent has no service of that name. */
  UnknownService: 'unknown-service',
  /** The local service refused or did not answer. */
  ConnectFailed: 'connect-failed',
} as const;
export type OpenStatus = (typeof OpenStatus)[keyof typeof OpenStatus];

export interface OpenReply {
  status: OpenStatus;
  message?: string;
}

const SERVICE_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function isValidServiceName(name: string): boolean {
  return SERVICE_RE.test(name);
}

function encode(kind: number, value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  if (body.length > OPEN_HEADER_MAX) {
    throw new StreamError(ErrorCode.InvalidOpenHeader, `open header of ${body.length} bytes exceeds ${OPEN_HEADER_MAX}`);
  }
  const out = Buffer.allocUnsafe(PREFIX + body.length);
  out[0] = OPEN_HEADER_VERSION;
  out[1] = kind;
  out.writeUInt16BE(body.length, 2);
  body.copy(out, PREFIX);
  return out;
}

export function encodeOpenRequest(req: OpenRequest): Buffer {
  if (!isValidServiceName(req.service)) {
    throw new StreamError(ErrorCode.InvalidOpenHeader, `invalid service name ${JSON.stringify(req.service)}`);
  }
  return encode(Kind.Open, req.meta === undefined ? { service: req.service } : req);
}

export function encodeOpenReply(reply: OpenReply): Buffer {
  return encode(Kind.Reply, reply);
}

const bad = (msg: string) => new StreamError(ErrorCode.InvalidOpenHeader, msg);

/** Parses a header from the front of `buf`; returns undefined when more bytes are needed. Pure. */
export function decodeOpenFrame(buf: Buffer): { kind: number; value: unknown; size: number } | undefined {
  if (buf.length < 1) return undefined;
  if (buf[0] !== OPEN_HEADER_VERSION) throw bad(`unknown open header version ${buf[0]}`);
  if (buf.length < PREFIX) return undefined;
  const kind = buf[1]!;
  if (kind !== Kind.Open && kind !== Kind.Reply) throw bad(`unknown open header kind ${kind}`);
  const len = buf.readUInt16BE(2);
  if (len > OPEN_HEADER_MAX) throw bad(`open header of ${len} bytes exceeds ${OPEN_HEADER_MAX}`);
  if (buf.length < PREFIX + len) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(buf.subarray(PREFIX, PREFIX + len).toString('utf8'));
  } catch {
    throw bad('open header is not valid JSON');
  }
  return { kind, value, size: PREFIX + len };
}

function asOpenRequest(v: unknown): OpenRequest {
  if (typeof v !== 'object' || v === null) throw bad('open header is not an object');
  const { service, meta } = v as Record<string, unknown>;
  if (typeof service !== 'string' || !isValidServiceName(service)) throw bad('open header names no valid service');
  if (meta !== undefined) {
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw bad('open header meta is not an object');
    for (const x of Object.values(meta)) if (typeof x !== 'string') throw bad('open header meta values must be strings');
    return { service, meta: meta as Record<string, string> };
  }
  return { service };
}

function asOpenReply(v: unknown): OpenReply {
  if (typeof v !== 'object' || v === null) throw bad('open reply is not an object');
  const { status, message } = v as Record<string, unknown>;
  // Not String(x) on the peer's values: JSON can hold {"toString": …}, which makes String() throw
  // a TypeError instead of this module's typed error (found by fuzz.test.ts).
  if (!Object.values(OpenStatus).includes(status as OpenStatus)) throw bad(`unknown open status ${typeof status === 'string' ? JSON.stringify(status.slice(0, 32)) : typeof status}`);
  if (message !== undefined && typeof message !== 'string') throw bad('open reply message is not a string');
  return message === undefined ? { status: status as OpenStatus } : { status: status as OpenStatus, message };
}

/**
 * Reads one header of `kind` from a stream, puts back any bytes after it (unshift), and resolves.
 * Rejects on a malformed header, an early end, or after `timeoutMs`.
 */
function readFrame(stream: Readable, kind: number, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => done(bad(`no open header within ${timeoutMs} ms`)), timeoutMs);
    const done = (err: Error | undefined, value?: unknown, rest?: Buffer) => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onEnd);
      if (err !== undefined) reject(err);
      else {
        if (rest !== undefined && rest.length > 0) stream.unshift(rest);
        resolve(value);
      }
    };
    const onError = (e: Error) => done(e);
    const onEnd = () => done(bad('stream ended before its open header'));
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        let parsed;
        try {
          parsed = decodeOpenFrame(buf);
        } catch (e) {
          done(e as Error);
          return;
        }
        if (parsed === undefined) {
          if (buf.length > OPEN_HEADER_MAX + PREFIX) {
            done(bad('open header too long'));
            return;
          }
          continue;
        }
        if (parsed.kind !== kind) {
          done(bad(`expected open header kind ${kind}, got ${parsed.kind}`));
          return;
        }
        done(undefined, parsed.value, buf.subarray(parsed.size));
        return;
      }
    };
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('close', onEnd);
    stream.on('error', onError);
    if (stream.destroyed || stream.readableEnded) {
      // 'end'/'close' already fired (e.g. a reset arrived first): fail now, not at the timeout.
      done(stream.errored ?? bad('stream ended before its open header'));
      return;
    }
    onReadable();
  });
}

export async function readOpenRequest(stream: Readable, timeoutMs = 10_000): Promise<OpenRequest> {
  return asOpenRequest(await readFrame(stream, Kind.Open, timeoutMs));
}

export async function readOpenReply(stream: Readable, timeoutMs = 10_000): Promise<OpenReply> {
  return asOpenReply(await readFrame(stream, Kind.Reply, timeoutMs));
}
