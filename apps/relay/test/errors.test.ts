import { describe, expect, it } from 'vitest';
import { isRelayError, placeholderCount, RelayError, RelayErrors, type RelayErrorCode } from '../src/errors.js';

const codes = Object.keys(RelayErrors) as RelayErrorCode[];

describe('the error catalogue', () => {
  it('has unique, well-formed codes', () => {
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(code).toMatch(/^RELAY_[A-Z0-9]+(_[A-Z0-9]+)*$/);
  });

  it.each(codes)('%s maps to an HTTP error status and has a message', (code) => {
    const { status, message } = RelayErrors[code];
    expect(Number.isInteger(status)).toBe(true);
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(600);
    expect(message.trim().length).toBeGreaterThan(10);
    expect(message).toMatch(/^[A-Z]/);
    // Only %s placeholders: the formatter fills nothing else.
    expect(message.replace(/%s/g, '')).not.toMatch(/%/);
  });

  it.each(codes)('%s builds a RelayError with every placeholder filled', (code) => {
    const n = placeholderCount(RelayErrors[code].message);
    const args = Array.from({ length: n }, (_, i) => `arg${i}`);
    const e = new RelayError(code, args);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('RelayError');
    expect(e.code).toBe(code);
    expect(e.statusCode).toBe(RelayErrors[code].status);
    expect(e.message).not.toContain('%s');
    expect(e.message).not.toContain('?');
    for (const a of args) expect(e.message).toContain(a);
  });

  it('keeps the statuses the proxy and the agent endpoint rely on', () => {
    expect(RelayErrors.RELAY_BAD_REQUEST.status).toBe(400);
    expect(RelayErrors.RELAY_BAD_CREDENTIAL.status).toBe(401);
    expect(RelayErrors.RELAY_CREDENTIAL_REVOKED.status).toBe(403);
    expect(RelayErrors.RELAY_DEVICE_NOT_FOUND.status).toBe(404);
    expect(RelayErrors.RELAY_SERVICE_UNAVAILABLE.status).toBe(502);
    expect(RelayErrors.RELAY_DEVICE_OFFLINE.status).toBe(503);
    expect(RelayErrors.RELAY_TOO_MANY_STREAMS.status).toBe(503);
    expect(RelayErrors.RELAY_UPSTREAM_TIMEOUT.status).toBe(504);
  });
});

describe('RelayError', () => {
  it('formats arguments in order, marks missing ones and keeps the cause', () => {
    const cause = new Error('boom');
    const e = new RelayError('RELAY_INVALID_SLUG', ['-x'], { cause });
    expect(e.message).toBe('Invalid slug "-x": ?');
    expect(e.cause).toBe(cause);
    expect(new RelayError('RELAY_DEVICE_NOT_FOUND', ['mk3s', 'extra']).message).toBe('No device "mk3s"');
  });

  it('does not interpret placeholders inside arguments', () => {
    expect(new RelayError('RELAY_BAD_REQUEST', ['100%s done']).message).toBe('Bad request: 100%s done');
  });

  it('is recognised by isRelayError, optionally by code', () => {
    const e = new RelayError('RELAY_DEVICE_OFFLINE', ['mk3s']);
    expect(isRelayError(e)).toBe(true);
    expect(isRelayError(e, 'RELAY_DEVICE_OFFLINE')).toBe(true);
    expect(isRelayError(e, 'RELAY_DEVICE_NOT_FOUND')).toBe(false);
    expect(isRelayError(new Error('x'))).toBe(false);
    expect(isRelayError({ code: 'RELAY_DEVICE_OFFLINE' })).toBe(false);
  });
});
