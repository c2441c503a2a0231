import { advice, api, ApiError, setCsrf, type Me } from '../api.js';
import { field, h, messageBox } from '../dom.js';
import type { Ctx } from '../main.js';

/** Only paths inside the dashboard: a `next` from the URL must never send the user elsewhere. */
function safeNext(next: string | null): string {
  return next && /^\/(?!\/)[^\\]*$/.test(next) ? next : '/';
}

function busy(button: HTMLButtonElement, on: boolean, text: string): void {
  button.disabled = on;
  button.textContent = text;
  button.setAttribute('aria-busy', String(on));
}

export async function loginView(ctx: Ctx): Promise<void> {
  ctx.setTitle('Sign in');
  if (ctx.me !== null) return ctx.go(safeNext(ctx.query.get('next')), true);
  const msg = messageBox();
  if (ctx.query.get('signedOut') === '1') msg.notice('You are signed out.');
  const user = field('Username', { name: 'username', autocomplete: 'username', autocapitalize: 'off', spellcheck: 'false', required: true });
  const pass = field('Password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const code = field('Code from your authenticator app (or a recovery code)', { name: 'code', autocomplete: 'one-time-code', autocapitalize: 'off' });
  code.wrap.hidden = true;
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { novalidate: true }, user.wrap, pass.wrap, code.wrap, h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.clear();
    if (!user.input.value || !pass.input.value) {
      msg.error('Enter your username and password.');
      (user.input.value ? pass.input : user.input).focus();
      return;
    }
    busy(submit, true, 'Signing in…');
    try {
      const body: Record<string, string> = { username: user.input.value, password: pass.input.value };
      if (!code.wrap.hidden && code.input.value) body.code = code.input.value;
      const me = await api<Me>('POST', '/login', body);
      setCsrf(me.csrf);
      await ctx.refreshMe();
      ctx.go(safeNext(ctx.query.get('next')), true);
      return;
    } catch (err) {
      if (err instanceof ApiError && err.code === 'RELAY_SECOND_FACTOR_REQUIRED') {
        code.wrap.hidden = false;
        code.input.required = true;
        msg.notice(err.message);
        code.input.focus();
      } else {
        const a = advice(err);
        msg.error(a.text, a.hint);
        pass.input.value = '';
        pass.input.focus();
      }
    }
    busy(submit, false, 'Sign in');
  });
  ctx.main.append(h('div', { class: 'narrow' }, h('h1', null, 'Sign in'), msg.el, form));
}

export async function setupView(ctx: Ctx): Promise<void> {
  ctx.setTitle('Set up Porthole');
  const status = await api<{ needsSetup: boolean }>('GET', '/setup/status');
  if (!status.needsSetup) return ctx.go(ctx.me ? '/' : '/login', true);
  const msg = messageBox();
  const fromLink = ctx.query.get('token') ?? '';
  const token = field('Setup token', { name: 'token', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', value: fromLink }, 'From the link the relay printed when it first started.');
  token.wrap.hidden = fromLink !== '';
  const user = field('Username', { name: 'username', autocomplete: 'username', autocapitalize: 'off', spellcheck: 'false', required: true });
  const pass = field('Password', { name: 'password', type: 'password', autocomplete: 'new-password', minlength: 10, required: true }, 'At least 10 characters, not a common one.');
  const again = field('Password again', { name: 'confirm', type: 'password', autocomplete: 'new-password', minlength: 10, required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create account');
  const form = h('form', { novalidate: true }, token.wrap, user.wrap, pass.wrap, again.wrap, h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.clear();
    if (pass.input.value !== again.input.value) {
      msg.error('The two passwords differ.', 'Type the same password in both fields.');
      again.input.focus();
      return;
    }
    busy(submit, true, 'Creating…');
    try {
      const me = await api<Me>('POST', '/setup', { token: token.input.value, username: user.input.value, password: pass.input.value });
      setCsrf(me.csrf);
      await ctx.refreshMe();
      ctx.go('/', true);
      return;
    } catch (err) {
      if (err instanceof ApiError && err.code === 'RELAY_SETUP_TOKEN') token.wrap.hidden = false;
      if (err instanceof ApiError && err.code === 'RELAY_SETUP_DONE') return ctx.go('/login', true);
      const a = advice(err);
      msg.error(a.text, a.hint);
    }
    busy(submit, false, 'Create account');
  });
  ctx.main.append(
    h('div', { class: 'narrow' }, h('h1', null, 'Set up Porthole'), h('p', null, 'Make the first account. It will be an administrator and can add others.'), msg.el, form),
  );
}
