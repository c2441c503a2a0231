import { decodeHello, encodeHello, HELLO_VERSION, isValidServiceName, SERVICE_PROFILES, type Hello, type ServiceProfile } from '@porthole/protocol';
import { isIP } from 'node:net';
import { z } from 'zod';
import { isLanHost } from './lan.js';

/** One local service the relay may reach by name: always this host:port, never one the relay names. */
export interface ServiceConfig {
  readonly name: string;
  /** As written in the config, e.g. `http://127.0.0.1:5000`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Host header the relay sends to this service instead of the public one. */
  readonly hostHeader?: string;
  /** Forward the client's Authorization header (PrusaLink digest auth). */
  readonly passAuthorization?: boolean;
  /** The printer software behind it, so the relay knows what a viewer may read. */
  readonly profile?: ServiceProfile;
}

export interface RouteConfig {
  readonly path: string;
  readonly service: string;
  readonly stripPrefix: boolean;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface AgentConfig {
  /** `ws://` or `wss://` base URL of the relay, no trailing slash. */
  readonly relay: string;
  readonly credential: string;
  readonly services: Readonly<Record<string, ServiceConfig>>;
  readonly routes: readonly RouteConfig[];
  readonly caFile?: string;
  /**
   * Connect to this IP address instead of resolving the relay's host name, still verifying the
   * certificate for that name (like curl --resolve): split-horizon DNS, a relay on the LAN.
   */
  readonly relayAddress?: string;
  readonly keepAlive: { readonly intervalMs: number; readonly timeoutMs: number };
  /**
   * Reconnect backoff: the delay before attempt n is random in [0, min(capMs, baseMs·2^n)) (full
   * jitter), so a fleet of printers does not knock on a restarted relay all at once.
   */
  readonly reconnect: { readonly baseMs: number; readonly capMs: number };
  readonly logLevel: LogLevel;
}

/** Every default in one place. */
export const CONFIG_DEFAULTS = Object.freeze({
  configPath: '/etc/porthole/agent.json',
  keepAlive: Object.freeze({ intervalMs: 15_000, timeoutMs: 45_000 }),
  /** Same as the supervisor's own (retry/backoff.ts BACKOFF_DEFAULTS). */
  reconnect: Object.freeze({ baseMs: 500, capMs: 60_000 }),
  logLevel: 'info' as LogLevel,
  servicePort: 80,
});

export const MAX_SERVICES = 32;
export const MAX_ROUTES = 64;

/** Same rule as the relay's hello check: segments of URL path characters, '/' at both ends. */
const PATH_RE = /^\/(?:[A-Za-z0-9._~!$&'()*+,;=:@%-]+\/)*$/;
const HOST_HEADER_RE = /^[A-Za-z0-9.-]{1,253}(?::\d{1,5})?$/;
const CREDENTIAL_RE = /^[\x21-\x7e]*$/; // emptiness is reported by min(1)

const typed = (what: string) => ({
  error: (iss: { input?: unknown }) => (iss.input === undefined ? 'required' : `must be ${what}`),
});

const SERVICE_URL_HINT = 'must be http://host:port';

/** Parses a service URL; returns the reason as a string when it is not acceptable. */
export function parseServiceUrl(raw: string): { host: string; port: number } | string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return SERVICE_URL_HINT;
  }
  if (u.protocol !== 'http:') return `${SERVICE_URL_HINT} (only plain http to a local service)`;
  if (u.username !== '' || u.password !== '') return `${SERVICE_URL_HINT} (no user:password@)`;
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
    return `${SERVICE_URL_HINT} (no path, query or fragment: use routes for paths)`;
  }
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  if (host === '') return SERVICE_URL_HINT;
  if (!isLanHost(host)) return `${SERVICE_URL_HINT} on this machine or the local network (${host} is not)`;
  return { host, port: u.port === '' ? CONFIG_DEFAULTS.servicePort : Number(u.port) };
}

/** Normalises the relay URL to ws(s)://host[:port][/prefix]; returns the reason when it is not acceptable. */
export function parseRelayUrl(raw: string): string | { error: string } {
  const hint = 'must be wss://host (or ws://, https://, http://)';
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { error: hint };
  }
  const scheme = ({ 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' } as Record<string, string>)[u.protocol];
  if (scheme === undefined) return { error: hint };
  if (u.username !== '' || u.password !== '') return { error: `${hint} (no user:password@; the credential has its own field)` };
  if (u.search !== '' || u.hash !== '') return { error: `${hint} (no query or fragment)` };
  const path = u.pathname.replace(/\/+$/, '');
  return `${scheme}//${u.host}${path}`;
}

const serviceSchema = z.strictObject(
  {
    url: z.string(typed('a string like http://127.0.0.1:5000')).transform((s, ctx) => {
      const r = parseServiceUrl(s);
      if (typeof r === 'string') {
        ctx.addIssue({ code: 'custom', message: r });
        return z.NEVER;
      }
      return { url: s, ...r };
    }),
    hostHeader: z
      .string(typed('a host name'))
      .regex(HOST_HEADER_RE, 'must be a host name, optionally with :port')
      .optional(),
    passAuthorization: z.boolean(typed('true or false')).optional(),
    profile: z.enum(SERVICE_PROFILES, typed(`one of ${SERVICE_PROFILES.join(', ')}`)).optional(),
  },
  typed('an object'),
);

const routeSchema = z.strictObject(
  {
    path: z
      .string(typed('a path like /webcam/'))
      .max(256, 'must be at most 256 characters')
      .regex(PATH_RE, "must start and end with '/' (e.g. / or /webcam/)")
      .refine((p) => !p.split('/').some((seg) => seg === '.' || seg === '..'), "must not contain '.' or '..' segments"),
    service: z.string(typed('a service name')),
    stripPrefix: z.boolean(typed('true or false')).default(false),
  },
  typed('an object'),
);

const intMs = (min: number, max: number) =>
  z
    .number(typed('a number of milliseconds'))
    .int('must be an integer')
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

export const configSchema = z.strictObject(
  {
    relay: z.string(typed('a string like wss://relay.example')).transform((s, ctx) => {
      const r = parseRelayUrl(s);
      if (typeof r !== 'string') {
        ctx.addIssue({ code: 'custom', message: r.error });
        return z.NEVER;
      }
      return r;
    }),
    credential: z
      .string(typed('a string'))
      .min(1, 'required')
      .max(1024, 'must be at most 1024 characters')
      .regex(CREDENTIAL_RE, 'must be printable ASCII without spaces'),
    services: z.record(z.string(), serviceSchema, typed('an object of name → { url }')),
    routes: z
      .array(routeSchema, typed('a list of { path, service }'))
      .min(1, 'must list at least one route')
      .max(MAX_ROUTES, `must list at most ${MAX_ROUTES} routes`),
    caFile: z.string(typed('a file path')).min(1, 'must be a file path').optional(),
    relayAddress: z
      .string(typed('an IP address'))
      .refine((s) => isIP(s) !== 0, 'must be an IP address such as 203.0.113.7 or 2001:db8::7 (the certificate is still checked for the relay URL\'s name)')
      .optional(),
    keepAlive: z
      .strictObject(
        {
          intervalMs: intMs(1_000, 600_000).default(CONFIG_DEFAULTS.keepAlive.intervalMs),
          timeoutMs: intMs(2_000, 3_600_000).default(CONFIG_DEFAULTS.keepAlive.timeoutMs),
        },
        typed('an object'),
      )
      .default({ ...CONFIG_DEFAULTS.keepAlive }),
    reconnect: z
      .strictObject(
        {
          baseMs: intMs(100, 60_000).default(CONFIG_DEFAULTS.reconnect.baseMs),
          capMs: intMs(1_000, 3_600_000).default(CONFIG_DEFAULTS.reconnect.capMs),
        },
        typed('an object'),
      )
      .default({ ...CONFIG_DEFAULTS.reconnect }),
    logLevel: z.enum(LOG_LEVELS, typed(`one of ${LOG_LEVELS.join(', ')}`)).default(CONFIG_DEFAULTS.logLevel),
  },
  typed('an object'),
);

type Parsed = z.output<typeof configSchema>;

/** The checks that need more than one field. Returns `path: message` strings. */
export function crossCheck(c: Parsed): string[] {
  const errors: string[] = [];
  const names = Object.keys(c.services);
  if (names.length === 0) errors.push('services: must list at least one service');
  if (names.length > MAX_SERVICES) errors.push(`services: must list at most ${MAX_SERVICES} services`);
  for (const name of names) {
    if (!isValidServiceName(name)) {
      errors.push(`services.${name}: invalid service name (a-z, 0-9, '-' and '_', starting with a letter or digit, at most 63)`);
    }
  }
  const seen = new Set<string>();
  c.routes.forEach((r, i) => {
    if (!Object.prototype.hasOwnProperty.call(c.services, r.service)) {
      errors.push(`routes.${i}.service: no service named ${JSON.stringify(r.service)} in services`);
    }
    if (seen.has(r.path)) errors.push(`routes.${i}.path: duplicate path ${r.path}`);
    seen.add(r.path);
  });
  if (c.keepAlive.timeoutMs <= c.keepAlive.intervalMs) {
    errors.push('keepAlive.timeoutMs: must be longer than keepAlive.intervalMs');
  }
  if (c.reconnect.capMs < c.reconnect.baseMs) {
    errors.push('reconnect.capMs: must be at least reconnect.baseMs');
  }
  return errors;
}

/** The hello the agent sends in its upgrade request, from a validated config. */
export function helloFor(config: Pick<AgentConfig, 'services' | 'routes'>, agentVersion: string): Hello {
  return {
    v: HELLO_VERSION,
    agent: agentVersion,
    services: Object.values(config.services).map((s) => ({
      name: s.name,
      ...(s.hostHeader !== undefined ? { hostHeader: s.hostHeader } : {}),
      ...(s.passAuthorization === true ? { passAuthorization: true } : {}),
      ...(s.profile !== undefined ? { profile: s.profile } : {}),
    })),
    routes: config.routes.map((r) => ({ path: r.path, service: r.service, stripPrefix: r.stripPrefix })),
  };
}

/** Builds the final config shape from a parse that passed every check. */
export function toAgentConfig(c: Parsed): AgentConfig {
  const services: Record<string, ServiceConfig> = {};
  for (const [name, s] of Object.entries(c.services)) {
    services[name] = {
      name,
      url: s.url.url,
      host: s.url.host,
      port: s.url.port,
      ...(s.hostHeader !== undefined ? { hostHeader: s.hostHeader } : {}),
      ...(s.passAuthorization !== undefined ? { passAuthorization: s.passAuthorization } : {}),
      ...(s.profile !== undefined ? { profile: s.profile } : {}),
    };
  }
  return {
    relay: c.relay,
    credential: c.credential,
    services,
    routes: c.routes.map((r) => ({ path: r.path, service: r.service, stripPrefix: r.stripPrefix })),
    ...(c.caFile !== undefined ? { caFile: c.caFile } : {}),
    ...(c.relayAddress !== undefined ? { relayAddress: c.relayAddress } : {}),
    keepAlive: { intervalMs: c.keepAlive.intervalMs, timeoutMs: c.keepAlive.timeoutMs },
    reconnect: { baseMs: c.reconnect.baseMs, capMs: c.reconnect.capMs },
    logLevel: c.logLevel,
  };
}

/** The relay runs decodeHello() on what we send; checking it here turns a would-be endless
 * reconnect loop into a start-up error. Returns the reason, or undefined when it passes. */
export function checkHello(config: AgentConfig): string | undefined {
  try {
    decodeHello(encodeHello(helloFor(config, '0.0.0')));
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}
