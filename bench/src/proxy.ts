// The proxy benchmark: the same origin reached directly, through nginx, through `ssh -L` and
// through Porthole (relay + agent, plain and over TLS), side by side in one run on 127.0.0.1.
// Measures download and upload throughput on one stream and on 8 at once, small-GET latency
// with 1 and N keep-alive connections, requests per second, WebSocket echo round trips, the CPU
// each side spends per GiB and the far end's (the printer side's) resident memory.
// `node bench/dist/proxy.js [--quick] [--size MiB] [--runs N] [--streams N]
// [--paths direct,nginx,ssh,porthole,porthole-tls] [--connections N] [--json FILE] [--markdown FILE]`.
import { benchMain } from './lib/cli.js';
import { stopAll } from '@porthole/e2e/procs';
import { download, latency, parallel, upload, wsEcho } from './lib/load.js';
import type { EchoResult, LatencyResult } from './lib/load.js';
import { cpuMeter, peakSampler } from './lib/cpu.js';
import { startBenchOrigin } from './lib/origin.js';
import { directPath, nginxPath, portholePath, sshPath } from './lib/paths.js';
import type { PathName, ProxyPath } from './lib/paths.js';
import { fmt, markdownTable, median, ratio, textTable } from './lib/stats.js';
import { machine, type Machine } from './lib/machine.js';

export type { PathName } from './lib/paths.js';
export type { LatencyResult } from './lib/load.js';

export interface ProxyBenchOptions {
  /** Bytes per transfer, in MiB. Default 256. */
  sizeMiB?: number;
  /** Rounds of each measurement over every path (the median round is reported). Default 5. */
  runs?: number;
  /** Which paths, in order. Default all four. */
  paths?: PathName[];
  /** Connections for the concurrent latency / req/s test. Default 50. */
  connections?: number;
  /** Measured seconds of the 1-connection latency test. Default 3 s. */
  latency1Ms?: number;
  /** Measured seconds of the N-connection test. Default 5 s. */
  latencyNMs?: number;
  /** Untimed warm-up transfer per direction, MiB. Default 16. */
  warmupMiB?: number;
  /** Concurrent transfers of the multi-stream test (sizeMiB split between them). Default 8. */
  streams?: number;
  /** WebSocket echo round trips measured. Default 2000. */
  echoMessages?: number;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Extra environment for Porthole's relay and agent. */
  relayEnv?: Record<string, string>;
  agentEnv?: Record<string, string>;
}

export interface CpuResult {
  label: string;
  /** CPU seconds per GiB moved: downloads, uploads, and both together. */
  downSecPerGiB: number;
  upSecPerGiB: number;
  secPerGiB: number;
}

export interface TransferSummary {
  /** 10^6 bytes/s of each timed run. */
  runsMBps: number[];
  medianMBps: number;
}

export interface PathResult {
  name: PathName;
  label: string;
  ok: boolean;
  error?: string;
  notes: string[];
  download: TransferSummary;
  upload: TransferSummary;
  /** `streams` transfers at once, the same total bytes. */
  downloadN: TransferSummary;
  uploadN: TransferSummary;
  echo?: EchoResult;
  /** The far end's resident memory in bytes: before the transfers, and the peak during them. */
  farRssIdle?: number;
  farRssPeak?: number;
  latency1?: LatencyResult;
  latencyN?: LatencyResult;
  /** The tunnel's far end: the side that runs on the printer (sshd, agent). */
  farEnd?: CpuResult;
  /** The other end (ssh client, relay) or the proxy itself (nginx) or the origin (direct). */
  nearEnd?: CpuResult;
  /**
   * Every process the bytes pass through: the load client (the phone's part), both ends, the
   * origin. On a machine whose cores they all share, this is what bounds the throughput.
   */
  allProcesses?: CpuResult;
}

export interface Goal {
  id: string;
  description: string;
  /** undefined: could not be measured in this run. */
  pass: boolean | undefined;
  detail: string;
}

export interface ProxyBenchResult {
  date: string;
  durationSeconds: number;
  environment: Machine;
  options: Required<Omit<ProxyBenchOptions, 'log' | 'relayEnv' | 'agentEnv'>>;
  paths: PathResult[];
  goals: Goal[];
}

const ALL_PATHS: PathName[] = ['direct', 'nginx', 'ssh', 'porthole', 'porthole-tls'];
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function emptyTransfer(): TransferSummary {
  return { runsMBps: [], medianMBps: NaN };
}

/** This process's CPU seconds: the load client's (the bench drives the load from here). */
const loadClientCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

interface Side {
  label: string;
  meter: () => number;
}

/** A path that is up, with what is being gathered for it across the interleaved rounds. */
interface LivePath {
  path: ProxyPath;
  result: PathResult;
  /** Far end, near end, origin (unless it is the near end), load client. */
  sides: (Side | undefined)[];
  /** CPU seconds each side spent in the timed transfers, per direction. */
  cpu: { down: number[]; up: number[] };
  rssPeak?: { stop(): number };
}

/** Starts measuring a path that is up: its idle far-end memory, then a warm-up both ways. */
async function preparePath(path: ProxyPath, originPid: number, o: ProxyBenchResult['options'], log: (s: string) => void): Promise<LivePath> {
  const result: PathResult = {
    name: path.name,
    label: path.label,
    ok: true,
    notes: [...path.notes],
    download: emptyTransfer(),
    upload: emptyTransfer(),
    downloadN: emptyTransfer(),
    uploadN: emptyTransfer(),
  };
  // The direct path's near end is the origin: counted once.
  const origin = path.nearEnd?.label === 'origin' ? undefined : { label: 'origin', meter: cpuMeter(() => [originPid]) };
  const sides = [path.farEnd, path.nearEnd, origin, { label: 'load client', meter: loadClientCpu }];
  const farRss = path.farEnd?.rss;
  result.farRssIdle = farRss?.();
  log(`  ${path.label}: warm-up (${o.warmupMiB} MiB each way)`);
  await download(path.target, o.warmupMiB * MiB);
  await upload(path.target, o.warmupMiB * MiB);
  return { path, result, sides, cpu: { down: sides.map(() => 0), up: sides.map(() => 0) }, rssPeak: farRss !== undefined ? peakSampler(farRss) : undefined };
}

/**
 * `runs` rounds, every path once per round: a neighbour's burst on this shared machine, or its
 * quiet minutes, fall on every path alike instead of on whichever path was being measured then
 * (nginx measured 10.7k req/s in one full run and 15.8k in the next when each path ran alone).
 * A path whose measurement fails is marked failed and leaves the rounds.
 */
async function rounds(live: LivePath[], runs: number, what: string, log: (s: string) => void, task: (l: LivePath, i: number) => Promise<string>): Promise<void> {
  log(`${what}: ${runs} ${runs === 1 ? 'round' : 'rounds'} over every path`);
  for (let i = 0; i < runs; i++) {
    for (const l of live) {
      if (!l.result.ok) continue;
      try {
        log(`  ${l.path.label}: ${what} ${i + 1}/${runs}: ${await task(l, i)}`);
      } catch (err) {
        l.result.ok = false;
        l.result.error = `${what}: ${err instanceof Error ? err.message : String(err)}`;
        log(`  ${l.path.label}: FAILED: ${l.result.error}`);
      }
    }
  }
}

/** The median run, by `key`, of `runs`. */
const medianRun = <T>(runs: T[], key: (r: T) => number): T | undefined => runs.sort((a, b) => key(a) - key(b))[(runs.length - 1) >> 1];

async function measurePaths(live: LivePath[], o: ProxyBenchResult['options'], log: (s: string) => void): Promise<void> {
  const size = o.sizeMiB * MiB;
  for (const dir of ['down', 'up'] as const) {
    await rounds(live, o.runs, dir === 'down' ? 'download' : 'upload', log, async (l) => {
      const before = l.sides.map((side) => side?.meter() ?? 0);
      const t = dir === 'down' ? await download(l.path.target, size) : await upload(l.path.target, size);
      l.sides.forEach((side, k) => (l.cpu[dir][k]! += (side?.meter() ?? 0) - before[k]!));
      (dir === 'down' ? l.result.download : l.result.upload).runsMBps.push(t.mbps);
      return `${fmt(t.mbps)} MB/s`;
    });
  }
  for (const dir of ['down', 'up'] as const) {
    await rounds(live, o.runs, `${o.streams} ${dir === 'down' ? 'downloads' : 'uploads'} at once`, log, async (l) => {
      const t = await parallel(l.path.target, dir, o.streams, size);
      (dir === 'down' ? l.result.downloadN : l.result.uploadN).runsMBps.push(t.mbps);
      return `${fmt(t.mbps)} MB/s`;
    });
  }
  for (const l of live) l.result.farRssPeak = l.rssPeak?.stop();
  const one = new Map<PathResult, LatencyResult[]>(live.map((l) => [l.result, []]));
  await rounds(live, o.runs, 'latency, 1 connection', log, async (l) => {
    const run = await latency(l.path.target, { connections: 1, durationMs: o.latency1Ms });
    one.get(l.result)!.push(run);
    return `p50 ${fmt(run.p50Ms, 3)} ms`;
  });
  const loaded = new Map<PathResult, LatencyResult[]>(live.map((l) => [l.result, []]));
  await rounds(live, o.runs, `latency, ${o.connections} connections`, log, async (l) => {
    const run = await latency(l.path.target, { connections: o.connections, durationMs: o.latencyNMs });
    loaded.get(l.result)!.push(run);
    return `${fmt(run.rps)} req/s`;
  });
  await rounds(live, 1, 'WebSocket echo', log, async (l) => {
    l.result.echo = await wsEcho(l.path.target, { messages: o.echoMessages });
    return `p50 ${fmt(l.result.echo.p50Ms, 3)} ms`;
  });

  const gib = (size * o.runs) / GiB;
  for (const l of live) {
    const r = l.result;
    if (!r.ok) continue;
    for (const t of [r.download, r.upload, r.downloadN, r.uploadN]) t.medianMBps = median(t.runsMBps);
    r.latency1 = medianRun(one.get(r)!, (x) => x.p50Ms);
    r.latencyN = medianRun(loaded.get(r)!, (x) => x.rps);
    const cpu = l.sides.map((side, k): CpuResult | undefined => {
      if (side === undefined) return undefined;
      const d = l.cpu.down[k]! / gib;
      const u = l.cpu.up[k]! / gib;
      return { label: side.label, downSecPerGiB: d, upSecPerGiB: u, secPerGiB: (d + u) / 2 };
    });
    r.farEnd = cpu[0];
    r.nearEnd = cpu[1];
    const parts = cpu.filter((c): c is CpuResult => c !== undefined);
    r.allProcesses = {
      label: parts.map((c) => c.label).join(' + '),
      downSecPerGiB: parts.reduce((t, c) => t + c.downSecPerGiB, 0),
      upSecPerGiB: parts.reduce((t, c) => t + c.upSecPerGiB, 0),
      secPerGiB: parts.reduce((t, c) => t + c.secPerGiB, 0),
    };
  }
}

function goal(id: string, description: string, a: number | undefined, b: number | undefined, pass: (a: number, b: number) => boolean, detail: (a: number, b: number) => string): Goal {
  const known = a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b);
  return { id, description, pass: known ? pass(a, b) : undefined, detail: known ? detail(a, b) : 'not measured' };
}

function goalsOf(paths: PathResult[]): Goal[] {
  const get = (n: PathName) => paths.find((p) => p.name === n && p.ok);
  const ssh = get('ssh');
  const direct = get('direct');
  const nginx = get('nginx');
  const goals: Goal[] = [];
  const mbps = (a: number, b: number) => `${fmt(a)} vs ${fmt(b)} MB/s (${ratio(a, b)})`;
  for (const name of ['porthole', 'porthole-tls'] as const) {
    const ph = get(name);
    if (ph === undefined && name === 'porthole-tls') continue;
    const who = name === 'porthole' ? 'Porthole' : 'Porthole TLS';
    // The CPU every process on each path spent per GiB that way: what the two paths' throughputs
    // come down to on shared cores.
    const spent = (dir: 'downSecPerGiB' | 'upSecPerGiB') => {
      const a = ph?.allProcesses?.[dir];
      const b = ssh?.allProcesses?.[dir];
      return a !== undefined && b !== undefined ? `; all processes ${fmt(a, 2)} vs ${fmt(b, 2)} CPU s/GiB` : '';
    };
    goals.push(
      goal(`${name}:download`, `${who} download throughput ≥ ssh -L's`, ph?.download.medianMBps, ssh?.download.medianMBps, (a, b) => a >= b,
        (a, b) => `${mbps(a, b)}${spent('downSecPerGiB')}`),
      goal(`${name}:upload`, `${who} upload throughput ≥ ssh -L's`, ph?.upload.medianMBps, ssh?.upload.medianMBps, (a, b) => a >= b,
        (a, b) => `${mbps(a, b)}${spent('upSecPerGiB')}`),
      goal(`${name}:cpu`, `${who}: agent CPU per GiB ≤ sshd's (the printer side of ssh -L)`, ph?.farEnd?.secPerGiB, ssh?.farEnd?.secPerGiB, (a, b) => a <= b,
        (a, b) => `${fmt(a, 2)} vs ${fmt(b, 2)} CPU s/GiB (${ratio(a, b)})`),
    );
  }
  const ph = get('porthole');
  goals.push(
    goal('overhead', 'p50 small-request overhead over direct < 1 ms (1 keep-alive connection)', ph?.latency1?.p50Ms, direct?.latency1?.p50Ms, (a, b) => a - b < 1,
      (a, b) => `+${fmt(a - b, 3)} ms (${fmt(a, 3)} vs ${fmt(b, 3)} ms)`),
    goal('rps', "req/s at 50 connections ≥ half of nginx's", ph?.latencyN?.rps, nginx?.latencyN?.rps, (a, b) => a >= b / 2,
      (a, b) => `${fmt(a, 0)} vs ${fmt(b, 0)} req/s (${ratio(a, b)})`),
  );
  return goals;
}

/** Runs the benchmark. Always stops what it started, even when a path fails. */
export async function benchProxy(opts: ProxyBenchOptions = {}): Promise<ProxyBenchResult> {
  const started = Date.now();
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const o: ProxyBenchResult['options'] = {
    sizeMiB: opts.sizeMiB ?? 256,
    runs: opts.runs ?? 5,
    paths: opts.paths ?? ALL_PATHS,
    connections: opts.connections ?? 50,
    latency1Ms: opts.latency1Ms ?? 3_000,
    latencyNMs: opts.latencyNMs ?? 5_000,
    warmupMiB: opts.warmupMiB ?? 16,
    streams: opts.streams ?? 8,
    echoMessages: opts.echoMessages ?? 2_000,
  };
  const results: PathResult[] = [];
  const origin = await startBenchOrigin();
  // Every path is started and warmed up first and stays up to the end: each measurement then
  // runs in rounds over all of them (rounds()).
  const live: LivePath[] = [];
  try {
    for (const name of o.paths) {
      log(`${name}: starting`);
      let path: ProxyPath | undefined;
      try {
        path =
          name === 'direct'
            ? directPath(origin.port, origin.proc.pid)
            : name === 'nginx'
              ? await nginxPath(origin.port)
              : name === 'ssh'
                ? await sshPath(origin.port)
                : await portholePath(origin.port, { relayEnv: opts.relayEnv, agentEnv: opts.agentEnv, tls: name === 'porthole-tls' });
        const l = await preparePath(path, origin.proc.pid, o, log);
        live.push(l);
        results.push(l.result);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        log(`${name}: FAILED: ${message}`);
        results.push({
          name,
          label: path?.label ?? name,
          ok: false,
          error: message,
          notes: path?.notes ?? [],
          download: emptyTransfer(),
          upload: emptyTransfer(),
          downloadN: emptyTransfer(),
          uploadN: emptyTransfer(),
        });
        await path?.stop();
      }
    }
    await measurePaths(live, o, log);
  } finally {
    for (const l of live) {
      l.rssPeak?.stop();
      await l.path.stop();
    }
    await origin.close();
    await stopAll();
  }
  return {
    date: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    environment: machine(),
    options: o,
    paths: results,
    goals: goalsOf(results),
  };
}

const cpuCell = (c: CpuResult | undefined) =>
  c ? `${fmt(c.secPerGiB, 2)} (${fmt(c.downSecPerGiB, 2)}↓ ${fmt(c.upSecPerGiB, 2)}↑) ${c.label}` : '–';

function mainRows(res: ProxyBenchResult): { header: string[]; rows: string[][] } {
  const n = res.options.connections;
  const k = res.options.streams;
  const header = [
    'path',
    'down MB/s',
    'up MB/s',
    `down MB/s (${k} at once)`,
    `up MB/s (${k} at once)`,
    'p50 ms (1 conn)',
    'p99 ms (1 conn)',
    `p50 ms (${n} conn)`,
    `p99 ms (${n} conn)`,
    `req/s (${n} conn)`,
    'WS echo p50 ms',
    'WS echo p99 ms',
    'far-end CPU s/GiB',
    'near-end CPU s/GiB',
    'all processes CPU s/GiB',
    'far-end RSS MB idle / peak',
  ];
  const rows = res.paths.map((p) =>
    p.ok
      ? [
          p.label,
          fmt(p.download.medianMBps, 0),
          fmt(p.upload.medianMBps, 0),
          fmt(p.downloadN.medianMBps, 0),
          fmt(p.uploadN.medianMBps, 0),
          fmt(p.latency1?.p50Ms, 3),
          fmt(p.latency1?.p99Ms, 3),
          fmt(p.latencyN?.p50Ms, 2),
          fmt(p.latencyN?.p99Ms, 2),
          fmt(p.latencyN?.rps, 0),
          fmt(p.echo?.p50Ms, 3),
          fmt(p.echo?.p99Ms, 3),
          cpuCell(p.farEnd),
          cpuCell(p.nearEnd),
          p.allProcesses ? `${fmt(p.allProcesses.secPerGiB, 2)} (${fmt(p.allProcesses.downSecPerGiB, 2)}↓ ${fmt(p.allProcesses.upSecPerGiB, 2)}↑)` : '–',
          p.farRssIdle !== undefined ? `${fmt(p.farRssIdle / 1e6, 1)} / ${fmt((p.farRssPeak ?? NaN) / 1e6, 1)}` : '–',
        ]
      : [p.label, 'failed', ...header.slice(2).map(() => '–')],
  );
  return { header, rows };
}

function ratioRows(res: ProxyBenchResult, name: 'porthole' | 'porthole-tls'): { header: string[]; rows: string[][] } | undefined {
  const ph = res.paths.find((p) => p.name === name && p.ok);
  if (!ph) return undefined;
  const others = res.paths.filter((p) => !p.name.startsWith('porthole') && p.ok);
  if (others.length === 0) return undefined;
  const n = res.options.connections;
  const k = res.options.streams;
  const metrics: [string, (p: PathResult) => number | undefined][] = [
    ['download MB/s', (p) => p.download.medianMBps],
    ['upload MB/s', (p) => p.upload.medianMBps],
    [`download MB/s (${k} at once)`, (p) => p.downloadN.medianMBps],
    [`upload MB/s (${k} at once)`, (p) => p.uploadN.medianMBps],
    ['p50 latency (1 conn)', (p) => p.latency1?.p50Ms],
    [`p99 latency (${n} conn)`, (p) => p.latencyN?.p99Ms],
    [`req/s (${n} conn)`, (p) => p.latencyN?.rps],
    ['WS echo p50', (p) => p.echo?.p50Ms],
  ];
  const rows = metrics.map(([label, f]) => [label, ...others.map((o) => ratio(f(ph), f(o)))]);
  const ssh = others.find((o) => o.name === 'ssh');
  if (ssh) rows.push(['far-end CPU/GiB (agent ÷ sshd)', ...others.map((o) => (o === ssh ? ratio(ph.farEnd?.secPerGiB, ssh.farEnd?.secPerGiB) : '–'))]);
  rows.push(['all processes CPU/GiB', ...others.map((o) => ratio(ph.allProcesses?.secPerGiB, o.allProcesses?.secPerGiB))]);
  return { header: [`${ph.label} ÷`, ...others.map((o) => o.label)], rows };
}

const verdict = (g: Goal) => (g.pass === undefined ? 'N/A ' : g.pass ? 'PASS' : 'FAIL');

function describeRun(res: ProxyBenchResult): string {
  const o = res.options;
  return (
    `All paths are up at once and each measurement runs in ${o.runs} rounds over all of them, so this shared machine's busy and quiet spells fall on every path alike: ` +
    `${o.sizeMiB} MiB transfers on one connection and split over ${o.streams} at once (the median round), small GETs for ${o.latency1Ms / 1000} s ` +
    `on 1 and ${o.latencyNMs / 1000} s on ${o.connections} keep-alive connections (the round with the median p50, and with the median req/s), ${o.echoMessages} WebSocket echo round trips of 128 bytes one at a time; all on 127.0.0.1; ` +
    `${res.environment.cpus}× ${res.environment.cpuModel}, Node ${res.environment.node}, Linux ${res.environment.kernel}; ` +
    `${res.date}, ${Math.round(res.durationSeconds)} s.`
  );
}

/** The result as plain text: the table, Porthole's ratios, the goals, and any failures. */
export function renderProxyText(res: ProxyBenchResult): string {
  const out: string[] = ['Porthole proxy benchmark', describeRun(res), ''];
  const m = mainRows(res);
  out.push(textTable(m.header, m.rows), '');
  for (const name of ['porthole', 'porthole-tls'] as const) {
    const r = ratioRows(res, name);
    if (r) out.push(textTable(r.header, r.rows), '');
  }
  for (const g of res.goals) out.push(`${verdict(g)}  ${g.description}: ${g.detail}`);
  const notes = [...new Set(res.paths.flatMap((p) => p.notes))];
  for (const p of res.paths) if (!p.ok) out.push(`\n${p.label} failed: ${p.error}`);
  if (notes.length) out.push('', ...notes.map((n) => `note: ${n}`));
  out.push(
    '',
    'CPU s/GiB: user+system CPU seconds per GiB moved, downloads and uploads averaged (↓ download, ↑ upload); far end = the printer side',
    '(sshd for ssh -L, the agent for Porthole), near end = the other side (ssh client, relay; nginx itself; the origin when direct);',
    'all processes = the load client (the phone\'s part), both ends and the origin: with every core busy, throughput is about cores ÷ this.',
  );
  return out.join('\n');
}

/** The result as markdown, for bench/README.md. */
export function renderProxyMarkdown(res: ProxyBenchResult): string {
  const out: string[] = ['### Proxy benchmark', '', describeRun(res), ''];
  const m = mainRows(res);
  out.push(markdownTable(m.header, m.rows), '');
  for (const name of ['porthole', 'porthole-tls'] as const) {
    const r = ratioRows(res, name);
    if (r) out.push(markdownTable(r.header, r.rows), '');
  }
  for (const g of res.goals) out.push(`- **${verdict(g).trim()}** ${g.description}: ${g.detail}`);
  for (const p of res.paths) if (!p.ok) out.push(`- ${p.label} failed: \`${(p.error ?? '').split('\n')[0]}\``);
  out.push(
    '',
    'CPU s/GiB is user+system CPU seconds per GiB moved, downloads and uploads averaged (↓ download only, ↑ upload only). The far end is the side ' +
      'that runs on the printer: sshd for `ssh -L`, the agent for Porthole; the near end is the ssh client, the relay, ' +
      'nginx itself, or the origin for the direct path. "All processes" adds the load client (this bench process, in the part of the phone: ' +
      'it reads or sends the bytes, over HTTPS for Porthole TLS) and the origin: every process the bytes pass through. They share this ' +
      "machine's cores, so once the cores are busy a path's throughput is about the number of cores ÷ that figure, whichever process spends it. " +
      'On a real deployment they run on three machines (phone, relay, Pi), and only the far end runs on the Pi.',
  );
  return out.join('\n');
}

benchMain<ProxyBenchOptions, ProxyBenchResult>(import.meta.url, {
  name: 'proxy',
  usage: '[--size MiB] [--runs N] [--streams N] [--connections N] [--paths direct,nginx,ssh,porthole,porthole-tls]',
  flags: {
    '--size': (o, v) => (o.sizeMiB = Number(v())),
    '--runs': (o, v) => (o.runs = Number(v())),
    '--streams': (o, v) => (o.streams = Number(v())),
    '--connections': (o, v) => (o.connections = Number(v())),
    '--paths': (o, v) => {
      o.paths = v().split(',') as PathName[];
      for (const p of o.paths) if (!ALL_PATHS.includes(p)) throw new Error(`unknown path ${p}`);
    },
  },
  quick: { sizeMiB: 32, runs: 1, latency1Ms: 1_000, latencyNMs: 1_500, warmupMiB: 4, echoMessages: 300 },
  limitMs: 20 * 60_000,
  run: benchProxy,
  text: renderProxyText,
  markdown: renderProxyMarkdown,
});
