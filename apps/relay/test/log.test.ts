import { describe, expect, it } from 'vitest';
import { RelayError } from '../src/errors.js';
import { LogField, REDACTED } from '../src/log.js';
import { memoryLogger } from './db-helpers.js';

describe('createLogger', () => {
  it('writes JSON lines with ISO times, at the configured level', () => {
    const { log, lines } = memoryLogger('info');
    log.debug('hidden');
    log.info({ [LogField.device]: 'mk3s', [LogField.stream]: 7 }, 'hello');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, msg: 'hello', device: 'mk3s', stream: 7, pid: process.pid });
    expect(String(lines[0]!.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('redacts credentials, secrets and auth headers wherever they sit', () => {
    const { log, lines } = memoryLogger();
    const secret = 'pdc_0123456789abcdef_SECRETSECRETSECRETSECRETSECRETSECRETSECRET';
    log.info(
      {
        credential: secret,
        device: { slug: 'mk3s', credential: secret, credentialHash: 'abc' },
        password: 'hunter2',
        body: { token: 't0ken', password: 'p' },
        req: { headers: { authorization: `Bearer ${secret}`, cookie: 'sid=1', 'proxy-authorization': 'x', host: 'mk3s.localhost' } },
        res: { headers: { 'set-cookie': ['sid=2'] } },
        headers: { authorization: 'Basic x', 'x-porthole-credential': secret },
      },
      'request',
    );
    const text = JSON.stringify(lines[0]);
    for (const leaked of [secret, 'hunter2', 't0ken', 'sid=1', 'sid=2', 'Basic x', 'abc"']) expect(text).not.toContain(leaked);
    expect(lines[0]).toMatchObject({
      credential: REDACTED,
      device: { slug: 'mk3s', credential: REDACTED },
      req: { headers: { authorization: REDACTED, cookie: REDACTED, host: 'mk3s.localhost' } },
      res: { headers: { 'set-cookie': REDACTED } },
    });
  });

  it('serialises errors under err, with code and cause', () => {
    const { log, lines } = memoryLogger();
    const cause = new Error('disk full');
    log.error({ [LogField.err]: new RelayError('RELAY_DATABASE_ERROR', ['write'], { cause }) }, 'failed');
    const err = lines[0]!.err as Record<string, unknown>;
    expect(err).toMatchObject({ type: 'RelayError', code: 'RELAY_DATABASE_ERROR', statusCode: 500, message: 'Database error: write: disk full' });
    expect(String(err.stack)).toContain('RelayError');
    expect(JSON.stringify(err)).toContain('disk full');
  });

  it('has fixed, distinct field names', () => {
    const names = Object.values(LogField);
    expect(new Set(names).size).toBe(names.length);
    expect(LogField).toMatchObject({ device: 'device', stream: 'stream', reqId: 'reqId', remote: 'remote', err: 'err' });
  });
});
