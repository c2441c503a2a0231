import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { RelayError } from './errors.js';

/**
 * The relay's configuration: one schema, defaults in one place, validated at start-up, frozen.
 *
 * Sources, later wins: defaults < JSON file (`--config PATH` or PORTHOLE_CONFIG) < environment
 * (PORTHOLE_*) < `overrides` (tests, the CLI). The file uses the field names below.
 */
export interface RelayConfig {
  /** Directory for the database and other state; created with mode 0700. Absolute. */
  readonly dataDir: string;
  /** `file:/absolute/path.db` (SQLite; the only kind for now). */
  readonly databaseUrl: string;
  /** Address the HTTP server binds. */
  readonly host: string;
  /** Port the HTTP server binds; 0 picks a free one. */
  readonly port: number;
  /** The relay's public domain: the dashboard is on it, device N is on `N.<domain>`. Lowercase. */
  readonly domain: string;
  /** Public origin of the relay as phones and agents reach it, no trailing slash. */
  readonly publicUrl: string;
  readonly logLevel: LogLevel;
  /** Trust X-Forwarded-* from the peer (only behind a TLS proxy that sets them). */
  readonly trustProxy: boolean;
  /** How long shutdown waits for tunnels and requests to drain before cutting them. */
  readonly shutdownGraceMs: number;
  /** First delay imposed after repeated failed logins (it doubles per failure, capped at 60 s). */
  readonly loginDelayMs: number;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Every default. `databaseUrl` and `publicUrl` are derived when unset: see `derive()`. */
export const DEFAULTS = {
  dataDir: 'data',
  host: '127.0.0.1',
  port: 8080,
  domain: 'localhost',
  logLevel: 'info',
  trustProxy: false,
  shutdownGraceMs: 10_000,
  loginDelayMs: 1_000,
} as const satisfies Partial<Record<keyof RelayConfig, unknown>>;

type Kind = 'string' | 'number' | 'boolean';

/** The environment variable of each field, and how its text is read. */
export const ENV_VARS = {
  dataDir: ['PORTHOLE_DATA_DIR', 'string'],
  databaseUrl: ['PORTHOLE_DATABASE_URL', 'string'],
  host: ['PORTHOLE_HOST', 'string'],
  port: ['PORTHOLE_PORT', 'number'],
  domain: ['PORTHOLE_DOMAIN', 'string'],
  publicUrl: ['PORTHOLE_PUBLIC_URL', 'string'],
  logLevel: ['PORTHOLE_LOG_LEVEL', 'string'],
  trustProxy: ['PORTHOLE_TRUST_PROXY', 'boolean'],
  shutdownGraceMs: ['PORTHOLE_SHUTDOWN_GRACE_MS', 'number'],
  loginDelayMs: ['PORTHOLE_LOGIN_DELAY_MS', 'number'],
} as const satisfies Record<keyof RelayConfig, readonly [string, Kind]>;

/** Names the config file when `file` is not given. */
export const CONFIG_ENV_VAR = 'PORTHOLE_CONFIG';

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

const hostname = z
  .string()
  .transform((s) => s.toLowerCase())
  .refine((s) => s.length <= 253 && s.split('.').every((l) => LABEL.test(l)), {
    message: 'must be a DNS name such as relay.example.com or localhost',
  });

const origin = z.string().transform((s, ctx) => {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute http(s) URL' });
    return z.NEVER;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: 'must use http: or https:' });
    return z.NEVER;
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    ctx.addIssue({ code: 'custom', message: 'must be an origin only (scheme, host, port), no path' });
    return z.NEVER;
  }
  return url.origin;
});

const ConfigSchema = z.strictObject({
  dataDir: z.string().min(1).default(DEFAULTS.dataDir),
  databaseUrl: z
    .string()
    .regex(/^file:[^?#]+$/, 'must be a SQLite URL file:PATH (other databases are not supported yet)')
    .refine((s) => !s.includes(':memory:'), 'must name a file, not :memory:')
    .optional(),
  host: z.string().min(1).default(DEFAULTS.host),
  port: z.int().min(0).max(65535).default(DEFAULTS.port),
  domain: hostname.default(DEFAULTS.domain),
  publicUrl: origin.optional(),
  logLevel: z.enum(LOG_LEVELS).default(DEFAULTS.logLevel),
  trustProxy: z.boolean().default(DEFAULTS.trustProxy),
  shutdownGraceMs: z.int().min(0).max(600_000).default(DEFAULTS.shutdownGraceMs),
  loginDelayMs: z.int().min(1).max(60_000).default(DEFAULTS.loginDelayMs),
});

/** What a config file or `overrides` may hold: any subset of the fields. */
export type RelayConfigInput = Partial<Record<keyof RelayConfig, unknown>>;

export interface LoadConfigOptions {
  /** Defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** JSON config file; defaults to $PORTHOLE_CONFIG; none if neither. */
  file?: string;
  /** Applied last (tests, command-line flags). */
  overrides?: RelayConfigInput;
  /** Base for relative paths; defaults to `process.cwd()`. */
  cwd?: string;
}

/** Reads, merges, validates and freezes the configuration. Throws RELAY_INVALID_CONFIG naming the field. */
export function loadConfig(opts: LoadConfigOptions = {}): RelayConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const input: Record<string, unknown> = {};
  const source: Record<string, string> = {};
  const set = (values: Record<string, unknown>, from: string) => {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined) continue;
      input[key] = value;
      source[key] = from;
    }
  };

  const file = opts.file ?? (env[CONFIG_ENV_VAR] || undefined);
  if (file !== undefined) set(readConfigFile(path.resolve(cwd, file)), `config file ${file}`);

  for (const [key, [name, kind]] of Object.entries(ENV_VARS)) {
    const text = env[name];
    if (text === undefined || text === '') continue;
    set({ [key]: fromEnv(text, kind) }, name);
  }

  if (opts.overrides) set(opts.overrides, 'overrides');

  const parsed = ConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const where = issue.keys.map((k) => source[k]).filter((s) => s !== undefined);
        return `unknown field ${issue.keys.map((k) => `"${k}"`).join(', ')}${where.length ? ` (in ${[...new Set(where)].join(', ')})` : ''}`;
      }
      const key = String(issue.path[0] ?? '');
      const from = source[key];
      return `${key}${from ? ` (from ${from})` : ''}: ${issue.message}`;
    });
    throw new RelayError('RELAY_INVALID_CONFIG', [problems.join('; ')]);
  }
  return deepFreeze(derive(parsed.data, cwd));
}

/** Fills the derived defaults and makes paths absolute. */
function derive(c: z.output<typeof ConfigSchema>, cwd: string): RelayConfig {
  const dataDir = path.resolve(cwd, c.dataDir);
  const databaseUrl = c.databaseUrl
    ? `file:${path.resolve(cwd, c.databaseUrl.slice('file:'.length))}`
    : `file:${path.join(dataDir, 'porthole.db')}`;
  const publicUrl = c.publicUrl ?? `http://${c.domain}${c.port === 80 ? '' : `:${c.port}`}`;
  return {
    dataDir,
    databaseUrl,
    host: c.host,
    port: c.port,
    domain: c.domain,
    publicUrl,
    logLevel: c.logLevel,
    trustProxy: c.trustProxy,
    shutdownGraceMs: c.shutdownGraceMs,
    loginDelayMs: c.loginDelayMs,
  };
}

/** The SQLite file named by a `file:` database URL. */
export function sqliteFile(config: Pick<RelayConfig, 'databaseUrl'>): string {
  return config.databaseUrl.slice('file:'.length);
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new RelayError('RELAY_INVALID_CONFIG', [`cannot read config file ${file}: ${reason}`], { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RelayError('RELAY_INVALID_CONFIG', [`config file ${file} is not valid JSON: ${(err as Error).message}`], {
      cause: err,
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new RelayError('RELAY_INVALID_CONFIG', [`config file ${file} must hold a JSON object`]);
  }
  return value as Record<string, unknown>;
}

/** Environment text to the field's type; text that does not fit is left for the schema to reject. */
function fromEnv(text: string, kind: Kind): unknown {
  const t = text.trim();
  if (kind === 'number') return /^-?\d+$/.test(t) ? Number(t) : text;
  if (kind === 'boolean') {
    if (/^(true|1|yes|on)$/i.test(t)) return true;
    if (/^(false|0|no|off)$/i.test(t)) return false;
    return text;
  }
  return text;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
