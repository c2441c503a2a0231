import { api, ApiError, setCsrf, whenSignedOut, type Me } from './api.js';
import { h, fill } from './dom.js';
import { accountView, adminView } from './views/account.js';
import { loginView, setupView } from './views/auth.js';
import { pairView } from './views/pair.js';
import { printerView } from './views/printer.js';
import { printersView } from './views/printers.js';

/**
 * The dashboard: a few views routed by hand under /app/ with the History API. Each view is a
 * function that fills <main> and may start timers (thumbnails, pairing) tied to an AbortSignal
 * that ends when the view does.
 */
export interface Ctx {
  me: Me | null;
  /** Ends when the user leaves this view: stop polling, close streams. */
  signal: AbortSignal;
  params: Record<string, string>;
  query: URLSearchParams;
  main: HTMLElement;
  setTitle(title: string): void;
  go(path: string, replace?: boolean): void;
  refreshMe(): Promise<Me | null>;
  /** Ends this sign-in (and the printer sessions opened from it) and shows the sign-in page. */
  signOut(): Promise<void>;
}

type View = (ctx: Ctx) => void | Promise<void>;

const ROUTES: Array<{ pattern: RegExp; keys: string[]; view: View; auth: boolean }> = [
  { pattern: /^\/$/, keys: [], view: printersView, auth: true },
  { pattern: /^\/login$/, keys: [], view: loginView, auth: false },
  { pattern: /^\/setup$/, keys: [], view: setupView, auth: false },
  { pattern: /^\/printers\/([^/]+)$/, keys: ['id'], view: printerView, auth: true },
  { pattern: /^\/pair$/, keys: [], view: pairView, auth: true },
  { pattern: /^\/account$/, keys: [], view: accountView, auth: true },
  { pattern: /^\/admin$/, keys: [], view: adminView, auth: true },
];

const BASE = '/app';
const main = document.getElementById('main')!;
const bar = document.getElementById('bar')!;
let me: Me | null = null;
let current: AbortController | undefined;

async function refreshMe(): Promise<Me | null> {
  try {
    me = await api<Me>('GET', '/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) me = null;
    else throw err;
  }
  setCsrf(me?.csrf ?? '');
  renderBar();
  return me;
}

function link(href: string, text: string, current: boolean): HTMLAnchorElement {
  return h('a', { href: `${BASE}${href}`, 'aria-current': current ? 'page' : null }, text);
}

function renderBar(): void {
  const path = location.pathname.slice(BASE.length) || '/';
  if (me === null) {
    fill(bar, h('a', { class: 'brand', href: `${BASE}/` }, 'Porthole'));
    return;
  }
  fill(
    bar,
    h('a', { class: 'brand', href: `${BASE}/` }, 'Porthole'),
    h(
      'nav',
      { 'aria-label': 'Main' },
      link('/', 'Printers', path === '/' || path.startsWith('/printers')),
      link('/pair', 'Pair', path === '/pair'),
      link('/account', 'Account', path === '/account'),
      me.user.isAdmin ? link('/admin', 'Users', path === '/admin') : null,
    ),
  );
}

async function signOut(): Promise<void> {
  try {
    await api('POST', '/logout');
  } catch {
    /* already signed out */
  }
  me = null;
  setCsrf('');
  go('/login?signedOut=1');
}

function go(path: string, replace = false): void {
  const url = path.startsWith(BASE) ? path : `${BASE}${path}`;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  void route();
}

async function route(): Promise<void> {
  current?.abort();
  const ac = new AbortController();
  current = ac;
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) || '/' : '/';
  const r = ROUTES.find((x) => x.pattern.test(path));
  renderBar();
  if (r === undefined) {
    document.title = 'Not found · Porthole';
    fill(main, h('h1', null, 'Not found'), h('p', null, 'There is no page here.'), h('p', null, h('a', { href: `${BASE}/` }, 'Back to your printers')));
    return;
  }
  if (r.auth && me === null) {
    const status = await api<{ needsSetup: boolean }>('GET', '/setup/status').catch(() => ({ needsSetup: false }));
    if (ac.signal.aborted) return;
    go(status.needsSetup ? '/setup' : `/login?next=${encodeURIComponent(path + location.search)}`, true);
    return;
  }
  const m = r.pattern.exec(path)!;
  const params: Record<string, string> = {};
  r.keys.forEach((k, i) => (params[k] = decodeURIComponent(m[i + 1] ?? '')));
  main.replaceChildren();
  try {
    await r.view({
      me,
      signal: ac.signal,
      params,
      query: new URLSearchParams(location.search),
      main,
      setTitle: (t) => (document.title = `${t} · Porthole`),
      go,
      refreshMe,
      signOut,
    });
  } catch (err) {
    if (ac.signal.aborted) return;
    const msg = err instanceof ApiError ? err.message : 'Something went wrong in the dashboard.';
    fill(main, h('h1', null, 'Cannot show this page'), h('div', { class: 'error', role: 'alert' }, h('p', null, msg)), h('p', null, h('a', { href: `${BASE}/` }, 'Back to your printers')));
  }
  if (!ac.signal.aborted && document.activeElement === document.body) main.focus({ preventScroll: true });
}

// Same-origin links inside /app/ navigate without a reload.
document.addEventListener('click', (e) => {
  const a = (e.target as Element | null)?.closest?.('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(`${BASE}/`)) return;
  e.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener('popstate', () => void route());

whenSignedOut(() => {
  if (me === null) return;
  me = null;
  setCsrf('');
  const path = location.pathname.slice(BASE.length) || '/';
  go(`/login?next=${encodeURIComponent(path)}`, true);
});

const secure = location.protocol === 'https:' || location.hostname === 'localhost' || location.hostname.endsWith('.localhost');
if ('serviceWorker' in navigator && secure) {
  navigator.serviceWorker.register(`${BASE}/sw.js`, { scope: `${BASE}/` }).catch(() => {
    /* no offline shell: the dashboard works without it */
  });
}

refreshMe()
  .catch(() => null)
  .finally(() => void route());
