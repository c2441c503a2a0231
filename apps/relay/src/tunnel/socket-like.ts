import type { Stream } from '@porthole/protocol';

/**
 * Node's HTTP client and http.Agent treat their transport as a net.Socket: they call
 * setTimeout/setNoDelay/setKeepAlive/ref/unref on it. A tunnel stream is a plain Duplex, so this
 * adds those calls: the timeout is a real idle timer (no bytes either way for `ms`), which is
 * what lets http.Agent drop idle keep-alive streams; the rest have nothing to do on a stream.
 */
export type TunnelSocket = Stream & {
  setTimeout(ms: number, cb?: () => void): TunnelSocket;
  setNoDelay(): TunnelSocket;
  setKeepAlive(): TunnelSocket;
  ref(): TunnelSocket;
  unref(): TunnelSocket;
  remoteAddress?: string;
  /** The idle timeout in ms, as on a net.Socket: http.Agent skips setTimeout when it matches. */
  timeout?: number;
  /** Bytes moved through this stream, for metrics and logs. */
  bytesRead: number;
  bytesWritten: number;
};

export function asSocket(stream: Stream): TunnelSocket {
  const s = stream as TunnelSocket;
  let idleMs = 0;
  let timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires. */
  let due = 0;
  let lastActivity = Date.now();
  s.bytesRead = 0;
  s.bytesWritten = 0;
  const schedule = (ms: number) => {
    due = Date.now() + ms;
    timer = setTimeout(fire, ms);
    timer.unref();
  };
  // The timer is lazy: activity only moves lastActivity, and a firing timer re-checks it (and the
  // timeout in force, 0 = off) before it emits. http.Agent turns the timeout off and on again
  // around every request on a kept-alive stream; that must not cost two timers a request.
  const fire = () => {
    timer = undefined;
    if (idleMs <= 0 || s.destroyed) return;
    const idle = Date.now() - lastActivity;
    if (idle >= idleMs) s.emit('timeout');
    else schedule(idleMs - idle);
  };
  // Count inbound bytes where they enter the Readable; a 'data' listener would switch the stream
  // to flowing mode before the HTTP parser is attached.
  const origPush = s.push.bind(s);
  s.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (Buffer.isBuffer(chunk)) {
      s.bytesRead += chunk.length;
      lastActivity = Date.now();
    }
    return origPush(chunk, encoding);
  };
  const origWrite = s.write.bind(s) as (...args: unknown[]) => boolean;
  (s as unknown as { write: (...args: unknown[]) => boolean }).write = (...args: unknown[]) => {
    const chunk = args[0];
    if (Buffer.isBuffer(chunk) || typeof chunk === 'string') s.bytesWritten += chunk.length;
    lastActivity = Date.now();
    return origWrite(...args);
  };
  // net.Socket's semantics, which Node's HTTP client relies on: a callback given with a timeout
  // listens for it once; a callback given with 0 is removed (the client does this when a request
  // on a kept-alive socket ends, for the listener it added when the request began).
  s.setTimeout = (ms: number, cb?: () => void) => {
    lastActivity = Date.now();
    idleMs = ms > 0 ? ms : 0;
    s.timeout = idleMs;
    if (cb !== undefined) {
      if (idleMs === 0) s.removeListener('timeout', cb);
      else s.once('timeout', cb);
    }
    if (idleMs > 0 && !s.destroyed) {
      // An armed timer re-checks when it fires, unless it would fire later than this timeout allows.
      if (timer === undefined) schedule(idleMs);
      else if (due > lastActivity + idleMs) {
        clearTimeout(timer);
        schedule(idleMs);
      }
    }
    return s;
  };
  s.setNoDelay = () => s;
  s.setKeepAlive = () => s;
  s.ref = () => s;
  s.unref = () => s;
  s.once('close', () => {
    if (timer !== undefined) clearTimeout(timer);
  });
  return s;
}
