/**
 * Interoperability: our Session against an independent yamux implementation,
 * @chainsafe/libp2p-yamux (js-libp2p's muxer), joined by an in-memory byte pipe (yamux-peer.ts).
 * If both agree on every frame they exchange, our wire format is the hashicorp spec's.
 *
 * Differences of theirs from the spec or from hashicorp/yamux that these tests ran into are noted
 * where they matter; none of them is in the frame format.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, StreamState, type Stream } from '../src/index.js';
import {
  collectOurs,
  collectTheirs,
  connect,
  FlagBit,
  FrameTypeNo,
  nextOurStream,
  sendTheirs,
  until,
  writeOurs,
  type ConnectOptions,
  type InteropPair,
  type WireFrame,
} from './yamux-peer.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const INITIAL_WINDOW = 256 * KiB;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const framesOf = (wire: WireFrame[], streamId: number) => wire.filter((f) => f.streamId === streamId);
const has = (f: WireFrame, flag: number) => (f.flags & flag) === flag;

/**
 * Replays the wire log of one stream and checks that `sender` never had more Data in flight than
 * the receiver had granted (256 KiB initial + every WindowUpdate delta written before it).
 * The log is in real write order, so a grant always precedes the data it allowed.
 */
function checkWindow(wire: WireFrame[], streamId: number, sender: WireFrame['from']) {
  let granted = INITIAL_WINDOW;
  let sent = 0;
  let dataFrames = 0;
  let largestFrame = 0;
  let updates = 0;
  for (const f of framesOf(wire, streamId)) {
    if (f.from !== sender && f.type === FrameTypeNo.WindowUpdate) {
      granted += f.length;
      if (f.length > 0) updates++;
    }
    if (f.from === sender && f.type === FrameTypeNo.Data) {
      sent += f.length;
      dataFrames++;
      largestFrame = Math.max(largestFrame, f.length);
      if (sent > granted) throw new Error(`${sender} overran the window on stream ${streamId}: ${sent} > ${granted}`);
    }
  }
  return { sent, granted, dataFrames, largestFrame, updates };
}

describe.each(['client', 'server'] as const)('ours as %s against @chainsafe/libp2p-yamux', (ourRole) => {
  let pair: InteropPair | undefined;
  const open = (o: Omit<ConnectOptions, 'ourRole'> = {}): InteropPair => (pair = connect({ ourRole, ...o }));
  afterEach(async () => {
    await pair?.shutdown();
    pair = undefined;
  });
  const ourParity = ourRole === 'client' ? 1 : 0;

  it('a stream we open carries data both ways intact, then closes cleanly', async () => {
    const { ours, theirs, wire, acceptTheirs } = open();
    const up = randomBytes(MiB + 123);
    const down = randomBytes(777 * KiB + 5);

    const s = ours.openStream();
    expect(s.id % 2).toBe(ourParity);
    const ourRead = collectOurs(s);
    const writing = writeOurs(s, up);
    const { stream: t, reader } = await acceptTheirs();
    expect(t.streamId).toBe(s.id);
    expect(t.direction).toBe('inbound');
    await sendTheirs(t, down);
    await t.close();

    const [theirGot, ourGot] = await Promise.all([reader.result, ourRead, writing]);
    expect(theirGot.error).toBeUndefined();
    expect(theirGot.remoteFin).toBe(true);
    expect(theirGot.data.length).toBe(up.length);
    expect(sha(theirGot.data)).toBe(sha(up));
    expect(ourGot.error).toBeUndefined();
    expect(ourGot.ended).toBe(true);
    expect(sha(ourGot.data)).toBe(sha(down));

    await until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'both sides to retire the stream');
    expect(s.state).toBe(StreamState.Closed);
    expect(t.status).toBe('closed');

    const frames = framesOf(wire, s.id);
    expect(frames[0]).toMatchObject({ from: 'ours', flags: FlagBit.SYN });
    const theirFirst = frames.find((f) => f.from === 'theirs');
    expect(theirFirst !== undefined && has(theirFirst, FlagBit.ACK)).toBe(true);
    expect(frames.filter((f) => f.from === 'ours' && has(f, FlagBit.SYN))).toHaveLength(1);
    expect(frames.filter((f) => f.from === 'theirs' && has(f, FlagBit.ACK))).toHaveLength(1);
    expect(frames.filter((f) => has(f, FlagBit.FIN)).map((f) => f.from).sort()).toEqual(['ours', 'theirs']);
    expect(frames.some((f) => has(f, FlagBit.RST))).toBe(false);
  });

  it('a stream they open carries data both ways intact, then closes cleanly', async () => {
    const { ours, theirs, wire } = open();
    const up = randomBytes(600 * KiB + 7);
    const down = randomBytes(900 * KiB + 1);

    const accepted = nextOurStream(ours);
    const t = await theirs.createStream();
    const theirRead = collectTheirs(t);
    const s = await accepted;
    expect(s.id).toBe(t.streamId);
    expect(s.id % 2).toBe(1 - ourParity);

    const ourRead = collectOurs(s);
    const writing = writeOurs(s, down);
    await sendTheirs(t, up);
    await t.close();
    const [theirGot, ourGot] = await Promise.all([theirRead.result, ourRead, writing]);
    expect(sha(ourGot.data)).toBe(sha(up));
    expect(ourGot.ended).toBe(true);
    expect(sha(theirGot.data)).toBe(sha(down));
    expect(theirGot.remoteFin).toBe(true);

    await until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'both sides to retire the stream');
    const frames = framesOf(wire, s.id);
    expect(frames[0]).toMatchObject({ from: 'theirs', type: FrameTypeNo.WindowUpdate, flags: FlagBit.SYN });
    const ourFirst = frames.find((f) => f.from === 'ours');
    expect(ourFirst !== undefined && has(ourFirst, FlagBit.ACK)).toBe(true);
    expect(frames.some((f) => has(f, FlagBit.RST))).toBe(false);
  });

  it('8 MiB from us through one stream: we keep within their window, their updates keep us going', async () => {
    const { ours, theirs, wire, acceptTheirs } = open();
    await ours.ping(); // both sides know an RTT, so window growth may kick in on either
    await theirs.ping();
    const body = randomBytes(8 * MiB);
    const s = ours.openStream();
    const writing = writeOurs(s, body);
    const { stream: t, reader } = await acceptTheirs();
    const got = await reader.result;
    await writing;
    expect(got.remoteFin).toBe(true);
    expect(got.data.length).toBe(body.length);
    expect(sha(got.data)).toBe(sha(body));

    const w = checkWindow(wire, s.id, 'ours');
    expect(w.sent).toBe(body.length);
    expect(w.granted).toBeGreaterThanOrEqual(body.length); // ≈ 8 MiB of updates beyond the initial 256 KiB
    expect(w.updates).toBeGreaterThan(1);
    expect(w.largestFrame).toBeLessThanOrEqual(ours.config.maxSendFrameSize);
    await t.close();
    await until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'both sides to retire the stream');
  });

  it('8 MiB from them through one stream: they keep within our window, our updates keep them going', async () => {
    const { ours, theirs, wire } = open();
    await ours.ping();
    await theirs.ping();
    const body = randomBytes(8 * MiB);
    const accepted = nextOurStream(ours);
    const t = await theirs.createStream();
    const sending = sendTheirs(t, body).then(() => t.close());
    const s = await accepted;
    // A reader that takes its time: our window must hold them back, never buffer without bound.
    let maxBuffered = 0;
    const parts: Buffer[] = [];
    for await (const c of s as AsyncIterable<Buffer>) {
      parts.push(c);
      maxBuffered = Math.max(maxBuffered, s.bufferedBytes);
      if (parts.length % 16 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await sending;
    const got = Buffer.concat(parts);
    expect(got.length).toBe(body.length);
    expect(sha(got)).toBe(sha(body));

    const w = checkWindow(wire, s.id, 'theirs');
    expect(w.sent).toBe(body.length);
    expect(w.granted).toBeGreaterThanOrEqual(body.length);
    expect(w.updates).toBeGreaterThan(1);
    // Their data frames are as large as the window allows (the spec sets no frame limit); our
    // receive window cap bounds them, and our maxFrameSize must (and does) accept that.
    expect(w.largestFrame).toBeLessThanOrEqual(ours.config.maxStreamWindow);
    expect(maxBuffered).toBeLessThanOrEqual(ours.config.maxStreamWindow);
  });

  it('half-close from us: they see FIN, can still answer, then both sides are closed', async () => {
    const { ours, theirs, wire, acceptTheirs } = open();
    const s = ours.openStream();
    const ourRead = collectOurs(s);
    s.end(Buffer.from('GET /api/printer'));
    const { stream: t, reader } = await acceptTheirs();
    const got = await reader.result;
    expect(got.remoteFin).toBe(true);
    expect(got.data.toString()).toBe('GET /api/printer');
    expect(t.remoteWriteStatus).toBe('closed');
    expect(t.writeStatus).toBe('writable'); // half-closed: their direction is still open
    expect(ours.streamCount).toBe(1);

    const reply = randomBytes(300 * KiB); // more than one window: updates flow after our FIN
    await sendTheirs(t, reply);
    await t.close();
    const ourGot = await ourRead;
    expect(ourGot.ended).toBe(true);
    expect(sha(ourGot.data)).toBe(sha(reply));
    await until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'both sides to retire the stream');
    expect(s.state).toBe(StreamState.Closed);
    expect(t.status).toBe('closed');

    const frames = framesOf(wire, s.id);
    const ourFin = frames.findIndex((f) => f.from === 'ours' && has(f, FlagBit.FIN));
    const theirFin = frames.findIndex((f) => f.from === 'theirs' && has(f, FlagBit.FIN));
    expect(ourFin).toBeGreaterThanOrEqual(0);
    expect(theirFin).toBeGreaterThan(ourFin);
    expect(frames.slice(ourFin + 1).some((f) => f.from === 'ours' && f.type === FrameTypeNo.Data)).toBe(false);
    expect(frames.slice(ourFin + 1).some((f) => f.from === 'ours' && f.type === FrameTypeNo.WindowUpdate && f.length > 0)).toBe(true);
    expect(frames.some((f) => has(f, FlagBit.RST))).toBe(false);
  });

  it('half-close from them: we see end, can still answer, then both sides are closed', async () => {
    const { ours, theirs, wire } = open();
    const accepted = nextOurStream(ours);
    const t = await theirs.createStream();
    const theirRead = collectTheirs(t);
    const request = randomBytes(100 * KiB);
    await sendTheirs(t, request);
    await t.close();
    const s = await accepted;
    const ourGot = await collectOurs(s);
    expect(ourGot.ended).toBe(true);
    expect(sha(ourGot.data)).toBe(sha(request));
    expect(s.writable).toBe(true);
    expect(t.status).toBe('open');

    const reply = randomBytes(500 * KiB);
    await writeOurs(s, reply);
    const theirGot = await theirRead.result;
    expect(theirGot.remoteFin).toBe(true);
    expect(sha(theirGot.data)).toBe(sha(reply));
    await until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'both sides to retire the stream');
    expect(s.state).toBe(StreamState.Closed);

    const frames = framesOf(wire, s.id);
    const theirFin = frames.findIndex((f) => f.from === 'theirs' && has(f, FlagBit.FIN));
    const ourFin = frames.findIndex((f) => f.from === 'ours' && has(f, FlagBit.FIN));
    expect(theirFin).toBeGreaterThanOrEqual(0);
    expect(ourFin).toBeGreaterThan(theirFin);
    expect(frames.some((f) => has(f, FlagBit.RST))).toBe(false);
  });

  it('reset from us mid-body: they see a reset, never a clean end', async () => {
    const { ours, theirs, wire, acceptTheirs } = open();
    const s = ours.openStream();
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    void writeOurs(s, randomBytes(200 * KiB), { end: false });
    const { stream: t, reader } = await acceptTheirs();
    await until(() => reader.bytes > 0, 'their side to receive the first bytes');
    s.reset();
    const got = await reader.result;
    expect(got.remoteFin).toBe(false);
    expect(got.error?.name).toBe('StreamResetError');
    expect(t.status).toBe('reset');
    await closed;
    expect(s.state).toBe(StreamState.Closed);
    expect(ours.streamCount).toBe(0);
    await until(() => theirs.streams.length === 0, 'their side to retire the stream');

    const frames = framesOf(wire, s.id);
    const rst = frames.filter((f) => has(f, FlagBit.RST));
    expect(rst).toHaveLength(1);
    expect(rst[0]).toMatchObject({ from: 'ours', type: FrameTypeNo.WindowUpdate });
    expect(frames.some((f) => has(f, FlagBit.FIN))).toBe(false);
  });

  it('reset from them mid-body: we fail the stream with ERR_STREAM_RESET, never a clean end', async () => {
    const { ours, theirs, wire } = open();
    const accepted = nextOurStream(ours);
    const t = await theirs.createStream();
    t.pause(); // they stop granting window, so our write below is still pending at the reset
    const s = await accepted;
    let received = 0;
    s.on('data', (c: Buffer) => (received += c.length));
    const ourRead = collectOurs(s);
    const ourWriting = writeOurs(s, randomBytes(2 * MiB), { end: false });
    await sendTheirs(t, randomBytes(100 * KiB));
    await until(() => received > 0, 'some of the body to arrive');
    t.abort(new Error('upload cancelled'));
    const got = await ourRead;
    expect(got.ended).toBe(false);
    expect(got.error?.code).toBe(ErrorCode.StreamReset);
    await expect(ourWriting).rejects.toThrow();
    expect(s.state).toBe(StreamState.Closed);
    expect(ours.streamCount).toBe(0);
    expect(ours.closed).toBe(false); // one stream's reset leaves the session alone

    const rst = framesOf(wire, s.id).filter((f) => has(f, FlagBit.RST));
    expect(rst).toHaveLength(1);
    expect(rst[0]).toMatchObject({ from: 'theirs', type: FrameTypeNo.WindowUpdate });

    // the session still works
    const s2 = ours.openStream();
    s2.end(Buffer.from('still here'));
    const next = await pair!.acceptTheirs();
    expect((await next.reader.result).data.toString()).toBe('still here');
    await next.stream.close();
    await until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'both sides to retire the stream');
  });

  it('reset from us while their whole-window frames are in flight: late frames dropped, session lives on', async () => {
    // Their Data frames are as large as the window we granted (here MiBs once it has grown), and
    // some are on the wire when our RST leaves. Frames for a stream we closed must be dropped,
    // not judged against the initial 256 KiB window, which would end the whole session.
    const { ours, theirs, wire } = open();
    await ours.ping();
    await theirs.ping();
    // fail fast with the session's own error instead of waiting for bytes that never come
    const died = new Promise<never>((_, reject) =>
      ours.once('close', (err) => reject(new Error(`our session ended: ${err?.message ?? 'closed'}`))),
    );
    died.catch(() => undefined);
    const guard = <T,>(p: Promise<T>): Promise<T> => Promise.race([p, died]);
    for (const hops of [0, 1, 2, 3]) {
      const accepted = nextOurStream(ours);
      const t = await guard(theirs.createStream());
      const theirRead = collectTheirs(t);
      void sendTheirs(t, randomBytes(32 * MiB)).catch(() => undefined);
      const s = await guard(accepted);
      let got = 0;
      const resetDone = new Promise<void>((resolve) => {
        const onData = (c: Buffer) => {
          got += c.length;
          if (got < 8 * MiB) return;
          s.off('data', onData);
          // reset after `hops` turns of the event loop, so frames are caught at different points
          const later = (n: number): void => void (n === 0 ? (s.reset(), resolve()) : setImmediate(() => later(n - 1)));
          later(hops);
        };
        s.on('data', onData);
      });
      s.on('error', () => undefined); // aborted when the session dies; `died` reports that
      await guard(resetDone);
      expect((await guard(theirRead.result)).error?.name).toBe('StreamResetError');
      await guard(until(() => theirs.streams.length === 0, 'their side to retire the stream'));
      expect(ours.closed).toBe(false);
      expect(checkWindow(wire, s.id, 'theirs').largestFrame).toBeGreaterThan(INITIAL_WINDOW);
    }
    // the session still carries a stream both ways
    await new Promise((r) => setTimeout(r, 20)); // any frame still on the wire arrives
    const s = ours.openStream();
    s.end(Buffer.from('after the resets'));
    const a = await guard(pair!.acceptTheirs());
    expect((await guard(a.reader.result)).data.toString()).toBe('after the resets');
    await a.stream.close();
    await guard(until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'both sides to retire the stream'));
    expect(ours.closed).toBe(false);
  });

  it('pings: ours answered by theirs, theirs answered by ours', async () => {
    const { ours, theirs, wire } = open();
    const rtt = await ours.ping();
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(ours.rtt).toBe(rtt);
    const theirRtt = await theirs.ping();
    expect(theirRtt).toBeGreaterThanOrEqual(0);
    expect(theirs.getRTT()).toBe(theirRtt);

    const pings = wire.filter((f) => f.type === FrameTypeNo.Ping);
    expect(pings.map((f) => [f.from, f.flags, f.streamId])).toEqual([
      ['ours', FlagBit.SYN, 0],
      ['theirs', FlagBit.ACK, 0],
      ['theirs', FlagBit.SYN, 0],
      ['ours', FlagBit.ACK, 0],
    ]);
    expect(pings[1]!.length).toBe(pings[0]!.length); // the opaque value comes back unchanged
    expect(pings[3]!.length).toBe(pings[2]!.length);
  });

  it('keep-alive on both sides: every ping answered, the session stays up', async () => {
    const { ours, theirs, wire } = open({
      ourConfig: { keepAliveInterval: 40, keepAliveTimeout: 2_000 },
      theirInit: { enableKeepAlive: true, keepAliveInterval: 40 },
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(ours.closed).toBe(false);
    expect(theirs.status).toBe('open');
    expect(ours.rtt).toBeDefined();
    expect(theirs.getRTT()).toBeGreaterThanOrEqual(0);
    const pings = wire.filter((f) => f.type === FrameTypeNo.Ping);
    for (const side of ['ours', 'theirs'] as const) {
      const asked = pings.filter((f) => f.from === side && f.flags === FlagBit.SYN);
      const answered = pings.filter((f) => f.from !== side && f.flags === FlagBit.ACK);
      expect(asked.length).toBeGreaterThanOrEqual(5);
      // every ping but possibly the last one in flight is answered with its own opaque value
      expect(answered.length).toBeGreaterThanOrEqual(asked.length - 1);
      for (const a of answered) expect(asked.some((q) => q.length === a.length)).toBe(true);
    }
  });

  it('128 streams at once, opened by both sides, all echo intact', async () => {
    const N = 64;
    const { ours, theirs, acceptTheirs } = open();
    // Our side echoes every stream they open; theirs echoes every stream we open.
    ours.on('stream', (s: Stream) => {
      void collectOurs(s).then((r) => writeOurs(s, r.data));
    });
    const theirEchoes = (async () => {
      for (let i = 0; i < N; i++) {
        const { stream, reader } = await acceptTheirs();
        void reader.result.then(async (r) => {
          await sendTheirs(stream, r.data);
          await stream.close();
        });
      }
    })();

    let release!: () => void;
    const allOpen = new Promise<void>((r) => (release = r));
    const bodies = Array.from({ length: 2 * N }, (_, i) => randomBytes((i * 7919) % (192 * KiB)));

    const fromUs = bodies.slice(0, N).map(async (body) => {
      const s = ours.openStream();
      const echoed = collectOurs(s);
      await writeOurs(s, body, { end: false });
      await allOpen; // keep every stream open until all 128 exist on both sides
      s.end();
      const r = await echoed;
      return { id: s.id, ok: r.ended && sha(r.data) === sha(body) };
    });
    const fromThem = bodies.slice(N).map(async (body) => {
      const t = await theirs.createStream();
      const echoed = collectTheirs(t);
      await sendTheirs(t, body);
      await allOpen;
      await t.close();
      const r = await echoed.result;
      return { id: t.streamId, ok: r.remoteFin && sha(r.data) === sha(body) };
    });

    await until(() => ours.streamCount === 2 * N && theirs.streams.length === 2 * N, 'all 128 streams open on both sides');
    release();
    const results = await Promise.all([...fromUs, ...fromThem]);
    await theirEchoes;
    expect(results.filter((r) => !r.ok)).toEqual([]);
    const ids = results.map((r) => r.id);
    expect(new Set(ids).size).toBe(2 * N);
    expect(ids.slice(0, N).every((id) => id % 2 === ourParity)).toBe(true);
    expect(ids.slice(N).every((id) => id % 2 === 1 - ourParity)).toBe(true);
    await until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'every stream retired on both sides');
  });

  it('we refuse a stream beyond maxConcurrentStreams with RST; they see it reset', async () => {
    const { ours, theirs, wire } = open({ ourConfig: { maxConcurrentStreams: 2 } });
    let accepted = 0;
    ours.on('stream', (s: Stream) => {
      accepted++;
      s.resume().end(); // nothing to say: half-close at once
    });
    const a = await theirs.createStream();
    const b = await theirs.createStream();
    const c = await theirs.createStream();
    const cRead = collectTheirs(c);
    const got = await cRead.result;
    expect(got.error?.name).toBe('StreamResetError');
    expect(c.status).toBe('reset');
    expect(accepted).toBe(2);
    expect(a.status).toBe('open');
    expect(b.status).toBe('open');
    expect(ours.closed).toBe(false);
    expect(framesOf(wire, c.streamId).filter((f) => f.from === 'ours')).toEqual([
      { from: 'ours', type: FrameTypeNo.WindowUpdate, flags: FlagBit.RST, streamId: c.streamId, length: 0 },
    ]);
    await Promise.all([a.close(), b.close()]);
    await until(() => ours.streamCount === 0 && theirs.streams.length === 0, 'both sides to retire the streams');
  });

  it('they close gracefully: we get GoAway(normal), open nothing new, and end the session', async () => {
    const { ours, theirs, wire } = open();
    let openAfterGoAway: unknown;
    const goaway = new Promise<number>((r) =>
      ours.once('goaway', (code) => {
        try {
          ours.openStream();
        } catch (e) {
          openAfterGoAway = e;
        }
        r(code);
      }),
    );
    const closed = new Promise<Error | undefined>((r) => ours.once('close', r));
    await theirs.close();
    expect(await goaway).toBe(0);
    expect(openAfterGoAway).toMatchObject({ code: ErrorCode.GoAwayReceived });
    expect(await closed).toBeUndefined(); // idle and going away: a clean close
    expect(wire.filter((f) => f.type === FrameTypeNo.GoAway)[0]).toEqual({
      from: 'theirs',
      type: FrameTypeNo.GoAway,
      flags: 0,
      streamId: 0,
      length: 0,
    });
  });

  it('we go away: they accept no new streams (and, unlike hashicorp/yamux, drop open ones at once)', async () => {
    const { ours, theirs, wire, acceptTheirs } = open();
    const s = ours.openStream();
    s.write(Buffer.from('open before the go-away'));
    const { stream: t } = await acceptTheirs();
    ours.goAway();
    await until(() => theirs.status === 'closed', 'their muxer to take the go-away');
    expect(wire.filter((f) => f.type === FrameTypeNo.GoAway)).toEqual([
      { from: 'ours', type: FrameTypeNo.GoAway, flags: 0, streamId: 0, length: 0 },
    ]);
    await expect(theirs.createStream()).rejects.toThrow();
    // Their behaviour, not ours: @chainsafe/libp2p-yamux treats GoAway(normal) like the transport
    // closing and ends every open stream locally, sending nothing (no FIN, no RST) for it.
    // hashicorp/yamux only stops opening streams and lets open ones finish, which is what our
    // drain relies on; the spec text ("sent when a session is being terminated") allows both.
    expect(t.status).toBe('closed');
    expect(framesOf(wire, s.id).some((f) => f.from === 'theirs' && (has(f, FlagBit.FIN) || has(f, FlagBit.RST)))).toBe(false);
    // Our side keeps the stream (we drain); only closing the session ends it.
    expect(ours.closed).toBe(false);
    expect(s.state).toBe(StreamState.Established);
    expect(() => ours.openStream()).toThrow(expect.objectContaining({ code: ErrorCode.SessionClosing }));
    const aborted = new Promise<unknown>((r) => s.once('error', r));
    ours.close();
    expect(await aborted).toMatchObject({ code: ErrorCode.StreamAborted });
  });
});
