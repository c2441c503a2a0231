// A fleet of agents in one process, for the relay-restart test: 200 real agent processes would
// not fit a 2-core machine, so this runs the agent's own supervisor, dialler and ingress
// (apps/agent/dist) once per device, each with its own credential, in one Node process.
//
//   node test/dist/fleet.js SPEC.json
//
// spec: { relay, credentials: string[], service: "http://127.0.0.1:PORT", backoff: {baseMs, capMs} (the
//         config's `reconnect`),
//         keepAlive: {intervalMs, timeoutMs} }
// Prints one JSON line per event: {"ev":"connected"|"disconnected"|"reconnecting"|"stopped", "i", "t", ...}
// and {"ev":"ready","n"} once every agent is running. SIGTERM stops them all (exit 0).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from './procs.js';

export interface FleetSpec {
  relay: string;
  credentials: string[];
  service: string;
  backoff: { baseMs: number; capMs: number; stableMs?: number };
  keepAlive: { intervalMs: number; timeoutMs: number };
}

/** What this harness needs of apps/agent's library (kept loose: the agent is built separately). */
interface AgentLib {
  parseConfig(raw: unknown, env?: Record<string, string | undefined>): {
    relay: string;
    credential: string;
    services: Record<string, unknown>;
    routes: readonly unknown[];
    keepAlive: { intervalMs: number; timeoutMs: number };
    reconnect: { baseMs: number; capMs: number };
  };
  helloFor(config: unknown, version: string): unknown;
  dial(opts: Record<string, unknown>): Promise<unknown>;
  Ingress: new (opts: { services: unknown; logger: unknown }) => { handle: (stream: unknown) => void };
  Supervisor: new (opts: Record<string, unknown>) => {
    run(): Promise<number>;
    shutdown(signal?: string): void;
    on(ev: string, fn: (info: Record<string, unknown>) => void): unknown;
  };
  createLogger(opts: { level: string }): unknown;
  AGENT_VERSION: string;
}

/** The built agent library (apps/agent/dist/index.js). */
export const agentLibrary: string = resolve(repoRoot, 'apps/agent/dist/index.js');

function emit(ev: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ...ev, t: Date.now() })}\n`);
}

export async function runFleet(spec: FleetSpec): Promise<number> {
  if (!existsSync(agentLibrary)) throw new Error(`agent not built: ${agentLibrary}`);
  const lib = (await import(pathToFileURL(agentLibrary).href)) as AgentLib;
  const logger = lib.createLogger({ level: 'silent' });
  const supervisors = spec.credentials.map((credential, i) => {
    const config = lib.parseConfig({
      relay: spec.relay,
      credential,
      services: { ui: { url: spec.service } },
      routes: [{ path: '/', service: 'ui' }],
      keepAlive: spec.keepAlive,
      reconnect: spec.backoff,
    });
    const ingress = new lib.Ingress({ services: config.services, logger });
    const hello = lib.helloFor(config, lib.AGENT_VERSION);
    const sup = new lib.Supervisor({
      dial: ({ signal, onStream }: { signal: AbortSignal; onStream: unknown }) =>
        lib.dial({
          relay: config.relay,
          credential: config.credential,
          hello,
          session: { keepAliveInterval: config.keepAlive.intervalMs, keepAliveTimeout: config.keepAlive.timeoutMs },
          onStream,
          signal,
        }),
      onStream: ingress.handle,
      logger,
      relay: config.relay,
      // As `porthole-agent run` does (commands/run.ts createAgent).
      backoff: { ...config.reconnect, ...(spec.backoff.stableMs !== undefined ? { stableMs: spec.backoff.stableMs } : {}) },
    });
    sup.on('connected', (info) => emit({ ev: 'connected', i, conn: info.conn }));
    sup.on('disconnected', (info) => emit({ ev: 'disconnected', i, conn: info.conn, code: (info.error as { code?: string }).code }));
    sup.on('reconnecting', (info) => emit({ ev: 'reconnecting', i, delayMs: info.delayMs, attempt: info.attempt }));
    return sup;
  });
  const onSignal = () => supervisors.forEach((s) => s.shutdown('SIGTERM'));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const runs = supervisors.map((s) => s.run());
  emit({ ev: 'ready', n: supervisors.length });
  const codes = await Promise.all(runs);
  emit({ ev: 'stopped', codes: [...new Set(codes)] });
  return codes.every((c) => c === 0) ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  readFile(process.argv[2] ?? '', 'utf8')
    .then((text) => runFleet(JSON.parse(text) as FleetSpec))
    .then(
      (code) => process.exit(code),
      (err: unknown) => {
        process.stderr.write(`fleet: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        process.exit(70);
      },
    );
}
