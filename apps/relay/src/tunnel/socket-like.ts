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
  let lastActivity = Date.now();
  s.bytesRead = 0;
  s.bytesWritten = 0;
  const arm = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (idleMs <= 0 || s.destroyed) return;
    const fire = () => {
      const idle = Date.now() - lastActivity;
      if (idle >= idleMs) {
        timer = undefined;
        s.emit('timeout');
      } else {
        timer = setTimeout(fire, idleMs - idle);
        timer.unref();
      }
    };
    timer = setTimeout(fire, idleMs);
    timer.unref();
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
  s.setTimeout = (ms: number, cb?: () => void) => {
    if (cb !== undefined) s.once('timeout', cb);
    lastActivity = Date.now();
    // http.Agent sets the same timeout on every reuse: an armed timer already re-checks the
    // last activity when it fires, so only a change of the timeout re-arms it.
    if (ms !== idleMs || (timer === undefined && ms > 0)) {
      idleMs = ms;
      arm();
    }
    s.timeout = ms;
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
