import { decodeHello, encodeHello, HELLO_VERSION, isValidServiceName, SERVICE_PROFILES, type Hello, type ServiceProfile } from '@porthole/protocol';
import { isIP } from 'node:net';
import { isLanHost } from './lan.js';
import { boolean, integer, list, oneOf, optional, own, record, report, strictObject, string, withDefault, type Issue, type Path } from './validate.js';

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

/** The config as checked field by field, before the checks that need more than one field. */
export interface ParsedConfig {
  readonly relay: string;
  readonly credential: string;
  readonly services: Readonly<Record<string, ParsedService>>;
  readonly routes: readonly RouteConfig[];
  readonly caFile?: string | undefined;
  readonly relayAddress?: string | undefined;
  readonly keepAlive: { readonly intervalMs: number; readonly timeoutMs: number };
  readonly reconnect: { readonly baseMs: number; readonly capMs: number };
  readonly logLevel: LogLevel;
}

export interface ParsedService {
  readonly url: { readonly url: string; readonly host: string; readonly port: number };
  readonly hostHeader?: string | undefined;
  readonly passAuthorization?: boolean | undefined;
  readonly profile?: ServiceProfile | undefined;
}

const SERVICE_FIELDS = ['url', 'hostHeader', 'passAuthorization', 'profile'] as const;
const ROUTE_FIELDS = ['path', 'service', 'stripPrefix'] as const;
const CONFIG_FIELDS = ['relay', 'credential', 'services', 'routes', 'caFile', 'relayAddress', 'keepAlive', 'reconnect', 'logLevel'] as const;

function checkService(issues: Issue[], at: Path, value: unknown): ParsedService | undefined {
  return strictObject(issues, at, value, SERVICE_FIELDS, (o) => {
    const raw = string(issues, [...at, 'url'], own(o, 'url'), 'a string like http://127.0.0.1:5000');
    const target = raw === undefined ? undefined : parseServiceUrl(raw);
    if (typeof target === 'string') report(issues, [...at, 'url'], target);
    const hostHeader = optional(own(o, 'hostHeader'), (v) =>
      string(issues, [...at, 'hostHeader'], v, 'a host name', [[(s) => HOST_HEADER_RE.test(s), 'must be a host name, optionally with :port']]),
    );
    const passAuthorization = optional(own(o, 'passAuthorization'), (v) => boolean(issues, [...at, 'passAuthorization'], v, 'true or false'));
    const profile = optional(own(o, 'profile'), (v) =>
      oneOf(issues, [...at, 'profile'], v, SERVICE_PROFILES, `one of ${SERVICE_PROFILES.join(', ')}`),
    );
    if (raw === undefined || target === undefined || typeof target === 'string') return undefined;
    return { url: { url: raw, ...target }, hostHeader, passAuthorization, profile };
  });
}

function checkRoute(issues: Issue[], at: Path, value: unknown): RouteConfig | undefined {
  return strictObject(issues, at, value, ROUTE_FIELDS, (o) => {
    const path = string(issues, [...at, 'path'], own(o, 'path'), 'a path like /webcam/', [
      [(p) => p.length <= 256, 'must be at most 256 characters'],
      [(p) => PATH_RE.test(p), "must start and end with '/' (e.g. / or /webcam/)"],
      [(p) => !p.split('/').some((seg) => seg === '.' || seg === '..'), "must not contain '.' or '..' segments"],
    ]);
    const service = string(issues, [...at, 'service'], own(o, 'service'), 'a service name');
    const stripPrefix = withDefault(own(o, 'stripPrefix'), false, (v) => boolean(issues, [...at, 'stripPrefix'], v, 'true or false'));
    if (path === undefined || service === undefined || stripPrefix === undefined) return undefined;
    return { path, service, stripPrefix };
  });
}

/** A number of milliseconds in [min, max], `fallback` when absent. */
function checkMs(issues: Issue[], at: Path, o: object, field: string, min: number, max: number, fallback: number): number | undefined {
  return withDefault(own(o, field), fallback, (v) => integer(issues, [...at, field], v, 'a number of milliseconds', min, max));
}

/**
 * Checks every field of a config (environment overrides already applied) and records each problem
 * in `issues`. Returns the parsed config when there was none.
 */
export function checkConfig(issues: Issue[], value: unknown): ParsedConfig | undefined {
  const before = issues.length;
  const parsed = strictObject(issues, [], value, CONFIG_FIELDS, (o): ParsedConfig | undefined => {
    const rawRelay = string(issues, ['relay'], own(o, 'relay'), 'a string like wss://relay.example');
    const relay = rawRelay === undefined ? undefined : parseRelayUrl(rawRelay);
    if (typeof relay === 'object') report(issues, ['relay'], relay.error);
    const credential = string(issues, ['credential'], own(o, 'credential'), 'a string', [
      [(s) => s.length >= 1, 'required'],
      [(s) => s.length <= 1024, 'must be at most 1024 characters'],
      [(s) => CREDENTIAL_RE.test(s), 'must be printable ASCII without spaces'],
    ]);
    const services = record(issues, ['services'], own(o, 'services'), 'an object of name → { url }', (at, v) => checkService(issues, at, v));
    const routes = list(
      issues,
      ['routes'],
      own(o, 'routes'),
      'a list of { path, service }',
      { min: 1, max: MAX_ROUTES, tooShort: 'must list at least one route', tooLong: `must list at most ${MAX_ROUTES} routes` },
      (at, v) => checkRoute(issues, at, v),
    );
    const caFile = optional(own(o, 'caFile'), (v) => string(issues, ['caFile'], v, 'a file path', [[(s) => s.length >= 1, 'must be a file path']]));
    const relayAddress = optional(own(o, 'relayAddress'), (v) =>
      string(issues, ['relayAddress'], v, 'an IP address', [
        [(s) => isIP(s) !== 0, "must be an IP address such as 203.0.113.7 or 2001:db8::7 (the certificate is still checked for the relay URL's name)"],
      ]),
    );
    const { keepAlive: k, reconnect: r } = CONFIG_DEFAULTS;
    const keepAlive = withDefault(own(o, 'keepAlive'), { ...k }, (v) =>
      strictObject(issues, ['keepAlive'], v, ['intervalMs', 'timeoutMs'], (ka) => {
        const intervalMs = checkMs(issues, ['keepAlive'], ka, 'intervalMs', 1_000, 600_000, k.intervalMs);
        const timeoutMs = checkMs(issues, ['keepAlive'], ka, 'timeoutMs', 2_000, 3_600_000, k.timeoutMs);
        return intervalMs === undefined || timeoutMs === undefined ? undefined : { intervalMs, timeoutMs };
      }),
    );
    const reconnect = withDefault(own(o, 'reconnect'), { ...r }, (v) =>
      strictObject(issues, ['reconnect'], v, ['baseMs', 'capMs'], (rc) => {
        const baseMs = checkMs(issues, ['reconnect'], rc, 'baseMs', 100, 60_000, r.baseMs);
        const capMs = checkMs(issues, ['reconnect'], rc, 'capMs', 1_000, 3_600_000, r.capMs);
        return baseMs === undefined || capMs === undefined ? undefined : { baseMs, capMs };
      }),
    );
    const logLevel = withDefault(own(o, 'logLevel'), CONFIG_DEFAULTS.logLevel, (v) =>
      oneOf(issues, ['logLevel'], v, LOG_LEVELS, `one of ${LOG_LEVELS.join(', ')}`),
    );
    if (
      typeof relay !== 'string' ||
      credential === undefined ||
      services === undefined ||
      routes === undefined ||
      keepAlive === undefined ||
      reconnect === undefined ||
      logLevel === undefined
    ) {
      return undefined;
    }
    return { relay, credential, services, routes, caFile, relayAddress, keepAlive, reconnect, logLevel };
  });
  return issues.length === before ? parsed : undefined;
}

/** The checks that need more than one field. Returns `path: message` strings. */
export function crossCheck(c: ParsedConfig): string[] {
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
    if (!Object.hasOwn(c.services, r.service)) {
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
export function toAgentConfig(c: ParsedConfig): AgentConfig {
  // fromEntries defines own properties: no name, not even __proto__, can reach the prototype.
  const services: Record<string, ServiceConfig> = Object.fromEntries(
    Object.entries(c.services).map(([name, s]): [string, ServiceConfig] => [
      name,
      {
        name,
        url: s.url.url,
        host: s.url.host,
        port: s.url.port,
        ...(s.hostHeader !== undefined ? { hostHeader: s.hostHeader } : {}),
        ...(s.passAuthorization !== undefined ? { passAuthorization: s.passAuthorization } : {}),
        ...(s.profile !== undefined ? { profile: s.profile } : {}),
      },
    ]),
  );
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
