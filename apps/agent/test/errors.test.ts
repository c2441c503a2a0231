import { describe, expect, it } from 'vitest';
import {
  errorFromClose,
  errorFromNetwork,
  errorFromStatus,
  isPermanent,
  parseRetryAfter,
  PermanentError,
  TransientError,
  TunnelErrorCode,
} from '../src/connection/index.js';

describe('tunnel error catalogue', () => {
  it.each([
    [401, PermanentError, TunnelErrorCode.Unauthorized],
    [403, PermanentError, TunnelErrorCode.Revoked],
    [500, TransientError, TunnelErrorCode.HttpStatus],
    [502, TransientError, TunnelErrorCode.HttpStatus],
    [429, TransientError, TunnelErrorCode.HttpStatus],
    [404, TransientError, TunnelErrorCode.HttpStatus],
  ])('HTTP %i on the upgrade → %o', (status, cls, code) => {
    const e = errorFromStatus(status);
    expect(e).toBeInstanceOf(cls);
    expect(e.code).toBe(code);
    expect(e.status).toBe(status);
    expect(isPermanent(e)).toBe(cls === PermanentError);
  });

  it.each([
    [4001, PermanentError, TunnelErrorCode.Revoked, false],
    [4000, TransientError, TunnelErrorCode.Replaced, false],
    [1001, TransientError, TunnelErrorCode.RelayGoingAway, true],
    [1006, TransientError, TunnelErrorCode.Closed, false],
    [1011, TransientError, TunnelErrorCode.Closed, false],
  ])('close %i → %o', (closeCode, cls, code, prompt) => {
    const e = errorFromClose(closeCode, 'why');
    expect(e).toBeInstanceOf(cls);
    expect(e.code).toBe(code);
    expect(e.closeCode).toBe(closeCode);
    expect(e.message).toContain('why');
    if (e instanceof TransientError) expect(e.prompt).toBe(prompt);
  });

  it('a session that ended on its own is transient and keeps its reason', () => {
    const e = errorFromClose(undefined, '', new Error('no data from peer for 45000 ms'));
    expect(e).toBeInstanceOf(TransientError);
    expect(e.message).toBe('no data from peer for 45000 ms');
  });

  it('network errors are transient and keep their code', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    const e = errorFromNetwork(err);
    expect(e).toBeInstanceOf(TransientError);
    expect(e.message).toBe('connect ECONNREFUSED 127.0.0.1:1');
    expect(errorFromNetwork(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })).message).toBe(
      'DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate',
    );
  });

  it('reads Retry-After as seconds or a date', () => {
    expect(parseRetryAfter('120')).toBe(120_000);
    expect(parseRetryAfter(new Date(10_000 + 30_000).toUTCString(), 10_000)).toBe(30_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
    const e = errorFromStatus(503, '7') as TransientError;
    expect(e.retryAfterMs).toBe(7_000);
  });
});
