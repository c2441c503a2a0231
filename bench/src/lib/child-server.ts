// What the bench's helper servers (the origin, the MJPEG camera) share: each runs in its own
// process so its timing never shares an event loop with the load generator; it announces its
// port with one JSON line, stops on SIGTERM/SIGINT, and never outlives the bench.
import type http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { spawnManaged } from '@porthole/e2e/procs';
import type { LogLine, ManagedProcess } from '@porthole/e2e/procs';

/**
 * In the child: listens on 127.0.0.1, prints `{"msg": msg, "port": N, ...extra}`, and exits on a
 * signal or when the parent is gone (its sockets destroyed first).
 */
export function serveInChild(server: http.Server, msg: string, extra: Record<string, unknown> = {}): void {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ msg, port: (server.address() as AddressInfo).port, ...extra })}\n`);
  });
  const stop = () => {
    server.close();
    for (const s of sockets) s.destroy();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Never outlive the bench (the bench also kills it on exit).
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 1_000).unref();
}

export interface ChildServer {
  port: number;
  /** The announcement line (its JSON carries any extra fields). */
  line: LogLine;
  proc: ManagedProcess;
  close(): Promise<void>;
}

/**
 * In the bench: runs `node script ...args` (after a `wrap` command such as
 * `ip netns exec NS`, if given) and resolves once it announced `msg`.
 */
export async function startChildServer(name: string, script: string, args: string[], msg: string, timeoutMs = 10_000, wrap: string[] = []): Promise<ChildServer> {
  const argv = [...wrap, process.execPath, script, ...args];
  const proc = spawnManaged(name, argv[0] as string, argv.slice(1));
  let line: LogLine;
  try {
    line = await proc.waitForLog(msg, timeoutMs);
  } catch (err) {
    await proc.stop(2_000);
    throw err;
  }
  return {
    port: Number(line.json?.port),
    line,
    proc,
    async close() {
      await proc.stop(2_000);
    },
  };
}
