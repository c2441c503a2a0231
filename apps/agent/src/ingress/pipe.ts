import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Stream } from '@porthole/protocol';
import type { PooledReader } from './read-pool.js';

/**
 * Aborts a TCP connection with a reset (RST), not a FIN: the local service must see a broken
 * connection, never a request body that merely ended early. `resetAndDestroy` exists since Node
 * 16.17 / 18.3; it throws for non-TCP handles and errors the socket when it has no handle yet.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) {
    socket.destroy(); // no connection yet: nothing to reset
    return;
  }
  const withReset = socket as Socket & { resetAndDestroy?: () => Socket };
  if (typeof withReset.resetAndDestroy === 'function') {
    try {
      withReset.resetAndDestroy();
      return;
    } catch {
      // not a TCP handle: fall through
    }
  }
  socket.destroy();
}

export interface JoinResult {
  /** Bytes from the tunnel to the service. */
  readonly bytesToService: number;
  /** Bytes from the service to the tunnel. */
  readonly bytesFromService: number;
  /** Whether the pair ended cleanly both ways (false: one side was reset). */
  readonly clean: boolean;
}

/**
 * The tunnel hands a payload on in the pieces the relay's bytes arrived in (a TLS record is 16 KiB):
 * written one by one, each would be a syscall to the service. The socket is corked from the first
 * piece of an event-loop turn to the end of its I/O phase, so what arrived together leaves in one
 * writev. Registered before pipe()'s own listener, so that first piece is held too.
 */
function gatherWrites(stream: Duplex, socket: Socket): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  stream.on('data', () => {
    if (corked || socket.destroyed) return;
    corked = true;
    socket.cork();
    setImmediate(uncork);
  });
}

/**
 * Joins a tunnel stream and a connected local socket into one byte pipe:
 * - backpressure both ways through pipe(): a full side pauses the other until 'drain';
 * - half-close: the stream's end ends the socket's writing side and vice versa (the socket must
 *   be made with allowHalfOpen so the service's FIN does not cut off what the client still sends);
 * - an error or reset on either side destroys the other: a reset stream resets the socket, a reset
 *   socket resets the stream (RST to the relay).
 * Chunks pass through as they are: no copies, no per-chunk allocations here.
 */
export function join(stream: Duplex, socket: Socket, onDone?: (r: JoinResult) => void, reader?: PooledReader): void {
  let clean = true;
  let remaining = 2;
  const done = () => {
    if (--remaining > 0) return;
    onDone?.({ bytesToService: socket.bytesWritten, bytesFromService: socket.bytesRead, clean });
  };

  stream.on('error', () => {
    clean = false;
    resetSocket(socket);
  });
  socket.on('error', () => {
    clean = false;
    if (!stream.destroyed) stream.destroy();
  });
  stream.once('close', () => {
    // Closed without finishing both ways (destroyed under us): the service must not see a clean end.
    if (!(stream.readableEnded && stream.writableFinished)) {
      clean = false;
      resetSocket(socket);
    }
    done();
  });
  socket.once('close', () => {
    // Closed without its end having been passed on: the relay must see a reset, not a FIN.
    if (!stream.writableEnded && !stream.destroyed) {
      clean = false;
      stream.destroy();
    }
    done();
  });

  gatherWrites(stream, socket);
  stream.pipe(socket); // stream end → socket.end()
  // socket end → stream.end(); a socket made with a PooledReader's onread hands its data there.
  if (reader === undefined || !reader.active) socket.pipe(stream);
  else reader.attach(stream as Stream, socket);
}
