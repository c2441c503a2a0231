// The scale benchmark: many simulated agents (lib/sim-agents.ts: the real WebSocket, yamux
// session, hello and backoff of the agent, a tiny responder instead of services) on one relay.
// Measures the relay's memory per idle tunnel and its CPU with keep-alives at 1,000 and 5,000
// tunnels, then requests through 100 of them at once, then how long 1,000 agents take to be
// back after the relay restarts. `node bench/dist/scale.js [--quick] [--agents 1000,5000]
// [--active N] [--reconnect N] [--json FILE] [--markdown FILE]`.
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { addDevice, relayCommand, repoRoot, startRelay, stopAll, tempDir } from '@porthole/e2e/procs';
import type { RelayProcess } from '@porthole/e2e/procs';
import { rm } from 'node:fs/promises';
import { processCpuSeconds, rssBytes } from './lib/cpu.js';
import { INSPECT_OPTIONS, inspectorUrl, memoryAfterGc } from './lib/inspect.js';
import type { MemoryAfterGc } from './lib/inspect.js';
import { latency } from './lib/load.js';
import type { LatencyResult } from './lib/load.js';
import { benchMain, verdict } from './lib/cli.js';
import { signInMany } from './lib/signin.js';
import { startSimAgents } from './lib/sim-agents.js';
import type { SimAgents, SimConfig } from './lib/sim-agents.js';
import { fmt, markdownTable, percentile, textTable } from './lib/stats.js';
import { machine, type Machine } from './lib/machine.js';

export interface ScaleOptions {
  /** Tunnel counts to measure idle, ascending. Default [1000, 5000]. */
  agents?: number[];
  /** Agents with requests through them at the largest count. Default 100. */
  active?: number;
  /** Agents that reconnect after a relay restart. Default 1000. */
  reconnect?: number;
  /** Seconds over which idle CPU is measured. Default 20. */
  idleSeconds?: number;
  /** Seconds of requests through the active agents. Default 10. */
  activeSeconds?: number;
  log?: (line: string) => void;
}

export interface IdleStep {
  tunnels: number;
  /** Seconds until all were connected (this step's new ones). */
  connectSeconds: number;
  /** The relay's memory after a forced full GC. */
  memory: MemoryAfterGc;
  /** (RSS − RSS with no tunnel) ÷ tunnels, after GC. */
  bytesPerTunnel: number;
  /** (JS heap + external − the same with no tunnel) ÷ tunnels, after GC. */
  heapPerTunnel: number;
  /** RSS growth since the previous step ÷ the tunnels added. */
  marginalPerTunnel: number;
  /** Relay CPU over the idle window, % of one core. */
  cpuPercent: number;
  failures: Record<string, number>;
}

export interface ReconnectResult {
  agents: number;
  back: number;
  /** ms from the new relay's "listening" until each agent was connected again. */
  fromListeningMs: { p50: number; p90: number; max: number; min: number };
  /** ms the relay was down (the old one gone until the new one listening). */
  downMs: number;
  failures: Record<string, number>;
}

export interface ScaleResult {
  date: string;
  durationSeconds: number;
  environment: Machine & { fdLimit: string };
  options: Required<Omit<ScaleOptions, 'log'>>;
  baseline: MemoryAfterGc | undefined;
  idle: IdleStep[];
  active?: LatencyResult & { rssBytes: number; cpuPercent: number };
  reconnect?: ReconnectResult;
  goals: { description: string; pass: boolean | undefined; detail: string }[];
  notes: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/** Creates `n` devices owned by `owner` straight in the relay's database, as `device add` would. */
async function seedDevices(relay: RelayProcess, n: number): Promise<{ slug: string; credential: string }[]> {
  // The template: one device made by the relay's own CLI (so formats match), then rows like it.
  const first = await addDevice(relay, { name: 'sim 0', slug: 'sim-0', owner: 'bench' });
  const devices = [{ slug: first.slug, credential: first.credential }];
  const mod = (await import(pathToFileURL(resolve(repoRoot, 'apps/relay/dist/devices.js')).href)) as {
    newCredential(): { credential: string; credentialId: string; hash: string };
  };
  const db = new Database(join(relay.dataDir, 'porthole.db'));
  try {
    db.pragma('busy_timeout = 10000');
    const tmpl = db.prepare('SELECT createdAt FROM Device WHERE slug = ?').get('sim-0') as { createdAt: unknown };
    const m = db.prepare('SELECT userId, role, createdAt FROM Membership WHERE deviceId = ?').get(first.id) as {
      userId: string;
      role: string;
      createdAt: unknown;
    };
    const addDev = db.prepare('INSERT INTO Device (id, name, slug, credentialId, credentialHash, createdAt) VALUES (?, ?, ?, ?, ?, ?)');
    const addMember = db.prepare('INSERT INTO Membership (userId, deviceId, role, createdAt) VALUES (?, ?, ?, ?)');
    db.transaction(() => {
      for (let i = 1; i < n; i++) {
        const id = randomUUID();
        const c = mod.newCredential();
        addDev.run(id, `sim ${i}`, `sim-${i}`, c.credentialId, c.hash, tmpl.createdAt);
        addMember.run(m.userId, id, m.role, m.createdAt);
        devices.push({ slug: `sim-${i}`, credential: c.credential });
      }
    })();
  } finally {
    db.close();
  }
  return devices;
}

/** 127.1.x.y for agent i: every simulated printer dials from an address of its own. */
const sourceAddress = (i: number) => `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

const merge = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  return into;
};

export async function benchScale(opts: ScaleOptions = {}): Promise<ScaleResult> {
  const started = Date.now();
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const o: ScaleResult['options'] = {
    agents: opts.agents ?? [1000, 5000],
    active: opts.active ?? 100,
    reconnect: opts.reconnect ?? 1000,
    idleSeconds: opts.idleSeconds ?? 20,
    activeSeconds: opts.activeSeconds ?? 10,
  };
  const total = Math.max(...o.agents, o.reconnect, o.active);
  const notes: string[] = [];
  const { execFileSync } = await import('node:child_process');
  const fdLimit = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  if (fdLimit !== 'unlimited' && Number(fdLimit) < total + 1000) {
    notes.push(`file-descriptor limit ${fdLimit} is below ${total + 1000}: raise it (ulimit -n) for ${total} tunnels`);
  }
  const dataDir = await tempDir('porthole-bench-scale-');
  const groups: SimAgents[] = [];
  const idle: IdleStep[] = [];
  let relay: RelayProcess | undefined;
  let baseline: MemoryAfterGc | undefined;
  let active: ScaleResult['active'];
  let reconnect: ReconnectResult | undefined;
  try {
    const inspect = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${INSPECT_OPTIONS}`.trim() };
    relay = await startRelay({ dataDir, env: inspect });
    const inspector = await inspectorUrl(relay);
    const password = 'measure twice, print once';
    await relayCommand(relay, ['user', 'add', '--username', 'bench', '--password-stdin'], 30_000, password);
    log(`seeding ${total} devices`);
    const devices = await seedDevices(relay, total);
    // The groups: one process per 1,000 agents (fewer when the counts need), started in order.
    const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
    const per = [...o.agents, o.reconnect].filter((x) => x > 0).reduce(gcd, 1000);
    for (let g = 0; g * per < total; g++) {
      const cfg: SimConfig = {
        relayPort: relay.port,
        concurrency: 50,
        agents: devices.slice(g * per, (g + 1) * per).map((d, k) => ({ ...d, localAddress: sourceAddress(g * per + k) })),
      };
      const file = join(dataDir, `sim-${g}.json`);
      await writeFile(file, JSON.stringify(cfg));
      groups.push(await startSimAgents(file));
    }
    const connectedIn = async (gs: SimAgents[]) => (await Promise.all(gs.map((g) => g.stats()))).reduce((s, x) => s + x.connected, 0);
    await sleep(2_000);
    baseline = await memoryAfterGc(inspector);
    const base = baseline;
    const heapOf = (m: MemoryAfterGc) => m.heapUsed + m.external;
    let prevRss = base.rss;
    let prevN = 0;
    log(`relay RSS with no tunnel: ${fmt(base.rss / 2 ** 20)} MiB after GC`);

    let up = 0;
    for (const n of o.agents) {
      const want = groups.slice(Math.ceil(up / per), Math.ceil(n / per));
      log(`connecting agents ${up + 1}–${n}`);
      const t0 = performance.now();
      await Promise.all(want.map((g) => g.start()));
      const r = relay;
      await waitFor(async () => (await connectedIn(groups)) >= n, 300_000, `${n} agents connected`);
      const connectSeconds = (performance.now() - t0) / 1000;
      up = n;
      await sleep(5_000);
      const c0 = processCpuSeconds(r.pid);
      const w0 = performance.now();
      await sleep(o.idleSeconds * 1000);
      const cpuPercent = ((processCpuSeconds(r.pid) - c0) / ((performance.now() - w0) / 1000)) * 100;
      const memory = await memoryAfterGc(inspector);
      const rss = memory.rss;
      const failures = (await Promise.all(groups.map((g) => g.stats()))).reduce((f, s) => merge(f, s.failures), {} as Record<string, number>);
      const stillUp = await connectedIn(groups);
      if (stillUp < n) notes.push(`${n} tunnels: only ${stillUp} still connected after the idle window`);
      idle.push({
        tunnels: n,
        connectSeconds,
        memory,
        bytesPerTunnel: (rss - base.rss) / n,
        heapPerTunnel: (heapOf(memory) - heapOf(base)) / n,
        marginalPerTunnel: (rss - prevRss) / (n - prevN),
        cpuPercent,
        failures,
      });
      prevRss = rss;
      prevN = n;
      log(`  ${n} tunnels: connected in ${fmt(connectSeconds)} s; RSS ${fmt(rss / 2 ** 20)} MiB, ${fmt((rss - base.rss) / n / 1024, 1)} KiB per tunnel (heap ${fmt((heapOf(memory) - heapOf(base)) / n / 1024, 1)} KiB); CPU ${fmt(cpuPercent, 1)}%`);
    }

    if (o.active > 0) {
      log(`signing in to ${o.active} devices, then ${o.activeSeconds} s of requests through them`);
      const targets = await signInMany({ port: relay.port, domain: 'localhost', username: 'bench', password }, devices.slice(0, o.active).map((d) => d.slug));
      const r = relay;
      const c0 = processCpuSeconds(r.pid);
      const w0 = performance.now();
      const res = await latency(targets, { connections: o.active, durationMs: o.activeSeconds * 1000, warmupMs: 2_000 });
      const cpuPercent = ((processCpuSeconds(r.pid) - c0) / ((performance.now() - w0) / 1000)) * 100;
      active = { ...res, rssBytes: rssBytes(r.pid), cpuPercent };
      log(`  ${fmt(res.rps, 0)} req/s, p50 ${fmt(res.p50Ms, 2)} ms, p99 ${fmt(res.p99Ms, 2)} ms, ${res.errors} errors`);
    }

    if (o.reconnect > 0) {
      const keep = Math.ceil(o.reconnect / per);
      for (const g of groups.splice(keep)) await g.close();
      const stay = groups;
      await waitFor(async () => (await connectedIn(stay)) >= o.reconnect, 60_000, 'agents settled before the restart');
      const before = await Promise.all(stay.map((g) => g.stats()));
      log(`restarting the relay with ${o.reconnect} agents connected`);
      const port = relay.port;
      await relay.stop(15_000);
      const goneAt = Date.now();
      relay = await startRelay({ dataDir, port, env: inspect });
      const listeningAt = relay.findLogs('relay listening')[0]?.at ?? Date.now();
      await waitFor(
        async () => {
          const s = await Promise.all(stay.map((g) => g.stats()));
          return s.reduce((n, x) => n + x.connectedAt.filter((t) => t > goneAt).length, 0) >= o.reconnect;
        },
        180_000,
        `${o.reconnect} agents back after the restart`,
      ).catch((e: Error) => notes.push(e.message));
      const after = await Promise.all(stay.map((g) => g.stats()));
      const times = after.flatMap((s) => s.connectedAt.filter((t) => t > goneAt).map((t) => t - listeningAt));
      const failures: Record<string, number> = {};
      after.forEach((s, k) => {
        for (const [why, c] of Object.entries(s.failures)) {
          const d = c - (before[k]?.failures[why] ?? 0);
          if (d > 0) failures[why] = (failures[why] ?? 0) + d;
        }
      });
      reconnect = {
        agents: o.reconnect,
        back: times.length,
        fromListeningMs: { p50: percentile(times, 50), p90: percentile(times, 90), max: Math.max(...times), min: Math.min(...times) },
        downMs: listeningAt - goneAt,
        failures,
      };
      log(`  back: ${times.length}/${o.reconnect}; p50 ${fmt(reconnect.fromListeningMs.p50, 0)} ms, p90 ${fmt(reconnect.fromListeningMs.p90, 0)} ms, max ${fmt(reconnect.fromListeningMs.max, 0)} ms after listening`);
    }
  } finally {
    for (const g of groups) await g.close();
    await relay?.stop(5_000);
    await stopAll();
    await rm(dataDir, { recursive: true, force: true });
  }
  const largest = idle[idle.length - 1];
  const goals: ScaleResult['goals'] = [
    {
      description: 'idle tunnel costs the relay < 64 KiB of memory (RSS growth after GC ÷ tunnels, largest count)',
      pass: largest === undefined ? undefined : largest.bytesPerTunnel < 64 * 1024,
      detail:
        largest === undefined
          ? 'not measured'
          : `${fmt(largest.bytesPerTunnel / 1024, 1)} KiB per tunnel at ${largest.tunnels} (JS heap + external ${fmt(largest.heapPerTunnel / 1024, 1)} KiB)`,
    },
  ];
  return {
    date: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    environment: { ...machine(), fdLimit },
    options: o,
    baseline,
    idle,
    active,
    reconnect,
    goals,
    notes,
  };
}

const failText = (f: Record<string, number>) => {
  const e = Object.entries(f);
  return e.length === 0 ? 'none' : e.map(([k, v]) => `${v}× ${k}`).join(', ');
};

function tables(res: ScaleResult): { header: string[]; rows: string[][] }[] {
  const out = [
    {
      header: ['idle tunnels', 'connected in s', 'relay RSS MiB', 'heap + external MiB', 'RSS KiB per tunnel', 'heap KiB per tunnel', 'RSS KiB per added tunnel', 'relay CPU % (idle, keep-alives)', 'failed dials'],
      rows: [
        ['0', '–', fmt((res.baseline?.rss ?? NaN) / 2 ** 20), fmt(((res.baseline?.heapUsed ?? NaN) + (res.baseline?.external ?? NaN)) / 2 ** 20), '–', '–', '–', '–', '–'],
        ...res.idle.map((s) => [
          String(s.tunnels),
          fmt(s.connectSeconds),
          fmt(s.memory.rss / 2 ** 20),
          fmt((s.memory.heapUsed + s.memory.external) / 2 ** 20),
          fmt(s.bytesPerTunnel / 1024, 1),
          fmt(s.heapPerTunnel / 1024, 1),
          fmt(s.marginalPerTunnel / 1024, 1),
          fmt(s.cpuPercent, 1),
          failText(s.failures),
        ]),
      ],
    },
  ];
  if (res.active) {
    const a = res.active;
    out.push({
      header: ['active devices', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'errors', 'relay CPU %', 'relay RSS MiB'],
      rows: [[String(res.options.active), fmt(a.rps, 0), fmt(a.p50Ms, 2), fmt(a.p90Ms, 2), fmt(a.p99Ms, 2), String(a.errors), fmt(a.cpuPercent, 0), fmt(a.rssBytes / 2 ** 20)]],
    });
  }
  if (res.reconnect) {
    const r = res.reconnect;
    out.push({
      header: ['reconnect', 'back', 'relay down ms', 'first ms', 'p50 ms', 'p90 ms', 'max ms', 'failed dials meanwhile'],
      rows: [[`${r.agents} agents`, String(r.back), fmt(r.downMs, 0), fmt(r.fromListeningMs.min, 0), fmt(r.fromListeningMs.p50, 0), fmt(r.fromListeningMs.p90, 0), fmt(r.fromListeningMs.max, 0), failText(r.failures)]],
    });
  }
  return out;
}

function describe(res: ScaleResult): string {
  return (
    `Simulated agents (the agent's WebSocket options, yamux session settings, hello and backoff; a tiny responder instead of services), ` +
    `each dialling from its own 127.1.x.y address, up to 1,000 per process, on one relay on 127.0.0.1; idle CPU over ${res.options.idleSeconds} s ` +
    `with the default keep-alives (15 s); ${res.options.activeSeconds} s of small GETs through ${res.options.active} of them, one keep-alive connection each; ` +
    `then the relay restarted (SIGTERM, GoAway, a new process on the same port and database) with ${res.options.reconnect} agents connected. ` +
    `Memory is read after a forced full GC (the relay runs with --inspect on 127.0.0.1; HeapProfiler.collectGarbage, then process.memoryUsage()); ` +
    `per tunnel: growth over the relay with none ÷ tunnels; per added tunnel: growth since the previous row ÷ the tunnels added. ` +
    `${res.environment.cpus}× ${res.environment.cpuModel}, Node ${res.environment.node}, Linux ${res.environment.kernel}, ulimit -n ${res.environment.fdLimit}; ` +
    `${res.date}, ${Math.round(res.durationSeconds)} s.`
  );
}

export function renderScaleText(res: ScaleResult): string {
  const out = ['Porthole scale benchmark', describe(res), ''];
  for (const t of tables(res)) out.push(textTable(t.header, t.rows), '');
  for (const g of res.goals) out.push(`${verdict(g.pass)}  ${g.description}: ${g.detail}`);
  for (const n of res.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

export function renderScaleMarkdown(res: ScaleResult): string {
  const out = ['### Scale: many agents on one relay', '', describe(res), ''];
  for (const t of tables(res)) out.push(markdownTable(t.header, t.rows), '');
  for (const g of res.goals) out.push(`- **${verdict(g.pass)}** ${g.description}: ${g.detail}`);
  for (const n of res.notes) out.push(`- note: ${n}`);
  out.push(
    '',
    'Reconnect times count from the moment the new relay logged "listening"; the agents follow the real agent\'s backoff ' +
      '(full jitter from 500 ms doubling to 60 s; a GoAway is answered with one prompt redial, which fails while the relay is down).',
  );
  return out.join('\n');
}

benchMain<ScaleOptions, ScaleResult>(import.meta.url, {
  name: 'scale',
  usage: '[--agents 1000,5000] [--active N] [--reconnect N]',
  flags: {
    '--agents': (o, v) => (o.agents = v().split(',').map(Number)),
    '--active': (o, v) => (o.active = Number(v())),
    '--reconnect': (o, v) => (o.reconnect = Number(v())),
  },
  quick: { agents: [200, 500], active: 20, reconnect: 200, idleSeconds: 5, activeSeconds: 3 },
  limitMs: 20 * 60_000,
  run: benchScale,
  text: renderScaleText,
  markdown: renderScaleMarkdown,
});
