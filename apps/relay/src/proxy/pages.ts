import type { ServerResponse } from 'node:http';

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function ago(since: Date, now = new Date()): string {
  const s = Math.max(0, Math.round((now.getTime() - since.getTime()) / 1000));
  if (s < 90) return `${s} seconds ago`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} minutes ago`;
  const h = Math.round(m / 60);
  if (h < 36) return `${h} hours ago`;
  return `${Math.round(h / 24)} days ago`;
}

/** A small, self-contained page (no external assets) readable on a phone. */
export function page(title: string, bodyHtml: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="color-scheme" content="light dark"><title>${esc(title)}</title><style>body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:2rem 1.25rem;max-width:32rem}h1{font-size:1.4rem;margin:0 0 .5rem}p{margin:.5rem 0}.muted{opacity:.7;font-size:.9rem}</style></head><body>${bodyHtml}</body></html>`;
}

export function sendPage(
  res: ServerResponse,
  status: number,
  title: string,
  bodyHtml: string,
  extraHeaders: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const html = page(title, bodyHtml);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    ...extraHeaders,
  });
  res.end(html);
}

export function offlinePage(name: string, since: Date | undefined): { title: string; body: string } {
  const when =
    since === undefined
      ? 'It has not connected since the relay started.'
      : `Offline since ${esc(since.toISOString().replace('T', ' ').slice(0, 16))} UTC (${ago(since)}).`;
  return {
    title: `${name} is offline`,
    body: `<h1>${esc(name)} is offline</h1><p>${when}</p><p>The Porthole agent on the printer is not connected. Check that the printer's Pi is powered and online; this page will work again as soon as the agent reconnects.</p><p class="muted">Retry in a few seconds.</p>`,
  };
}

export function errorPage(kind: string, name: string, detail: string): { status: number; title: string; body: string } {
  switch (kind) {
    case 'unknown-service':
      return {
        status: 502,
        title: 'Not configured',
        body: `<h1>Nothing configured here</h1><p>The agent on ${esc(name)} has no service for this address.</p><p class="muted">${esc(detail)}</p>`,
      };
    case 'connect-failed':
      return {
        status: 502,
        title: 'Printer service not answering',
        body: `<h1>${esc(name)} is online, but its web service is not answering</h1><p>The tunnel is up; the printer software behind it (OctoPrint, Moonraker, PrusaLink or the camera) refused the connection or is starting. Try again in a moment.</p><p class="muted">${esc(detail)}</p>`,
      };
    case 'timeout':
      return {
        status: 504,
        title: 'Printer too slow',
        body: `<h1>${esc(name)} did not answer in time</h1><p>The printer's web service took too long to respond.</p><p class="muted">${esc(detail)}</p>`,
      };
    case 'busy':
      return {
        status: 503,
        title: 'Too many connections',
        body: `<h1>Too many open connections to ${esc(name)}</h1><p>Close some tabs or try again shortly.</p>`,
      };
    default:
      return {
        status: 502,
        title: 'Connection to the printer lost',
        body: `<h1>The connection to ${esc(name)} was lost</h1><p>The tunnel dropped while answering. Try again; if it keeps happening, the printer's network may be unstable.</p><p class="muted">${esc(detail)}</p>`,
      };
  }
}
