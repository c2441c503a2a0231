import { advice, api, type Device, type Pairing } from '../api.js';
import { field, fill, h, messageBox } from '../dom.js';
import { relative } from '../format.js';
import type { Ctx } from '../main.js';
import { stateLine } from './printers.js';

/** The code the agent shows: 8 characters of Crockford's base32, shown as ABCD-EFGH. */
function normalize(code: string): string {
  const c = code.toUpperCase().replace(/[^0-9A-Z]/g, '');
  return c.length === 8 ? `${c.slice(0, 4)}-${c.slice(4)}` : code.trim();
}

export async function pairView(ctx: Ctx): Promise<void> {
  ctx.setTitle('Pair a printer');
  const msg = messageBox();
  const step = h('div');
  const code = field('Pairing code shown by the agent', { name: 'code', autocomplete: 'off', autocapitalize: 'characters', spellcheck: 'false', placeholder: 'ABCD-EFGH', value: ctx.query.get('code') ?? '', required: true }, 'On the Pi: porthole-agent pair --relay ' + location.origin);
  const ask = h('form', { novalidate: true }, code.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Look up')));

  const waitOnline = (device: Device) => {
    const live = h('div', { 'aria-live': 'polite' }, stateLine(device));
    fill(
      step,
      h('div', { class: 'card' }, h('h2', null, `${device.name} is paired`), h('p', null, 'The agent picks up its credential within a few seconds and connects.'), live, h('p', { class: 'muted small mono' }, device.url)),
      h('div', { class: 'actions' }, h('a', { class: 'button primary', href: `/app/printers/${encodeURIComponent(device.id)}` }, 'Go to the printer'), h('a', { class: 'button secondary', href: '/app/' }, 'All printers')),
    );
    const poll = async () => {
      if (ctx.signal.aborted) return;
      try {
        const d = await api<Device>('GET', `/devices/${device.id}`);
        fill(live, stateLine(d));
        if (d.online) return;
      } catch {
        /* keep trying */
      }
      setTimeout(() => void poll(), 1_500);
    };
    void poll();
  };

  const confirmStep = (p: Pairing) => {
    const name = field('Name', { name: 'name', value: p.name, maxlength: 100, required: true });
    const slug = field('Address (optional)', { name: 'slug', maxlength: 63, autocapitalize: 'off', spellcheck: 'false' }, 'Lowercase letters, digits and "-"; made from the name when empty.');
    const approve = h('button', { type: 'submit', class: 'primary' }, 'Approve');
    const deny = h('button', { type: 'button', class: 'danger' }, 'Deny');
    const form = h('form', null, name.wrap, slug.wrap, h('div', { class: 'actions' }, approve, deny));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      msg.clear();
      approve.disabled = true;
      api<{ device: Device }>('POST', '/pairing/approve', { code: p.code, name: name.input.value, ...(slug.input.value ? { slug: slug.input.value.trim().toLowerCase() } : {}) })
        .then((r) => waitOnline(r.device))
        .catch((err: unknown) => {
          const a = advice(err);
          msg.error(a.text, a.hint);
          approve.disabled = false;
        });
    });
    deny.addEventListener('click', () => {
      msg.clear();
      api('POST', '/pairing/deny', { code: p.code })
        .then(() => {
          fill(step);
          msg.notice(`The agent asking as ${p.name} was refused.`);
        })
        .catch((err: unknown) => {
          const a = advice(err);
          msg.error(a.text, a.hint);
        });
    });
    fill(
      step,
      h(
        'div',
        { class: 'card' },
        h('p', null, 'A Porthole agent asks to connect as ', h('strong', null, p.name), '.'),
        h('p', { class: 'muted small' }, `Code ${p.code} · agent ${p.agent} · from ${p.remote} · expires ${relative(p.expiresAt)}`),
        h('p', { class: 'hint' }, 'Approve only if this is your printer and you started the pairing on it just now: you become its owner.'),
      ),
      form,
    );
    name.input.focus();
  };

  const lookup = async () => {
    msg.clear();
    fill(step);
    const c = normalize(code.input.value);
    if (!c) {
      msg.error('Enter the code the agent shows.');
      return;
    }
    try {
      confirmStep(await api<Pairing>('GET', `/pairing/${encodeURIComponent(c)}`));
    } catch (err) {
      const a = advice(err);
      msg.error(a.text, a.hint);
    }
  };
  ask.addEventListener('submit', (e) => {
    e.preventDefault();
    void lookup();
  });
  ctx.main.append(h('div', { class: 'narrow' }, h('h1', null, 'Pair a printer'), msg.el, ask, step));
  if (code.input.value) await lookup();
}
