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
  /** Timed transfers per direction (the median is reported). Default 3. */
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

async function benchPath(path: ProxyPath, originPid: number, o: ProxyBenchResult['options'], log: (s: string) => void): Promise<PathResult> {
  const r: PathResult = {
    name: path.name,
    label: path.label,
    ok: true,
    notes: [...path.notes],
    download: emptyTransfer(),
    upload: emptyTransfer(),
    downloadN: emptyTransfer(),
    uploadN: emptyTransfer(),
  };
  const size = o.sizeMiB * MiB;
  // The direct path's near end is the origin: counted once.
  const origin = path.nearEnd?.label === 'origin' ? undefined : { label: 'origin', meter: cpuMeter(() => [originPid]) };
  const client = { label: 'load client', meter: loadClientCpu };
  const sides = [path.farEnd, path.nearEnd, origin, client];
  const cpu: { down: (number | undefined)[]; up: (number | undefined)[] } = { down: [], up: [] };

  const farRss = path.farEnd?.rss;
  r.farRssIdle = farRss?.();
  const rssPeak = farRss !== undefined ? peakSampler(farRss) : undefined;
  log(`  ${path.label}: warm-up (${o.warmupMiB} MiB each way)`);
  await download(path.target, o.warmupMiB * MiB);
  await upload(path.target, o.warmupMiB * MiB);

  for (const dir of ['down', 'up'] as const) {
    const before = sides.map((s) => s?.meter());
    for (let i = 0; i < o.runs; i++) {
      const t = dir === 'down' ? await download(path.target, size) : await upload(path.target, size);
      (dir === 'down' ? r.download : r.upload).runsMBps.push(t.mbps);
      log(`  ${path.label}: ${dir === 'down' ? 'download' : 'upload'} ${i + 1}/${o.runs}: ${fmt(t.mbps)} MB/s`);
    }
    const after = sides.map((s) => s?.meter());
    cpu[dir] = sides.map((_, i) => {
      const a = after[i];
      const b = before[i];
      return a !== undefined && b !== undefined ? a - b : undefined;
    });
  }
  r.download.medianMBps = median(r.download.runsMBps);
  r.upload.medianMBps = median(r.upload.runsMBps);
  for (const dir of ['down', 'up'] as const) {
    const into = dir === 'down' ? r.downloadN : r.uploadN;
    for (let i = 0; i < o.runs; i++) {
      const t = await parallel(path.target, dir, o.streams, size);
      into.runsMBps.push(t.mbps);
      log(`  ${path.label}: ${o.streams} ${dir === 'down' ? 'downloads' : 'uploads'} at once ${i + 1}/${o.runs}: ${fmt(t.mbps)} MB/s`);
    }
    into.medianMBps = median(into.runsMBps);
  }
  r.farRssPeak = rssPeak?.stop();
  const gib = (size * o.runs) / GiB;
  const cpuResult = (i: number): CpuResult | undefined => {
    const side = sides[i];
    const d = cpu.down[i];
    const u = cpu.up[i];
    if (!side || d === undefined || u === undefined) return undefined;
    return { label: side.label, downSecPerGiB: d / gib, upSecPerGiB: u / gib, secPerGiB: (d + u) / (2 * gib) };
  };
  r.farEnd = cpuResult(0);
  r.nearEnd = cpuResult(1);
  const parts = sides.map((_, i) => cpuResult(i)).filter((c): c is CpuResult => c !== undefined);
  r.allProcesses = {
    label: parts.map((c) => c.label).join(' + '),
    downSecPerGiB: parts.reduce((t, c) => t + c.downSecPerGiB, 0),
    upSecPerGiB: parts.reduce((t, c) => t + c.upSecPerGiB, 0),
    secPerGiB: parts.reduce((t, c) => t + c.secPerGiB, 0),
  };

  log(`  ${path.label}: latency, 1 connection, ${o.latency1Ms / 1000} s`);
  r.latency1 = await latency(path.target, { connections: 1, durationMs: o.latency1Ms });
  log(`  ${path.label}: WebSocket echo, ${o.echoMessages} round trips`);
  r.echo = await wsEcho(path.target, { messages: o.echoMessages });
  return r;
}

/**
 * Small GETs on `connections` keep-alive connections, `runs` rounds, every path once per round
 * (all of them up at once): a neighbour's burst on this shared machine, or its quiet minutes,
 * fall on every path alike instead of on whichever path was being measured then. Each path
 * keeps the run with its median req/s, as the transfers keep their medians.
 */
async function loadedRounds(paths: { path: ProxyPath; result: PathResult }[], o: ProxyBenchResult['options'], log: (s: string) => void): Promise<void> {
  const runs = new Map<PathResult, LatencyResult[]>(paths.map((p) => [p.result, []]));
  for (let i = 0; i < o.runs; i++) {
    for (const { path, result } of paths) {
      try {
        const run = await latency(path.target, { connections: o.connections, durationMs: o.latencyNMs });
        runs.get(result)!.push(run);
        log(`  ${path.label}: latency, ${o.connections} connections, ${o.latencyNMs / 1000} s, round ${i + 1}/${o.runs}: ${fmt(run.rps)} req/s`);
      } catch (err) {
        result.notes.push(`${path.label}: a round of small GETs failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
  for (const [result, loaded] of runs) if (loaded.length > 0) result.latencyN = loaded.sort((a, b) => a.rps - b.rps)[(loaded.length - 1) >> 1];
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
    goals.push(
      goal(`${name}:download`, `${who} download throughput ≥ ssh -L's`, ph?.download.medianMBps, ssh?.download.medianMBps, (a, b) => a >= b, mbps),
      goal(`${name}:upload`, `${who} upload throughput ≥ ssh -L's`, ph?.upload.medianMBps, ssh?.upload.medianMBps, (a, b) => a >= b, mbps),
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
    runs: opts.runs ?? 3,
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
  // Every path stays up until the end, for the interleaved rounds of small GETs.
  const live: { path: ProxyPath; result: PathResult }[] = [];
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
        const result = await benchPath(path, origin.proc.pid, o, log);
        results.push(result);
        live.push({ path, result });
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
    log(`small GETs on ${o.connections} connections, ${o.runs} ${o.runs === 1 ? 'round' : 'rounds'} over every path`);
    await loadedRounds(live, o, log);
  } finally {
    for (const { path } of live) await path.stop();
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
    `${o.sizeMiB} MiB transfers on one connection and split over ${o.streams} at once (median of ${o.runs}), small GETs for ${o.latency1Ms / 1000} s ` +
    `on 1 and ${o.latencyNMs / 1000} s on ${o.connections} keep-alive connections (${o.runs} ${o.runs === 1 ? 'round' : 'rounds'} over every path, all of them up, the run with the median req/s), ${o.echoMessages} WebSocket echo round trips of 128 bytes one at a time; all on 127.0.0.1; ` +
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
