/**
 * Multiplexer cost benchmark: how much throughput and CPU does the yamux session take compared
 * with the bare WebSocket it runs on?
 *
 * One run measures, over a loopback WebSocket between two processes (this one is the ws server,
 * the relay's side; a forked child is the ws client, the agent's side), in both directions:
 *   - raw:    the bytes as binary WebSocket messages of 64 KiB, no multiplexer;
 *   - mux-1:  the same bytes through one stream of `sessionOverWebSocket` on both ends;
 *   - mux-16: the same bytes split over 16 concurrent streams.
 * Both senders apply the same backpressure: more than 1 MiB handed to ws and not yet written
 * (send callbacks outstanding) and they wait until it is back under 512 KiB (that is what
 * `sessionOverWebSocket` does with its default transportHighWaterMark of 1 MiB).
 * Throughput is bytes over the time from "go" until the receiver has every byte; CPU is
 * process.cpuUsage() of each process over the same interval. Each measurement is repeated and the
 * median reported.
 *
 *   node bench/dist/protocol.js [--bytes=MiB] [--repeats=N] [--directions=up,down]
 *                               [--modes=raw,mux-1,mux-16] [--markdown] [--json]
 * (under `node --cpu-prof` the forked child is profiled too: it inherits the exec flags)
 *
 * Goal: the multiplexer costs under 15% of raw WebSocket throughput (ratio mux/raw >= 0.85).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { sessionOverWebSocket, type Session, type Stream } from '@porthole/protocol';
import { markdownTable, median, textTable } from './lib/stats.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const CHUNK = 64 * KiB;
const HIGH_WATER = 1 * MiB;
const GOAL_MAX_COST = 0.15;

export type Mode = 'raw' | 'mux-1' | 'mux-16';
/** `up`: client (agent) sends to server (relay), like a webcam; `down`: the other way, like an upload to the printer. */
export type Direction = 'up' | 'down';

const MODES: readonly Mode[] = ['raw', 'mux-1', 'mux-16'];
const DIRECTIONS: readonly Direction[] = ['up', 'down'];
const STREAMS: Record<Mode, number> = { raw: 0, 'mux-1': 1, 'mux-16': 16 };
const LABEL: Record<Mode, string> = {
  raw: 'raw WebSocket',
  'mux-1': 'mux, 1 stream',
  'mux-16': 'mux, 16 streams',
};
const DIRECTION_LABEL: Record<Direction, string> = {
  up: 'client → server (agent to relay: webcam, responses)',
  down: 'server → client (relay to agent: uploads)',
};

export interface Measurement {
  bytes: number;
  seconds: number;
  /** CPU seconds (user + system) of the sending process over the measurement. */
  senderCpu: number;
  /** CPU seconds of the receiving process. */
  receiverCpu: number;
  /** WebSocket messages the receiver got (the mux coalesces the frames of one tick into one). */
  messages: number;
}

export interface ModeResult {
  mode: Mode;
  direction: Direction;
  label: string;
  runs: Measurement[];
  /** Medians over the runs. */
  mibPerSecond: number;
  senderCpuPerGiB: number;
  receiverCpuPerGiB: number;
  /** Mean size of the WebSocket messages that carried the bytes. */
  messageKiB: number;
  /** mibPerSecond divided by the raw WebSocket's, same direction; 1 for raw itself. */
  ratioToRaw: number;
}

export interface ProtocolBenchResult {
  date: string;
  machine: { nproc: number; cpu: string; node: string };
  /** 1-minute load average before and after the run. Other work on the machine skews the figures;
   * `after` includes the run itself (two busy processes). */
  load: { before: number; after: number };
  bytesPerRun: number;
  repeats: number;
  chunk: number;
  results: ModeResult[];
  /** `pass` is undefined when raw and at least one mux mode were not both measured. */
  goal: { description: string; maxCost: number; worstRatio: number; pass: boolean | undefined };
}

export interface ProtocolBenchOptions {
  /** Bytes moved per measurement. Default 1 GiB. */
  bytes?: number;
  /** Measurements per mode and direction; the median is reported. Default 3. */
  repeats?: number;
  directions?: readonly Direction[];
  /** Transports to measure (raw is needed for the ratios). Default all three. */
  modes?: readonly Mode[];
  /** Progress lines go here (default: nowhere). */
  log?: (line: string) => void;
}

// ---------------------------------------------------------------------------------------------
// The two ends of one measurement, used by both processes.

interface Spec {
  mode: Mode;
  bytes: number;
}

interface End {
  /** Sender: sends every byte, resolves when ws has written the last one. Receiver: resolves
   * once every byte has arrived. */
  run(): Promise<void>;
  close(): Promise<void>;
  /** WebSocket messages received so far. */
  messages(): number;
}

function countMessages(ws: WebSocket): () => number {
  let n = 0;
  ws.on('message', () => n++);
  return () => n;
}

let payload: Buffer | undefined;
const chunkOf = (n: number): Buffer => {
  payload ??= randomBytes(CHUNK);
  return n === CHUNK ? payload : payload.subarray(0, n);
};

function failOnClose(ws: WebSocket): Promise<never> {
  return new Promise((_, reject) => {
    ws.once('close', (code) => reject(new Error(`websocket closed during the measurement (${code})`)));
    ws.once('error', reject);
  });
}

function rawSender(ws: WebSocket, spec: Spec): End {
  return {
    async run() {
      const closed = failOnClose(ws);
      closed.catch(() => undefined);
      let inFlight = 0;
      let wake: (() => void) | undefined;
      let target = 0;
      const sent = (n: number) => () => {
        inFlight -= n;
        if (wake !== undefined && inFlight <= target) {
          const w = wake;
          wake = undefined;
          w();
        }
      };
      const waitUntil = (level: number) =>
        Promise.race([
          new Promise<void>((r) => {
            target = level;
            wake = r;
          }),
          closed,
        ]);
      for (let off = 0; off < spec.bytes; off += CHUNK) {
        const n = Math.min(CHUNK, spec.bytes - off);
        inFlight += n;
        ws.send(chunkOf(n), { binary: true, compress: false }, sent(n));
        if (inFlight > HIGH_WATER) await waitUntil(HIGH_WATER / 2);
      }
      if (inFlight > 0) await waitUntil(0);
    },
    close: () => closeWs(ws),
    messages: countMessages(ws),
  };
}

function rawReceiver(ws: WebSocket, spec: Spec): End {
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  ws.on('message', (data: Buffer) => {
    got += data.length;
    if (got >= spec.bytes) done();
  });
  return {
    run: () => Promise.race([all, failOnClose(ws)]),
    close: () => closeWs(ws),
    messages: countMessages(ws),
  };
}

function split(bytes: number, parts: number): number[] {
  const each = Math.floor(bytes / parts);
  return Array.from({ length: parts }, (_, i) => (i === parts - 1 ? bytes - each * (parts - 1) : each));
}

function muxSender(ws: WebSocket, session: Session, spec: Spec): End {
  const sendOne = async (bytes: number) => {
    const s = session.openStream();
    // The stream lives on after 'finish' until the receiver's FIN; closing the session at the end
    // may destroy it with an error then, which must not crash the process. Errors before the end
    // reject through once() below.
    s.on('error', () => undefined);
    s.resume(); // nothing comes back; keep the readable side from holding anything
    for (let off = 0; off < bytes; off += CHUNK) {
      if (!s.write(chunkOf(Math.min(CHUNK, bytes - off)))) await once(s, 'drain');
    }
    s.end();
    await once(s, 'finish');
  };
  return {
    async run() {
      await Promise.all(split(spec.bytes, STREAMS[spec.mode]).map(sendOne));
    },
    close: () => closeSession(ws, session),
    messages: countMessages(ws),
  };
}

function muxReceiver(ws: WebSocket, session: Session, spec: Spec): End {
  let got = 0;
  let ended = 0;
  let done!: () => void;
  let fail!: (e: Error) => void;
  const all = new Promise<void>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  session.on('stream', (s: Stream) => {
    s.on('data', (c: Buffer) => {
      got += c.length;
    });
    s.on('end', () => {
      s.end();
      if (++ended === STREAMS[spec.mode]) {
        if (got === spec.bytes) done();
        else fail(new Error(`received ${got} bytes, expected ${spec.bytes}`));
      }
    });
    s.on('error', fail);
  });
  session.on('close', (err) => fail(err ?? new Error('session closed during the measurement')));
  return { run: () => all, close: () => closeSession(ws, session), messages: countMessages(ws) };
}

async function closeWs(ws: WebSocket): Promise<void> {
  if (ws.readyState === ws.CLOSED) return;
  const closed = once(ws, 'close');
  ws.close();
  await closed;
}

async function closeSession(ws: WebSocket, session: Session): Promise<void> {
  session.removeAllListeners('close');
  const closed = ws.readyState === ws.CLOSED ? undefined : once(ws, 'close');
  session.close();
  await closed;
}

function makeEnd(ws: WebSocket, spec: Spec, sender: boolean, role: 'client' | 'server'): End {
  if (spec.mode === 'raw') return sender ? rawSender(ws, spec) : rawReceiver(ws, spec);
  const session = sessionOverWebSocket(ws, { role });
  return sender ? muxSender(ws, session, spec) : muxReceiver(ws, session, spec);
}

const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
};

// ---------------------------------------------------------------------------------------------
// Child process: the ws client (agent side). Driven over the IPC channel.

type ToChild =
  | { type: 'connect'; url: string; spec: Spec; sender: boolean }
  | { type: 'go' }
  | { type: 'stop' };
type ToParent =
  | { type: 'ready' }
  | { type: 'received' }
  | { type: 'sent' }
  | { type: 'cpu'; seconds: number; messages: number }
  | { type: 'failed'; message: string };

function childMain(): void {
  const send = (m: ToParent) => process.send?.(m);
  let end: End | undefined;
  let sender = false;
  let cpu0: NodeJS.CpuUsage | undefined;
  const fail = (e: unknown) => send({ type: 'failed', message: e instanceof Error ? e.stack ?? e.message : String(e) });
  process.on('message', (m: ToChild) => {
    if (m.type === 'connect') {
      sender = m.sender;
      // The agent's own client options: it is not a browser, so it sends with an all-zero mask
      // (see apps/agent/src/connection/dial.ts); raw and mux runs use the same socket options.
      const ws = new WebSocket(m.url, {
        perMessageDeflate: false,
        generateMask: (mask: Buffer) => {
          mask.fill(0);
        },
      });
      ws.once('error', fail);
      ws.once('open', () => {
        // Create the session only once the socket is open: frames written before are dropped.
        end = makeEnd(ws, m.spec, m.sender, 'client');
        send({ type: 'ready' });
      });
    } else if (m.type === 'go') {
      cpu0 = process.cpuUsage();
      end!.run().then(() => send({ type: sender ? 'sent' : 'received' }), fail);
    } else {
      const seconds = cpuSeconds(cpu0!);
      const e = end!;
      end = undefined;
      const messages = e.messages();
      e.close().then(() => send({ type: 'cpu', seconds, messages }), fail);
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// Parent: the ws server (relay side), runs the measurements.

class Child {
  readonly proc: ChildProcess;
  private readonly inbox: ToParent[] = [];
  private waiter: ((m: ToParent) => void) | undefined;
  private failure: Error | undefined;
  constructor() {
    this.proc = fork(fileURLToPath(import.meta.url), ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: ToParent) => {
      if (m.type === 'failed') this.failure = new Error(`child: ${m.message}`);
      const w = this.waiter;
      if (w !== undefined) {
        this.waiter = undefined;
        w(m);
      } else this.inbox.push(m);
    });
    this.proc.on('exit', (code) => {
      this.failure ??= new Error(`child exited (${code})`);
      this.waiter?.({ type: 'failed', message: this.failure.message });
    });
  }
  send(m: ToChild): void {
    this.proc.send(m);
  }
  async next<T extends ToParent['type']>(type: T): Promise<Extract<ToParent, { type: T }>> {
    const m = this.inbox.shift() ?? (await new Promise<ToParent>((r) => (this.waiter = r)));
    if (m.type === 'failed') throw this.failure ?? new Error(m.message);
    if (m.type !== type) throw new Error(`expected ${type} from the child, got ${m.type}`);
    return m as Extract<ToParent, { type: T }>;
  }
  stop(): void {
    this.proc.disconnect();
  }
}

async function measure(child: Child, wss: WebSocketServer, url: string, spec: Spec, direction: Direction): Promise<Measurement> {
  const childSends = direction === 'up';
  // Set up in the 'connection' event itself: a message that arrives before a listener is lost.
  const accepted = new Promise<End>((resolve) =>
    wss.once('connection', (ws: WebSocket) => resolve(makeEnd(ws, spec, !childSends, 'server'))),
  );
  child.send({ type: 'connect', url, spec, sender: childSends });
  const [end] = await Promise.all([accepted, child.next('ready')]);
  // Let the sessions' first keep-alive ping go round: stream windows grow with a known RTT.
  await new Promise((r) => setTimeout(r, 20));

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  child.send({ type: 'go' });
  if (childSends) {
    await Promise.all([end.run(), child.next('sent')]);
  } else {
    await Promise.all([end.run(), child.next('received')]);
  }
  const seconds = (performance.now() - t0) / 1000;
  const ownCpu = cpuSeconds(cpu0);
  const ownMessages = end.messages();
  child.send({ type: 'stop' });
  const [{ seconds: childCpu, messages: childMessages }] = await Promise.all([child.next('cpu'), end.close()]);
  return {
    bytes: spec.bytes,
    seconds,
    senderCpu: childSends ? childCpu : ownCpu,
    receiverCpu: childSends ? ownCpu : childCpu,
    messages: childSends ? ownMessages : childMessages,
  };
}

function machine(): ProtocolBenchResult['machine'] {
  let cpu = 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1] !== undefined) cpu = m[1].trim();
  } catch {
    // not Linux
  }
  return { nproc: availableParallelism(), cpu, node: process.version };
}

export async function benchProtocol(opts: ProtocolBenchOptions = {}): Promise<ProtocolBenchResult> {
  const bytes = opts.bytes ?? 1 * GiB;
  const repeats = opts.repeats ?? 3;
  const directions = opts.directions ?? DIRECTIONS;
  const modes = opts.modes ?? MODES;
  const log = opts.log ?? (() => undefined);
  const loadBefore = loadavg()[0]!;

  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const addr = wss.address();
  if (addr === null || typeof addr === 'string') throw new Error('unexpected server address');
  const url = `ws://127.0.0.1:${addr.port}/`;
  const child = new Child();
  try {
    // Warm-up: JIT both processes on every path before anything counts.
    for (const direction of directions) {
      for (const mode of modes) await measure(child, wss, url, { mode, bytes: Math.min(bytes, 64 * MiB) }, direction);
    }
    const runs = new Map<string, Measurement[]>();
    for (let r = 0; r < repeats; r++) {
      for (const direction of directions) {
        // Interleaved, so drift (thermal, neighbours) spreads over every mode alike.
        for (const mode of modes) {
          const m = await measure(child, wss, url, { mode, bytes }, direction);
          const key = `${direction}/${mode}`;
          runs.set(key, [...(runs.get(key) ?? []), m]);
          log(
            `run ${r + 1}/${repeats} ${direction.padEnd(4)} ${LABEL[mode].padEnd(16)} ` +
              `${(bytes / MiB / m.seconds).toFixed(0).padStart(6)} MiB/s  ` +
              `cpu sender ${m.senderCpu.toFixed(2)} s, receiver ${m.receiverCpu.toFixed(2)} s`,
          );
        }
      }
    }
    const results: ModeResult[] = [];
    for (const direction of directions) {
      let raw = Number.NaN;
      for (const mode of modes) {
        const ms = runs.get(`${direction}/${mode}`) ?? [];
        const mibPerSecond = median(ms.map((m) => m.bytes / MiB / m.seconds));
        if (mode === 'raw') raw = mibPerSecond;
        results.push({
          mode,
          direction,
          label: LABEL[mode],
          runs: ms,
          mibPerSecond,
          senderCpuPerGiB: median(ms.map((m) => m.senderCpu / (m.bytes / GiB))),
          receiverCpuPerGiB: median(ms.map((m) => m.receiverCpu / (m.bytes / GiB))),
          messageKiB: median(ms.map((m) => m.bytes / KiB / m.messages)),
          ratioToRaw: mibPerSecond / raw,
        });
      }
    }
    const ratios = results.filter((r) => r.mode !== 'raw').map((r) => r.ratioToRaw);
    const worstRatio = ratios.length > 0 ? Math.min(...ratios) : Number.NaN;
    return {
      date: new Date().toISOString(),
      machine: machine(),
      load: { before: loadBefore, after: loadavg()[0]! },
      bytesPerRun: bytes,
      repeats,
      chunk: CHUNK,
      results,
      goal: {
        description: `the multiplexer costs under ${GOAL_MAX_COST * 100}% of raw WebSocket throughput`,
        maxCost: GOAL_MAX_COST,
        worstRatio,
        pass: Number.isFinite(worstRatio) ? worstRatio >= 1 - GOAL_MAX_COST : undefined,
      },
    };
  } finally {
    child.stop();
    for (const c of wss.clients) c.terminate();
    wss.close();
  }
}

function tableRows(r: ProtocolBenchResult): { header: string[]; rows: string[][] } {
  return {
    header: ['direction', 'transport', 'MiB/s', 'mux/raw', 'sender CPU s/GiB', 'receiver CPU s/GiB', 'avg WS message'],
    rows: r.results.map((x) => [
      x.direction,
      x.label,
      x.mibPerSecond.toFixed(0),
      x.mode === 'raw' || !Number.isFinite(x.ratioToRaw) ? '–' : x.ratioToRaw.toFixed(2),
      x.senderCpuPerGiB.toFixed(2),
      x.receiverCpuPerGiB.toFixed(2),
      `${x.messageKiB.toFixed(0)} KiB`,
    ]),
  };
}

function describeRun(r: ProtocolBenchResult): string {
  const m = r.machine;
  return (
    `${r.bytesPerRun / MiB} MiB per measurement in ${r.chunk / KiB} KiB writes, median of ${r.repeats}, over a loopback ` +
    `WebSocket between two processes; ${m.nproc}× ${m.cpu}, Node ${m.node}; ${r.date}; ` +
    `1-minute load average ${r.load.before.toFixed(2)} before the run (the run itself keeps two cores busy).`
  );
}

function legend(r: ProtocolBenchResult): string[] {
  return [
    ...[...new Set(r.results.map((x) => x.direction))].map((d) => `${d}: ${DIRECTION_LABEL[d]}`),
    'CPU s/GiB: user+system CPU seconds of the sending and the receiving process per GiB moved.',
  ];
}

const verdict = (r: ProtocolBenchResult) =>
  `${r.goal.pass === undefined ? 'N/A' : r.goal.pass ? 'PASS' : 'FAIL'}  ${r.goal.description} ` +
  `(mux/raw >= ${(1 - r.goal.maxCost).toFixed(2)}): ` +
  (r.goal.pass === undefined ? 'needs raw and a mux mode' : `worst ratio ${r.goal.worstRatio.toFixed(2)}`);

/** The result as plain text: the table, the legend, the verdict. */
export function renderProtocolText(r: ProtocolBenchResult): string {
  const t = tableRows(r);
  return ['Porthole protocol benchmark', describeRun(r), '', textTable(t.header, t.rows), '', ...legend(r), '', verdict(r)].join('\n');
}

/** The result as markdown. */
export function renderProtocolMarkdown(r: ProtocolBenchResult): string {
  const t = tableRows(r);
  return [
    '### Protocol benchmark',
    '',
    describeRun(r),
    '',
    markdownTable(t.header, t.rows),
    '',
    ...legend(r).map((l) => `- ${l}`),
    '',
    `**${verdict(r).replace(/^(PASS|FAIL|N\/A) +/, '$1**: ')}`,
  ].join('\n');
}

const USAGE =
  'node bench/dist/protocol.js [--bytes=MiB] [--repeats=N] [--directions=up,down] [--modes=raw,mux-1,mux-16] [--markdown] [--json]\n';

function parseArgs(argv: readonly string[]): ProtocolBenchOptions & { json: boolean; markdown: boolean } {
  const o: ProtocolBenchOptions & { json: boolean; markdown: boolean } = { json: false, markdown: false };
  for (const a of argv) {
    const [name, value] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const need = () => {
      if (value === undefined || value === '') throw new Error(`${name} needs a value (${name}=...)`);
      return value;
    };
    if (name === '--bytes') o.bytes = Number(need()) * MiB;
    else if (name === '--repeats') o.repeats = Number(need());
    else if (name === '--directions') o.directions = need().split(',') as Direction[];
    else if (name === '--modes') o.modes = need().split(',') as Mode[];
    else if (name === '--json') o.json = true;
    else if (name === '--markdown') o.markdown = true;
    else if (name === '--help' || name === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  if (o.bytes !== undefined && !(o.bytes > 0)) throw new Error('--bytes must be a positive number of MiB');
  if (o.repeats !== undefined && !(Number.isInteger(o.repeats) && o.repeats > 0)) throw new Error('--repeats must be a positive integer');
  for (const d of o.directions ?? []) if (!DIRECTIONS.includes(d)) throw new Error(`unknown direction ${d}`);
  for (const m of o.modes ?? []) if (!MODES.includes(m)) throw new Error(`unknown mode ${m}`);
  return o;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain && process.argv.includes('--child')) {
  childMain();
} else if (isMain) {
  Promise.resolve()
    .then(() => {
      const { json, markdown, ...opts } = parseArgs(process.argv.slice(2));
      return benchProtocol({ ...opts, log: (l) => process.stderr.write(`${l}\n`) }).then((r) => {
        process.stdout.write(`${markdown ? renderProtocolMarkdown(r) : renderProtocolText(r)}\n`);
        if (json) process.stdout.write(`\n${JSON.stringify(r, null, 2)}\n`);
      });
    })
    .catch((e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    });
}
