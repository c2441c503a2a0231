// The long-distance benchmark: one stream through Porthole over a home-uplink-like link —
// 100 Mbit/s with 50 ms and 150 ms of round trip — beside a plain TCP transfer over the same
// shaped hop. The agent and the printer's web service live in a network namespace the bench
// makes (a veth pair, tc netem delay + rate on both ends); the relay and the phone are outside.
// Shows whether the tunnel's flow-control window grows to the bandwidth-delay product.
// Needs root and iproute2; the namespace is removed at the end, also on a crash or Ctrl-C.
// `node bench/dist/link.js [--quick] [--rtt 50,150] [--mbit 100] [--size MiB] [--json FILE] [--markdown FILE]`.
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { spawnManaged, stopAll } from '@porthole/e2e/procs';
import { download, upload } from './lib/load.js';
import { benchMain, verdict } from './lib/cli.js';
import { startBenchOrigin } from './lib/origin.js';
import { startShaper } from './lib/shaper.js';
import type { Shaper } from './lib/shaper.js';
import { portholePath } from './lib/paths.js';
import { fmt, markdownTable, median, textTable } from './lib/stats.js';
import { machine, type Machine } from './lib/machine.js';

export interface LinkOptions {
  /** Round-trip times to shape, ms. Default [50, 150]. */
  rttsMs?: number[];
  /** Link rate each way, Mbit/s. Default 100. */
  mbit?: number;
  /** Bytes per transfer, MiB. Default 64. */
  sizeMiB?: number;
  /** Transfers per measurement (median). Default 1. */
  runs?: number;
  log?: (line: string) => void;
}

export interface LinkRow {
  rttMs: number;
  /** MB/s (10^6 B/s) over the whole transfer and over its middle half. */
  rawUp: { mbps: number; midMbps: number };
  rawDown: { mbps: number; midMbps: number };
  portholeDownload: { mbps: number; midMbps: number };
  portholeUpload: { mbps: number };
}

export interface LinkResult {
  date: string;
  durationSeconds: number;
  environment: Machine;
  options: Required<Omit<LinkOptions, 'log'>>;
  method: string;
  rows: LinkRow[];
  error?: string;
  goals: { description: string; pass: boolean | undefined; detail: string }[];
}

const MiB = 1024 * 1024;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Netns {
  name: string;
  /** The root namespace's end (the relay binds it) and the home end (the agent's). */
  outside: string;
  inside: string;
  wrap: string[];
  shape(rttMs: number, mbit: number): void;
  remove(): void;
}

/** The agent↔relay hop under test, however it is emulated. */
interface Hop {
  method: string;
  /** The address the relay binds (and the phone reaches it on). */
  relayAddress: string;
  /** Command prefix for the home side's processes (agent, origin). */
  wrap: string[];
  agentVia?: (relayPort: number) => Promise<number>;
  shape(rttMs: number, mbit: number): Promise<void>;
  /** A plain TCP transfer over the same hop: 'up' = home → relay side. */
  raw(dir: 'up' | 'down', bytes: number): Promise<RawResult>;
  remove(): Promise<void>;
}

async function netnsHop(): Promise<Hop> {
  const ns = makeNetns();
  try {
    ns.shape(1, 100);
  } catch (err) {
    ns.remove();
    throw err;
  }
  return {
    method: 'a network namespace for the home side, a veth pair, tc netem delay (half the RTT each way) and rate on both ends',
    relayAddress: ns.outside,
    wrap: ns.wrap,
    shape: async (rtt, mbit) => ns.shape(rtt, mbit),
    raw: (dir, bytes) => raw(ns, dir, bytes),
    remove: async () => ns.remove(),
  };
}

async function shaperHop(rttMs: number, mbit: number, why: string): Promise<Hop> {
  const shapers: Shaper[] = [];
  // The plain-TCP baseline's far end: one server, each raw() takes the next connection.
  const server = net.createServer();
  const conns: net.Socket[] = [];
  const waiting: ((s: net.Socket) => void)[] = [];
  server.on('connection', (s) => {
    const w = waiting.shift();
    if (w) w(s);
    else conns.push(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const rawShaper = await startShaper((server.address() as net.AddressInfo).port, rttMs, mbit);
  shapers.push(rawShaper);
  return {
    method: `a userspace link emulator (lib/shaper.ts: a TCP proxy in its own process that serialises at the line rate and delays each way by half the RTT; ${why})`,
    relayAddress: '127.0.0.1',
    wrap: [],
    agentVia: async (relayPort) => {
      const sh = await startShaper(relayPort, rttMs, mbit);
      shapers.push(sh);
      return sh.port;
    },
    shape: async (rtt, m) => {
      await Promise.all(shapers.map((x) => x.shape(rtt, m)));
    },
    raw: async (dir, bytes) => {
      const home = net.connect(rawShaper.port, '127.0.0.1');
      const far = await new Promise<net.Socket>((resolve) => {
        const c = conns.shift();
        if (c) resolve(c);
        else waiting.push(resolve);
      });
      if (dir === 'up') {
        send(home, bytes);
        return receive(far, bytes);
      }
      send(far, bytes);
      return receive(home, bytes);
    },
    remove: async () => {
      for (const x of shapers) await x.close();
      server.close();
    },
  };
}

/** A namespace "home" joined to the root namespace by a veth pair, removed on exit whatever happens. */
function makeNetns(): Netns {
  const id = `${process.pid % 100000}`;
  const name = `phbench${id}`;
  const vo = `phb${id}o`;
  const vi = `phb${id}i`;
  const net3 = 100 + (process.pid % 150);
  const outside = `10.213.${net3}.1`;
  const inside = `10.213.${net3}.2`;
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    for (const args of [['netns', 'del', name], ['link', 'del', vo]]) {
      try {
        sh('ip', args);
      } catch {
        /* already gone */
      }
    }
  };
  process.on('exit', remove);
  try {
    sh('ip', ['netns', 'add', name]);
    sh('ip', ['link', 'add', vo, 'type', 'veth', 'peer', 'name', vi]);
    sh('ip', ['link', 'set', vi, 'netns', name]);
    sh('ip', ['addr', 'add', `${outside}/30`, 'dev', vo]);
    sh('ip', ['link', 'set', vo, 'up']);
    sh('ip', ['-n', name, 'addr', 'add', `${inside}/30`, 'dev', vi]);
    sh('ip', ['-n', name, 'link', 'set', vi, 'up']);
    sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  } catch (err) {
    remove();
    throw err;
  }
  return {
    name,
    outside,
    inside,
    wrap: ['ip', 'netns', 'exec', name],
    shape(rttMs, mbit) {
      // Half the round trip each way; the rate on both ends (a symmetric 100 Mbit/s line);
      // a queue deep enough for several bandwidth-delay products, so nothing drops.
      const q = ['root', 'netem', 'delay', `${rttMs / 2}ms`, 'rate', `${mbit}mbit`, 'limit', '100000'];
      sh('tc', ['qdisc', 'replace', 'dev', vo, ...q]);
      sh('ip', ['netns', 'exec', name, 'tc', 'qdisc', 'replace', 'dev', vi, ...q]);
    },
    remove,
  };
}

// ---- plain TCP over the same hop -------------------------------------------------------------

interface RawResult {
  mbps: number;
  midMbps: number;
}

/** Receives `bytes` on `socket`; rates over the whole and over the middle half. */
function receive(socket: net.Socket, bytes: number): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let got = 0;
    let q1: number | undefined;
    let q3: number | undefined;
    let g1 = 0;
    let g3 = 0;
    socket.on('data', (c: Buffer) => {
      got += c.length;
      if (q1 === undefined && got >= bytes / 4) [q1, g1] = [performance.now(), got];
      if (q3 === undefined && got >= (bytes * 3) / 4) [q3, g3] = [performance.now(), got];
      if (got >= bytes) {
        const s = (performance.now() - t0) / 1000;
        socket.destroy();
        resolve({ mbps: got / 1e6 / s, midMbps: q1 !== undefined && q3 !== undefined ? (g3 - g1) / 1e6 / ((q3 - q1) / 1000) : NaN });
      }
    });
    socket.on('error', reject);
    socket.on('close', () => {
      if (got < bytes) reject(new Error(`raw: connection closed after ${got} of ${bytes} bytes`));
    });
  });
}

function send(socket: net.Socket, bytes: number): void {
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  let sent = 0;
  const pump = () => {
    while (sent < bytes) {
      sent += chunk.length;
      if (!socket.write(chunk)) {
        socket.once('drain', pump);
        return;
      }
    }
    socket.end();
  };
  pump();
}

/** A plain TCP transfer between the namespace and the root namespace: 'up' = home → outside. */
async function raw(ns: Netns, dir: 'up' | 'down', bytes: number): Promise<RawResult> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, ns.outside, r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const child = spawnManaged('raw-tcp', ns.wrap[0] as string, [...ns.wrap.slice(1), process.execPath, fileURLToPath(import.meta.url), '--raw', dir, ns.outside, String(port), String(bytes)]);
    const conn = await new Promise<net.Socket>((resolve, reject) => {
      server.once('connection', resolve);
      setTimeout(() => reject(new Error(`raw: the namespace did not connect\n${child.tail()}`)), 15_000);
    });
    if (dir === 'up') {
      const r = await receive(conn, bytes);
      await child.stop(2_000);
      return r;
    }
    send(conn, bytes);
    const line = await child.waitForLog('raw done', 300_000);
    return { mbps: Number(line.json?.mbps), midMbps: Number(line.json?.midMbps) };
  } finally {
    server.close();
  }
}

/** The namespace side of a raw transfer (run as a child inside the namespace). */
function rawChild(dir: string, host: string, port: number, bytes: number): void {
  const socket = net.connect(port, host);
  if (dir === 'up') {
    socket.on('connect', () => send(socket, bytes));
    socket.on('error', () => process.exit(1));
    return;
  }
  receive(socket, bytes).then(
    (r) => {
      process.stdout.write(`${JSON.stringify({ msg: 'raw done', ...r })}\n`);
      process.exit(0);
    },
    (e: Error) => {
      process.stderr.write(`${e.message}\n`);
      process.exit(1);
    },
  );
}

// ---- the benchmark ---------------------------------------------------------------------------

export async function benchLink(opts: LinkOptions = {}): Promise<LinkResult> {
  const started = Date.now();
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const o: LinkResult['options'] = { rttsMs: opts.rttsMs ?? [50, 150], mbit: opts.mbit ?? 100, sizeMiB: opts.sizeMiB ?? 64, runs: opts.runs ?? 1 };
  const res: LinkResult = {
    date: new Date(started).toISOString(),
    durationSeconds: 0,
    environment: machine(),
    options: o,
    method: '',
    rows: [],
    goals: [],
  };
  let hop: Hop | undefined;
  try {
    hop = await netnsHop();
  } catch (err) {
    const why = `tc netem is not available here: ${(err as Error).message.split('\n').find((l) => /Error|error/.test(l)) ?? 'failed'}`;
    log(`${why}; falling back to the userspace link emulator`);
    try {
      hop = await shaperHop(o.rttsMs[0] ?? 50, o.mbit, why.replace(/\s+/g, ' ').trim());
    } catch (e) {
      res.error = `no way to emulate the link: ${(e as Error).message.split('\n')[0]}`;
      res.method = 'not measured';
    }
  }
  if (hop !== undefined) {
    res.method = hop.method;
    const h = hop;
    const bytes = o.sizeMiB * MiB;
    const origin = await startBenchOrigin(h.wrap);
    let path: Awaited<ReturnType<typeof portholePath>> | undefined;
    try {
      path = await portholePath(origin.port, { relayAddress: h.relayAddress, agentWrap: h.wrap, agentVia: h.agentVia });
      for (const rtt of o.rttsMs) {
        await h.shape(rtt, o.mbit);
        log(`${rtt} ms RTT, ${o.mbit} Mbit/s: plain TCP both ways, then Porthole`);
        const runs = async <T>(f: () => Promise<T>) => {
          const xs: T[] = [];
          for (let i = 0; i < o.runs; i++) xs.push(await f());
          return xs;
        };
        const med = (xs: { mbps: number; midMbps?: number }[]) => ({
          mbps: median(xs.map((x) => x.mbps)),
          midMbps: median(xs.map((x) => x.midMbps ?? NaN)),
        });
        const rawUp = med(await runs(() => h.raw('up', bytes)));
        const rawDown = med(await runs(() => h.raw('down', bytes)));
        // Warm the tunnel's windows as a long-lived tunnel would be, then measure.
        await download(path.target, 8 * MiB);
        const pd = med(await runs(() => download(path!.target, bytes)));
        const pu = med(await runs(() => upload(path!.target, bytes)));
        const row: LinkRow = { rttMs: rtt, rawUp, rawDown, portholeDownload: pd, portholeUpload: { mbps: pu.mbps } };
        res.rows.push(row);
        log(`  raw up ${fmt(rawUp.midMbps)} MB/s, raw down ${fmt(rawDown.midMbps)} MB/s; Porthole download ${fmt(pd.midMbps)} MB/s (middle half), upload ${fmt(pu.mbps)} MB/s`);
      }
    } catch (err) {
      res.error = (err as Error).message.split('\n')[0];
      log(`link: FAILED: ${(err as Error).stack ?? String(err)}`);
    } finally {
      await path?.stop();
      await origin.close();
      await h.remove();
      await stopAll();
    }
  }
  const linkMBps = (o.mbit * 1e6) / 8 / 1e6;
  const worst = res.rows.reduce<LinkRow | undefined>((w, r) => (w === undefined || r.rttMs > w.rttMs ? r : w), undefined);
  res.goals.push({
    description: `one Porthole stream reaches ≥ 80% of the ${o.mbit} Mbit/s link at ${worst?.rttMs ?? Math.max(...o.rttsMs)} ms RTT (download, middle half)`,
    pass: worst === undefined ? undefined : worst.portholeDownload.midMbps >= 0.8 * linkMBps,
    detail:
      worst === undefined
        ? `not measured${res.error ? `: ${res.error}` : ''}`
        : `${fmt((worst.portholeDownload.midMbps / linkMBps) * 100, 0)}% (${fmt(worst.portholeDownload.midMbps, 2)} of ${fmt(linkMBps, 2)} MB/s; plain TCP ${fmt((worst.rawUp.midMbps / linkMBps) * 100, 0)}%)`,
  });
  res.durationSeconds = (Date.now() - started) / 1000;
  return res;
}

function table(res: LinkResult): { header: string[]; rows: string[][] } {
  const link = (res.options.mbit * 1e6) / 8 / 1e6;
  const pct = (x: number) => `${fmt(x, 2)} (${fmt((x / link) * 100, 0)}%)`;
  return {
    header: ['RTT', 'plain TCP home→relay MB/s', 'plain TCP relay→home MB/s', 'Porthole download MB/s', 'Porthole download, whole transfer', 'Porthole upload MB/s (whole transfer)', 'download ÷ plain TCP'],
    rows: res.rows.map((r) => [
      `${r.rttMs} ms`,
      pct(r.rawUp.midMbps),
      pct(r.rawDown.midMbps),
      pct(r.portholeDownload.midMbps),
      pct(r.portholeDownload.mbps),
      pct(r.portholeUpload.mbps),
      `${fmt(r.portholeDownload.midMbps / r.rawUp.midMbps, 2)}×`,
    ]),
  };
}

function describe(res: LinkResult): string {
  const o = res.options;
  return (
    `The agent and the printer's web service on the home side, the relay and the phone on the far side, joined by a link of ${o.mbit} Mbit/s each way ` +
    `with ${o.rttsMs.join(' and ')} ms of round trip (${res.method}). ${o.sizeMiB} MiB per transfer (median of ${o.runs}); MB/s over the middle half of ` +
    `each transfer (from 1/4 to 3/4 of the bytes, past TCP's ramp-up) unless marked whole; % of the link rate (${fmt((o.mbit * 1e6) / 8 / 1e6, 1)} MB/s). ` +
    `Plain TCP is one connection over the same hop. ${res.environment.cpus}× ${res.environment.cpuModel}, Node ${res.environment.node}, ` +
    `Linux ${res.environment.kernel}; ${res.date}, ${Math.round(res.durationSeconds)} s.`
  );
}

export function renderLinkText(res: LinkResult): string {
  const t = table(res);
  const out = ['Porthole long-distance link benchmark', describe(res), '', textTable(t.header, t.rows), ''];
  for (const g of res.goals) out.push(`${verdict(g.pass)}  ${g.description}: ${g.detail}`);
  if (res.error) out.push(`error: ${res.error}`);
  return out.join('\n');
}

export function renderLinkMarkdown(res: LinkResult): string {
  const t = table(res);
  const out = ['### One stream over a long, narrow link', '', describe(res), '', markdownTable(t.header, t.rows), ''];
  for (const g of res.goals) out.push(`- **${verdict(g.pass)}** ${g.description}: ${g.detail}`);
  if (res.error) out.push(`- error: \`${res.error}\``);
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--raw') {
  rawChild(process.argv[3] ?? 'up', process.argv[4] ?? '', Number(process.argv[5]), Number(process.argv[6]));
} else {
  benchMain<LinkOptions, LinkResult>(import.meta.url, {
    name: 'link',
    usage: '[--rtt 50,150] [--mbit 100] [--size MiB] [--runs N]',
    flags: {
      '--rtt': (o, v) => (o.rttsMs = v().split(',').map(Number)),
      '--mbit': (o, v) => (o.mbit = Number(v())),
      '--size': (o, v) => (o.sizeMiB = Number(v())),
      '--runs': (o, v) => (o.runs = Number(v())),
    },
    quick: { rttsMs: [150], sizeMiB: 32 },
    limitMs: 15 * 60_000,
    run: benchLink,
    text: renderLinkText,
    markdown: renderLinkMarkdown,
  });
}
