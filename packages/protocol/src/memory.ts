import type { SessionConfig } from './config.js';
import { Session, type Clock } from './session.js';

/**
 * Two sessions joined in memory, delivering asynchronously (like a socket) with an optional
 * byte limit in flight per direction to model a slow link. For tests and benchmarks.
 */
export function memoryPair(
  opts: { config?: Partial<SessionConfig>; clientConfig?: Partial<SessionConfig>; serverConfig?: Partial<SessionConfig>; clock?: Clock; highWaterMark?: number } = {},
): { client: Session; server: Session } {
  const hwm = opts.highWaterMark ?? 1024 * 1024;
  const make = (getPeer: () => Session, getSelf: () => Session) => {
    let inFlight = 0;
    let blocked = false;
    return {
      write(chunk: Buffer): boolean {
        inFlight += chunk.length;
        setImmediate(() => {
          inFlight -= chunk.length;
          getPeer().receive(chunk);
          if (blocked && inFlight <= hwm / 2) {
            blocked = false;
            getSelf().transportDrained();
          }
        });
        if (inFlight > hwm) blocked = true;
        return !blocked;
      },
      close(): void {
        setImmediate(() => getPeer().transportClosed());
      },
    };
  };
  // The transports reach the sessions through closures, called only after both exist.
  const client: Session = new Session({
    role: 'client',
    transport: make(() => server, () => client),
    config: { ...opts.config, ...opts.clientConfig },
    clock: opts.clock,
  });
  const server: Session = new Session({
    role: 'server',
    transport: make(() => client, () => server),
    config: { ...opts.config, ...opts.serverConfig },
    clock: opts.clock,
  });
  return { client, server };
}
