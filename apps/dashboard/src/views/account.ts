import { advice, api, setCsrf, type Me, type SessionRow, type User } from '../api.js';
import { field, fill, h, messageBox } from '../dom.js';
import { relative, shortAgent, when } from '../format.js';
import type { Ctx } from '../main.js';

async function attempt(msg: ReturnType<typeof messageBox>, fn: () => Promise<void>): Promise<void> {
  msg.clear();
  try {
    await fn();
  } catch (err) {
    const a = advice(err);
    msg.error(a.text, a.hint);
  }
}

function section(id: string, title: string, ...children: Array<Node | null>): HTMLElement {
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

function passwordSection(ctx: Ctx): HTMLElement {
  const msg = messageBox();
  const hiddenUser = h('input', { type: 'text', name: 'username', autocomplete: 'username', value: ctx.me?.user.username ?? '', hidden: true, tabindex: -1, 'aria-hidden': 'true' });
  const old = field('Current password', { name: 'old', type: 'password', autocomplete: 'current-password', required: true });
  const next = field('New password', { name: 'new', type: 'password', autocomplete: 'new-password', minlength: 10, required: true }, 'At least 10 characters, not a common one.');
  const again = field('New password again', { name: 'confirm', type: 'password', autocomplete: 'new-password', minlength: 10, required: true });
  const form = h('form', { novalidate: true }, hiddenUser, old.wrap, next.wrap, again.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Change password')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (next.input.value !== again.input.value) {
      msg.error('The two new passwords differ.', 'Type the same new password in both fields.');
      return;
    }
    void attempt(msg, async () => {
      const me = await api<Me>('POST', '/password', { old: old.input.value, new: next.input.value });
      setCsrf(me.csrf);
      form.reset();
      msg.notice('Password changed. Every other sign-in has ended.');
    });
  });
  return section('h-password', 'Password', msg.el, form);
}

function totpSection(ctx: Ctx): HTMLElement {
  const msg = messageBox();
  const body = h('div');
  const render = () => {
    if (ctx.me?.user.totpEnabled) {
      const pw = field('Password, to turn it off', { name: 'totp-password', type: 'password', autocomplete: 'current-password', required: true });
      const form = h('form', null, pw.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'danger' }, 'Turn off two-factor')));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        void attempt(msg, async () => {
          await api('POST', '/totp/disable', { password: pw.input.value });
          await ctx.refreshMe().then((m) => (ctx.me = m));
          msg.notice('Two-factor sign-in is off.');
          render();
        });
      });
      fill(body, h('p', null, 'Two-factor sign-in is ', h('strong', null, 'on'), '.'), form);
      return;
    }
    const start = h('button', { type: 'button', class: 'primary' }, 'Set up two-factor');
    start.addEventListener('click', () =>
      void attempt(msg, async () => {
        const { secret, uri } = await api<{ secret: string; uri: string }>('POST', '/totp/setup');
        const code = field('Code the app shows now', { name: 'totp-code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true });
        const form = h('form', null, code.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Turn on')));
        form.addEventListener('submit', (e) => {
          e.preventDefault();
          void attempt(msg, async () => {
            const r = await api<{ recoveryCodes: string[] }>('POST', '/totp/enable', { code: code.input.value });
            await ctx.refreshMe().then((m) => (ctx.me = m));
            fill(
              body,
              h('p', null, 'Two-factor sign-in is on. Keep these recovery codes somewhere safe, away from your phone. Each works once, in place of a code. They are shown only now.'),
              h('ul', { class: 'codes mono' }, r.recoveryCodes.map((c) => h('li', null, c))),
              h('button', { type: 'button', class: 'secondary', onclick: render }, 'Done'),
            );
          });
        });
        fill(
          body,
          h('p', null, 'Add this account to an authenticator app: ', h('a', { href: uri }, 'open it in the app'), ', or enter the key by hand (time-based, 6 digits, 30 seconds).'),
          h('p', { class: 'mono key', 'aria-label': 'Key' }, secret.replace(/(.{4})/g, '$1 ').trim()),
          form,
        );
        code.input.focus();
      }),
    );
    fill(body, h('p', null, 'Two-factor sign-in is ', h('strong', null, 'off'), '. With it on, signing in also asks for a code from an authenticator app.'), h('div', { class: 'actions' }, start));
  };
  render();
  return section('h-totp', 'Two-factor sign-in', msg.el, body);
}

function sessionsSection(ctx: Ctx): HTMLElement {
  const msg = messageBox();
  const list = h('ul', { class: 'rows' });
  const load = async () => {
    const rows = (await api<SessionRow[]>('GET', '/sessions')).filter((s) => s.kind === 'dashboard' || s.kind === 'device');
    fill(
      list,
      rows.map((s) =>
        h(
          'li',
          { class: 'row' },
          h(
            'div',
            null,
            h('strong', null, s.kind === 'device' ? 'Printer UI' : 'Dashboard'),
            s.current ? h('span', { class: 'badge' }, 'this one') : null,
            h('div', { class: 'muted small' }, `${shortAgent(s.userAgent)} · ${s.ip ?? 'unknown address'} · signed in ${relative(s.createdAt)} · seen ${relative(s.lastSeenAt)}`),
          ),
          h(
            'button',
            {
              type: 'button',
              class: 'danger',
              'aria-label': s.current ? 'End this session and sign out' : `End session from ${when(s.createdAt)}`,
              onclick: () =>
                void attempt(msg, async () => {
                  const r = await api<{ current: boolean }>('DELETE', `/sessions/${s.id}`);
                  if (r.current) {
                    await ctx.refreshMe();
                    ctx.go('/login?signedOut=1', true);
                    return;
                  }
                  msg.notice('Session ended.');
                  await load();
                }),
            },
            'End',
          ),
        ),
      ),
    );
  };
  void attempt(msg, load);
  return section('h-sessions', 'Where you are signed in', msg.el, list);
}

export async function accountView(ctx: Ctx): Promise<void> {
  ctx.setTitle('Account');
  const out = h('button', { type: 'button', class: 'secondary', onclick: () => void ctx.signOut() }, 'Sign out');
  ctx.main.append(
    h('h1', null, `Account: ${ctx.me?.user.username ?? ''}`),
    h('div', { class: 'actions' }, out),
    h('p', { class: 'hint' }, 'Signing out also closes the printers you opened from this sign-in.'),
    passwordSection(ctx),
    totpSection(ctx),
    sessionsSection(ctx),
  );
}

export async function adminView(ctx: Ctx): Promise<void> {
  ctx.setTitle('Users');
  if (!ctx.me?.user.isAdmin) {
    ctx.main.append(h('h1', null, 'Users'), h('p', null, 'Only administrators manage users.'));
    return;
  }
  const msg = messageBox();
  const list = h('ul', { class: 'rows' });
  const load = async () => {
    const users = await api<User[]>('GET', '/users');
    fill(
      list,
      users.map((u) =>
        h(
          'li',
          { class: 'row' },
          h('div', null, h('strong', null, u.username), h('div', { class: 'muted small' }, [u.isAdmin ? 'administrator' : 'user', u.totpEnabled ? 'two-factor on' : null, u.disabled ? 'disabled' : null, `since ${when(u.createdAt)}`].filter(Boolean).join(' · '))),
          u.disabled || u.id === ctx.me?.user.id
            ? null
            : h('button', { type: 'button', class: 'danger', 'aria-label': `Disable ${u.username}`, onclick: () => void attempt(msg, async () => { await api('POST', `/users/${u.id}/disable`); msg.notice(`${u.username} is disabled and signed out everywhere.`); await load(); }) }, 'Disable'),
        ),
      ),
    );
  };
  const name = field('Username', { name: 'new-username', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', required: true });
  const pw = field('Password', { name: 'new-password', type: 'password', autocomplete: 'new-password', minlength: 10, required: true }, 'At least 10 characters; they can change it after signing in.');
  const adminId = 'new-admin';
  const admin = h('input', { id: adminId, type: 'checkbox', name: 'isAdmin' });
  const form = h('form', { novalidate: true }, name.wrap, pw.wrap, h('div', { class: 'check' }, admin, h('label', { for: adminId }, 'Administrator')), h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add user')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void attempt(msg, async () => {
      const u = await api<User>('POST', '/users', { username: name.input.value, password: pw.input.value, isAdmin: admin.checked });
      form.reset();
      msg.notice(`${u.username} can sign in now.`);
      await load();
    });
  });
  void attempt(msg, load);
  ctx.main.append(h('h1', null, 'Users'), msg.el, h('section', { class: 'card', 'aria-labelledby': 'h-users' }, h('h2', { id: 'h-users' }, 'Accounts'), list), h('section', { class: 'card', 'aria-labelledby': 'h-add' }, h('h2', { id: 'h-add' }, 'Add a user'), form));
}
