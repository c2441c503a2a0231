import type { HelloService, ServiceProfile } from '@porthole/protocol';

/**
 * What a viewer (a share link, or a member with the viewer role) may do, per printer profile.
 * Deny by default: only requests listed here as reads pass. Webcam streams and snapshots always
 * pass. Owners and operators are not filtered (they have full control of their printer).
 */
export type Role = 'owner' | 'operator' | 'viewer';

export const ROLES: readonly Role[] = ['owner', 'operator', 'viewer'];

export function isRole(x: unknown): x is Role {
  return typeof x === 'string' && (ROLES as readonly string[]).includes(x);
}

export type ViewerVerdict =
  | { allow: true; wsFilter?: 'moonraker' }
  | { allow: false; reason: string };

export function profileOf(service: HelloService): ServiceProfile {
  if (service.profile !== undefined) return service.profile;
  return service.name === 'webcam' || service.name === 'camera' ? 'camera' : 'generic';
}

const READ_METHODS = new Set(['GET', 'HEAD']);

/** Paths (exact, or prefix when ending in '/') a viewer may GET, per profile. */
const VIEWER_GET: Record<Exclude<ServiceProfile, 'camera' | 'generic'>, string[]> = {
  octoprint: [
    '/',
    '/static/',
    '/webcam/',
    '/api/version',
    '/api/server',
    '/api/job',
    '/api/printer',
    '/api/printer/tool',
    '/api/printer/bed',
    '/api/printer/chamber',
    '/api/connection',
    '/api/printerprofiles',
    '/sockjs/',
  ],
  moonraker: [
    '/printer/info',
    '/printer/objects/list',
    '/printer/objects/query',
    '/server/info',
    '/server/webcams/list',
    '/server/webcams/get_item',
    '/server/temperature_store',
    '/server/history/list',
    '/server/files/metadata',
    '/websocket',
  ],
  prusalink: [
    '/',
    '/index.html',
    '/assets/',
    '/favicon.ico',
    '/api/version',
    '/api/printer',
    '/api/job',
    '/api/v1/info',
    '/api/v1/status',
    '/api/v1/job',
    '/api/v1/cameras',
    '/api/v1/cameras/',
  ],
};

/** WebSockets a viewer may open: OctoPrint's push socket (status only; commands go over REST),
 * Moonraker's JSON-RPC socket with every client message checked against READ_RPC. */
const VIEWER_WS: Partial<Record<ServiceProfile, { prefix: string; filter?: 'moonraker' }>> = {
  octoprint: { prefix: '/sockjs/' },
  moonraker: { prefix: '/websocket', filter: 'moonraker' },
};

function matches(path: string, allowed: string[]): boolean {
  for (const a of allowed) {
    if (a.endsWith('/') && a !== '/' ? path.startsWith(a) : path === a) return true;
  }
  return false;
}

function isWebcamRequest(path: string, query: string): boolean {
  return /[?&]action=(stream|snapshot)(&|$)/.test(query) || path.startsWith('/webcam/');
}

/**
 * @param path the path as the printer will see it (after any prefix strip)
 * @param query the query string including '?', or ''
 */
export function viewerMay(service: HelloService, method: string, path: string, query: string, upgrade: boolean): ViewerVerdict {
  const profile = profileOf(service);
  if (upgrade) {
    const ws = VIEWER_WS[profile];
    if (method === 'GET' && ws !== undefined && (path === ws.prefix || path.startsWith(ws.prefix.endsWith('/') ? ws.prefix : `${ws.prefix}/`))) {
      return ws.filter !== undefined ? { allow: true, wsFilter: ws.filter } : { allow: true };
    }
    return { allow: false, reason: 'viewers cannot open this WebSocket' };
  }
  if (!READ_METHODS.has(method)) return { allow: false, reason: `viewers cannot ${method}` };
  if (profile === 'camera' || profile === 'generic') return { allow: true };
  if (isWebcamRequest(path, query)) return { allow: true };
  if (matches(path, VIEWER_GET[profile])) return { allow: true };
  return { allow: false, reason: 'viewers see the webcam and status only' };
}

/**
 * Moonraker JSON-RPC methods that only read. Everything else (printer.gcode.script,
 * printer.print.start/pause/resume/cancel, printer.emergency_stop, printer.restart,
 * server.files.upload/delete_*, machine.*, …) is refused for viewers.
 */
export const MOONRAKER_READ_RPC = new Set([
  'server.connection.identify',
  'server.info',
  'server.webcams.list',
  'server.webcams.get_item',
  'server.temperature_store',
  'server.gcode_store',
  'server.history.list',
  'server.history.get_job',
  'server.history.totals',
  'server.files.metadata',
  'printer.info',
  'printer.objects.list',
  'printer.objects.query',
  'printer.objects.subscribe',
]);

/** Checks one client→server WebSocket text message (a JSON-RPC request or a batch). */
export function moonrakerMessageAllowed(text: string): boolean {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return false;
  }
  const calls = Array.isArray(msg) ? msg : [msg];
  if (calls.length === 0 || calls.length > 64) return false;
  return calls.every(
    (c) =>
      typeof c === 'object' &&
      c !== null &&
      typeof (c as { method?: unknown }).method === 'string' &&
      MOONRAKER_READ_RPC.has((c as { method: string }).method),
  );
}
