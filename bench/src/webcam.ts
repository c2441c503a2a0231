// The webcam benchmark: one 640×480 15 fps MJPEG source behind a real agent and relay, watched
// by 1 to 50 phones through Porthole while one more phone has stopped reading, and by one phone
// directly (the baseline). Per step: delivered fps per live viewer (median, minimum), the
// agent's upload (what the Pi pays) against one direct viewer's download, relay memory and CPU,
// and the latency a frame gains on the way (source write → viewer read, from a timestamp the
// source puts in each JPEG). All on 127.0.0.1, bounded in time.
// `node bench/dist/webcam.js [--quick] [--viewers 1,5,10,20,50] [--seconds N] [--json FILE] [--markdown FILE]`.
import { benchMain } from './lib/cli.js';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { signInToDevice } from '@porthole/e2e/auth';
import { readMjpeg } from '@porthole/e2e/mjpeg';
import { addDevice, agentConfig, relayCommand, startAgent, startRelay, stopAll } from '@porthole/e2e/procs';
import type { AgentProcess, RelayProcess } from '@porthole/e2e/procs';
import { cpuMeter } from './lib/cpu.js';
import { frameStamp, startMjpegSource } from './lib/mjpeg-source.js';
import type { MjpegSourceProcess, SourceStats } from './lib/mjpeg-source.js';
import { fmt, markdownTable, median, percentile, textTable } from './lib/stats.js';
import { machine, type Machine } from './lib/machine.js';

export interface WebcamBenchOptions {
  /** Live viewers through Porthole, one step each (cumulative). Default 1, 5, 10, 20, 50. */
  viewers?: number[];
  /** Measured seconds per step. Default 8. */
  seconds?: number;
  /** Settling time after viewers join, before measuring. Default 2 s. */
  warmupMs?: number;
  fps?: number;
  width?: number;
  height?: number;
  log?: (line: string) => void;
}

export interface WebcamStep {
  /** Live viewers through Porthole (plus one stalled, plus one direct). */
  viewers: number;
  seconds: number;
  /** Frames per second the source made. */
  sourceFps: number;
  /** Frames per second each live Porthole viewer received: median and minimum. */
  deliveredFps: { median: number; min: number };
  /** Source write → viewer read, ms. */
  latencyMs: { p50: number; p99: number };
  directLatencyMs: { p50: number; p99: number };
  /** p50 through Porthole minus p50 direct. */
  addedP50Ms: number;
  /** What the agent wrote to the tunnel (its whole upload: the Pi's cost), bytes/s. */
  agentUploadBps: number;
  /** What the source sent the agent (its upstream pulls), bytes/s, and how many pulls there were. */
  agentPullBps: number;
  upstreamPulls: number;
  /** What the source sent the one direct viewer, bytes/s. */
  directBps: number;
  relayRssMiB: number;
  relayCpuPct: number;
  agentCpuPct: number;
  /** The stalled phone, as the relay sees it. */
  stalled: { heldBytes: number; dropped: number; delivered: number } | undefined;
}

export interface WebcamGoal {
  id: 'rate' | 'upstream' | 'latency';
  description: string;
  pass: boolean | undefined;
  detail: string;
}

export interface WebcamBenchResult {
  date: string;
  durationSeconds: number;
  environment: Machine;
  options: { viewers: number[]; seconds: number; warmupMs: number; fps: number; width: number; height: number };
  /** Source JPEG sizes, bytes (min–max). */
  frameBytes: { min: number; max: number };
  relayRssBaselineMiB: number;
  /** How long the stalled viewer's socket buffers took to fill (until the relay first dropped a frame for it). */
  stallFillSeconds: number;
  steps: WebcamStep[];
  goals: WebcamGoal[];
}

const SLUG = 'benchcam';
const PATH = '/webcam/?action=stream';
const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Bytes a process wrote with write syscalls (sockets included): the agent's upload. */
function wcharOf(pid: number): number {
  const m = /wchar:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** A phone: reads an MJPEG stream, counts frames, and records each frame's age on arrival. */
interface Watcher {
  res: IncomingMessage;
  frames: number;
  localPort: number;
  latencies: number[] | undefined;
  error: string | undefined;
  close(): void;
}

function open(port: number, headers: Record<string, string>): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: PATH, headers, agent: false }, resolve);
    req.setTimeout(15_000, () => req.destroy(new Error('no response within 15 s')));
    req.on('response', () => req.setTimeout(0));
    req.on('error', reject);
  });
}

async function watcher(port: number, headers: Record<string, string>, read = true): Promise<Watcher> {
  const res = await open(port, headers);
  if (res.statusCode !== 200) throw new Error(`stream: status ${res.statusCode}`);
  const w: Watcher = { res, frames: 0, localPort: res.socket.localPort ?? 0, latencies: undefined, error: undefined, close: () => void res.destroy() };
  if (!read) {
    res.pause();
    return w;
  }
  void (async () => {
    try {
      for await (const f of readMjpeg(res)) {
        w.frames++;
        if (w.latencies !== undefined) {
          const s = frameStamp(f.body);
          if (s !== undefined) w.latencies.push(performance.timeOrigin + f.receivedAt - s.t);
        }
      }
    } catch (e) {
      if (!res.destroyed) w.error = (e as Error).message;
    }
  })();
  return w;
}

interface Rig {
  source: MjpegSourceProcess;
  relay: RelayProcess;
  agent: AgentProcess;
  cookie: string;
  host: string;
}

async function rig(o: Required<Omit<WebcamBenchOptions, 'log'>>): Promise<Rig> {
  const source = await startMjpegSource({ fps: o.fps, width: o.width, height: o.height });
  const relay = await startRelay({ env: { PORTHOLE_WEBCAM_GRACE_MS: '2000' } });
  const password = 'many eyes on one camera';
  await relayCommand(relay, ['user', 'add', '--username', 'owner', '--password-stdin'], 30_000, password);
  const device = await addDevice(relay, { name: SLUG, slug: SLUG, owner: 'owner' });
  // The printer's UI is not part of this benchmark: the source's small page stands in for it.
  const agent = await startAgent({ config: agentConfig({ relay, credential: device.credential, ui: source.url, webcam: source.url }) });
  // Watched as the owner: no viewer frame-rate cap, every request through the access check.
  const { cookie } = await signInToDevice(relay, { username: 'owner', password, slug: SLUG });
  return { source, relay, agent, cookie, host: `${SLUG}.localhost:${relay.port}` };
}

interface StalledStats {
  perViewer: { heldBytes: number; dropped: number; delivered: number }[];
}

async function relayWebcamStats(r: Rig): Promise<StalledStats | undefined> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port: r.relay.port, path: '/_porthole/webcam', headers: { host: r.host, cookie: r.cookie }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve((JSON.parse(Buffer.concat(chunks).toString()) as { cameras: StalledStats[] }).cameras[0]);
          } catch {
            resolve(undefined);
          }
        });
      })
      .on('error', () => resolve(undefined));
  });
}

function goalsOf(steps: WebcamStep[]): WebcamGoal[] {
  const known = steps.length > 0;
  const worstRate = steps.reduce((w, s) => Math.min(w, s.deliveredFps.min / s.sourceFps), Infinity);
  const worstUp = steps.reduce((w, s) => Math.max(w, s.agentUploadBps / s.directBps), 0);
  const worstLat = steps.reduce((w, s) => Math.max(w, s.addedP50Ms), -Infinity);
  const at = (f: (s: WebcamStep) => number, pick: 'min' | 'max') =>
    steps.reduce((a, s) => (a === undefined || (pick === 'min' ? f(s) < f(a) : f(s) > f(a)) ? s : a), undefined as WebcamStep | undefined);
  const rateAt = at((s) => s.deliveredFps.min / s.sourceFps, 'min');
  const upAt = at((s) => s.agentUploadBps / s.directBps, 'max');
  const latAt = at((s) => s.addedP50Ms, 'max');
  return [
    {
      id: 'rate',
      description: 'every live viewer gets ≥ 95% of the source frame rate (with one stalled viewer)',
      pass: known ? worstRate >= 0.95 : undefined,
      detail: rateAt ? `worst ${fmt(worstRate * 100, 1)}% (${fmt(rateAt.deliveredFps.min, 2)} of ${fmt(rateAt.sourceFps, 2)} fps, ${rateAt.viewers} viewers)` : 'not measured',
    },
    {
      id: 'upstream',
      description: "agent upload within 5% of one direct viewer's download, however many watch",
      pass: known ? worstUp <= 1.05 : undefined,
      detail: upAt ? `worst ${fmt(worstUp, 3)}× (${fmt(upAt.agentUploadBps / 1000, 0)} vs ${fmt(upAt.directBps / 1000, 0)} kB/s, ${upAt.viewers} viewers)` : 'not measured',
    },
    {
      id: 'latency',
      description: 'added frame latency p50 < 20 ms on loopback',
      pass: known ? worstLat < 20 : undefined,
      detail: latAt ? `worst +${fmt(worstLat, 2)} ms (${fmt(latAt.latencyMs.p50, 2)} vs ${fmt(latAt.directLatencyMs.p50, 2)} ms direct, ${latAt.viewers} viewers)` : 'not measured',
    },
  ];
}

/** Runs the benchmark. Always stops what it started. */
export async function benchWebcam(opts: WebcamBenchOptions = {}): Promise<WebcamBenchResult> {
  const started = Date.now();
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const o = {
    viewers: [...(opts.viewers ?? [1, 5, 10, 20, 50])].sort((a, b) => a - b),
    seconds: opts.seconds ?? 8,
    warmupMs: opts.warmupMs ?? 2_000,
    fps: opts.fps ?? 15,
    width: opts.width ?? 640,
    height: opts.height ?? 480,
  };
  if (o.viewers.some((n) => !Number.isInteger(n) || n < 1 || n > 200)) throw new Error('viewers must be whole numbers from 1 to 200');
  const steps: WebcamStep[] = [];
  const watchers: Watcher[] = [];
  let r: Rig | undefined;
  let baseline = NaN;
  let frameBytes = { min: NaN, max: NaN };
  let stallFillSeconds = NaN;
  try {
    log('webcam: starting the source, relay and agent');
    r = await rig(o);
    const rr = r;
    frameBytes = { min: Math.min(...rr.source.frameBytes), max: Math.max(...rr.source.frameBytes) };
    baseline = rssBytes(rr.relay.pid);
    const viaRelay = { host: rr.host, cookie: rr.cookie };
    const direct = await watcher(rr.source.port, {});
    watchers.push(direct);
    const stalled = await watcher(rr.relay.port, viaRelay, false);
    watchers.push(stalled);
    // Until the kernel's socket buffers for the stalled phone are full, it is not stalled yet as
    // far as the relay can tell: wait for the relay to start dropping its frames.
    log('webcam: waiting for the stalled viewer to fill its socket buffers');
    const fillStart = performance.now();
    for (;;) {
      const v = await relayWebcamStats(rr);
      if ((v?.perViewer ?? []).some((p) => p.dropped > 0)) break;
      if (performance.now() - fillStart > 90_000) throw new Error('the stalled viewer never filled its buffers within 90 s');
      await sleep(250);
    }
    stallFillSeconds = (performance.now() - fillStart) / 1000;
    log(`webcam: the relay started dropping for the stalled viewer after ${fmt(stallFillSeconds, 1)} s`);
    const live: Watcher[] = [];
    const relayCpu = cpuMeter(() => [rr.relay.pid]);
    const agentCpu = cpuMeter(() => [rr.agent.pid]);
    for (const n of o.viewers) {
      while (live.length < n) {
        const batch = await Promise.all(Array.from({ length: Math.min(10, n - live.length) }, () => watcher(rr.relay.port, viaRelay)));
        live.push(...batch);
        watchers.push(...batch);
      }
      log(`webcam: ${n} live viewer(s) + 1 stalled + 1 direct: settling ${o.warmupMs} ms, measuring ${o.seconds} s`);
      await sleep(o.warmupMs);
      const s0: SourceStats = await rr.source.stats();
      const w0 = wcharOf(rr.agent.pid);
      const c0 = { relay: relayCpu(), agent: agentCpu() };
      const f0 = live.map((w) => w.frames);
      for (const w of [direct, ...live]) w.latencies = [];
      const t0 = performance.now();
      let rssPeak = 0;
      while (performance.now() - t0 < o.seconds * 1000) {
        rssPeak = Math.max(rssPeak, rssBytes(rr.relay.pid));
        await sleep(200);
      }
      const secs = (performance.now() - t0) / 1000;
      const s1: SourceStats = await rr.source.stats();
      const w1 = wcharOf(rr.agent.pid);
      const c1 = { relay: relayCpu(), agent: agentCpu() };
      const f1 = live.map((w) => w.frames);
      const viaLatencies = live.flatMap((w) => w.latencies ?? []);
      const directLatencies = direct.latencies ?? [];
      for (const w of [direct, ...live]) w.latencies = undefined;
      const errors = watchers.map((w) => w.error).filter((e) => e !== undefined);
      if (errors.length > 0) throw new Error(`a viewer failed: ${errors[0]}`);
      const bytesOf = (s: SourceStats, pred: (port: number) => boolean) => s.clients.filter((c) => pred(c.remotePort)).reduce((a, c) => a + c.bytes, 0);
      const isDirect = (p: number) => p === direct.localPort;
      const pulls = s1.clients.filter((c) => c.open && !isDirect(c.remotePort)).length;
      const rates = f1.map((f, i) => (f - f0[i]!) / secs);
      const relayView = await relayWebcamStats(rr);
      const stalledView = relayView?.perViewer.reduce((a, v) => (a === undefined || v.dropped > a.dropped ? v : a), undefined as StalledStats['perViewer'][number] | undefined);
      const step: WebcamStep = {
        viewers: n,
        seconds: secs,
        sourceFps: (s1.framesMade - s0.framesMade) / secs,
        deliveredFps: { median: median(rates), min: Math.min(...rates) },
        latencyMs: { p50: percentile(viaLatencies, 50), p99: percentile(viaLatencies, 99) },
        directLatencyMs: { p50: percentile(directLatencies, 50), p99: percentile(directLatencies, 99) },
        addedP50Ms: percentile(viaLatencies, 50) - percentile(directLatencies, 50),
        agentUploadBps: (w1 - w0) / secs,
        agentPullBps: (bytesOf(s1, (p) => !isDirect(p)) - bytesOf(s0, (p) => !isDirect(p))) / secs,
        upstreamPulls: pulls,
        directBps: (bytesOf(s1, isDirect) - bytesOf(s0, isDirect)) / secs,
        relayRssMiB: rssPeak / MiB,
        relayCpuPct: ((c1.relay - c0.relay) / secs) * 100,
        agentCpuPct: ((c1.agent - c0.agent) / secs) * 100,
        stalled: stalledView === undefined ? undefined : { heldBytes: stalledView.heldBytes, dropped: stalledView.dropped, delivered: stalledView.delivered },
      };
      steps.push(step);
      log(
        `  ${n} viewers: ${fmt(step.deliveredFps.median, 2)} fps median, ${fmt(step.deliveredFps.min, 2)} min of ${fmt(step.sourceFps, 2)}; ` +
          `latency p50 ${fmt(step.latencyMs.p50, 2)} ms (direct ${fmt(step.directLatencyMs.p50, 2)}); agent up ${fmt(step.agentUploadBps / 1000, 0)} kB/s ` +
          `vs direct ${fmt(step.directBps / 1000, 0)} kB/s; relay ${fmt(step.relayRssMiB, 0)} MiB`,
      );
    }
  } finally {
    for (const w of watchers) w.close();
    await r?.agent.close();
    await r?.relay.close();
    await r?.source.close();
    await stopAll();
  }
  return {
    date: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    environment: machine(),
    options: o,
    frameBytes,
    relayRssBaselineMiB: baseline / MiB,
    stallFillSeconds,
    steps,
    goals: goalsOf(steps),
  };
}

function rows(res: WebcamBenchResult): { header: string[]; rows: string[][] } {
  const header = [
    'live viewers',
    'source fps',
    'delivered fps median',
    'delivered fps min',
    'latency p50 ms',
    'latency p99 ms',
    'direct p50 ms',
    'added p50 ms',
    'agent upload kB/s',
    'direct viewer kB/s',
    'upload ÷ direct',
    'pulls',
    'relay RSS MiB',
    'relay CPU %',
    'agent CPU %',
    'stalled: held kB / dropped',
  ];
  const body = res.steps.map((s) => [
    String(s.viewers),
    fmt(s.sourceFps, 2),
    fmt(s.deliveredFps.median, 2),
    fmt(s.deliveredFps.min, 2),
    fmt(s.latencyMs.p50, 2),
    fmt(s.latencyMs.p99, 2),
    fmt(s.directLatencyMs.p50, 2),
    `${s.addedP50Ms >= 0 ? '+' : ''}${fmt(s.addedP50Ms, 2)}`,
    fmt(s.agentUploadBps / 1000, 0),
    fmt(s.directBps / 1000, 0),
    `${fmt(s.agentUploadBps / s.directBps, 3)}×`,
    String(s.upstreamPulls),
    fmt(s.relayRssMiB, 0),
    fmt(s.relayCpuPct, 1),
    fmt(s.agentCpuPct, 1),
    s.stalled ? `${fmt(s.stalled.heldBytes / 1000, 0)} / ${s.stalled.dropped}` : '–',
  ]);
  return { header, rows: body };
}

const verdict = (g: WebcamGoal) => (g.pass === undefined ? 'N/A ' : g.pass ? 'PASS' : 'FAIL');

function describeRun(res: WebcamBenchResult): string {
  const o = res.options;
  return (
    `One ${o.width}×${o.height} ${o.fps} fps MJPEG source (JPEGs of ${res.frameBytes.min}–${res.frameBytes.max} bytes) behind a real agent and relay; ` +
    `at each step N live viewers through Porthole, one stalled viewer (connected, never reading) and one direct viewer; ` +
    `${o.seconds} s measured per step after ${o.warmupMs / 1000} s settling; all on 127.0.0.1; relay RSS before any viewer ${fmt(res.relayRssBaselineMiB, 0)} MiB; ` +
    `the stalled viewer's socket buffers took ${fmt(res.stallFillSeconds, 1)} s to fill before the relay had to drop its frames; ` +
    `${res.environment.cpus}× ${res.environment.cpuModel}, Node ${res.environment.node}, Linux ${res.environment.kernel}; ${res.date}, ${Math.round(res.durationSeconds)} s.`
  );
}

const NOTES =
  'Latency is the age of a frame when a viewer has read it whole: the source stamps its write time into each JPEG (a COM segment); ' +
  '"added" is Porthole p50 minus the direct viewer\'s p50 in the same step. Agent upload is everything the agent process wrote ' +
  '(/proc/PID/io wchar: the tunnel with its framing, plus its few log lines); the direct viewer\'s figure is what the source wrote to its socket. ' +
  '"pulls" counts the source\'s clients other than the direct viewer. The stalled viewer\'s "held" is what the relay keeps for it ' +
  '(its response and socket buffers plus the one newest frame it waits to send), from the owner\'s /_porthole/webcam.';

export function renderWebcamText(res: WebcamBenchResult): string {
  const out = ['Porthole webcam benchmark', describeRun(res), ''];
  const t = rows(res);
  out.push(textTable(t.header, t.rows), '');
  for (const g of res.goals) out.push(`${verdict(g)}  ${g.description}: ${g.detail}`);
  out.push('', NOTES);
  return out.join('\n');
}

export function renderWebcamMarkdown(res: WebcamBenchResult): string {
  const out = ['### Webcam fan-out', '', describeRun(res), ''];
  const t = rows(res);
  out.push(markdownTable(t.header, t.rows), '');
  for (const g of res.goals) out.push(`- **${verdict(g).trim()}** ${g.description}: ${g.detail}`);
  out.push('', NOTES);
  return out.join('\n');
}

benchMain<WebcamBenchOptions, WebcamBenchResult>(import.meta.url, {
  name: 'webcam',
  usage: '[--viewers 1,5,10,20,50] [--seconds N]',
  flags: {
    '--viewers': (o, v) => (o.viewers = v().split(',').map(Number)),
    '--seconds': (o, v) => (o.seconds = Number(v())),
  },
  quick: { viewers: [1, 10, 50], seconds: 4, warmupMs: 1_500 },
  limitMs: 10 * 60_000,
  run: benchWebcam,
  text: renderWebcamText,
  markdown: renderWebcamMarkdown,
});
