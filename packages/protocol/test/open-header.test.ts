import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ErrorCode, StreamError } from '../src/errors.js';
import {
  OPEN_HEADER_MAX,
  OPEN_HEADER_VERSION,
  OpenStatus,
  decodeOpenFrame,
  encodeOpenReply,
  encodeOpenRequest,
  isValidServiceName,
  readOpenReply,
  readOpenRequest,
  type OpenReply,
  type OpenRequest,
} from '../src/open-header.js';
import { memPair, readAll, sleep, tick } from './helpers.js';

/** Builds a frame by hand: [version][kind][len u16 BE][body]. */
function handFrame(body: string | Buffer, kind = 1, version = 1, len?: number): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const head = Buffer.alloc(4);
  head[0] = version;
  head[1] = kind;
  head.writeUInt16BE(len ?? b.length, 2);
  return Buffer.concat([head, b]);
}

async function rejection(p: Promise<unknown>): Promise<StreamError> {
  try {
    await p;
  } catch (e) {
    return e as StreamError;
  }
  throw new Error('expected a rejection');
}

const requests: OpenRequest[] = [
  { service: 'octoprint' },
  { service: 'webcam' },
  { service: 'a' },
  { service: 'moonraker-2_x' },
  { service: '0' + 'x'.repeat(62) },
  { service: 'octoprint', meta: {} },
  { service: 'octoprint', meta: { clientIp: '203.0.113.9', 'user-agent': 'Mozilla/5.0 ☃ "quoted"', empty: '' } },
];
const replies: OpenReply[] = [
  { status: OpenStatus.Ok },
  { status: OpenStatus.UnknownService, message: 'no service "x"' },
  { status: OpenStatus.ConnectFailed, message: 'ECONNREFUSED 127.0.0.1:5000 ü' },
];

describe('open header codec', () => {
  it('lays the frame out as [version 1][kind][u16 BE length][UTF-8 JSON]', () => {
    const b = encodeOpenRequest({ service: 'webcam' });
    const json = '{"service":"webcam"}';
    expect(b[0]).toBe(OPEN_HEADER_VERSION);
    expect(b[1]).toBe(1);
    expect(b.readUInt16BE(2)).toBe(json.length);
    expect(b.subarray(4).toString()).toBe(json);
    expect(encodeOpenReply({ status: OpenStatus.Ok })[1]).toBe(2);
  });

  it.each(requests)('round-trips request %j', (req) => {
    const b = encodeOpenRequest(req);
    const d = decodeOpenFrame(b);
    expect(d).toEqual({ kind: 1, value: req, size: b.length });
  });

  it.each(replies)('round-trips reply %j', (rep) => {
    const b = encodeOpenReply(rep);
    expect(decodeOpenFrame(b)).toEqual({ kind: 2, value: rep, size: b.length });
  });

  it('asks for more bytes on every strict prefix, and ignores bytes after the frame', () => {
    const b = encodeOpenRequest(requests.at(-1)!);
    for (let i = 0; i < b.length; i++) expect(decodeOpenFrame(b.subarray(0, i))).toBeUndefined();
    const withTail = Buffer.concat([b, Buffer.from('GET / HTTP/1.1\r\n')]);
    expect(decodeOpenFrame(withTail)?.size).toBe(b.length);
  });

  it('refuses an unknown version from its first byte', () => {
    for (const v of [0, 2, 255]) {
      expect(() => decodeOpenFrame(Buffer.from([v]))).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOpenHeader }));
    }
  });

  it('refuses an unknown kind and a length over the maximum before the body arrives', () => {
    expect(() => decodeOpenFrame(Buffer.from([1, 3, 0, 0]))).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOpenHeader }));
    expect(() => decodeOpenFrame(Buffer.from([1, 1, (OPEN_HEADER_MAX + 1) >> 8, (OPEN_HEADER_MAX + 1) & 0xff]))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOpenHeader }),
    );
    expect(decodeOpenFrame(Buffer.from([1, 1, OPEN_HEADER_MAX >> 8, OPEN_HEADER_MAX & 0xff]))).toBeUndefined();
  });

  it('refuses to encode an oversize header', () => {
    const meta = { pad: 'x'.repeat(OPEN_HEADER_MAX) };
    let caught: unknown;
    try {
      encodeOpenRequest({ service: 'octoprint', meta });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(StreamError);
    expect((caught as StreamError).code).toBe(ErrorCode.InvalidOpenHeader);
    // The largest body that fits is accepted.
    const fits = { pad: 'x'.repeat(OPEN_HEADER_MAX - '{"service":"a","meta":{"pad":""}}'.length) };
    expect(encodeOpenRequest({ service: 'a', meta: fits }).length).toBe(4 + OPEN_HEADER_MAX);
  });

  const badNames = ['', 'A', 'Octoprint', '-x', '_x', 'a b', 'a.b', '127.0.0.1:5000', 'localhost:80', '../etc', 'a/b', 'ü', '0' + 'x'.repeat(63), 'a\n'];
  it.each(badNames)('refuses the service name %j', (name) => {
    expect(isValidServiceName(name)).toBe(false);
    expect(() => encodeOpenRequest({ service: name })).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOpenHeader }));
  });

  it('accepts the documented service-name alphabet', () => {
    for (const n of ['a', '0', 'octoprint', 'web-cam_2', 'z'.repeat(63)]) expect(isValidServiceName(n)).toBe(true);
  });
});

describe('readOpenRequest / readOpenReply from a stream', () => {
  const req: OpenRequest = { service: 'moonraker', meta: { clientIp: '198.51.100.7' } };
  const header = encodeOpenRequest(req);
  const body = Buffer.from('GET /server/info HTTP/1.1\r\nHost: x\r\n\r\n');
  const wire = Buffer.concat([header, body]);

  it('reads a header split at every byte, and leaves the bytes after it for the next reader', async () => {
    for (let split = 0; split <= wire.length; split++) {
      const s = new PassThrough();
      const reading = readOpenRequest(s, 2_000);
      s.write(wire.subarray(0, split));
      await tick();
      s.end(wire.subarray(split));
      expect(await reading).toEqual(req);
      expect((await readAll(s)).equals(body)).toBe(true);
    }
  });

  it('reads a header arriving one byte per write', async () => {
    const s = new PassThrough();
    const reading = readOpenRequest(s, 2_000);
    for (const byte of header) {
      s.write(Buffer.from([byte]));
      await tick();
    }
    s.write(body);
    expect(await reading).toEqual(req);
    s.end();
    expect((await readAll(s)).equals(body)).toBe(true);
  });

  it('reads a header that is already buffered before the call', async () => {
    const s = new PassThrough();
    s.end(wire);
    await tick();
    expect(await readOpenRequest(s)).toEqual(req);
    expect((await readAll(s)).equals(body)).toBe(true);
  });

  it('leaves a pipe-able stream behind: the body can be piped on after the header', async () => {
    const s = new PassThrough();
    s.write(wire);
    expect(await readOpenRequest(s)).toEqual(req);
    const out = new PassThrough();
    s.pipe(out);
    s.end(Buffer.from('more'));
    expect((await readAll(out)).toString()).toBe(body.toString() + 'more');
  });

  it('reads a reply and keeps the service bytes after it', async () => {
    const s = new PassThrough();
    const rep: OpenReply = { status: OpenStatus.Ok };
    s.end(Buffer.concat([encodeOpenReply(rep), Buffer.from('HTTP/1.1 200 OK\r\n')]));
    expect(await readOpenReply(s)).toEqual(rep);
    expect((await readAll(s)).toString()).toBe('HTTP/1.1 200 OK\r\n');
  });

  const refusals: [string, Buffer][] = [
    ['an unknown version', handFrame('{"service":"octoprint"}', 1, 2)],
    ['version 0', handFrame('{"service":"octoprint"}', 1, 0)],
    ['an oversize length', handFrame('', 1, 1, OPEN_HEADER_MAX + 1)],
    ['a reply where a request is expected', encodeOpenReply({ status: OpenStatus.Ok })],
    ['an invalid service name', handFrame('{"service":"127.0.0.1:22"}')],
    ['a missing service', handFrame('{"meta":{}}')],
    ['a non-string service', handFrame('{"service":5}')],
    ['non-string meta values', handFrame('{"service":"a","meta":{"n":1}}')],
    ['array meta', handFrame('{"service":"a","meta":["x"]}')],
    ['null meta', handFrame('{"service":"a","meta":null}')],
    ['JSON that is not an object', handFrame('"octoprint"')],
    ['JSON null', handFrame('null')],
    ['invalid JSON', handFrame('{"service":')],
    ['invalid UTF-8 JSON', handFrame(Buffer.from([0x7b, 0xff, 0x7d]))],
  ];
  it.each(refusals)('refuses %s with ERR_INVALID_OPEN_HEADER', async (_name, bytes) => {
    const s = new PassThrough();
    const reading = readOpenRequest(s, 2_000);
    s.write(bytes);
    const err = await rejection(reading);
    expect(err).toBeInstanceOf(StreamError);
    expect(err.code).toBe(ErrorCode.InvalidOpenHeader);
  });

  it('refuses an oversize length as soon as the 4-byte prefix arrives', async () => {
    const s = new PassThrough();
    const reading = readOpenRequest(s, 2_000);
    s.write(Buffer.from([1, 1, 0xff, 0xff])); // announces 65535 bytes, sends none
    const t0 = performance.now();
    expect((await rejection(reading)).code).toBe(ErrorCode.InvalidOpenHeader);
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it('refuses a reply with an unknown status', async () => {
    const s = new PassThrough();
    s.write(handFrame('{"status":"maybe"}', 2));
    expect((await rejection(readOpenReply(s))).code).toBe(ErrorCode.InvalidOpenHeader);
  });

  it('refuses a stream that ends before its header is complete', async () => {
    const s = new PassThrough();
    const reading = readOpenRequest(s, 2_000);
    s.end(header.subarray(0, header.length - 1));
    expect((await rejection(reading)).code).toBe(ErrorCode.InvalidOpenHeader);
  });

  it('fails at once, not at the timeout, on a stream that already ended or was reset', async () => {
    const ended = new PassThrough();
    ended.end();
    await readAll(ended);
    const t0 = performance.now();
    expect((await rejection(readOpenRequest(ended, 5_000))).code).toBe(ErrorCode.InvalidOpenHeader);

    const { client, server, cleanup } = await memPair();
    try {
      client.on('stream', (s) => s.destroy()); // the agent resets straight away
      const s = server.openStream();
      s.on('error', () => undefined);
      await sleep(20); // the RST arrives before anyone reads the reply
      expect(s.destroyed).toBe(true);
      expect((await rejection(readOpenReply(s, 5_000))).code).toBe(ErrorCode.StreamReset);
    } finally {
      await cleanup();
    }
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it('passes on a stream error', async () => {
    const s = new PassThrough();
    const reading = readOpenRequest(s, 2_000);
    s.destroy(new Error('boom'));
    expect((await rejection(reading)).message).toBe('boom');
  });

  it('times out when no header arrives', async () => {
    const s = new PassThrough();
    const t0 = performance.now();
    const reading = readOpenRequest(s, 80);
    s.write(header.subarray(0, 3)); // a little, never the rest
    const err = await rejection(reading);
    const ms = performance.now() - t0;
    expect(err.code).toBe(ErrorCode.InvalidOpenHeader);
    expect(err.message).toMatch(/within 80 ms/);
    expect(ms).toBeGreaterThanOrEqual(70);
    expect(ms).toBeLessThan(1_000);
    // The reader let go of the stream.
    expect(s.listenerCount('readable')).toBe(0);
    expect(s.listenerCount('end')).toBe(0);
  });

  it('works over a real tunnel stream: header, reply, then a plain byte pipe both ways', async () => {
    const { client: agent, server: relay, cleanup } = await memPair();
    try {
      agent.on('stream', (s) => {
        void (async () => {
          const open = await readOpenRequest(s);
          s.write(encodeOpenReply({ status: OpenStatus.Ok }));
          s.write(`service=${open.service};`);
          s.pipe(s); // the rest is the service's bytes: echo
        })();
      });
      const s = relay.openStream();
      s.write(Buffer.concat([encodeOpenRequest({ service: 'octoprint' }), Buffer.from('ping')]));
      const reply = await readOpenReply(s);
      expect(reply).toEqual({ status: OpenStatus.Ok });
      await sleep(5);
      s.end('!');
      expect((await readAll(s)).toString()).toBe('service=octoprint;ping!');
    } finally {
      await cleanup();
    }
  });
});
