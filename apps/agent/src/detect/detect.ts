import type { ServiceProfile } from '@porthole/protocol';
import { httpGet, tcpProbe, type GetAnswer, type ProbeFailure } from '../probe/http.js';

/**
 * Finds the printer software on this machine and proposes the agent's services and routes.
 * Each port is identified by what it answers, never by its number alone:
 *
 *   Moonraker        GET /server/info        JSON result with klippy_state / moonraker_version
 *   OctoPrint        GET /api/version        "OctoPrint" (not Moonraker's OctoPrint emulation),
 *                    or GET /                a page titled OctoPrint (anonymous API access off)
 *   PrusaLink        GET /api/version        "PrusaLink" / "prusa" in the body, Server or auth realm
 *   Mainsail/Fluidd  GET /                   HTML title
 *   mjpg-streamer,   GET /?action=snapshot   image/jpeg
 *   ustreamer
 *   camera-streamer  GET /snapshot           image/jpeg
 *
 * The usual places: OctoPrint on 5000 (and 80 behind OctoPi's haproxy), PrusaLink on 8080 or 80,
 * Moonraker on 7125 with Mainsail/Fluidd on 80, webcam streamers on 8080/8081.
 */

export type FindingKind = 'octoprint' | 'prusalink' | 'moonraker' | 'mainsail' | 'fluidd' | 'mjpeg' | 'camera-streamer' | 'http';

export interface Finding {
  port: number;
  kind: FindingKind;
  /** What identified it, for people: "OctoPrint 1.10.2", "ustreamer". */
  detail: string;
}

export interface ProposedService {
  url: string;
  profile: ServiceProfile;
  passAuthorization?: boolean;
}

export interface ProposedRoute {
  path: string;
  service: string;
  stripPrefix?: boolean;
}

export interface Proposal {
  /** One line: "OctoPrint with a webcam". */
  summary: string;
  services: Record<string, ProposedService>;
  routes: ProposedRoute[];
  /** Nothing was recognised; this is only a guess at a web UI on port 80. */
  guess: boolean;
}

export interface Detection {
  host: string;
  ports: readonly number[];
  findings: Finding[];
  proposal: Proposal | undefined;
}

export const DETECT_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  ports: Object.freeze([80, 5000, 7125, 8080, 8081]),
  /** Per request; ports are probed in parallel, requests on one port one after another. */
  timeoutMs: 1_500,
});

/** Moonraker's paths, routed to it directly when Mainsail/Fluidd serve `/` (what their nginx config does). */
export const MOONRAKER_PATHS = Object.freeze(['/websocket/', '/printer/', '/server/', '/machine/', '/access/', '/api/']);

export interface DetectOptions {
  host?: string;
  ports?: readonly number[];
  timeoutMs?: number;
}

const isAnswer = (r: GetAnswer | ProbeFailure): r is GetAnswer => r.ok;

function jsonOf(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

function titleOf(body: string): string | undefined {
  const m = /<title[^>]*>([^<]{0,200})<\/title>/i.exec(body);
  return m?.[1]?.trim();
}

const isJpeg = (r: GetAnswer | ProbeFailure) => isAnswer(r) && r.status === 200 && /^image\/jpe?g/i.test(String(r.headers['content-type'] ?? ''));

function headerText(r: GetAnswer, name: string): string {
  const v = r.headers[name];
  return Array.isArray(v) ? v.join(', ') : (v ?? '');
}

/** Identifies what answers on one port; undefined when nothing listens. */
export async function identifyPort(host: string, port: number, timeoutMs: number): Promise<Finding | undefined> {
  const open = await tcpProbe({ host, port, timeoutMs });
  if (!open.ok) return undefined;
  const get = (path: string, headOnly = false) => httpGet({ host, port, path, timeoutMs, headOnly, maxBytes: 32 * 1024 });

  const root = await get('/');
  // No HTTP answer at all (not a web server, or a hung one): nothing more to learn here.
  if (!isAnswer(root)) return undefined;
  const title = titleOf(root.body) ?? '';
  if (/mainsail/i.test(title)) return { port, kind: 'mainsail', detail: 'Mainsail' };
  if (/fluidd/i.test(title)) return { port, kind: 'fluidd', detail: 'Fluidd' };

  const info = await get('/server/info');
  if (isAnswer(info) && info.status === 200) {
    const result = (jsonOf(info.body) as { result?: Record<string, unknown> } | undefined)?.result;
    if (result !== undefined && result !== null && ('klippy_state' in result || 'moonraker_version' in result)) {
      const v = typeof result.moonraker_version === 'string' ? ` ${result.moonraker_version}` : '';
      return { port, kind: 'moonraker', detail: `Moonraker${v}` };
    }
  }

  const version = await get('/api/version');
  if (isAnswer(version)) {
    const text = (jsonOf(version.body) as { text?: unknown } | undefined)?.text;
    const said = typeof text === 'string' ? text : version.body;
    if (/octoprint/i.test(said) && !/moonraker/i.test(said)) {
      const v = (jsonOf(version.body) as { server?: unknown } | undefined)?.server;
      return { port, kind: 'octoprint', detail: `OctoPrint${typeof v === 'string' ? ` ${v}` : ''}` };
    }
    const where = `${version.body} ${headerText(version, 'server')} ${headerText(version, 'www-authenticate')}`;
    if (/prusa/i.test(where)) return { port, kind: 'prusalink', detail: 'PrusaLink' };
  }
  if (/octoprint/i.test(title)) return { port, kind: 'octoprint', detail: 'OctoPrint' };
  if (/prusa/i.test(title)) return { port, kind: 'prusalink', detail: 'PrusaLink' };

  const mjpeg = await get('/?action=snapshot', true);
  if (isJpeg(mjpeg)) {
    const server = headerText(mjpeg as GetAnswer, 'server');
    const name = /ustreamer/i.test(server) ? 'ustreamer' : /camera-streamer/i.test(server) ? 'camera-streamer' : 'mjpg-streamer';
    return { port, kind: 'mjpeg', detail: name };
  }
  const snapshot = await get('/snapshot', true);
  if (isJpeg(snapshot)) return { port, kind: 'camera-streamer', detail: 'camera-streamer' };

  return { port, kind: 'http', detail: `a web server${title !== '' ? ` ("${title}")` : ''}` };
}

/** Builds services and routes from what was found; undefined when nothing is there. */
export function propose(host: string, findings: readonly Finding[]): Proposal | undefined {
  const url = (port: number) => `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  // The direct port first: OctoPrint on 5000 rather than through haproxy on 80.
  const first = (kinds: FindingKind[], prefer: number[] = []) =>
    findings
      .filter((f) => kinds.includes(f.kind))
      .sort((a, b) => {
        const pa = prefer.indexOf(a.port);
        const pb = prefer.indexOf(b.port);
        return (pa < 0 ? 99 : pa) - (pb < 0 ? 99 : pb) || a.port - b.port;
      })[0];

  const services: Record<string, ProposedService> = {};
  const routes: ProposedRoute[] = [];
  const used = new Set<number>();
  let summary: string;

  const octoprint = first(['octoprint'], [5000]);
  const moonraker = first(['moonraker'], [7125]);
  const frontend = first(['mainsail', 'fluidd'], [80]);
  const prusalink = first(['prusalink'], [8080, 80]);
  if (octoprint !== undefined) {
    services.octoprint = { url: url(octoprint.port), profile: 'octoprint' };
    routes.push({ path: '/', service: 'octoprint' });
    used.add(octoprint.port);
    summary = 'OctoPrint';
  } else if (moonraker !== undefined || frontend !== undefined) {
    if (frontend !== undefined) {
      services[frontend.kind] = { url: url(frontend.port), profile: 'generic' };
      routes.push({ path: '/', service: frontend.kind });
      used.add(frontend.port);
    }
    if (moonraker !== undefined) {
      services.moonraker = { url: url(moonraker.port), profile: 'moonraker' };
      if (frontend !== undefined) for (const path of MOONRAKER_PATHS) routes.push({ path, service: 'moonraker' });
      else routes.push({ path: '/', service: 'moonraker' });
      used.add(moonraker.port);
    }
    summary = `Klipper: ${[frontend?.detail, moonraker !== undefined ? 'Moonraker' : undefined].filter(Boolean).join(' with ')}`;
  } else if (prusalink !== undefined) {
    // PrusaLink asks the browser for digest credentials itself: let them through.
    services.prusalink = { url: url(prusalink.port), profile: 'prusalink', passAuthorization: true };
    routes.push({ path: '/', service: 'prusalink' });
    used.add(prusalink.port);
    summary = 'PrusaLink';
  } else {
    summary = '';
  }

  const camera = findings.filter((f) => (f.kind === 'mjpeg' || f.kind === 'camera-streamer') && !used.has(f.port)).sort((a, b) => a.port - b.port)[0];
  if (camera !== undefined) {
    services.webcam = { url: url(camera.port), profile: 'camera' };
    routes.push({ path: '/webcam/', service: 'webcam', stripPrefix: true });
    summary = summary === '' ? `a webcam (${camera.detail})` : `${summary} with a webcam (${camera.detail})`;
  }

  if (routes.length === 0) {
    const web = findings.find((f) => f.kind === 'http' && f.port === 80) ?? findings.find((f) => f.kind === 'http');
    if (web === undefined) return undefined;
    services.ui = { url: url(web.port), profile: 'generic' };
    routes.push({ path: '/', service: 'ui' });
    return { summary: `${web.detail} on port ${web.port} (not recognised)`, services, routes, guess: true };
  }
  return { summary, services, routes, guess: false };
}

/** Probes the usual ports on this machine and proposes a config. */
export async function detect(opts: DetectOptions = {}): Promise<Detection> {
  const host = opts.host ?? DETECT_DEFAULTS.host;
  const ports = opts.ports ?? DETECT_DEFAULTS.ports;
  const timeoutMs = opts.timeoutMs ?? DETECT_DEFAULTS.timeoutMs;
  const found = await Promise.all(ports.map((p) => identifyPort(host, p, timeoutMs)));
  const findings = found.filter((f): f is Finding => f !== undefined);
  return { host, ports, findings, proposal: propose(host, findings) };
}
