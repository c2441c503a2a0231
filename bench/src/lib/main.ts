import { pathToFileURL } from 'node:url';
import { stopAll } from '@porthole/e2e/procs';

/**
 * Runs a bench file's `main` when the file is the entry point: bounded in time (gives up and
 * kills every child after `limitMs`), Ctrl-C and SIGTERM stop the children, failures exit 1.
 */
export function runAsMain(moduleUrl: string, name: string, limitMs: number, main: () => Promise<void>): void {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  const guard = setTimeout(() => {
    process.stderr.write(`${name} bench: still running after ${Math.round(limitMs / 60_000)} minutes, giving up\n`);
    void stopAll(1_000).finally(() => process.exit(2));
  }, limitMs);
  guard.unref();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      void stopAll(1_000).finally(() => process.exit(130));
    });
  }
  main().catch((err: unknown) => {
    process.stderr.write(`${name} bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    void stopAll(1_000).finally(() => process.exit(1));
  });
}
