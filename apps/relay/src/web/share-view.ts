import { html, relative } from './html.js';

export interface ShareViewInput {
  /** The printer's name as its owner set it. */
  name: string;
  /** The camera's stream path on the device host (e.g. /webcam/?action=stream), or undefined: none configured. */
  streamPath: string | undefined;
  /** Whether the tunnel is up, and since when. */
  online: boolean;
  since: Date | undefined;
  /** When this view ends (the link's expiry, or the visit's own limit). */
  endsAt: Date;
  now?: Date;
}

/**
 * The page a share link opens on the printer's subdomain: the webcam and a read-only status,
 * nothing else. No script at all (its CSP allows only same-origin images and inline styles):
 * the MJPEG stream is an <img>, and when the camera or the printer drops out the relay's
 * fan-out shows "Camera offline" in the picture itself and resumes by itself.
 */
export function shareViewHtml(o: ShareViewInput): string {
  const now = o.now ?? new Date();
  const state = o.online
    ? html`<p class="state on"><span class="dot" aria-hidden="true"></span>Online${o.since ? html` <span class="muted">since ${relative(o.since, now)}</span>` : ''}</p>`
    : html`<p class="state off"><span class="dot" aria-hidden="true"></span>Offline${o.since ? html` <span class="muted">since ${relative(o.since, now)}</span>` : ''}</p>`;
  const picture =
    o.streamPath === undefined
      ? html`<div class="cam empty"><p>No webcam is configured on this printer.</p></div>`
      : o.online
        ? html`<div class="cam"><img src="${o.streamPath}" alt="Live webcam of ${o.name}" width="640" height="480"></div>`
        : html`<div class="cam empty"><p>The printer is offline, so there is no picture. Reload this page in a while.</p></div>`;
  const body = html`<main><h1>${o.name}</h1>${state}${picture}
<p class="muted">View only: this link shows the webcam and status, and cannot control the printer. It works until ${o.endsAt.toISOString().replace('T', ' ').slice(0, 16)} UTC (${relative(o.endsAt, now)}).</p></main>`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1,viewport-fit=cover"><meta name="color-scheme" content="light dark"><meta name="referrer" content="no-referrer"><meta name="robots" content="noindex"><title>${html`${o.name}`.text} · live</title><style>${STYLE}</style></head><body>${body.text}</body></html>`;
}

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#f6f7f9;--muted:#545e69;--ok:#17733a}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ed;--bg:#121417;--muted:#a3adb8;--ok:#6fd08c}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:44rem;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:8px 0 4px;overflow-wrap:anywhere}
p{margin:8px 0}
.muted{color:var(--muted)}
.state{display:flex;flex-wrap:wrap;align-items:center;gap:6px;font-weight:600}
.state .muted{font-weight:400}
.dot{width:10px;height:10px;border-radius:50%;background:var(--muted)}
.state.on{color:var(--ok)}.state.on .dot{background:var(--ok)}
.state.off{color:var(--muted)}
.cam{background:#000;border-radius:12px;overflow:hidden;aspect-ratio:4/3;display:flex;align-items:center;justify-content:center;margin:12px 0}
.cam img{display:block;width:100%;height:100%;object-fit:contain}
.cam.empty{color:#fff;padding:16px;text-align:center}
`;
