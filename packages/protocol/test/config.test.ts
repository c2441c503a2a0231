import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, KiB, MiB, verifyConfig, type SessionConfig } from '../src/config.js';
import { ConfigError, ErrorCode, PortholeProtocolError, ProtocolError, SessionError, StreamError } from '../src/errors.js';
import { GoAwayCode } from '../src/frame.js';
import { Session } from '../src/session.js';
import { CaptureTransport } from './helpers.js';

describe('verifyConfig', () => {
  it('returns the documented defaults', () => {
    expect(verifyConfig()).toEqual({
      initialStreamWindow: 256 * KiB,
      maxStreamWindow: 16 * MiB,
      maxSessionReceiveWindow: 64 * MiB,
      maxFrameSize: 16 * MiB,
      maxSendFrameSize: 64 * KiB,
      maxConcurrentStreams: 512,
      keepAliveInterval: 15_000,
      keepAliveTimeout: 45_000,
      transportHighWaterMark: 1 * MiB,
    });
    expect(verifyConfig()).toEqual(DEFAULT_CONFIG);
    expect(Object.isFrozen(DEFAULT_CONFIG)).toBe(true);
  });

  it('merges a partial config over the defaults and freezes the result', () => {
    const c = verifyConfig({ maxStreamWindow: 4 * MiB, keepAliveInterval: 0 });
    expect(c.maxStreamWindow).toBe(4 * MiB);
    expect(c.keepAliveInterval).toBe(0);
    expect(c.maxFrameSize).toBe(DEFAULT_CONFIG.maxFrameSize);
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as SessionConfig).maxFrameSize = 1; // ESM is strict mode: writing a frozen object throws
    }).toThrow(TypeError);
    expect(c.maxFrameSize).toBe(DEFAULT_CONFIG.maxFrameSize);
  });

  it('does not keep a reference to the caller’s object', () => {
    const partial: Partial<SessionConfig> = { maxConcurrentStreams: 7 };
    const c = verifyConfig(partial);
    partial.maxConcurrentStreams = 9;
    expect(c.maxConcurrentStreams).toBe(7);
  });

  it('accepts the edge values', () => {
    expect(() =>
      verifyConfig({
        maxStreamWindow: 256 * KiB,
        maxSessionReceiveWindow: 0,
        maxFrameSize: 1024,
        maxSendFrameSize: 1024,
        maxConcurrentStreams: 1,
        keepAliveInterval: 0,
        keepAliveTimeout: 1,
        transportHighWaterMark: 1024,
      }),
    ).not.toThrow();
    expect(() => verifyConfig({ maxStreamWindow: 0xffff_ffff, maxFrameSize: 0xffff_ffff })).not.toThrow();
    expect(() => verifyConfig({ keepAliveInterval: 10, keepAliveTimeout: 11 })).not.toThrow();
  });

  const bad: [string, Partial<SessionConfig>, RegExp][] = [
    ['initialStreamWindow other than 256 KiB', { initialStreamWindow: 512 * KiB }, /initialStreamWindow/],
    ['initialStreamWindow smaller', { initialStreamWindow: 64 * KiB }, /initialStreamWindow/],
    ['maxStreamWindow below the initial window', { maxStreamWindow: 256 * KiB - 1 }, /maxStreamWindow/],
    ['maxStreamWindow beyond 32 bits', { maxStreamWindow: 2 ** 32 }, /maxStreamWindow/],
    ['maxStreamWindow fractional', { maxStreamWindow: 300_000.5 }, /maxStreamWindow/],
    ['maxStreamWindow NaN', { maxStreamWindow: NaN }, /maxStreamWindow/],
    ['maxStreamWindow Infinity', { maxStreamWindow: Infinity }, /maxStreamWindow/],
    ['maxSessionReceiveWindow negative', { maxSessionReceiveWindow: -1 }, /maxSessionReceiveWindow/],
    ['maxSessionReceiveWindow fractional', { maxSessionReceiveWindow: 0.5 }, /maxSessionReceiveWindow/],
    ['maxFrameSize below 1024', { maxFrameSize: 1023, maxSendFrameSize: 1023 }, /maxFrameSize/],
    ['maxSendFrameSize below 1024', { maxSendFrameSize: 1023 }, /maxSendFrameSize/],
    ['maxSendFrameSize above maxFrameSize', { maxFrameSize: 32 * KiB, maxSendFrameSize: 64 * KiB }, /maxSendFrameSize/],
    ['maxConcurrentStreams 0', { maxConcurrentStreams: 0 }, /maxConcurrentStreams/],
    ['maxConcurrentStreams fractional', { maxConcurrentStreams: 1.5 }, /maxConcurrentStreams/],
    ['keepAliveInterval negative', { keepAliveInterval: -1 }, /keepAliveInterval/],
    ['keepAliveTimeout 0', { keepAliveTimeout: 0 }, /keepAliveTimeout/],
    ['keepAliveTimeout equal to the interval', { keepAliveInterval: 1000, keepAliveTimeout: 1000 }, /keepAliveTimeout/],
    ['keepAliveTimeout shorter than the interval', { keepAliveInterval: 1000, keepAliveTimeout: 500 }, /keepAliveTimeout/],
    ['transportHighWaterMark below 1024', { transportHighWaterMark: 1023 }, /transportHighWaterMark/],
    ['a string where a number belongs', { maxConcurrentStreams: '10' as unknown as number }, /maxConcurrentStreams/],
  ];

  it.each(bad)('rejects %s', (_name, partial, mentions) => {
    let caught: unknown;
    try {
      verifyConfig(partial);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).code).toBe(ErrorCode.InvalidConfig);
    expect((caught as ConfigError).message).toMatch(mentions);
  });

  it('a Session refuses a bad config at construction and writes nothing', () => {
    const transport = new CaptureTransport();
    expect(() => new Session({ role: 'client', transport, config: { maxConcurrentStreams: 0 } })).toThrow(ConfigError);
    expect(transport.chunks).toEqual([]);
  });

  it('a Session exposes its verified, frozen config', () => {
    const s = new Session({ role: 'client', transport: new CaptureTransport(), config: { keepAliveInterval: 0, maxConcurrentStreams: 3 } });
    expect(s.config.maxConcurrentStreams).toBe(3);
    expect(Object.isFrozen(s.config)).toBe(true);
    s.close();
  });
});

describe('error catalogue', () => {
  it('has unique, stable ERR_ codes', () => {
    const codes = Object.values(ErrorCode);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c).toMatch(/^ERR_[A-Z0-9_]+$/);
    // Codes are API: other packages and logs match on them. Changing one is a breaking change.
    expect(codes.sort()).toEqual(
      [
        'ERR_DATA_AFTER_FIN',
        'ERR_FRAME_TOO_LARGE',
        'ERR_GOAWAY_RECEIVED',
        'ERR_INTERNAL',
        'ERR_INVALID_CONFIG',
        'ERR_INVALID_FLAGS',
        'ERR_INVALID_OPEN_HEADER',
        'ERR_INVALID_STREAM_ID',
        'ERR_INVALID_TYPE',
        'ERR_INVALID_VERSION',
        'ERR_INVALID_WS_FRAME',
        'ERR_KEEPALIVE_TIMEOUT',
        'ERR_PEER_PROTOCOL_ERROR',
        'ERR_RECV_WINDOW_EXCEEDED',
        'ERR_SESSION_CLOSED',
        'ERR_SESSION_CLOSING',
        'ERR_STREAM_ABORTED',
        'ERR_STREAM_ID_REUSED',
        'ERR_STREAM_RESET',
        'ERR_TOO_MANY_STREAMS',
        'ERR_TRANSPORT_CLOSED',
        'ERR_WINDOW_OVERFLOW',
      ].sort(),
    );
  });

  it('error classes carry their code, name and kind', () => {
    const p = new ProtocolError(ErrorCode.InvalidType, 'x');
    expect(p).toBeInstanceOf(PortholeProtocolError);
    expect(p).toBeInstanceOf(Error);
    expect(p.name).toBe('ProtocolError');
    expect(p.code).toBe('ERR_INVALID_TYPE');
    expect(p.goAwayCode).toBe(GoAwayCode.ProtocolError);
    expect(new ProtocolError(ErrorCode.InvalidType, 'x', GoAwayCode.InternalError).goAwayCode).toBe(GoAwayCode.InternalError);
    const s = new StreamError(ErrorCode.StreamReset, 'r');
    expect(s.name).toBe('StreamError');
    expect(s).not.toBeInstanceOf(ProtocolError);
    expect(new SessionError(ErrorCode.SessionClosed, 'c').name).toBe('SessionError');
    const c = new ConfigError('bad');
    expect(c.code).toBe(ErrorCode.InvalidConfig);
    expect(c.name).toBe('ConfigError');
  });
});
