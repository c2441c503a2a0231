/**
 * Server-rendered HTML that is safe by default: every value put into an `html` template is
 * escaped unless it is itself `html` (or `raw`, which nothing outside this file should need).
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

type Value = Html | string | number | boolean | null | undefined | Date | readonly Value[];

function render(v: Value): string {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === null || v === undefined || v === false || v === true) return '';
  if (v instanceof Date) return escapeHtml(v.toISOString());
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new Html(out);
}

/** A date for people: "2026-11-23 10:43 UTC". */
export function when(d: Date | null | undefined): string {
  return d ? `${d.toISOString().replace('T', ' ').slice(0, 16)} UTC` : 'never';
}

/** "3 minutes ago" / "in 2 hours". */
export function relative(d: Date, now: Date = new Date()): string {
  const diff = d.getTime() - now.getTime();
  const s = Math.round(Math.abs(diff) / 1000);
  const text =
    s < 90 ? `${s} seconds` : s < 90 * 60 ? `${Math.round(s / 60)} minutes` : s < 36 * 3600 ? `${Math.round(s / 3600)} hours` : `${Math.round(s / 86400)} days`;
  return diff < 0 ? `${text} ago` : `in ${text}`;
}

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#5b6570;--line:#d5dae0;--accent:#0b62c4;--bad:#b3261e;--ok:#1b7f3b}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ed;--bg:#15181c;--muted:#9aa4ae;--line:#343a41;--accent:#6aa8ff;--bad:#ff8a80;--ok:#6fd08c}}
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:center;padding:.75rem 1.25rem;border-bottom:1px solid var(--line)}
header .brand{font-weight:600;margin-right:auto;color:inherit;text-decoration:none}
header a{color:var(--accent)}
main{padding:1.25rem;max-width:40rem;margin:0 auto}
h1{font-size:1.4rem;margin:0 0 1rem}h2{font-size:1.15rem;margin:1.75rem 0 .5rem}
p{margin:.5rem 0}
a{color:var(--accent)}
label{display:block;font-weight:500;margin:.75rem 0 .25rem}
input[type=text],input[type=password],input:not([type]){width:100%;font:inherit;padding:.6rem .7rem;border:1px solid var(--line);border-radius:.4rem;background:var(--bg);color:var(--fg)}
button{font:inherit;padding:.6rem 1rem;border-radius:.4rem;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer;min-height:2.75rem}
button.secondary{background:transparent;color:var(--accent)}
button.danger{border-color:var(--bad);background:transparent;color:var(--bad)}
form.inline{display:inline}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin-top:1rem}
.card{border:1px solid var(--line);border-radius:.6rem;padding:1rem;margin:.75rem 0}
.card h2{margin:0 0 .25rem}
.muted{color:var(--muted);font-size:.92rem}
.error{color:var(--bad);border:1px solid var(--bad);border-radius:.4rem;padding:.6rem .8rem}
.notice{color:var(--ok);border:1px solid var(--ok);border-radius:.4rem;padding:.6rem .8rem}
.online{color:var(--ok);font-weight:600}.offline{color:var(--muted);font-weight:600}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
ul.plain{list-style:none;padding:0;margin:0}
ul.plain li{border-top:1px solid var(--line);padding:.6rem 0}
`;

export interface LayoutOptions {
  title: string;
  body: Html;
  /** The signed-in user's name and CSRF token: shows the navigation and the sign-out button. */
  user?: { username: string; csrf: string };
}

/** A whole page: viewport for phones, one inline stylesheet (the CSP allows inline styles, never scripts). */
export function layout(o: LayoutOptions): string {
  const nav = o.user
    ? html`<header><a class="brand" href="/">Porthole</a><a href="/app/">Phone dashboard</a><a href="/">Printers</a><a href="/account">Account</a><form class="inline" method="post" action="/logout"><input type="hidden" name="_csrf" value="${o.user.csrf}"><button class="secondary" type="submit">Sign out ${o.user.username}</button></form></header>`
    : html`<header><a class="brand" href="/">Porthole</a><a href="/app/">Phone dashboard</a></header>`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="referrer" content="no-referrer"><title>${escapeHtml(o.title)} · Porthole</title><style>${STYLE}</style></head><body>${nav.text}<main>${o.body.text}</main></body></html>`;
}
