import { advice, api, type AuditEvent, type Device, type Member, type Share } from '../api.js';
import { append, field, fill, h, messageBox } from '../dom.js';
import { relative, when } from '../format.js';
import type { Ctx } from '../main.js';
import { webcamViewer } from '../webcam.js';
import { stateLine } from './printers.js';

const EXPIRIES: Array<[string, string]> = [
  ['1h', '1 hour'],
  ['1d', '1 day'],
  ['1w', '1 week'],
  ['never', 'Until revoked'],
];

/** Runs an action with the section's message box: errors say what happened and what to do. */
async function attempt(msg: ReturnType<typeof messageBox>, fn: () => Promise<void>): Promise<void> {
  msg.clear();
  try {
    await fn();
  } catch (err) {
    const a = advice(err);
    msg.error(a.text, a.hint);
  }
}

function section(title: string, ...children: Array<Node | null>): HTMLElement {
  const id = `s-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

function sharesSection(d: Device): HTMLElement {
  const msg = messageBox();
  const list = h('ul', { class: 'rows' });
  const created = h('div', { class: 'created', 'aria-live': 'polite' });
  const expiryId = 'share-expiry';
  const expiry = h('select', { id: expiryId, name: 'expiresIn' }, EXPIRIES.map(([v, t]) => h('option', { value: v, selected: v === '1d' }, t)));
  const label = field('Label (optional)', { name: 'label', maxlength: 100, autocomplete: 'off', placeholder: 'e.g. family chat' });
  const load = async () => {
    const shares = await api<Share[]>('GET', `/devices/${d.id}/shares`);
    const active = shares.filter((s) => s.active);
    fill(
      list,
      active.length === 0
        ? h('li', { class: 'muted' }, 'No active links.')
        : active.map((s) =>
            h(
              'li',
              { class: 'row' },
              h(
                'div',
                null,
                h('strong', null, s.label ?? 'Link'),
                h('div', { class: 'muted small' }, `${s.expiresAt ? `expires ${relative(s.expiresAt)}` : 'no expiry'} · used ${s.uses} time${s.uses === 1 ? '' : 's'}${s.lastUsedAt ? `, last ${relative(s.lastUsedAt)}` : ''}`),
              ),
              h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke link ${s.label ?? s.id}`, onclick: () => void attempt(msg, async () => { await api('DELETE', `/devices/${d.id}/shares/${s.id}`); msg.notice('Link revoked: whoever had it is cut off now.'); await load(); }) }, 'Revoke'),
            ),
          ),
    );
  };
  const form = h(
    'form',
    { class: 'inline-form' },
    h('div', { class: 'field' }, h('label', { for: expiryId }, 'Link works for'), expiry),
    label.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create link')),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(msg, async () => {
      const r = await api<{ url: string; expiresAt: string | null }>('POST', `/devices/${d.id}/shares`, { expiresIn: expiry.value, ...(label.input.value ? { label: label.input.value } : {}) });
      const out = h('input', { id: 'share-url', class: 'mono', readonly: true, value: r.url, 'aria-label': 'New share link' });
      const copy = h('button', { type: 'button', class: 'secondary' }, 'Copy');
      copy.addEventListener('click', async () => {
        try {
          await navigator.clipboard.writeText(r.url);
          copy.textContent = 'Copied';
        } catch {
          out.select();
          copy.textContent = 'Select and copy';
        }
      });
      fill(created, h('p', null, 'Anyone with this link sees the webcam and status, nothing else. It is shown only now.'), h('div', { class: 'copy-row' }, out, copy));
      label.input.value = '';
      await load();
    });
  });
  void attempt(msg, load);
  return section('Share links', h('p', { class: 'muted' }, 'A link shows the webcam and a read-only status without an account.'), msg.el, form, created, list);
}

function membersSection(d: Device, ctx: Ctx): HTMLElement {
  const msg = messageBox();
  const list = h('ul', { class: 'rows' });
  const load = async () => {
    const members = await api<Member[]>('GET', `/devices/${d.id}/members`);
    fill(
      list,
      members.map((m) =>
        h(
          'li',
          { class: 'row' },
          h('div', null, h('strong', null, m.username), m.userId === ctx.me?.user.id ? ' (you)' : '', h('div', { class: 'muted small' }, `${m.role}${m.disabled ? ' · disabled' : ''}`)),
          m.userId === ctx.me?.user.id
            ? null
            : h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${m.username}`, onclick: () => void attempt(msg, async () => { await api('DELETE', `/devices/${d.id}/members/${m.userId}`); await load(); }) }, 'Remove'),
        ),
      ),
    );
  };
  const user = field('Username', { name: 'member', autocomplete: 'off', autocapitalize: 'off', required: true });
  const roleId = 'member-role';
  const role = h('select', { id: roleId, name: 'role' }, h('option', { value: 'viewer' }, 'Viewer: webcam and status'), h('option', { value: 'operator' }, 'Operator: full control'), h('option', { value: 'owner' }, 'Owner: full control and settings'));
  const form = h('form', { class: 'inline-form' }, user.wrap, h('div', { class: 'field' }, h('label', { for: roleId }, 'Role'), role), h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add or change')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(msg, async () => {
      await api('POST', `/devices/${d.id}/members`, { username: user.input.value, role: role.value });
      msg.notice(`${user.input.value} is now ${role.value}.`);
      user.input.value = '';
      await load();
    });
  });
  void attempt(msg, load);
  return section('Members and roles', msg.el, list, form);
}

function auditSection(d: Device): HTMLElement {
  const msg = messageBox();
  const list = h('ul', { class: 'rows small' });
  void attempt(msg, async () => {
    const events = await api<AuditEvent[]>('GET', `/devices/${d.id}/audit?limit=15`);
    fill(list, events.length === 0 ? h('li', { class: 'muted' }, 'Nothing yet.') : events.map((e) => h('li', null, h('strong', null, e.kind), h('span', { class: 'muted' }, ` · ${when(e.at ?? e.createdAt)}${e.ip ? ` · ${e.ip}` : ''}`))));
  });
  return section('Recent activity', msg.el, list);
}

function settingsSection(d: Device, ctx: Ctx, title: HTMLElement): HTMLElement {
  const msg = messageBox();
  const name = field('Name', { name: 'name', value: d.name, maxlength: 100, required: true });
  const rename = h('form', { class: 'inline-form' }, name.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Rename')));
  rename.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(msg, async () => {
      const r = await api<Device>('PATCH', `/devices/${d.id}`, { name: name.input.value });
      title.textContent = r.name;
      msg.notice(`Renamed to ${r.name}.`);
    });
  });
  const revoke = h('button', { type: 'button', class: 'danger' }, 'Revoke credential');
  revoke.addEventListener('click', () => {
    if (!confirm(`Revoke ${d.name}'s credential? Its tunnel closes now and it must be paired again.`)) return;
    void attempt(msg, async () => {
      await api('POST', `/devices/${d.id}/revoke`);
      msg.notice('Credential revoked: the printer is disconnected. Pair it again to use it.');
    });
  });
  const remove = h('button', { type: 'button', class: 'danger' }, 'Remove printer');
  remove.addEventListener('click', () => {
    if (!confirm(`Remove ${d.name}? Its links, members and sessions go too.`)) return;
    void attempt(msg, async () => {
      await api('DELETE', `/devices/${d.id}`);
      ctx.go('/', true);
    });
  });
  return section('Settings', msg.el, rename, h('div', { class: 'actions' }, d.revoked ? null : revoke, remove));
}

export async function printerView(ctx: Ctx): Promise<void> {
  const d = await api<Device>('GET', `/devices/${encodeURIComponent(ctx.params.id ?? '')}`);
  if (ctx.signal.aborted) return;
  ctx.setTitle(d.name);
  const title = h('h1', null, d.name);
  const canShare = d.role === 'owner' || d.role === 'operator';
  let state = stateLine(d);
  append(ctx.main, [
    h('p', { class: 'back' }, h('a', { href: '/app/' }, '← Printers')),
    title,
    state,
    d.online ? webcamViewer(d.id, d.name, ctx.signal) : h('div', { class: 'cam offline-cam' }, h('p', null, 'The printer is offline, so there is no picture.'), h('p', { class: 'hint' }, 'Check that the printer and its Pi are powered and online; it reconnects by itself.')),
    d.revoked ? null : h('div', { class: 'actions' }, h('a', { class: 'button primary', href: `/open/${encodeURIComponent(d.slug)}` }, 'Open printer UI')),
    canShare && !d.revoked ? sharesSection(d) : null,
    d.role === 'owner' ? membersSection(d, ctx) : null,
    d.role === 'owner' ? auditSection(d) : null,
    d.role === 'owner' ? settingsSection(d, ctx, title) : null,
  ]);
  // The status line follows the tunnel: poll gently while the page is open.
  const timer = setInterval(async () => {
    if (document.hidden) return;
    try {
      const fresh = await api<Device>('GET', `/devices/${d.id}`);
      if (ctx.signal.aborted) return;
      const next = stateLine(fresh);
      state.replaceWith(next);
      state = next;
    } catch {
      /* shown on the next action */
    }
  }, 15_000);
  ctx.signal.addEventListener('abort', () => clearInterval(timer));
}
