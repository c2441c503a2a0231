import { readFileSync } from 'node:fs';
import { checkConfig, checkHello, crossCheck, toAgentConfig, type AgentConfig } from './schema.js';
import type { Issue } from './validate.js';

/** The config is unusable; `errors` name each bad field (`services.webcam.url: must be http://host:port`). */
export class ConfigError extends Error {
  readonly code = 'ERR_AGENT_CONFIG';
  readonly errors: readonly string[];
  constructor(message: string, errors: readonly string[] = []) {
    super(errors.length === 0 ? message : `${message}:\n  ${errors.join('\n  ')}`);
    this.name = 'ConfigError';
    this.errors = Object.freeze([...errors]);
  }
}

/** Environment variables that override fields of the file. */
export const ENV_OVERRIDES = Object.freeze({ relay: 'PORTHOLE_RELAY', credential: 'PORTHOLE_CREDENTIAL' } as const);

/** `path: message`; `(config)` for the whole; the variable's name for a field it overrode. */
function formatIssue(iss: Issue, fromEnv: ReadonlySet<string>): string {
  const path = iss.path.join('.');
  const top = String(iss.path[0] ?? '');
  const where = fromEnv.has(top)
    ? `${path} (from ${ENV_OVERRIDES[top as keyof typeof ENV_OVERRIDES]})`
    : path === ''
      ? '(config)'
      : path;
  return `${where}: ${iss.message}`;
}

export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Validates a parsed config file (plus environment overrides) and returns it deep-frozen.
 * Throws ConfigError listing every bad field.
 */
export function parseConfig(raw: unknown, env: Readonly<Record<string, string | undefined>> = {}): AgentConfig {
  const fromEnv = new Set<string>();
  let input = raw;
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
    const withEnv: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
    for (const [field, name] of Object.entries(ENV_OVERRIDES)) {
      const v = env[name];
      if (v !== undefined && v !== '') {
        withEnv[field] = v;
        fromEnv.add(field);
      }
    }
    input = withEnv;
  }
  const issues: Issue[] = [];
  const parsed = checkConfig(issues, input);
  if (parsed === undefined) {
    throw new ConfigError('invalid config', issues.map((i) => formatIssue(i, fromEnv)));
  }
  const errors = crossCheck(parsed);
  if (errors.length > 0) throw new ConfigError('invalid config', errors);
  const config = toAgentConfig(parsed);
  const helloProblem = checkHello(config);
  if (helloProblem !== undefined) throw new ConfigError('invalid config', [`(hello): ${helloProblem}`]);
  return deepFreeze(config);
}

/** Reads, parses and validates the config file. Throws ConfigError. */
export function loadConfig(path: string, env: Readonly<Record<string, string | undefined>> = {}): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ConfigError(`cannot read config file ${path}: ${code}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  try {
    return parseConfig(raw, env);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`invalid config file ${path}`, e.errors);
    throw e;
  }
}

/** Reads the extra CA certificate(s) for a wss:// relay signed by a private CA. */
export function readCa(config: AgentConfig): Buffer | undefined {
  if (config.caFile === undefined) return undefined;
  try {
    return readFileSync(config.caFile);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ConfigError('invalid config', [`caFile: cannot read ${config.caFile}: ${code}`]);
  }
}
