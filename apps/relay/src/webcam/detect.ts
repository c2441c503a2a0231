import { createHash } from 'node:crypto';
import type { HelloService } from '@porthole/protocol';
import { profileOf } from '../access/policy.js';

/**
 * Which requests are camera streams and snapshots, and which viewers share one upstream pull.
 *
 * - `stream`: the usual streamer URLs: mjpg-streamer's and ustreamer's `?action=stream` (on any
 *   service: OctoPrint's UI reaches its camera at /webcam/?action=stream), and `…/stream` on a
 *   camera service (camera-streamer, ustreamer).
 * - `snapshot`: `?action=snapshot`, and `…/snapshot` on a camera service.
 * - `maybe`: any other GET on a camera service: fanned out if the response turns out to be
 *   multipart/x-mixed-replace.
 */
export type WebcamKind = 'stream' | 'snapshot' | 'maybe';

/** Query parameters that never change the picture: the relay's own frame-rate cap and the cache
 * busters printer UIs append (OctoPrint adds a bare timestamp, others `_=`, `t=`, `cacheBust=`). */
const IGNORED = new Set(['fps', '_', 't', 'ts', 'time', 'timestamp', 'cachebust', 'cache_bust', 'nocache', 'rand', 'random', 'rnd', 'cb']);

export interface WebcamTarget {
  kind: WebcamKind;
  /** The path and query to ask the camera for: fps and cache busters removed. */
  upstream: string;
  /** What viewers of one picture share: service, path and the remaining query. */
  key: string;
  /** The key of the stream a snapshot can be cut from (same as key for streams). */
  streamKey: string;
  /** The frame-rate cap the viewer asked for (`fps=N`), if any. */
  fps: number | undefined;
}

function hasAction(params: [string, string][], value: string): boolean {
  return params.some(([k, v]) => k === 'action' && v === value);
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/**
 * Classifies a request (method GET, path and query as the printer will see them) on a service.
 * undefined: not a camera request; forward it as usual.
 */
export function webcamTarget(service: HelloService, deviceId: string, target: string, authorization?: string): WebcamTarget | undefined {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const rawQuery = q < 0 ? '' : target.slice(q + 1);
  const segments = rawQuery.length === 0 ? [] : rawQuery.split('&').filter((s) => s.length > 0);
  const params: [string, string][] = segments.map((s) => {
    const eq = s.indexOf('=');
    return eq < 0 ? [decode(s).toLowerCase(), ''] : [decode(s.slice(0, eq)).toLowerCase(), decode(s.slice(eq + 1))];
  });
  const camera = profileOf(service) === 'camera';
  let kind: WebcamKind | undefined;
  if (hasAction(params, 'stream')) kind = 'stream';
  else if (hasAction(params, 'snapshot')) kind = 'snapshot';
  else if (camera && /\/stream$/.test(path)) kind = 'stream';
  else if (camera && /\/snapshot$/.test(path)) kind = 'snapshot';
  else if (camera) kind = 'maybe';
  if (kind === undefined) return undefined;

  let fps: number | undefined;
  const kept: string[] = [];
  segments.forEach((seg, i) => {
    const [name, value] = params[i]!;
    if (name === 'fps') {
      const n = Number(value);
      if (value !== '' && Number.isFinite(n) && n > 0) fps = Math.min(n, 120);
      return;
    }
    // A bare number (`?action=stream&1712345678901`) is a cache buster too.
    if (IGNORED.has(name) || (value === '' && /^\d+$/.test(name))) return;
    kept.push(seg);
  });
  const upstream = kept.length > 0 ? `${path}?${kept.join('&')}` : path;
  // A service that receives the client's Authorization (PrusaLink) may answer differently per
  // credential: those viewers share only with the same credential.
  const auth = authorization !== undefined ? `\0${createHash('sha256').update(authorization).digest('hex').slice(0, 16)}` : '';
  const keyOf = (t: string) => `${deviceId}\0${service.name}\0${t}${auth}`;
  let streamTarget = upstream;
  if (kind === 'snapshot') {
    streamTarget = hasAction(params, 'snapshot')
      ? upstream.replace(/([?&])action=snapshot(?=&|$)/, '$1action=stream')
      : upstream.replace(/\/snapshot(?=\?|$)/, '/stream');
  }
  return { kind, upstream, key: keyOf(upstream), streamKey: keyOf(streamTarget), fps };
}

/** The key prefix of every camera of one device and service (for snapshots from any live stream). */
export function servicePrefix(deviceId: string, service: string): string {
  return `${deviceId}\0${service}\0`;
}
