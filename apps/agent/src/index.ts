// The agent's modules, for tests and for the end-to-end suite.
export * from './config/index.js';
export * from './connection/index.js';
export * from './ingress/index.js';
export * from './retry/index.js';
export * from './supervisor/index.js';
export { createLogger, LogField, REDACT_PATHS, type Logger, type LoggerOptions } from './log.js';
export { realClock, type Clock } from './clock.js';
export { createAgent, runCommand, CONFIG_ENV, type AgentDeps } from './commands/run.js';
export { createPairCommand, pairCommand, writeFileAtomic, EXIT_FAILED, type PairDeps } from './commands/pair.js';
export * from './pairing/client.js';
export { main, COMMANDS, helpText, type Command, type CommandContext } from './main.js';
export { AGENT_VERSION } from './version.js';
