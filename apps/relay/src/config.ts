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
  /** Bearer token that lets Prometheus scrape /metrics from elsewhere; unset: loopback only. Secret. */
  readonly metricsToken: string | undefined;
  /** How long a camera's upstream stays open after its last viewer left. */
  readonly webcamGraceMs: number;
  /** Frame-rate cap for share links and viewers who ask for none (`?fps=N` overrides); 0: none. */
  readonly webcamViewerFps: number;
  /**
   * HTTPS: `off` serves plain HTTP on `port` (localhost, or behind your own TLS proxy);
   * `acme` gets certificates itself (HTTP-01 for the domain, DNS-01 for `*.domain`);
   * `files` serves the operator's certificate files, reloaded when they change.
   */
  readonly tls: TlsMode;
  /** With TLS on: the plain-HTTP port for ACME HTTP-01 answers and the redirect to HTTPS. */
  readonly httpPort: number;
  /** ACME directory URL (`production`/`staging` name Let's Encrypt's). */
  readonly acmeDirectoryUrl: string;
  /** Contact address given to the ACME CA (expiry notices). */
  readonly acmeEmail: string | undefined;
  /** Extra CA certificate(s) to trust for the ACME server's own HTTPS (a private CA). Absolute. */
  readonly acmeCaFile: string | undefined;
  /** DNS provider for the wildcard's DNS-01 challenge. */
  readonly dnsProvider: DnsProviderName | undefined;
  /** How long to wait after publishing a TXT record before the CA looks; unset: the provider's own. */
  readonly dnsPropagationMs: number | undefined;
  /** Cloudflare API token (Zone.DNS:Edit on the domain's zone). Secret. */
  readonly cloudflareApiToken: string | undefined;
  /** Cloudflare zone id; unset: looked up by name (the token then also needs Zone.Zone:Read). */
  readonly cloudflareZoneId: string | undefined;
  /** pebble-challtestsrv's management API (tests). */
  readonly challtestsrvUrl: string | undefined;
  /** `files` mode: PEM certificate chain and private key. Absolute. */
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  /**
   * Tunnel keep-alive: the relay pings each agent this often, and a tunnel that sends nothing at
   * all for `keepAliveTimeoutMs` is dead (a partition, a half-open TCP connection): its socket is
   * dropped and the device shows offline. Defaults suit cellular and home links (15 s / 45 s).
   */
  readonly keepAliveIntervalMs: number;
  readonly keepAliveTimeoutMs: number;
  /** How long a printer's service may take to start answering a request before the phone gets a 504. */
  readonly responseTimeoutMs: number;
  /** Hostile input: a request target longer than this gets 414, before anything else. */
  readonly maxUrlBytes: number;
  /** Hostile input: request header fields (names and values) above this many bytes get 431. */
  readonly maxHeaderBytes: number;
  /** Hostile input: a request whose headers are not complete within this long gets 408 (slowloris). */
  readonly headersTimeoutMs: number;
  /**
   * Hostile input: a request body the relay is ready to read but that brings no byte for this long
   * gets 408 and is aborted. An idle timer, not a total: a 2 GiB upload at the printer's pace is fine.
   */
  readonly bodyIdleTimeoutMs: number;
  /** Concurrent exchanges (HTTP requests, WebSockets) proxied to one device; beyond it 503 + Retry-After. */
  readonly maxStreamsPerDevice: number;
  /** Agent endpoint: failed attempts an address may make at once before it gets 429 without any credential check. */
  readonly agentRefusalBurst: number;
  /** Agent endpoint: how many of those attempts an address earns back per minute. */
  readonly agentRefusalsPerMinute: number;
}

export const TLS_MODES = ['off', 'acme', 'files'] as const;
export type TlsMode = (typeof TLS_MODES)[number];

/** DNS-01 providers (src/tls/dns/): add a name here and a case in createDnsProvider(). */
export const DNS_PROVIDERS = ['cloudflare', 'challtestsrv'] as const;
export type DnsProviderName = (typeof DNS_PROVIDERS)[number];

/** Shorthands accepted by `acmeDirectoryUrl`. */
export const ACME_DIRECTORIES = {
  production: 'https://acme-v02.api.letsencrypt.org/directory',
  staging: 'https://acme-staging-v02.api.letsencrypt.org/directory',
} as const;

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
  webcamGraceMs: 5_000,
  webcamViewerFps: 5,
  tls: 'off',
  /** `port` when TLS is on and `port` is unset. */
  httpsPort: 443,
  httpPort: 80,
  acmeDirectoryUrl: ACME_DIRECTORIES.production,
  keepAliveIntervalMs: 15_000,
  keepAliveTimeoutMs: 45_000,
  responseTimeoutMs: 60_000,
  maxUrlBytes: 8 * 1024,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 30_000,
  bodyIdleTimeoutMs: 60_000,
  maxStreamsPerDevice: 128, // the agent's own stream limit (DIAL_DEFAULTS): past it the phone gets 503, not a refused stream
  agentRefusalBurst: 10,
  agentRefusalsPerMinute: 30,
} as const satisfies Partial<Record<keyof RelayConfig | 'httpsPort', unknown>>;

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
  metricsToken: ['PORTHOLE_METRICS_TOKEN', 'string'],
  webcamGraceMs: ['PORTHOLE_WEBCAM_GRACE_MS', 'number'],
  webcamViewerFps: ['PORTHOLE_WEBCAM_VIEWER_FPS', 'number'],
  tls: ['PORTHOLE_TLS', 'string'],
  httpPort: ['PORTHOLE_HTTP_PORT', 'number'],
  acmeDirectoryUrl: ['PORTHOLE_ACME_DIRECTORY_URL', 'string'],
  acmeEmail: ['PORTHOLE_ACME_EMAIL', 'string'],
  acmeCaFile: ['PORTHOLE_ACME_CA_FILE', 'string'],
  dnsProvider: ['PORTHOLE_DNS_PROVIDER', 'string'],
  dnsPropagationMs: ['PORTHOLE_DNS_PROPAGATION_MS', 'number'],
  cloudflareApiToken: ['PORTHOLE_CLOUDFLARE_API_TOKEN', 'string'],
  cloudflareZoneId: ['PORTHOLE_CLOUDFLARE_ZONE_ID', 'string'],
  challtestsrvUrl: ['PORTHOLE_CHALLTESTSRV_URL', 'string'],
  tlsCertFile: ['PORTHOLE_TLS_CERT_FILE', 'string'],
  tlsKeyFile: ['PORTHOLE_TLS_KEY_FILE', 'string'],
  keepAliveIntervalMs: ['PORTHOLE_KEEPALIVE_INTERVAL_MS', 'number'],
  keepAliveTimeoutMs: ['PORTHOLE_KEEPALIVE_TIMEOUT_MS', 'number'],
  responseTimeoutMs: ['PORTHOLE_RESPONSE_TIMEOUT_MS', 'number'],
  maxUrlBytes: ['PORTHOLE_MAX_URL_BYTES', 'number'],
  maxHeaderBytes: ['PORTHOLE_MAX_HEADER_BYTES', 'number'],
  headersTimeoutMs: ['PORTHOLE_HEADERS_TIMEOUT_MS', 'number'],
  bodyIdleTimeoutMs: ['PORTHOLE_BODY_IDLE_TIMEOUT_MS', 'number'],
  maxStreamsPerDevice: ['PORTHOLE_MAX_STREAMS_PER_DEVICE', 'number'],
  agentRefusalBurst: ['PORTHOLE_AGENT_REFUSAL_BURST', 'number'],
  agentRefusalsPerMinute: ['PORTHOLE_AGENT_REFUSALS_PER_MINUTE', 'number'],
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

const acmeDirectory = z.string().transform((s, ctx) => {
  const named = (ACME_DIRECTORIES as Record<string, string>)[s];
  if (named !== undefined) return named;
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be production, staging or an https:// ACME directory URL' });
    return z.NEVER;
  }
  if (url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: 'must be an https:// URL (or production, staging)' });
    return z.NEVER;
  }
  return url.href;
});

/** Names a TLS certificate can be for (not localhost, not an address). */
const isLocalName = (domain: string) => domain === 'localhost' || domain.endsWith('.localhost') || !domain.includes('.');

const ConfigSchema = z.strictObject({
  dataDir: z.string().min(1).default(DEFAULTS.dataDir),
  databaseUrl: z
    .string()
    .regex(/^file:[^?#]+$/, 'must be a SQLite URL file:PATH (other databases are not supported yet)')
    .refine((s) => !s.includes(':memory:'), 'must name a file, not :memory:')
    .optional(),
  host: z.string().min(1).default(DEFAULTS.host),
  port: z.int().min(0).max(65535).optional(),
  domain: hostname.default(DEFAULTS.domain),
  publicUrl: origin.optional(),
  logLevel: z.enum(LOG_LEVELS).default(DEFAULTS.logLevel),
  trustProxy: z.boolean().default(DEFAULTS.trustProxy),
  shutdownGraceMs: z.int().min(0).max(600_000).default(DEFAULTS.shutdownGraceMs),
  loginDelayMs: z.int().min(1).max(60_000).default(DEFAULTS.loginDelayMs),
  metricsToken: z.string().min(16, 'must be at least 16 characters').regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces').optional(),
  webcamGraceMs: z.int().min(0).max(600_000).default(DEFAULTS.webcamGraceMs),
  webcamViewerFps: z.number().min(0).max(120).default(DEFAULTS.webcamViewerFps),
  tls: z.enum(TLS_MODES).default(DEFAULTS.tls),
  httpPort: z.int().min(0).max(65535).default(DEFAULTS.httpPort),
  acmeDirectoryUrl: acmeDirectory.default(DEFAULTS.acmeDirectoryUrl),
  acmeEmail: z.email().optional(),
  acmeCaFile: z.string().min(1).optional(),
  dnsProvider: z.enum(DNS_PROVIDERS).optional(),
  dnsPropagationMs: z.int().min(0).max(600_000).optional(),
  cloudflareApiToken: z.string().min(1).optional(),
  cloudflareZoneId: z.string().regex(/^[0-9a-f]{32}$/, 'must be the 32-character zone id from the dashboard').optional(),
  challtestsrvUrl: origin.optional(),
  tlsCertFile: z.string().min(1).optional(),
  tlsKeyFile: z.string().min(1).optional(),
  keepAliveIntervalMs: z.int().min(1_000).max(600_000).default(DEFAULTS.keepAliveIntervalMs),
  keepAliveTimeoutMs: z.int().min(2_000).max(3_600_000).default(DEFAULTS.keepAliveTimeoutMs),
  responseTimeoutMs: z.int().min(1_000).max(3_600_000).default(DEFAULTS.responseTimeoutMs),
  maxUrlBytes: z.int().min(256).max(64 * 1024).default(DEFAULTS.maxUrlBytes),
  maxHeaderBytes: z.int().min(1024).max(256 * 1024).default(DEFAULTS.maxHeaderBytes),
  headersTimeoutMs: z.int().min(200).max(600_000).default(DEFAULTS.headersTimeoutMs),
  bodyIdleTimeoutMs: z.int().min(200).max(3_600_000).default(DEFAULTS.bodyIdleTimeoutMs),
  maxStreamsPerDevice: z.int().min(1).max(100_000).default(DEFAULTS.maxStreamsPerDevice),
  agentRefusalBurst: z.int().min(1).max(100_000).default(DEFAULTS.agentRefusalBurst),
  agentRefusalsPerMinute: z.int().min(1).max(1_000_000).default(DEFAULTS.agentRefusalsPerMinute),
}).superRefine((c, ctx) => {
  const need = (field: string, message: string) => ctx.addIssue({ code: 'custom', path: [field], message });
  if (c.keepAliveTimeoutMs <= c.keepAliveIntervalMs) need('keepAliveTimeoutMs', 'must be longer than keepAliveIntervalMs');
  if (c.tls === 'acme') {
    if (isLocalName(c.domain)) need('domain', 'tls "acme" needs a public DNS name (use tls "off" on localhost)');
    if (c.dnsProvider === undefined) need('dnsProvider', `tls "acme" needs a DNS provider for *.${c.domain} (${DNS_PROVIDERS.join(', ')})`);
    if (c.dnsProvider === 'cloudflare' && c.cloudflareApiToken === undefined) need('cloudflareApiToken', 'required with dnsProvider "cloudflare"');
    if (c.dnsProvider === 'challtestsrv' && c.challtestsrvUrl === undefined) need('challtestsrvUrl', 'required with dnsProvider "challtestsrv"');
  }
  if (c.tls === 'files') {
    if (c.tlsCertFile === undefined) need('tlsCertFile', 'required with tls "files"');
    if (c.tlsKeyFile === undefined) need('tlsKeyFile', 'required with tls "files"');
  }
  if (c.tls !== 'off' && c.port !== undefined && c.port !== 0 && c.port === c.httpPort) {
    need('httpPort', 'must differ from port (HTTPS) when TLS is on');
  }
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
  const secure = c.tls !== 'off';
  const port = c.port ?? (secure ? DEFAULTS.httpsPort : DEFAULTS.port);
  const publicUrl = c.publicUrl ?? (secure ? `https://${c.domain}${port === 443 ? '' : `:${port}`}` : `http://${c.domain}${port === 80 ? '' : `:${port}`}`);
  const file = (f: string | undefined) => (f === undefined ? undefined : path.resolve(cwd, f));
  return {
    dataDir,
    databaseUrl,
    host: c.host,
    port,
    domain: c.domain,
    publicUrl,
    logLevel: c.logLevel,
    trustProxy: c.trustProxy,
    shutdownGraceMs: c.shutdownGraceMs,
    loginDelayMs: c.loginDelayMs,
    metricsToken: c.metricsToken,
    webcamGraceMs: c.webcamGraceMs,
    webcamViewerFps: c.webcamViewerFps,
    tls: c.tls,
    httpPort: c.httpPort,
    acmeDirectoryUrl: c.acmeDirectoryUrl,
    acmeEmail: c.acmeEmail,
    acmeCaFile: file(c.acmeCaFile),
    dnsProvider: c.dnsProvider,
    dnsPropagationMs: c.dnsPropagationMs,
    cloudflareApiToken: c.cloudflareApiToken,
    cloudflareZoneId: c.cloudflareZoneId,
    challtestsrvUrl: c.challtestsrvUrl,
    tlsCertFile: file(c.tlsCertFile),
    tlsKeyFile: file(c.tlsKeyFile),
    keepAliveIntervalMs: c.keepAliveIntervalMs,
    keepAliveTimeoutMs: c.keepAliveTimeoutMs,
    responseTimeoutMs: c.responseTimeoutMs,
    maxUrlBytes: c.maxUrlBytes,
    maxHeaderBytes: c.maxHeaderBytes,
    headersTimeoutMs: c.headersTimeoutMs,
    bodyIdleTimeoutMs: c.bodyIdleTimeoutMs,
    maxStreamsPerDevice: c.maxStreamsPerDevice,
    agentRefusalBurst: c.agentRefusalBurst,
    agentRefusalsPerMinute: c.agentRefusalsPerMinute,
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
