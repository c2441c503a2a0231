// The pieces behind the relay's hostile-input refusals, one by one (the end-to-end proof is
// test/hostile.test.ts): the agent endpoint's per-address throttle, the viewer WebSocket filter's
// bounds and close codes, the gate that closes a viewer's socket at a frame boundary, and the
// request checks that run before routing.
import type http from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WsClientFilter, WsClose, WsServerGate } from '../src/access/ws-filter.js';
import { checkRequest, DEFAULT_HTTP_LIMITS } from '../src/http-limits.js';
import { encodeOpenReply, memoryPair, OpenStatus, readOpenRequest, type Stream } from '@porthole/protocol';
import type WebSocket from 'ws';
import { DeviceTunnel, OpenStreamError } from '../src/tunnel/device-tunnel.js';
import { RefusalThrottle } from '../src/tunnel/refusal-throttle.js';
import { throttleKey } from '../src/tunnel/agent-endpoint.js';

function clientFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = data.length;
  const ext = len < 126 ? 0 : len < 65_536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + 4);
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = 0x80 | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) head.writeUInt16BE(len, 2);
  else if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2);
  // mask key 0: payload as is
  return Buffer.concat([head, data]);
}

function serverFrame(opcode: number, payload: Buffer | string): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = data.length;
  const ext = len < 126 ? 0 : len < 65_536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext);
  head[0] = 0x80 | opcode;
  head[1] = ext === 0 ? len : ext === 2 ? 126 : 127;
  if (ext === 2) head.writeUInt16BE(len, 2);
  else if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2);
  return Buffer.concat([head, data]);
}

/** Feeds a filter and collects what it forwards and the first violation. */
function runFilter(chunks: Buffer[], allowed: (t: string) => boolean = () => true, maxMessage?: number, maxFragments?: number) {
  const f = new WsClientFilter(allowed, maxMessage, maxFragments);
  const out: Buffer[] = [];
  let violation: { reason: string; code: number } | undefined;
  f.on('data', (c: Buffer) => out.push(c));
  f.on('violation', (reason: string, code: number) => (violation ??= { reason, code }));
  for (const c of chunks) f.write(c);
  return { forwarded: Buffer.concat(out), violation };
}

describe('RefusalThrottle', () => {
  it('failures cost tokens; with none left an address waits; other addresses and successes are free', () => {
    let now = 0;
    const t = new RefusalThrottle({ burst: 3, perMinute: 6, now: () => now });
    for (let i = 0; i < 3; i++) {
      expect(t.begin('a')).toBe(0);
      t.settle('a', false);
    }
    expect(t.begin('a')).toBe(10_000); // 6 a minute: one every 10 s
    expect(t.begin('b')).toBe(0); // other addresses are not affected
    t.settle('b', false);
    now += 5_000;
    expect(t.begin('a')).toBe(5_000);
    now += 5_000;
    expect(t.begin('a')).toBe(0);
    t.settle('a', false);
    // A farm behind one address: successes never run the bucket down.
    for (let i = 0; i < 100; i++) {
      expect(t.begin('farm')).toBe(0);
      t.settle('farm', true);
    }
  });

  it('a parallel flood cannot outrun the bucket: at most `burst` attempts are checked at once', () => {
    const t = new RefusalThrottle({ burst: 3, perMinute: 6, now: () => 0 });
    const started = Array.from({ length: 10 }, () => t.begin('x'));
    expect(started.filter((w) => w === 0)).toHaveLength(3);
    expect(started.filter((w) => w > 0)).toHaveLength(7);
    for (let i = 0; i < 3; i++) t.settle('x', false);
    expect(t.begin('x')).toBeGreaterThan(0);
  });

  it('remembers a bounded number of addresses, dropping full buckets first', () => {
    let now = 0;
    const t = new RefusalThrottle({ burst: 2, perMinute: 60, maxAddresses: 100, now: () => now });
    t.begin('attacker');
    t.settle('attacker', false);
    for (let i = 0; i < 1000; i++) {
      t.begin(`10.0.${i >> 8}.${i & 255}`);
      now += 1;
      expect(t.size).toBeLessThanOrEqual(100);
    }
  });

  it('keys IPv4 by address and IPv6 by /64', () => {
    expect(throttleKey('203.0.113.7')).toBe('203.0.113.7');
    expect(throttleKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(throttleKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(throttleKey('::1')).toBe('0:0:0:0::/64');
    expect(throttleKey('2001:db8::')).toBe('2001:db8:0:0::/64');
  });
});

describe('WsClientFilter', () => {
  it('forwards allowed messages unchanged, at any chunking', () => {
    const frames = Buffer.concat([clientFrame(0x1, '{"a":1}', false), clientFrame(0x9, 'ping'), clientFrame(0x0, ',"b":2}'), clientFrame(0x1, 'x'.repeat(300))]);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: frames.length }), { maxLength: 20 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const p of points) {
          chunks.push(frames.subarray(at, p));
          at = p;
        }
        chunks.push(frames.subarray(at));
        const r = runFilter(chunks);
        expect(r.violation).toBeUndefined();
        expect(r.forwarded.length).toBe(frames.length);
      }),
      { numRuns: 200 },
    );
  });

  it.each([
    ['a frame over the limit', [clientFrame(0x1, 'x'.repeat(2000))], WsClose.MessageTooBig],
    ['a message over the limit in fragments', [clientFrame(0x1, 'x'.repeat(600), false), clientFrame(0x0, 'x'.repeat(600))], WsClose.MessageTooBig],
    ['a flood of empty fragments', [clientFrame(0x1, '', false), ...Array.from({ length: 100 }, () => clientFrame(0x0, '', false))], WsClose.MessageTooBig],
    ['a 64-bit length', [Buffer.from([0x81, 0xff, 0, 0, 0, 1, 0, 0, 0, 0])], WsClose.MessageTooBig],
    ['a binary message', [clientFrame(0x2, 'b')], WsClose.PolicyViolation],
    ['a forbidden call', [clientFrame(0x1, 'forbidden')], WsClose.PolicyViolation],
    ['an unmasked frame', [Buffer.from([0x81, 0x01, 0x78])], WsClose.ProtocolError],
    ['a continuation with no message', [clientFrame(0x0, 'x')], WsClose.ProtocolError],
    ['a fragmented control frame', [clientFrame(0x9, 'p', false)], WsClose.ProtocolError],
    ['reserved bits', [Buffer.from([0xc1, 0x80, 0, 0, 0, 0])], WsClose.ProtocolError],
  ])('%s → violation with close %i, and nothing of it forwarded', (_name, chunks, code) => {
    const r = runFilter(chunks, (t) => t !== 'forbidden', 1024, 64);
    expect(r.violation?.code).toBe(code);
    expect(r.forwarded.length).toBe(0);
  });

  it('holds at most the message limit, headers of empty fragments included', () => {
    const f = new WsClientFilter(() => true, 4096, 1_000_000);
    let violation: number | undefined;
    f.on('violation', (_r: string, c: number) => (violation = c));
    f.write(clientFrame(0x1, '', false));
    let sent = 0;
    while (violation === undefined && sent < 100_000) {
      f.write(clientFrame(0x0, '', false));
      sent++;
    }
    expect(violation).toBe(WsClose.MessageTooBig);
    // 6 bytes a frame: the limit is reached after about 4096 / 6 of them, not never.
    expect(sent).toBeLessThan(1000);
  });
});

describe('WsServerGate', () => {
  const head101 = Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');

  function gate() {
    const g = new WsServerGate();
    const out: Buffer[] = [];
    g.on('data', (c: Buffer) => out.push(c));
    const ended = new Promise<void>((r) => g.on('end', () => r()));
    return { g, out: () => Buffer.concat(out), ended };
  }

  it('at a frame boundary: sends the close frame with the code and ends', async () => {
    const { g, out, ended } = gate();
    g.write(Buffer.concat([head101, serverFrame(0x1, 'hello')]));
    expect(g.atBoundary).toBe(true);
    expect(g.closeWith(1009, 'too big')).toBe(true);
    await ended;
    const bytes = out();
    const close = bytes.subarray(head101.length + 7);
    expect(close[0]).toBe(0x88);
    expect(close.readUInt16BE(2)).toBe(1009);
    expect(close.subarray(4).toString()).toBe('too big');
  });

  it('mid-frame: lets the rest of that frame through first, then nothing but the close frame', async () => {
    const { g, out, ended } = gate();
    const frame = serverFrame(0x1, 'y'.repeat(1000));
    g.write(Buffer.concat([head101, frame.subarray(0, 300)]));
    expect(g.atBoundary).toBe(false);
    expect(g.closeWith(1008)).toBe(true);
    g.write(Buffer.concat([frame.subarray(300), serverFrame(0x1, 'after')]));
    await ended;
    const bytes = out();
    expect(bytes.subarray(0, head101.length + frame.length)).toEqual(Buffer.concat([head101, frame]));
    const rest = bytes.subarray(head101.length + frame.length);
    expect(rest).toEqual(Buffer.from([0x88, 2, 0x03, 0xf0]));
  });

  it('before a 101 (or after any other answer) it cannot close cleanly, and says so', () => {
    const a = new WsServerGate();
    a.on('error', () => undefined);
    a.write(Buffer.from('HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno'));
    expect(a.closeWith(1008)).toBe(false);
    const b = new WsServerGate();
    b.write(Buffer.from('HTTP/1.1 101 Swi'));
    expect(b.closeWith(1008)).toBe(false);
  });
});

describe('checkRequest', () => {
  function fakeReq(opts: { url?: string; httpVersion?: string; raw: string[] }): http.IncomingMessage {
    const headers: Record<string, string> = {};
    for (let i = 0; i < opts.raw.length; i += 2) {
      const k = opts.raw[i]!.toLowerCase();
      headers[k] = headers[k] === undefined ? opts.raw[i + 1]! : `${headers[k]}, ${opts.raw[i + 1]!}`;
    }
    return { url: opts.url ?? '/', httpVersion: opts.httpVersion ?? '1.1', rawHeaders: opts.raw, headers } as unknown as http.IncomingMessage;
  }

  it.each([
    ['a plain GET', { raw: ['Host', 'a'] }, undefined],
    ['a chunked POST', { raw: ['Host', 'a', 'Transfer-Encoding', 'chunked'] }, undefined],
    ['a long URL', { url: `/${'a'.repeat(9000)}`, raw: ['Host', 'a'] }, 414],
    ['large headers', { raw: ['Host', 'a', 'X', 'b'.repeat(17_000)] }, 431],
    ['two Hosts', { raw: ['Host', 'a', 'host', 'b'] }, 400],
    ['two lengths', { raw: ['Host', 'a', 'Content-Length', '1', 'Content-Length', '1'] }, 400],
    ['TE gzip, chunked', { raw: ['Host', 'a', 'Transfer-Encoding', 'gzip, chunked'] }, 400],
    ['TE in HTTP/1.0', { httpVersion: '1.0', raw: ['Host', 'a', 'Transfer-Encoding', 'chunked'] }, 400],
    ['TE and a length', { raw: ['Host', 'a', 'Transfer-Encoding', 'chunked', 'Content-Length', '3'] }, 400],
  ])('%s → %s', (_name, req, status) => {
    expect(checkRequest(fakeReq(req), DEFAULT_HTTP_LIMITS)?.status).toBe(status);
  });
});

describe('DeviceTunnel at the limits', () => {
  function tunnel(agentMaxStreams: number, maxExchanges = 100) {
    // The relay's session is the server; the agent (client) answers opens like the real ingress.
    const { client: agent, server: relay } = memoryPair({ config: { keepAliveInterval: 0 }, clientConfig: { maxConcurrentStreams: agentMaxStreams } });
    const held: Stream[] = [];
    agent.on('stream', (s) => {
      s.on('error', () => undefined);
      held.push(s);
      void readOpenRequest(s).then(() => s.write(encodeOpenReply({ status: OpenStatus.Ok })), () => s.destroy());
    });
    const t = new DeviceTunnel(
      { deviceId: 'd', slug: 's', name: 'Printer', remote: '127.0.0.1', hello: { v: 1, agent: 't', services: [{ name: 'ui' }], routes: [{ path: '/', service: 'ui' }] } },
      relay,
      { close: () => undefined, terminate: () => undefined } as unknown as WebSocket,
      { openTimeoutMs: 2_000, maxFreeStreams: 1, idleStreamMs: 1_000, maxExchanges },
    );
    return { t, agent, relay };
  }

  it('a stream the agent refuses at its own limit is "busy", not "offline"', async () => {
    const { t, agent, relay } = tunnel(1);
    const first = await t.openStream('ui', {});
    const err = await t.openStream('ui', {}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenStreamError);
    expect((err as OpenStreamError).kind).toBe('busy');
    expect(relay.closed).toBe(false);
    first.destroy();
    agent.close();
    relay.close();
  });

  it('counts exchanges against the cap and frees them exactly once', () => {
    const { t, agent, relay } = tunnel(8, 2);
    const a = t.tryAcquire();
    const b = t.tryAcquire();
    expect(a).toBeTypeOf('function');
    expect(b).toBeTypeOf('function');
    expect(t.tryAcquire()).toBeUndefined();
    a!();
    a!();
    expect(t.activeExchanges).toBe(1);
    expect(t.tryAcquire()).toBeTypeOf('function');
    expect(t.tryAcquire()).toBeUndefined();
    agent.close();
    relay.close();
  });
});
