import { format } from 'node:util';

/** One entry of the catalogue: the HTTP status it maps to and a `%s` message template. */
export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

/**
 * Every error the relay raises on purpose. `code` is stable (logs, API bodies, tests match on
 * it); `message` is for people, its `%s` filled in order from the arguments. Errors that never
 * reach a client (config, migrations) map to 500.
 */
export const RelayErrors = {
  RELAY_BAD_REQUEST: { status: 400, message: 'Bad request: %s' },
  RELAY_INVALID_SLUG: { status: 400, message: 'Invalid slug "%s": %s' },
  RELAY_INVALID_NAME: { status: 400, message: 'Invalid device name: %s' },
  RELAY_BAD_CREDENTIAL: { status: 401, message: 'Device credential missing, malformed or unknown' },
  RELAY_CREDENTIAL_REVOKED: { status: 403, message: 'Device credential has been revoked' },
  RELAY_DEVICE_NOT_FOUND: { status: 404, message: 'No device "%s"' },
  RELAY_SLUG_TAKEN: { status: 409, message: 'Slug "%s" is already used by another device' },
  RELAY_PAIRING_NOT_FOUND: { status: 404, message: 'No pending pairing with code "%s" (it may have expired, been used or been denied)' },
  RELAY_PAIRING_OWNER: { status: 400, message: 'Cannot make "%s" the owner of a paired device: %s' },
  RELAY_PAIRING_LIMIT: { status: 429, message: 'Too many pairings in progress %s; try again in a few minutes' },
  RELAY_INTERNAL: { status: 500, message: 'Internal error: %s' },
  RELAY_INVALID_CONFIG: { status: 500, message: 'Invalid configuration: %s' },
  RELAY_DATABASE_ERROR: { status: 500, message: 'Database error: %s' },
  RELAY_MIGRATION_FAILED: { status: 500, message: 'Database migration failed: %s' },
  RELAY_SERVICE_UNAVAILABLE: { status: 502, message: 'Printer service "%s" is not reachable: %s' },
  RELAY_DEVICE_OFFLINE: { status: 503, message: 'Device "%s" is offline' },
  RELAY_TOO_MANY_STREAMS: { status: 503, message: 'Device "%s" has too many open connections' },
  RELAY_UPSTREAM_TIMEOUT: { status: 504, message: 'Printer service "%s" did not answer in time' },
  RELAY_INVALID_USERNAME: { status: 400, message: 'Invalid username "%s": %s' },
  RELAY_WEAK_PASSWORD: { status: 400, message: 'Password not accepted: %s' },
  RELAY_USERNAME_TAKEN: { status: 409, message: 'Username "%s" is already taken' },
  RELAY_USER_NOT_FOUND: { status: 404, message: 'No user with id "%s"' },
  RELAY_WRONG_PASSWORD: { status: 403, message: 'The current password is not correct' },
  RELAY_TOTP_INVALID: { status: 400, message: 'Two-factor code not accepted: %s' },
  RELAY_TOTP_STATE: { status: 409, message: 'Two-factor authentication %s' },
  RELAY_UNAUTHENTICATED: { status: 401, message: 'Sign in to continue' },
  RELAY_LOGIN_FAILED: { status: 401, message: 'Wrong username, password or code' },
  RELAY_SECOND_FACTOR_REQUIRED: { status: 401, message: 'Enter the code from your authenticator app, or a recovery code' },
  RELAY_FORBIDDEN: { status: 403, message: 'Not allowed: %s' },
  RELAY_CSRF: { status: 403, message: 'Request refused as possibly cross-site: %s' },
  RELAY_SETUP_TOKEN: { status: 403, message: 'The setup link is not valid; use the one the relay printed when it started' },
  RELAY_NOT_FOUND: { status: 404, message: 'Not found: %s' },
  RELAY_UNKNOWN_USERNAME: { status: 404, message: 'No user named "%s"' },
  RELAY_SETUP_DONE: { status: 409, message: 'This relay is already set up; sign in instead' },
  RELAY_LAST_OWNER: { status: 409, message: 'A device must keep at least one owner' },
  RELAY_DEVICE_REVOKED: { status: 409, message: 'Device "%s" has been revoked; pair it again to use it' },
  RELAY_PAYLOAD_TOO_LARGE: { status: 413, message: 'Request body too large (at most %s bytes)' },
  RELAY_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Send the request body as %s' },
  RELAY_TOO_MANY_ATTEMPTS: { status: 429, message: 'Too many attempts; try again in %s' },
} as const satisfies Record<`RELAY_${string}`, ErrorSpec>;

export type RelayErrorCode = keyof typeof RelayErrors;

export type ErrorArg = string | number | bigint | boolean;

/**
 * An error with a catalogue code. `new RelayError('RELAY_DEVICE_NOT_FOUND', ['mk3s'])`.
 * Missing arguments show as `?`; extra ones are ignored (the catalogue test checks arity).
 */
export class RelayError extends Error {
  readonly code: RelayErrorCode;
  /** HTTP status, named like Fastify's so its error handler uses it. */
  readonly statusCode: number;

  constructor(code: RelayErrorCode, args: readonly ErrorArg[] = [], options?: ErrorOptions) {
    const spec: ErrorSpec = RelayErrors[code];
    super(formatMessage(spec.message, args), options);
    this.name = 'RelayError';
    this.code = code;
    this.statusCode = spec.status;
  }
}

/** Whether `err` is a RelayError, optionally of the given code. */
export function isRelayError(err: unknown, code?: RelayErrorCode): err is RelayError {
  return err instanceof RelayError && (code === undefined || err.code === code);
}

/** Number of `%s` placeholders in a template. */
export function placeholderCount(template: string): number {
  return template.match(/%s/g)?.length ?? 0;
}

function formatMessage(template: string, args: readonly ErrorArg[]): string {
  const n = placeholderCount(template);
  const filled = Array.from({ length: n }, (_, i) => (i < args.length ? String(args[i]) : '?'));
  return format(template, ...filled);
}
