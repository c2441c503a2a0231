/**
 * The agent's hello: sent base64url-encoded JSON in the `Porthole-Hello` header of its upgrade
 * request. It tells the relay which services the agent offers and how paths route to them.
 * The relay treats it as hostile input: decodeHello() checks every field and bounds sizes.
 */
import { isValidServiceName } from './open-header.js';

export const HELLO_HEADER = 'porthole-hello';
export const HELLO_VERSION = 1;
export const HELLO_MAX_BYTES = 8192;
export const AGENT_PATH = '/_porthole/agent';

/** WebSocket close codes of the agent endpoint (4000–4999 is the application range). */
export const AgentCloseCode = {
  /** A newer connection of the same device took over. Transient. */
  Replaced: 4000,
  /** The device credential was revoked. Permanent: do not retry. */
  Revoked: 4001,
  /** The relay is shutting down (after a GoAway). Reconnect. */
  GoingAway: 1001,
} as const;

/** What a service is, so the relay knows which requests are reads (viewer access). */
export const SERVICE_PROFILES = ['generic', 'octoprint', 'moonraker', 'prusalink', 'camera'] as const;
export type ServiceProfile = (typeof SERVICE_PROFILES)[number];

export interface HelloService {
  name: string;
  /** Printer software behind it; default 'generic' ('camera' for services named webcam/camera). */
  profile?: ServiceProfile;
  /** Host header to send to this service instead of the public one. */
  hostHeader?: string;
  /** Forward the client's Authorization header (e.g. PrusaLink's digest auth). Off by default. */
  passAuthorization?: boolean;
}

export interface HelloRoute {
  /** Path prefix, starts and ends with '/'. Longest prefix wins. */
  path: string;
  service: string;
  /** Remove the prefix before forwarding (OctoPi's /webcam/ → mjpg-streamer's /). */
  stripPrefix?: boolean;
}

export interface Hello {
  v: number;
  agent: string;
  services: HelloService[];
  routes: HelloRoute[];
}

export class HelloError extends Error {
  readonly code = 'ERR_INVALID_HELLO';
}

const PATH_RE = /^\/(?:[A-Za-z0-9._~!$&'()*+,;=:@%-]+\/)*$/;
const HOST_RE = /^[A-Za-z0-9.-]{1,253}(?::\d{1,5})?$/;

export function encodeHello(h: Hello): string {
  return Buffer.from(JSON.stringify(h), 'utf8').toString('base64url');
}

/** A peer's JSON value for an error message: never throws, never long. */
function describe(v: unknown): string {
  return (typeof v === 'number' || typeof v === 'boolean' || v === null ? String(v) : typeof v === 'string' ? JSON.stringify(v.slice(0, 32)) : typeof v);
}

export function decodeHello(header: string | undefined): Hello {
  if (header === undefined || header.length === 0) throw new HelloError('missing Porthole-Hello header');
  if (header.length > Math.ceil((HELLO_MAX_BYTES * 4) / 3)) throw new HelloError('Porthole-Hello header too large');
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  } catch {
    throw new HelloError('Porthole-Hello is not base64url JSON');
  }
  if (typeof raw !== 'object' || raw === null) throw new HelloError('hello must be an object');
  const o = raw as Record<string, unknown>;
  // Not String(o.v): JSON can hold {"toString": …}, which String() turns into a TypeError (fuzz.test.ts).
  if (o.v !== HELLO_VERSION) throw new HelloError(`unsupported hello version ${describe(o.v)}`);
  const agent = typeof o.agent === 'string' ? o.agent.slice(0, 64) : 'unknown';
  if (!Array.isArray(o.services) || o.services.length === 0 || o.services.length > 32) {
    throw new HelloError('hello.services must list 1 to 32 services');
  }
  const services: HelloService[] = o.services.map((s: unknown, i) => {
    if (typeof s !== 'object' || s === null) throw new HelloError(`hello.services[${i}] must be an object`);
    const { name, hostHeader, passAuthorization, profile } = s as Record<string, unknown>;
    if (typeof name !== 'string' || !isValidServiceName(name)) throw new HelloError(`hello.services[${i}].name is invalid`);
    const out: HelloService = { name };
    if (profile !== undefined) {
      if (!SERVICE_PROFILES.includes(profile as ServiceProfile)) throw new HelloError(`hello.services[${i}].profile is unknown`);
      out.profile = profile as ServiceProfile;
    }
    if (hostHeader !== undefined) {
      if (typeof hostHeader !== 'string' || !HOST_RE.test(hostHeader)) {
        throw new HelloError(`hello.services[${i}].hostHeader is invalid`);
      }
      out.hostHeader = hostHeader;
    }
    if (passAuthorization === true) out.passAuthorization = true;
    return out;
  });
  const names = new Set(services.map((s) => s.name));
  if (names.size !== services.length) throw new HelloError('hello.services has duplicate names');
  if (!Array.isArray(o.routes) || o.routes.length === 0 || o.routes.length > 64) {
    throw new HelloError('hello.routes must list 1 to 64 routes');
  }
  const routes: HelloRoute[] = o.routes.map((r: unknown, i) => {
    if (typeof r !== 'object' || r === null) throw new HelloError(`hello.routes[${i}] must be an object`);
    const { path, service, stripPrefix } = r as Record<string, unknown>;
    if (typeof path !== 'string' || path.length > 256 || !PATH_RE.test(path) || path.split('/').some((seg) => seg === '..' || seg === '.')) {
      throw new HelloError(`hello.routes[${i}].path must start and end with '/'`);
    }
    if (typeof service !== 'string' || !names.has(service)) {
      throw new HelloError(`hello.routes[${i}].service names no service`);
    }
    return stripPrefix === true ? { path, service, stripPrefix: true } : { path, service };
  });
  return { v: HELLO_VERSION, agent, services, routes };
}
