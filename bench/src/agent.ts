// The agent's resident memory, the figure that decides whether a Pi 3 (1 GB) copes: the real
// agent bundle (apps/agent/dist/porthole-agent.cjs, what the Pi runs) under this Node and under
// Debian's Node 18 when test/scripts/debian-node18.sh has unpacked it, idle and while a
// 256 MiB download, a 256 MiB upload and a webcam viewer run through it at once.
// `node bench/dist/agent.js [--quick] [--size MiB] [--json FILE] [--markdown FILE]`.
import { existsSync } from 'node:fs';
import http from 'node:http';
import { agentBundle, stopAll } from '@porthole/e2e/procs';
import { anonRssBytes, peakSampler, rssBytes } from './lib/cpu.js';
import { download, upload } from './lib/load.js';
import type { Target } from './lib/load.js';
import { installedAgentEnv, envText } from './lib/agent-unit.js';
import { benchMain, verdict } from './lib/cli.js';
import { startMjpegSource } from './lib/mjpeg-source.js';
import { startBenchOrigin } from './lib/origin.js';
import { portholePath } from './lib/paths.js';
import { fmt, markdownTable, median, textTable } from './lib/stats.js';
import { execFileSync } from 'node:child_process';
import { machine, type Machine } from './lib/machine.js';

export interface AgentMemoryOptions {
  sizeMiB?: number;
  /** Seconds the idle agent is sampled. Default 5. */
  idleSeconds?: number;
  /** NODE_OPTIONS for the agent (to try V8 settings, e.g. --max-semi-space-size=1). Default none. */
  agentNodeOptions?: string;
  log?: (line: string) => void;
}

export interface AgentMemoryRow {
  node: string;
  version: string;
  /** Started as the systemd unit starts it (its Environment= lines), or as a bare `node`. */
  installed: boolean;
  /** The environment it had beyond this process's. */
  env: string;
  idleRss: number;
  loadPeakRss: number;
  /** RssAnon: the private part of those (heap, buffers), without Node's file-backed code pages. */
  idleAnon: number;
  loadPeakAnon: number;
  /** Webcam bytes the viewer got during the load, and the transfers' MB/s. */
  webcamBytes: number;
  downMBps: number;
  upMBps: number;
  error?: string;
}

export interface AgentMemoryResult {
  date: string;
  durationSeconds: number;
  environment: Machine;
  options: Required<Omit<AgentMemoryOptions, 'log'>>;
  rows: AgentMemoryRow[];
  notes: string[];
  goals: { description: string; pass: boolean | undefined; detail: string }[];
}

const MiB = 1024 * 1024;
const NODE18 = process.env.PORTHOLE_NODE18_ROOT ? `${process.env.PORTHOLE_NODE18_ROOT}/node` : '/opt/porthole-node18/node';

/** Reads the webcam stream through the relay until stopped; counts bytes. */
function watch(t: Target): { stop(): number } {
  let bytes = 0;
  const req = http.request(
    { host: t.address ?? '127.0.0.1', port: t.port, path: '/webcam/?action=stream', headers: { host: t.host, cookie: t.cookie ?? '' }, agent: false },
    (res) => {
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('error', () => undefined);
    },
  );
  req.on('error', () => undefined);
  req.end();
  return {
    stop() {
      req.destroy();
      return bytes;
    },
  };
}

/** One agent: as installed (the systemd unit's environment) or a bare `node porthole-agent.cjs run`. */
async function measure(node: string, installed: boolean, o: AgentMemoryResult['options'], log: (s: string) => void): Promise<AgentMemoryRow> {
  const unitEnv = installed ? installedAgentEnv() : {};
  const env = { ...unitEnv, ...(o.agentNodeOptions !== '' ? { NODE_OPTIONS: o.agentNodeOptions } : {}) };
  const shown = envText(env);
  const version = execFileSync(node, ['--version'], { encoding: 'utf8', timeout: 30_000 }).trim();
  const origin = await startBenchOrigin();
  const camera = await startMjpegSource({ fps: 15, width: 640, height: 480 });
  let path: Awaited<ReturnType<typeof portholePath>> | undefined;
  try {
    path = await portholePath(origin.port, {
      agentNode: node,
      agentCli: agentBundle,
      webcam: camera.url,
      agentEnv: env,
      agentUnitEnv: false,
    });
    const pid = path.agent.pid;
    await download(path.target, 4 * MiB);
    const samples: number[] = [];
    const anonSamples: number[] = [];
    for (let i = 0; i < o.idleSeconds * 2; i++) {
      await new Promise((r) => setTimeout(r, 500));
      samples.push(rssBytes(pid));
      anonSamples.push(anonRssBytes(pid));
    }
    const idleRss = median(samples);
    const idleAnon = median(anonSamples);
    log(`  ${version}: idle ${fmt(idleRss / 1e6, 1)} MB; now ${o.sizeMiB} MiB down + ${o.sizeMiB} MiB up + a webcam viewer at once`);
    const peak = peakSampler(() => rssBytes(pid), 50);
    const peakAnon = peakSampler(() => anonRssBytes(pid), 50);
    const viewer = watch(path.target);
    const [d, u] = await Promise.all([download(path.target, o.sizeMiB * MiB), upload(path.target, o.sizeMiB * MiB)]);
    const webcamBytes = viewer.stop();
    const loadPeakRss = peak.stop();
    const loadPeakAnon = peakAnon.stop();
    log(`  ${version}: peak ${fmt(loadPeakRss / 1e6, 1)} MB (download ${fmt(d.mbps)} MB/s, upload ${fmt(u.mbps)} MB/s, webcam ${fmt(webcamBytes / 1e6, 1)} MB)`);
    return { node, version, installed, env: shown, idleRss, loadPeakRss, idleAnon, loadPeakAnon, webcamBytes, downMBps: d.mbps, upMBps: u.mbps };
  } finally {
    await path?.stop();
    await camera.close();
    await origin.close();
  }
}

export async function benchAgentMemory(opts: AgentMemoryOptions = {}): Promise<AgentMemoryResult> {
  const started = Date.now();
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const o: AgentMemoryResult['options'] = { sizeMiB: opts.sizeMiB ?? 256, idleSeconds: opts.idleSeconds ?? 5, agentNodeOptions: opts.agentNodeOptions ?? '' };
  const notes: string[] = [];
  const nodes = [process.execPath];
  if (existsSync(NODE18)) nodes.push(NODE18);
  else notes.push(`Debian's Node 18 not found at ${NODE18} (sh test/scripts/debian-node18.sh unpacks it); measured with ${process.version} only`);
  const rows: AgentMemoryRow[] = [];
  try {
    for (const [node, installed] of nodes.flatMap((n) => [[n, true], [n, false]] as const)) {
      try {
        rows.push(await measure(node, installed, o, log));
      } catch (err) {
        log(`agent on ${node}: FAILED: ${(err as Error).stack ?? String(err)}`);
        rows.push({ node, version: '?', installed, env: '', idleRss: NaN, loadPeakRss: NaN, idleAnon: NaN, loadPeakAnon: NaN, webcamBytes: 0, downMBps: NaN, upMBps: NaN, error: (err as Error).message.split('\n')[0] });
      }
    }
  } finally {
    await stopAll();
  }
  const shipped = rows.filter((r) => r.installed);
  const worst = shipped.filter((r) => Number.isFinite(r.loadPeakAnon)).sort((a, b) => b.loadPeakAnon - a.loadPeakAnon)[0];
  const idleWorst = shipped.filter((r) => Number.isFinite(r.idleRss)).sort((a, b) => b.idleRss - a.idleRss)[0];
  return {
    date: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    environment: machine(),
    options: o,
    rows,
    notes,
    goals: [
      {
        description: 'agent resident memory < 60 MB idle',
        pass: idleWorst === undefined ? undefined : idleWorst.idleRss < 60e6,
        detail: idleWorst === undefined ? 'not measured' : `worst ${fmt(idleWorst.idleRss / 1e6, 1)} MB (${idleWorst.version})`,
      },
      {
        description: "agent private memory < 60 MB under load (transfers both ways + webcam; RSS without Node's file-backed code)",
        pass: worst === undefined ? undefined : worst.loadPeakAnon < 60e6,
        detail:
          worst === undefined
            ? 'not measured'
            : `worst peak ${fmt(worst.loadPeakAnon / 1e6, 1)} MB private, ${fmt(worst.loadPeakRss / 1e6, 1)} MB RSS (${worst.version})`,
      },
    ],
  };
}

function table(res: AgentMemoryResult): { header: string[]; rows: string[][] } {
  return {
    header: ['Node', 'agent started', 'idle RSS MB', 'of it private', 'peak RSS MB under load', 'of it private', 'download MB/s', 'upload MB/s', 'webcam MB meanwhile'],
    rows: res.rows.map((r) =>
      r.error !== undefined
        ? [r.node, r.installed ? 'as installed' : 'bare node', 'failed', '–', '–', '–', '–', '–', '–']
        : [
            r.version,
            r.installed ? 'as installed' : 'bare node',
            fmt(r.idleRss / 1e6, 1),
            fmt(r.idleAnon / 1e6, 1),
            fmt(r.loadPeakRss / 1e6, 1),
            fmt(r.loadPeakAnon / 1e6, 1),
            fmt(r.downMBps),
            fmt(r.upMBps),
            fmt(r.webcamBytes / 1e6, 1),
          ],
    ),
  };
}

function describe(res: AgentMemoryResult): string {
  return (
    `The agent bundle (apps/agent/dist/porthole-agent.cjs) behind a relay on 127.0.0.1, with a UI and a 640×480 15 fps MJPEG camera; ` +
    `idle: median RSS over ${res.options.idleSeconds} s after one small transfer; under load: the peak (sampled every 50 ms) while a ` +
    `${res.options.sizeMiB} MiB download, a ${res.options.sizeMiB} MiB upload and a webcam viewer run at once. MB = 10^6 bytes. ` +
    `Each Node runs the agent as installed (the Environment= lines of deploy/agent/porthole-agent.service, which systemd starts it with on a Pi) ` +
    `(${envText(installedAgentEnv())}) and, for comparison, as a bare \`node porthole-agent.cjs run\`; the goals judge the installed rows. ` +
    `"Of it private" is RssAnon (heap, buffers, stacks): what the agent itself costs; the rest of RSS is file-backed, the Node binary's and ` +
    `libraries' code, the same for any Node program, clean pages the kernel drops under memory pressure and reads back when needed. ` +
    `Idle is judged on RSS; under load on the private part, because while transfers run the file-backed part grows with the code they touch ` +
    `(about 40 MB of Node itself), which no setting of the agent's can change. ` +
    `${res.options.agentNodeOptions !== '' ? `Agent NODE_OPTIONS: ${res.options.agentNodeOptions}. ` : ''}${res.environment.cpus}× ${res.environment.cpuModel}, Linux ${res.environment.kernel}; ${res.date}, ${Math.round(res.durationSeconds)} s.`
  );
}

export function renderAgentText(res: AgentMemoryResult): string {
  const t = table(res);
  const out = ['Porthole agent memory benchmark', describe(res), '', textTable(t.header, t.rows), ''];
  for (const g of res.goals) out.push(`${verdict(g.pass)}  ${g.description}: ${g.detail}`);
  for (const n of res.notes) out.push(`note: ${n}`);
  for (const r of res.rows) if (r.error) out.push(`${r.node} failed: ${r.error}`);
  return out.join('\n');
}

export function renderAgentMarkdown(res: AgentMemoryResult): string {
  const t = table(res);
  const out = ['### Agent memory', '', describe(res), '', markdownTable(t.header, t.rows), ''];
  for (const g of res.goals) out.push(`- **${verdict(g.pass)}** ${g.description}: ${g.detail}`);
  for (const n of res.notes) out.push(`- note: ${n}`);
  for (const r of res.rows) if (r.error) out.push(`- ${r.node} failed: \`${r.error}\``);
  return out.join('\n');
}

benchMain<AgentMemoryOptions, AgentMemoryResult>(import.meta.url, {
  name: 'agent',
  usage: '[--size MiB] [--agent-node-options OPTS]',
  flags: {
    '--size': (o, v) => (o.sizeMiB = Number(v())),
    '--agent-node-options': (o, v) => (o.agentNodeOptions = v()),
  },
  quick: { sizeMiB: 64, idleSeconds: 2 },
  limitMs: 10 * 60_000,
  run: benchAgentMemory,
  text: renderAgentText,
  markdown: renderAgentMarkdown,
});
