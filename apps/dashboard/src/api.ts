/** The relay's JSON API, from the same origin: the session cookie rides along, the CSRF token in a header. */

export interface User {
  id: string;
  username: string;
  isAdmin: boolean;
  totpEnabled: boolean;
  createdAt: string;
  passwordChangedAt: string;
  disabled: boolean;
}

export interface Me {
  user: User;
  csrf: string;
}

export interface Device {
  id: string;
  name: string;
  slug: string;
  role: 'owner' | 'operator' | 'viewer';
  online: boolean;
  onlineSince: string | null;
  offlineSince: string | null;
  lastSeenAt: string | null;
  createdAt: string;
  revoked: boolean;
  url: string;
}

export interface Share {
  id: string;
  label: string | null;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  uses: number;
  lastUsedAt: string | null;
  active: boolean;
}

export interface Member {
  userId: string;
  username: string;
  role: string;
  disabled: boolean;
  createdAt: string;
}

export interface AuditEvent {
  id: string;
  kind: string;
  at?: string;
  createdAt?: string;
  ip?: string | null;
  userId?: string | null;
  detail?: unknown;
}

export interface SessionRow {
  id: string;
  kind: string;
  ip: string | null;
  userAgent: string | null;
  createdAt: string;
  lastSeenAt: string;
  current: boolean;
}

export interface Pairing {
  code: string;
  name: string;
  agent: string;
  remote: string;
  expiresAt: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterS?: number,
  ) {
    super(message);
  }
}

let csrf = '';
export function setCsrf(token: string): void {
  csrf = token;
}

/** Called when the relay says the session is gone (401 on anything but sign-in). */
let onSignedOut: () => void = () => {};
export function whenSignedOut(fn: () => void): void {
  onSignedOut = fn;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  let res: Response;
  try {
    res = await fetch(`/api${path}`, { method, headers, credentials: 'same-origin', body: body === undefined ? null : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'NETWORK', 'The relay could not be reached. Check your connection and try again.');
  }
  const text = await res.text();
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON: a proxy's error page */
  }
  if (!res.ok) {
    const e = (data as { error?: { code?: string; message?: string } } | undefined)?.error;
    const retry = Number(res.headers.get('retry-after') ?? NaN);
    const err = new ApiError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? `The relay answered ${res.status}.`, Number.isFinite(retry) ? retry : undefined);
    if (res.status === 401 && err.code === 'RELAY_UNAUTHENTICATED') onSignedOut();
    throw err;
  }
  return data as T;
}

/** What to do about an error, for people: the relay's message says what happened. */
export function advice(err: unknown): { text: string; hint?: string } {
  if (!(err instanceof ApiError)) return { text: 'Something went wrong in the dashboard.', hint: 'Reload the page and try again.' };
  switch (err.code) {
    case 'NETWORK':
      return { text: err.message };
    case 'RELAY_TOO_MANY_ATTEMPTS':
      return {
        text: err.message,
        hint: 'Sign-in is locked for a while after repeated failures, to protect the account. Wait and try again, or ask an administrator.',
      };
    case 'RELAY_LOGIN_FAILED':
      return { text: err.message, hint: 'Check both and try again. Repeated failures lock sign-in for a while.' };
    case 'RELAY_CSRF':
      return { text: err.message, hint: 'Reload the page and try again.' };
    case 'RELAY_DEVICE_OFFLINE':
      return { text: err.message, hint: 'Check that the printer and its Pi are powered and online; it reconnects by itself.' };
    case 'RELAY_PAIRING_NOT_FOUND':
      return { text: err.message, hint: 'Start the pairing again on the printer and enter the new code it shows.' };
    default:
      return err.status >= 500 ? { text: err.message, hint: 'Try again in a moment; the relay log has the details.' } : { text: err.message };
  }
}
