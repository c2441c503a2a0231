import { api, type Device } from '../api.js';
import { h } from '../dom.js';
import { relative, when } from '../format.js';
import type { Ctx } from '../main.js';

/** How often a thumbnail asks for the newest picture: one small JPEG every few seconds is cheap on cellular. */
export const THUMBNAIL_EVERY_MS = 5_000;

export function stateLine(d: Device): HTMLElement {
  if (d.revoked) return h('p', { class: 'state off' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), 'Revoked: pair it again to use it');
  if (d.online) {
    return h('p', { class: 'state on' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), 'Online', d.onlineSince ? h('span', { class: 'muted' }, ` since ${relative(d.onlineSince)}`) : null);
  }
  return h(
    'p',
    { class: 'state off' },
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    'Offline',
    d.offlineSince ? h('span', { class: 'muted' }, ` since ${when(d.offlineSince)} (${relative(d.offlineSince)})`) : null,
  );
}

/**
 * A live thumbnail: the relay's newest frame of the camera, fetched every few seconds while the
 * page is visible. A placeholder (camera offline) or an error shows a short text instead.
 */
export function thumbnail(d: Device, signal: AbortSignal): HTMLElement {
  const img = h('img', { alt: `Webcam of ${d.name}`, width: 320, height: 240, decoding: 'async' });
  const note = h('span', { class: 'thumb-note' }, d.online ? 'Loading picture…' : 'Printer offline');
  const box = h('div', { class: 'thumb' }, img, note);
  if (!d.online || d.revoked) {
    img.hidden = true;
    return box;
  }
  let url: string | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async () => {
    if (signal.aborted) return;
    if (!document.hidden) {
      try {
        const res = await fetch(`/api/devices/${encodeURIComponent(d.id)}/snapshot`, { credentials: 'same-origin', signal, cache: 'no-store' });
        if (res.ok && (res.headers.get('content-type') ?? '').startsWith('image/')) {
          const next = URL.createObjectURL(await res.blob());
          img.src = next;
          img.hidden = false;
          if (url) URL.revokeObjectURL(url);
          url = next;
          note.textContent = '';
          box.dataset.frames = String(Number(box.dataset.frames ?? 0) + 1);
        } else {
          note.textContent = res.status === 503 ? 'Camera offline' : res.status === 404 ? 'No webcam' : 'No picture';
          img.hidden = true;
        }
      } catch {
        if (signal.aborted) return;
        note.textContent = 'No picture';
      }
    }
    timer = setTimeout(() => void tick(), THUMBNAIL_EVERY_MS);
  };
  signal.addEventListener('abort', () => {
    clearTimeout(timer);
    if (url) URL.revokeObjectURL(url);
  });
  void tick();
  return box;
}

export async function printersView(ctx: Ctx): Promise<void> {
  ctx.setTitle('Printers');
  const devices = await api<Device[]>('GET', '/devices');
  if (ctx.signal.aborted) return;
  const card = (d: Device) =>
    h(
      'li',
      { class: 'card printer' },
      h('a', { class: 'thumb-link', href: `/app/printers/${encodeURIComponent(d.id)}`, 'aria-label': `${d.name}: webcam and settings` }, thumbnail(d, ctx.signal)),
      h('div', { class: 'card-body' }, h('h2', null, h('a', { href: `/app/printers/${encodeURIComponent(d.id)}` }, d.name)), stateLine(d), h('p', { class: 'muted small' }, `${d.slug} · ${d.role}`)),
      d.revoked ? null : h('div', { class: 'actions' }, h('a', { class: 'button primary', href: `/open/${encodeURIComponent(d.slug)}`, 'aria-label': `Open printer UI for ${d.name}` }, 'Open printer UI')),
    );
  ctx.main.append(
    h('h1', null, 'Printers'),
    devices.length === 0
      ? h('div', { class: 'card empty' }, h('p', null, 'No printers yet.'), h('p', null, "Install the Porthole agent on your printer's Pi: it shows a pairing code to enter here."), h('a', { class: 'button primary', href: '/app/pair' }, 'Pair a printer'))
      : h('ul', { class: 'cards' }, devices.map(card)),
  );
}
