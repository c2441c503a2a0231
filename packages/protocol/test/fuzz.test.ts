// Time-bounded fuzzing of everything that parses bytes from the other end of the tunnel: the
// frame decoder, a live session (arbitrary bytes and structured-but-hostile frames, split at
// arbitrary boundaries), the stream open header and the agent's Hello. Each property runs for a
// fixed time, not a fixed count (about 10 s in all). The rules: nothing throws out of the
// parsers except their own typed errors, what is buffered stays within the configured bounds,
// and a session that fails ends alone — another session in the same process keeps working.
//
// A coverage-guided fuzzer (jazzer.js) was the other option: it downloads native binaries at
// install time, which this environment cannot do, so fast-check is the fuzzer here.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KiB } from '../src/config.js';
import { Decoder } from '../src/decode.js';
import { ErrorCode, ProtocolError, SessionError, StreamError } from '../src/errors.js';
import { Flag, FrameType, HEADER_LENGTH } from '../src/frame.js';
import { decodeHello, encodeHello, HelloError } from '../src/hello.js';
import { memoryPair } from '../src/memory.js';
import { decodeOpenFrame, encodeOpenRequest, isValidServiceName, readOpenReply, readOpenRequest, OPEN_HEADER_MAX } from '../src/open-header.js';
import { Session, type Transport } from '../src/session.js';
import type { Stream } from '../src/stream.js';
import { CaptureTransport, pseudoRandomBytes, rawFrame, readAll, tick } from './helpers.js';

const { Data, WindowUpdate, Ping } = FrameType;
const { SYN, ACK, FIN, RST } = Flag;

/** Runs until the time is up (at least a few runs), and fails on the first counterexample. */
const timed = (ms: number) => ({ interruptAfterTimeLimit: ms, numRuns: 1_000_000, markInterruptAsFailure: false });

/** Splits `bytes` at the given (unsorted, possibly repeated) cut points. */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  out.push(bytes.subarray(at));
  return out;
}

/** A frame as a hostile peer might write it: mostly plausible, every field sometimes wrong. */
const hostileFrame = fc
  .record({
    version: fc.oneof({ weight: 20, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 255 }) }),
    type: fc.oneof({ weight: 20, arbitrary: fc.integer({ min: 0, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: 4, max: 255 }) }),
    flags: fc.oneof(
      { weight: 10, arbitrary: fc.subarray([SYN, ACK, FIN, RST]).map((fs) => fs.reduce((a, b) => a | b, 0)) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
    ),
    streamId: fc.oneof(
      { weight: 10, arbitrary: fc.integer({ min: 0, max: 12 }) },
      { weight: 1, arbitrary: fc.constantFrom(0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff) },
      { weight: 1, arbitrary: fc.nat() },
    ),
    payload: fc.oneof({ weight: 5, arbitrary: fc.nat({ max: 64 }) }, { weight: 1, arbitrary: fc.nat({ max: 4096 }) }),
    lie: fc.oneof(
      { weight: 10, arbitrary: fc.constant<number | undefined>(undefined) },
      // a declared length that is not the payload's: truncation, window-sized, huge, the maximum
      { weight: 1, arbitrary: fc.constantFrom(1, 256 * KiB, 256 * KiB + 1, 16 * 1024 * KiB, 0x8000_0000, 0xffff_ffff) },
      { weight: 1, arbitrary: fc.nat() },
    ),
  })
  .map(({ version, type, flags, streamId, payload, lie }) => {
    if (type === Data) {
      const data = pseudoRandomBytes(payload, streamId + payload + 1);
      return rawFrame(type, flags, streamId, lie ?? data.length, data, version);
    }
    // WindowUpdate: a delta; Ping: an opaque id; GoAway: a code — any 32-bit value is possible.
    return rawFrame(type, flags, streamId, lie ?? payload, undefined, version);
  });

/** A server-role session fed raw bytes by a hostile client, as the relay runs one per agent. */
function victim(config: ConstructorParameters<typeof Session>[0]['config'] = {}) {
  const transport = new CaptureTransport();
  const session = new Session({ role: 'server', transport, config: { keepAliveInterval: 0, maxFrameSize: 256 * KiB, ...config } });
  const streams: Stream[] = [];
  let closeErr: Error | undefined;
  let closes = 0;
  session.on('close', (e) => {
    closes++;
    closeErr = e;
  });
  session.on('stream', (s) => {
    streams.push(s);
    // As the apps do: every stream has an error listener. Readers are left paused, the worst case
    // for buffering.
    s.on('error', () => undefined);
  });
  return { transport, session, streams, closeErr: () => closeErr, closes: () => closes };
}

/** Everything buffered for the peer's data stays within what the windows allow. */
function checkBounds(v: ReturnType<typeof victim>): void {
  const cfg = v.session.config;
  let grown = 0;
  for (const s of v.streams) {
    expect(s.bufferedBytes).toBeLessThanOrEqual(s.receiveWindowSize);
    expect(s.receiveWindowSize).toBeLessThanOrEqual(cfg.maxStreamWindow);
    if (!s.destroyed) grown += s.receiveWindowSize - cfg.initialStreamWindow;
  }
  expect(grown).toBeLessThanOrEqual(cfg.maxSessionReceiveWindow);
  expect(v.session.streamCount).toBeLessThanOrEqual(cfg.maxConcurrentStreams);
}

/** A session that ended did so for a reason the peer caused, and said so on the wire. */
function checkEnding(v: ReturnType<typeof victim>): void {
  if (!v.session.closed) return;
  expect(v.closes()).toBe(1);
  const e = v.closeErr();
  if (e === undefined) return; // a normal GoAway, then idle
  if (e instanceof SessionError) {
    expect(e.code).toBe(ErrorCode.PeerProtocolError);
    return;
  }
  expect(e).toBeInstanceOf(ProtocolError);
  // Not our own bug: an internal error would mean the fuzzer reached a code path that threw.
  expect((e as ProtocolError).code).not.toBe(ErrorCode.Internal);
  expect(v.transport.closed).toBe(true);
}

describe('decoder', () => {
  it('arbitrary bytes at arbitrary boundaries: only ProtocolError, and never more buffered than one frame', () => {
    const maxFrame = 4 * KiB;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.array(fc.nat(), { maxLength: 32 }), (bytes, cuts) => {
        const d = new Decoder(maxFrame);
        try {
          for (const chunk of split(Buffer.from(bytes), cuts)) {
            for (const f of d.write(chunk)) {
              if (f.header.type === Data) expect(f.data!.length).toBe(f.header.length);
              expect(f.header.length).toBeLessThanOrEqual(f.header.type === Data ? maxFrame : 0xffff_ffff);
            }
            expect(d.bufferedBytes).toBeLessThan(HEADER_LENGTH + maxFrame);
          }
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
      }),
      timed(1_000),
    );
  });

  it('hostile frames at arbitrary boundaries decode the same as in one piece', () => {
    fc.assert(
      fc.property(fc.array(hostileFrame, { minLength: 1, maxLength: 20 }), fc.array(fc.nat(), { maxLength: 40 }), (frames, cuts) => {
        const all = Buffer.concat(frames);
        const run = (chunks: Buffer[]) => {
          const d = new Decoder(64 * KiB);
          const out: string[] = [];
          try {
            for (const c of chunks) for (const f of d.write(c)) out.push(`${JSON.stringify(f.header)}:${f.data?.toString('hex') ?? ''}`);
          } catch (e) {
            expect(e).toBeInstanceOf(ProtocolError);
            out.push(`error ${(e as ProtocolError).code}`);
          }
          return out;
        };
        expect(run(split(all, cuts))).toEqual(run([all]));
      }),
      timed(1_000),
    );
  });
});

describe('session', () => {
  it('arbitrary bytes: receive() never throws; the session ends with a protocol error or not at all', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), fc.array(fc.nat(), { maxLength: 16 }), async (bytes, cuts) => {
        const v = victim();
        for (const c of split(Buffer.from(bytes), cuts)) {
          v.session.receive(c);
          checkBounds(v);
        }
        await tick();
        checkEnding(v);
        v.session.close();
      }),
      timed(1_000),
    );
  });

  it('hostile frames at arbitrary boundaries: bounded buffering, errors end only this session', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(hostileFrame, { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.boolean(),
        async (frames, cuts, openOurs) => {
          const v = victim({ maxConcurrentStreams: 4 });
          if (openOurs) v.session.openStream().on('error', () => undefined);
          for (const c of split(Buffer.concat(frames), cuts)) {
            v.session.receive(c);
            checkBounds(v);
          }
          await tick();
          checkEnding(v);
          if (!v.session.closed) v.session.close();
          await tick();
          // Ended means ended: every stream is closed, nothing keeps the session alive.
          for (const s of v.streams) expect(s.destroyed || s.readableEnded).toBe(true);
        },
      ),
      timed(2_500),
    );
  });

  it('floods within the rules stay bounded: full windows on every stream with no reader, then one byte more', async () => {
    const v = victim({ maxConcurrentStreams: 8 });
    const frames: Buffer[] = [];
    for (let id = 1; id <= 15; id += 2) {
      for (let i = 0; i < 4; i++) frames.push(rawFrame(Data, i === 0 ? SYN : 0, id, 64 * KiB, pseudoRandomBytes(64 * KiB, id + i)));
    }
    // Streams beyond the limit are refused with RST, their data dropped.
    for (let id = 17; id <= 41; id += 2) frames.push(rawFrame(Data, SYN, id, 1024, Buffer.alloc(1024)));
    for (const f of frames) v.session.receive(f);
    checkBounds(v);
    expect(v.session.closed).toBe(false);
    expect(v.streams).toHaveLength(8);
    expect(v.streams.reduce((n, s) => n + s.bufferedBytes, 0)).toBe(8 * 256 * KiB);
    v.session.receive(rawFrame(Data, 0, 1, 1, Buffer.from('x')));
    await tick();
    expect(v.session.closed).toBe(true);
    expect((v.closeErr() as ProtocolError).code).toBe(ErrorCode.ReceiveWindowExceeded);
  });

  it('a peer that pings (or opens refused streams) without ever reading gets a bounded number of answers', async () => {
    // The transport never drains: every byte the session writes would pile up in the socket.
    let written = 0;
    const transport: Transport = {
      write: (c) => {
        written += c.length;
        return false;
      },
      close: () => undefined,
    };
    const session = new Session({ role: 'server', transport, config: { keepAliveInterval: 0, maxConcurrentStreams: 1 } });
    session.on('stream', (s) => s.on('error', () => undefined));
    session.receive(rawFrame(WindowUpdate, SYN, 1, 0));
    await tick();
    const round = (r: number) => {
      session.receive(Buffer.concat(Array.from({ length: 10_000 }, (_, i) => rawFrame(Ping, SYN, 0, i))));
      session.receive(Buffer.concat(Array.from({ length: 10_000 }, (_, i) => rawFrame(WindowUpdate, SYN, 3 + 2 * (r * 10_000 + i), 0))));
    };
    // The first round is answered (the transport only says it is full once it has been written to).
    round(0);
    await tick();
    const first = written;
    expect(first).toBeGreaterThan(0);
    // Nine more rounds, 180,000 frames (2.2 MB) the peer never reads the answers to.
    for (let r = 1; r < 10; r++) {
      round(r);
      await tick();
    }
    expect(session.closed).toBe(false);
    expect(written - first).toBeLessThanOrEqual(256 * 12 * 2);
    session.close();
  });

  it('a session pair in the same process keeps working while hostile sessions fail around it', async () => {
    const { client, server } = memoryPair({ config: { keepAliveInterval: 0 } });
    const got: Promise<string>[] = [];
    server.on('stream', (s) => got.push(readAll(s).then((b) => createHash('sha256').update(b).digest('hex'))));
    const payload = pseudoRandomBytes(2 * 1024 * KiB, 7);
    const s = client.openStream();
    s.on('error', () => undefined);
    let failed = 0;
    // While 2 MiB cross the healthy pair, hostile sessions are created, fed garbage and fail.
    const writing = new Promise<void>((resolve) => s.end(payload, () => resolve()));
    await fc.assert(
      fc.asyncProperty(fc.array(hostileFrame, { minLength: 1, maxLength: 20 }), async (frames) => {
        const v = victim();
        v.session.receive(Buffer.concat(frames));
        await tick();
        if (v.session.closed) failed++;
        else v.session.close();
      }),
      timed(1_000),
    );
    await writing;
    await new Promise((r) => setImmediate(r));
    while (got.length === 0) await tick();
    expect(await got[0]).toBe(createHash('sha256').update(payload).digest('hex'));
    expect(failed).toBeGreaterThan(0);
    expect(client.closed || server.closed).toBe(false);
    client.close();
    server.close();
  });
});

describe('stream open header', () => {
  it('arbitrary bytes: a header, "need more", or ERR_INVALID_OPEN_HEADER — nothing else', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
          // a valid prefix (version 1, kind 1 or 2, a length) in front of arbitrary bytes
          fc
            .record({ kind: fc.integer({ min: 0, max: 3 }), len: fc.oneof(fc.nat({ max: 80 }), fc.constantFrom(OPEN_HEADER_MAX, OPEN_HEADER_MAX + 1, 0xffff)), body: fc.uint8Array({ maxLength: 80 }) })
            .map(({ kind, len, body }) => {
              const head = Buffer.from([1, kind, 0, 0]);
              head.writeUInt16BE(len, 2);
              return Buffer.concat([head, Buffer.from(body)]);
            }),
          // a valid prefix in front of arbitrary JSON
          fc.json().map((j) => {
            const body = Buffer.from(j);
            const head = Buffer.from([1, 1, 0, 0]);
            head.writeUInt16BE(Math.min(body.length, 0xffff), 2);
            return Buffer.concat([head, body]);
          }),
        ),
        (buf) => {
          try {
            const r = decodeOpenFrame(buf);
            if (r !== undefined) expect(r.size).toBeLessThanOrEqual(buf.length);
          } catch (e) {
            expect(e).toBeInstanceOf(StreamError);
            expect((e as StreamError).code).toBe(ErrorCode.InvalidOpenHeader);
          }
        },
      ),
      timed(800),
    );
  });

  it('on a live stream: any JSON body is a valid request or a refusal, and the session survives', async () => {
    const { client, server } = memoryPair({ config: { keepAliveInterval: 0 } });
    /** By stream id: the run that the time limit interrupts can leave its result still to come. */
    const byId = new Map<number, Promise<unknown>>();
    server.on('stream', (s) => {
      s.on('error', () => undefined);
      const result = readOpenRequest(s, 2_000).then(
        (req) => {
          expect(isValidServiceName(req.service)).toBe(true);
          for (const v of Object.values(req.meta ?? {})) expect(typeof v).toBe('string');
          s.destroy();
          return 'ok';
        },
        (e: Error) => {
          expect(e).toBeInstanceOf(StreamError);
          s.destroy();
          return 'refused';
        },
      );
      byId.set(s.id, result);
    });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.json(),
          fc.record({ service: fc.oneof(fc.string(), fc.constantFrom('ui', 'webcam', 'UI', '../x', '')), meta: fc.anything() }).map((o) => JSON.stringify(o) ?? '{}'),
        ),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (json, cuts) => {
          const body = Buffer.from(json).subarray(0, OPEN_HEADER_MAX);
          const head = Buffer.from([1, 1, 0, 0]);
          head.writeUInt16BE(body.length, 2);
          const s = client.openStream();
          s.on('error', () => undefined);
          for (const c of split(Buffer.concat([head, body]), cuts)) s.write(c);
          while (!byId.has(s.id)) await tick();
          await byId.get(s.id);
          s.destroy();
        },
      ),
      timed(1_000),
    );
    expect(client.closed || server.closed).toBe(false);
    // The session still carries a well-formed open after all of that.
    const s = client.openStream();
    s.on('error', () => undefined);
    s.write(encodeOpenRequest({ service: 'ui' }));
    while (!byId.has(s.id)) await tick();
    expect(await byId.get(s.id)).toBe('ok');
    // And a reply reader refuses a request header (wrong kind) instead of hanging.
    const { client: c2, server: s2 } = memoryPair({ config: { keepAliveInterval: 0 } });
    s2.on('stream', (st) => {
      st.on('error', () => undefined);
      st.write(encodeOpenRequest({ service: 'ui' }));
    });
    const st = c2.openStream();
    st.on('error', () => undefined);
    await expect(readOpenReply(st, 2_000)).rejects.toBeInstanceOf(StreamError);
    for (const x of [client, server, c2, s2]) x.close();
  });
});

describe('stream open reply', () => {
  it('any JSON body: a valid reply or ERR_INVALID_OPEN_HEADER, never another error', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.json(),
          fc.record({ status: fc.oneof(fc.constantFrom('ok', 'unknown-service', 'connect-failed'), fc.anything()), message: fc.anything() }).map((o) => JSON.stringify(o) ?? '{}'),
        ),
        async (json) => {
          const body = Buffer.from(json).subarray(0, OPEN_HEADER_MAX);
          const head = Buffer.from([1, 2, 0, 0]);
          head.writeUInt16BE(body.length, 2);
          const { PassThrough } = await import('node:stream');
          const s = new PassThrough();
          s.end(Buffer.concat([head, body]));
          try {
            const r = await readOpenReply(s, 1_000);
            expect(['ok', 'unknown-service', 'connect-failed']).toContain(r.status);
            if (r.message !== undefined) expect(typeof r.message).toBe('string');
          } catch (e) {
            expect(e).toBeInstanceOf(StreamError);
          }
        },
      ),
      timed(800),
    );
  });
});

describe('agent Hello header', () => {
  it('any header text: a valid Hello or HelloError, and what it returns is well formed', () => {
    const hello = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.anything().map((v) => Buffer.from(JSON.stringify(v) ?? 'null').toString('base64url')),
      fc
        .record({
          v: fc.oneof(fc.constant(1), fc.anything()),
          agent: fc.anything(),
          services: fc.oneof(
            fc.array(fc.record({ name: fc.oneof(fc.constantFrom('ui', 'webcam', 'x'), fc.string()), profile: fc.oneof(fc.constant(undefined), fc.string(), fc.constantFrom('octoprint', 'moonraker')), hostHeader: fc.anything() }, { requiredKeys: ['name'] }), { maxLength: 40 }),
            fc.anything(),
          ),
          routes: fc.oneof(
            fc.array(fc.record({ path: fc.oneof(fc.constantFrom('/', '/webcam/', '/../', '//'), fc.string()), service: fc.constantFrom('ui', 'webcam', 'nope'), stripPrefix: fc.anything() }), { maxLength: 70 }),
            fc.anything(),
          ),
        })
        .map((h) => Buffer.from(JSON.stringify(h) ?? '{}').toString('base64url')),
      fc.constant('A'.repeat(20_000)),
    );
    fc.assert(
      fc.property(hello, (text) => {
        let h;
        try {
          h = decodeHello(text);
        } catch (e) {
          expect(e).toBeInstanceOf(HelloError);
          return;
        }
        expect(h.v).toBe(1);
        expect(h.services.length).toBeGreaterThan(0);
        expect(h.services.length).toBeLessThanOrEqual(32);
        const names = new Set(h.services.map((s) => s.name));
        for (const s of h.services) expect(isValidServiceName(s.name)).toBe(true);
        for (const r of h.routes) {
          expect(names.has(r.service)).toBe(true);
          expect(r.path.startsWith('/') && r.path.endsWith('/')).toBe(true);
          expect(r.path.split('/')).not.toContain('..');
        }
        // What was accepted encodes and decodes to itself.
        expect(decodeHello(encodeHello(h))).toEqual(h);
      }),
      timed(1_000),
    );
  });
});

