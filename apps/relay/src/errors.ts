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
  RELAY_INTERNAL: { status: 500, message: 'Internal error: %s' },
  RELAY_INVALID_CONFIG: { status: 500, message: 'Invalid configuration: %s' },
  RELAY_DATABASE_ERROR: { status: 500, message: 'Database error: %s' },
  RELAY_MIGRATION_FAILED: { status: 500, message: 'Database migration failed: %s' },
  RELAY_SERVICE_UNAVAILABLE: { status: 502, message: 'Printer service "%s" is not reachable: %s' },
  RELAY_DEVICE_OFFLINE: { status: 503, message: 'Device "%s" is offline' },
  RELAY_TOO_MANY_STREAMS: { status: 503, message: 'Device "%s" has too many open connections' },
  RELAY_UPSTREAM_TIMEOUT: { status: 504, message: 'Printer service "%s" did not answer in time' },
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
