import { parseArgs } from 'node:util';
import { ConfigError, CONFIG_DEFAULTS, helloFor, loadConfig, readCa, type AgentConfig } from '../config/index.js';
import { dial } from '../connection/index.js';
import { Ingress, type IngressOptions } from '../ingress/index.js';
import { createLogger, LogField, type Logger } from '../log.js';
import { ExitCode, Supervisor, type Dialer, type SupervisorOptions } from '../supervisor/index.js';
import { AGENT_VERSION } from '../version.js';
import type { Command, CommandContext } from './types.js';

export const CONFIG_ENV = 'PORTHOLE_AGENT_CONFIG';

const usage = `Usage: porthole-agent run [--config PATH]

Connects to the relay and serves the configured local services until stopped.

Options:
  -c, --config PATH   config file (default: $${CONFIG_ENV} or ${CONFIG_DEFAULTS.configPath})
  -h, --help          show this help

Environment:
  ${CONFIG_ENV}   config file path
  PORTHOLE_RELAY          overrides "relay"
  PORTHOLE_CREDENTIAL     overrides "credential"

Exit status: 0 stopped by SIGTERM/SIGINT, 78 invalid config or credential refused by the relay,
64 bad usage, 70 internal error.
`;

function isLoopbackRelay(relay: string): boolean {
  const host = new URL(relay).hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host.endsWith('.localhost') || host === '::1' || host.startsWith('127.');
}

export interface AgentDeps {
  logger: Logger;
  ca?: Buffer;
  /** Test seams, passed to the supervisor and the ingress. */
  supervisor?: Pick<SupervisorOptions, 'clock' | 'random' | 'drainTimeoutMs'>;
  ingress?: Pick<IngressOptions, 'maxStreams' | 'connectTimeoutMs'>;
}

/** Wires config → ingress → dialer → supervisor; separate from the command so tests drive the real thing. */
export function createAgent(config: AgentConfig, deps: AgentDeps): { supervisor: Supervisor; ingress: Ingress } {
  const ingress = new Ingress({ services: config.services, logger: deps.logger, ...deps.ingress });
  const hello = helloFor(config, AGENT_VERSION);
  const dialer: Dialer = ({ signal, onStream }) =>
    dial({
      relay: config.relay,
      credential: config.credential,
      hello,
      ...(deps.ca !== undefined ? { ca: deps.ca } : {}),
      ...(config.relayAddress !== undefined ? { relayAddress: config.relayAddress } : {}),
      session: { keepAliveInterval: config.keepAlive.intervalMs, keepAliveTimeout: config.keepAlive.timeoutMs },
      onStream,
      signal,
    });
  const supervisor = new Supervisor({
    dial: dialer,
    onStream: ingress.handle,
    logger: deps.logger,
    relay: config.relay,
    backoff: { baseMs: config.reconnect.baseMs, capMs: config.reconnect.capMs },
    ...deps.supervisor,
  });
  return { supervisor, ingress };
}

async function main(args: string[], ctx: CommandContext): Promise<number> {
  let values: { config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    ctx.stderr(`porthole-agent run: ${(e as Error).message}\n\n${usage}`);
    return ExitCode.Usage;
  }
  if (values.help === true) {
    ctx.stdout(usage);
    return ExitCode.Ok;
  }
  const configPath = values.config ?? (ctx.env[CONFIG_ENV] || CONFIG_DEFAULTS.configPath);

  let config: AgentConfig;
  let ca: Buffer | undefined;
  try {
    config = loadConfig(configPath, ctx.env);
    ca = readCa(config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    ctx.stderr(`porthole-agent: ${e.message}\n`);
    return ExitCode.Config;
  }

  const logger = createLogger({ level: config.logLevel, ...(ctx.logDestination ? { destination: ctx.logDestination } : {}) });
  logger.info(
    {
      [LogField.version]: AGENT_VERSION,
      [LogField.node]: process.version,
      [LogField.relay]: config.relay,
      [LogField.services]: Object.keys(config.services),
      [LogField.config]: configPath,
    },
    'agent starting',
  );
  if (config.relay.startsWith('ws://') && !isLoopbackRelay(config.relay)) {
    logger.warn({ [LogField.relay]: config.relay }, 'relay URL is not TLS (ws://): the credential crosses the network in clear');
  }

  const { supervisor } = createAgent(config, { logger, ...(ca !== undefined ? { ca } : {}) });
  const off = ctx.onSignal(['SIGTERM', 'SIGINT'], (signal) => supervisor.shutdown(signal));
  try {
    return await supervisor.run();
  } finally {
    off();
  }
}

export const runCommand: Command = {
  summary: 'connect to the relay and serve the configured services',
  usage,
  main,
};
