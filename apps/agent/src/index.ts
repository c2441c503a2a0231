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
export * from './detect/index.js';
export * from './doctor/index.js';
export { httpGet, tcpProbe, plainNetError, type GetAnswer, type GetOptions, type ProbeFailure, type TcpOptions } from './probe/http.js';
export { createDetectCommand, detectCommand, describeDetection, describeProposal, type DetectDeps } from './commands/detect.js';
export { doctorCommand, EXIT_PROBLEMS } from './commands/doctor.js';
export { main, COMMANDS, helpText, type Command, type CommandContext } from './main.js';
export { AGENT_VERSION } from './version.js';
