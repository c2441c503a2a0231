/**
 * A tiny element builder: `h('button', { class: 'primary', onclick }, 'Save')`. Strings become
 * text nodes (never HTML), so nothing a printer name or a server message contains can inject
 * markup. `on*` props become listeners; `true` is an empty attribute, false/null/undefined none.
 */
export type Child = Node | string | number | null | undefined | false | readonly Child[];
type Listener = (e: Event) => void;
export type Props = Record<string, string | number | boolean | null | undefined | Listener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props?: Props | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: readonly Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c as readonly Child[]);
    else el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : (c as Node));
  }
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
/** A unique id for label/input pairs. */
export function uid(prefix: string): string {
  return `${prefix}-${++ids}`;
}

/** A labelled input: the label is a real <label for>, the hint is tied with aria-describedby. */
export function field(label: string, props: Props & { name: string }, hint?: string): { wrap: HTMLElement; input: HTMLInputElement } {
  const id = uid(props.name);
  const hintId = hint ? `${id}-hint` : undefined;
  const input = h('input', { id, ...props, 'aria-describedby': hintId });
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
  return { wrap, input };
}

/** A message box: role=alert for errors (read out at once), role=status for notices. */
export function messageBox(): { el: HTMLElement; error(text: string, hint?: string): void; notice(text: string): void; clear(): void } {
  const el = h('div', { class: 'messages' });
  return {
    el,
    error(text, hint) {
      fill(el, h('div', { class: 'error', role: 'alert' }, h('p', null, text), hint ? h('p', { class: 'hint' }, hint) : null));
    },
    notice(text) {
      fill(el, h('p', { class: 'notice', role: 'status' }, text));
    },
    clear() {
      el.replaceChildren();
    },
  };
}
