// Runs the real programs (relay, agent, and helpers such as ffmpeg, nginx, sshd) as child
// processes: captured logs (the last lines kept for failure messages), waiting for a given
// pino log line, kill/waitExit, and cleanup that never leaves a process behind (every child is
// killed when the parent exits).
// The bench workspace imports these too (@porthole/e2e/procs).
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import type { Agent, IncomingHttpHeaders, IncomingMessage, RequestOptions } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------------
// Generic managed child processes

export interface LogLine {
  stream: 'stdout' | 'stderr';
  text: string;
  /** The line parsed as a JSON object (pino), when it is one. */
  json: Record<string, unknown> | undefined;
  at: number;
}

export type LogMatch = string | RegExp | ((line: LogLine) => boolean);

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** How many log lines to keep. Default 300. */
  keepLines?: number;
  /** Put the child in its own process group and signal the whole group (for forking daemons). */
  group?: boolean;
  /** Echo every line to this process's stderr, prefixed with the name (or set PORTHOLE_TEST_ECHO=1). */
  echo?: boolean;
  /** Read stdout as lines (default). With 'ignore' or 'raw' the caller handles child.stdout. */
  stdout?: 'lines' | 'raw' | 'ignore';
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ManagedProcess>();
/** Temp dirs made by startRelay/startAgent, removed by their close(), stopAll() or at exit. */
const ownedDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) p.kill('SIGKILL');
    for (const d of ownedDirs) rmSync(d, { recursive: true, force: true });
  });
}

async function removeOwnedDir(dir: string | undefined): Promise<void> {
  if (dir === undefined) return;
  ownedDirs.delete(dir);
  await rm(dir, { recursive: true, force: true });
}

/** Does `line` match: a string is the pino `msg` (exact) or, for non-JSON lines, a substring. */
export function lineMatches(line: LogLine, match: LogMatch): boolean {
  if (typeof match === 'function') return match(line);
  if (match instanceof RegExp) return match.test(line.text);
  if (line.json) return line.json.msg === match;
  return line.text.includes(match);
}

export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: LogLine[] = [];
  exit: ExitInfo | undefined;
  private readonly keep: number;
  private readonly group: boolean;
  private readonly listeners = new Set<(line: LogLine) => void>();
  private readonly exited: Promise<ExitInfo>;

  constructor(name: string, command: string, args: readonly string[], opts: SpawnOptions = {}) {
    this.name = name;
    this.keep = opts.keepLines ?? 300;
    this.group = opts.group ?? false;
    const stdoutMode = opts.stdout ?? 'lines';
    this.child = spawn(command, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      detached: this.group,
      stdio: ['ignore', stdoutMode === 'ignore' ? 'ignore' : 'pipe', 'pipe'],
    });
    if (this.child.pid === undefined) {
      // spawn failed synchronously (ENOENT is reported through 'error' below)
      this.pid = -1;
    } else {
      this.pid = this.child.pid;
    }
    const echo = opts.echo ?? process.env.PORTHOLE_TEST_ECHO === '1';
    if (stdoutMode === 'lines' && this.child.stdout) this.readLines(this.child.stdout, 'stdout', echo);
    if (this.child.stderr) this.readLines(this.child.stderr, 'stderr', echo);
    this.exited = new Promise<ExitInfo>((resolveExit) => {
      this.child.once('error', (err) => {
        this.push({ stream: 'stderr', text: `spawn error: ${err.message}`, json: undefined, at: Date.now() });
        if (this.child.pid === undefined) {
          this.exit = { code: -1, signal: null };
          live.delete(this);
          resolveExit(this.exit);
        }
      });
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolveExit(this.exit);
      });
    });
    installExitHook();
    live.add(this);
  }

  private readLines(stream: NodeJS.ReadableStream, which: 'stdout' | 'stderr', echo: boolean): void {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf('\n')) >= 0) {
        const text = rest.slice(0, nl).replace(/\r$/, '');
        rest = rest.slice(nl + 1);
        this.push(parseLine(which, text));
        if (echo) process.stderr.write(`[${this.name}] ${text}\n`);
      }
    });
    stream.on('end', () => {
      if (rest) this.push(parseLine(which, rest));
      rest = '';
    });
  }

  private push(line: LogLine): void {
    this.lines.push(line);
    if (this.lines.length > this.keep) this.lines.splice(0, this.lines.length - this.keep);
    for (const fn of this.listeners) fn(line);
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Calls fn for every future line; returns an unsubscribe function. */
  onLine(fn: (line: LogLine) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Last n log lines as text, for failure messages. */
  tail(n = 40): string {
    return this.lines
      .slice(-n)
      .map((l) => `${l.stream === 'stderr' ? '! ' : '  '}${l.text}`)
      .join('\n');
  }

  /** Lines already seen that match. */
  findLogs(match: LogMatch): LogLine[] {
    return this.lines.filter((l) => lineMatches(l, match));
  }

  /**
   * Resolves with the first line (already seen, unless `fresh`, or future) that matches.
   * Rejects, with the log tail, on timeout or when the process exits first.
   */
  waitForLog(match: LogMatch, timeoutMs = 15_000, fresh = false): Promise<LogLine> {
    if (!fresh) {
      const hit = this.lines.find((l) => lineMatches(l, match));
      if (hit) return Promise.resolve(hit);
    }
    return new Promise<LogLine>((resolvePromise, reject) => {
      let done = false;
      const finish = (err: Error | undefined, line?: LogLine) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        off();
        if (err) reject(err);
        else resolvePromise(line as LogLine);
      };
      const off = this.onLine((line) => {
        if (lineMatches(line, match)) finish(undefined, line);
      });
      const timer = setTimeout(
        () => finish(new Error(`${this.name}: no log line matching ${String(match)} within ${timeoutMs} ms\n${this.tail()}`)),
        timeoutMs,
      );
      void this.exited.then((e) => {
        // Let the last buffered lines arrive first.
        setImmediate(() =>
          finish(
            new Error(
              `${this.name} exited (code ${e.code}, signal ${e.signal}) before logging ${String(match)}\n${this.tail()}`,
            ),
          ),
        );
      });
    });
  }

  /** Sends a signal (to the whole group when spawned with group). False if already gone. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.exit || this.pid <= 0) return false;
    try {
      if (this.group) process.kill(-this.pid, signal);
      else process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves when the process has exited; rejects after timeoutMs if given. */
  waitExit(timeoutMs?: number): Promise<ExitInfo> {
    if (timeoutMs === undefined) return this.exited;
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.name} (pid ${this.pid}) still running after ${timeoutMs} ms\n${this.tail()}`)),
        timeoutMs,
      );
      void this.exited.then((e) => {
        clearTimeout(timer);
        resolvePromise(e);
      });
    });
  }

  /** SIGTERM, then SIGKILL after graceMs. Always resolves once the process is gone. */
  async stop(graceMs = 5_000): Promise<ExitInfo> {
    if (this.exit) {
      if (this.group) this.killGroupQuietly();
      return this.exit;
    }
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const e = await this.exited;
    clearTimeout(timer);
    if (this.group) this.killGroupQuietly();
    return e;
  }

  private killGroupQuietly(): void {
    // Children of a group leader may outlive it (sshd's per-connection processes).
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      /* none left */
    }
  }
}

function parseLine(stream: 'stdout' | 'stderr', text: string): LogLine {
  let json: Record<string, unknown> | undefined;
  if (text.startsWith('{')) {
    try {
      const v: unknown = JSON.parse(text);
      if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>;
    } catch {
      /* not JSON */
    }
  }
  return { stream, text, json, at: Date.now() };
}

export function spawnManaged(name: string, command: string, args: readonly string[], opts: SpawnOptions = {}): ManagedProcess {
  return new ManagedProcess(name, command, args, opts);
}

/** Stops every process started through this module that is still running, and removes their temp dirs. */
export async function stopAll(graceMs = 3_000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(graceMs)));
  await Promise.all([...ownedDirs].map(removeOwnedDir));
}

/** Processes started through this module that are still running. */
export function liveProcesses(): ManagedProcess[] {
  return [...live];
}

// ---------------------------------------------------------------------------------------------
// Paths

function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const parsed = JSON.parse(readFileSync(pkg, 'utf8')) as { workspaces?: unknown };
        if (Array.isArray(parsed.workspaces)) return dir;
      } catch {
        /* keep looking */
      }
    }
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

/** The monorepo root (the directory whose package.json declares the workspaces). */
export const repoRoot: string = findRepoRoot();
export const relayCli: string = resolve(repoRoot, 'apps/relay/dist/cli.js');
export const agentCli: string = resolve(repoRoot, 'apps/agent/dist/cli.js');
/** The agent as one file for the Pi (Node >= 18, no node_modules). */
export const agentBundle: string = resolve(repoRoot, 'apps/agent/dist/porthole-agent.cjs');

/**
 * A fresh temporary directory. Remove it yourself with rm(dir, {recursive: true, force: true}),
 * or pass owned=true to have stopAll() (and the exit hook) remove it.
 */
export async function tempDir(prefix = 'porthole-', owned = false): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  if (owned) {
    installExitHook();
    ownedDirs.add(dir);
  }
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The relay

export interface RelayOptions {
  /** Data directory; default: a new temp dir, removed by close(). */
  dataDir?: string;
  /** Extra environment (overrides the defaults below). */
  env?: Record<string, string>;
  /** PORTHOLE_PORT; default 0 (any free port). */
  port?: number;
  /** PORTHOLE_DOMAIN; default localhost. */
  domain?: string;
  timeoutMs?: number;
  echo?: boolean;
  /** The relay CLI script; default apps/relay/dist/cli.js. */
  cli?: string;
}

export interface RelayProcess extends ManagedProcess {
  /** The relay CLI script it runs (other commands use the same). */
  cli: string;
  port: number;
  /** As logged, e.g. http://127.0.0.1:43123 */
  url: string;
  /** ws://127.0.0.1:PORT, what an agent's config names. */
  wsUrl: string;
  domain: string;
  dataDir: string;
  /** The environment the relay runs with; the CLI's other commands need the same. */
  env: NodeJS.ProcessEnv;
  /** Stops the relay and removes its data dir when it made it. */
  close(): Promise<void>;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolvePort(port));
    });
  });
}

export async function startRelay(opts: RelayOptions = {}): Promise<RelayProcess> {
  const cli = opts.cli ?? relayCli;
  if (!existsSync(cli)) throw new Error(`relay CLI not built: ${cli} (run npm run build)`);
  const ownsDataDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await tempDir('porthole-relay-', true));
  await mkdir(dataDir, { recursive: true });
  const domain = opts.domain ?? 'localhost';
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORTHOLE_DATA_DIR: dataDir,
    // A fixed free port, not 0: the relay's public URL (redirects, share links) names it.
    PORTHOLE_PORT: String(opts.port ?? (await freePort())),
    PORTHOLE_HOST: '127.0.0.1',
    PORTHOLE_DOMAIN: domain,
    ...opts.env,
  };
  const proc = spawnManaged('relay', process.execPath, [cli, 'start'], { env, cwd: repoRoot, echo: opts.echo });
  const cleanupDir = async () => {
    if (ownsDataDir) await removeOwnedDir(dataDir);
  };
  let line: LogLine;
  try {
    line = await proc.waitForLog('relay listening', opts.timeoutMs ?? 30_000);
  } catch (err) {
    await proc.stop(2_000);
    await cleanupDir();
    throw err;
  }
  const url = typeof line.json?.url === 'string' ? line.json.url : '';
  let port = Number(line.json?.port ?? NaN);
  if (!Number.isFinite(port) || port <= 0) port = Number(url ? new URL(url).port : NaN);
  if (!Number.isFinite(port) || port <= 0) {
    await proc.stop(2_000);
    await cleanupDir();
    throw new Error(`relay listening line has no usable url/port: ${line.text}`);
  }
  return Object.assign(proc, {
    cli,
    port,
    url: url || `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    domain,
    dataDir,
    env,
    async close() {
      await proc.stop();
      await cleanupDir();
    },
  });
}

export interface DeviceInfo {
  id: string;
  slug: string;
  credential: string;
}

/** Runs the relay CLI with the relay's environment (and `input` on stdin); resolves with stdout. */
export function relayCommand(
  relay: Pick<RelayProcess, 'env'> & { cli?: string },
  args: readonly string[],
  timeoutMs = 30_000,
  input?: string,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      process.execPath,
      [relay.cli ?? relayCli, ...args],
      { env: relay.env, cwd: repoRoot, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`porthole-relay ${args.join(' ')} failed: ${err.message}\nstdout: ${stdout}\nstderr: ${stderr}`));
        } else {
          resolvePromise({ stdout, stderr });
        }
      },
    );
    child.stdin?.end(input ?? '');
  });
}

/** The JSON object in a CLI's output that has `key`: the whole output, a line, or the text from a line to the end. */
export function findJsonWith(output: string, key: string): Record<string, unknown> | undefined {
  const lines = output.split('\n');
  const candidates: string[] = [];
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i]?.trim().startsWith('{')) continue;
    candidates.push(lines[i] as string, lines.slice(i).join('\n'));
  }
  for (const c of candidates) {
    try {
      const v: unknown = JSON.parse(c);
      if (v && typeof v === 'object' && key in v) return v as Record<string, unknown>;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** `porthole-relay device add --name N --slug S --json` */
export async function addDevice(
  relay: Pick<RelayProcess, 'env'> & { cli?: string },
  device: { name: string; slug: string; owner?: string },
): Promise<DeviceInfo> {
  const owner = device.owner !== undefined ? ['--owner', device.owner] : [];
  const { stdout } = await relayCommand(relay, ['device', 'add', '--name', device.name, '--slug', device.slug, ...owner, '--json']);
  const v = findJsonWith(stdout, 'credential');
  if (!v || typeof v.credential !== 'string') {
    throw new Error(`device add printed no JSON with a credential:\n${stdout}`);
  }
  return { id: String(v.id ?? ''), slug: String(v.slug ?? device.slug), credential: v.credential };
}

// ---------------------------------------------------------------------------------------------
// The agent

export interface AgentService {
  url: string;
}

export interface AgentRoute {
  path: string;
  service: string;
  stripPrefix?: boolean;
}

export interface AgentConfig {
  relay: string;
  credential: string;
  services: Record<string, AgentService>;
  routes?: AgentRoute[];
  [extra: string]: unknown;
}

/** The usual config: `ui` at /, and `webcam` at /webcam/ (prefix stripped) when given. */
export function agentConfig(opts: {
  relay: string | number | { port: number };
  credential: string;
  ui: string;
  webcam?: string;
}): AgentConfig {
  const relay =
    typeof opts.relay === 'string'
      ? opts.relay
      : `ws://127.0.0.1:${typeof opts.relay === 'number' ? opts.relay : opts.relay.port}`;
  const services: Record<string, AgentService> = { ui: { url: opts.ui } };
  const routes: AgentRoute[] = [];
  if (opts.webcam) {
    services.webcam = { url: opts.webcam };
    routes.push({ path: '/webcam/', service: 'webcam', stripPrefix: true });
  }
  routes.unshift({ path: '/', service: 'ui' });
  return { relay, credential: opts.credential, services, routes };
}

export interface AgentOptions {
  /** A config object, written to a temp file; or configPath, an existing file. */
  config?: AgentConfig;
  configPath?: string;
  env?: Record<string, string>;
  /** The log line to wait for; default 'tunnel connected'. false: don't wait. */
  waitFor?: LogMatch | false;
  timeoutMs?: number;
  echo?: boolean;
  /** The agent CLI script; default apps/agent/dist/cli.js. */
  cli?: string;
  /** The Node.js that runs it; default this process's (e.g. Debian's Node 18 for the bundle). */
  node?: string;
}

export interface AgentProcess extends ManagedProcess {
  configPath: string;
  /** Stops the agent and removes its temp config. */
  close(): Promise<void>;
}

export async function startAgent(opts: AgentOptions): Promise<AgentProcess> {
  const cli = opts.cli ?? agentCli;
  if (!existsSync(cli)) throw new Error(`agent CLI not built: ${cli} (run npm run build)`);
  let configPath = opts.configPath;
  let tmp: string | undefined;
  if (!configPath) {
    if (!opts.config) throw new Error('startAgent needs config or configPath');
    tmp = await tempDir('porthole-agent-', true);
    configPath = join(tmp, 'agent.json');
    await writeFile(configPath, JSON.stringify(opts.config, null, 2), { mode: 0o600 });
  }
  const proc = spawnManaged('agent', opts.node ?? process.execPath, [cli, 'run', '--config', configPath], {
    env: { ...process.env, ...opts.env },
    cwd: repoRoot,
    echo: opts.echo,
  });
  const cleanup = () => removeOwnedDir(tmp);
  if (opts.waitFor !== false) {
    try {
      await proc.waitForLog(opts.waitFor ?? 'tunnel connected', opts.timeoutMs ?? 30_000);
    } catch (err) {
      await proc.stop(2_000);
      await cleanup();
      throw err;
    }
  }
  const path = configPath;
  return Object.assign(proc, {
    configPath: path,
    async close() {
      await proc.stop();
      await cleanup();
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Requests to a device through the relay

export type RelayRef = number | { port: number };

export interface DeviceRequestOptions {
  method?: string;
  /** Path and query; default '/'. */
  path?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Uint8Array;
  /** Default false: a fresh connection per request. Pass a keep-alive Agent to reuse connections. */
  agent?: Agent | false;
  timeoutMs?: number;
  /** The relay's domain; default localhost. */
  domain?: string;
}

export interface DeviceResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text(): string;
  json<T = unknown>(): T;
}

/** `slug.domain:port`, the Host header that routes to a device. */
export function deviceHost(relay: RelayRef, slug: string, domain = 'localhost'): string {
  return `${slug}.${domain}:${typeof relay === 'number' ? relay : relay.port}`;
}

/** Headers added to every device request made with these helpers (e.g. a signed-in cookie). */
export const deviceDefaults: { headers: Record<string, string> } = { headers: {} };

/** http.request options for a request to 127.0.0.1:relayPort with the device's Host. */
export function deviceRequestOptions(relay: RelayRef, slug: string, opts: DeviceRequestOptions = {}): RequestOptions {
  const port = typeof relay === 'number' ? relay : relay.port;
  return {
    host: '127.0.0.1',
    port,
    method: opts.method ?? 'GET',
    path: opts.path ?? '/',
    headers: { host: deviceHost(port, slug, opts.domain), ...deviceDefaults.headers, ...opts.headers },
    // No hidden pooling by default (Node 20's global agent keeps connections alive).
    agent: opts.agent ?? false,
  };
}

/** Opens a request to the device and resolves with the response head (body not read). */
export function deviceStream(relay: RelayRef, slug: string, opts: DeviceRequestOptions = {}): Promise<IncomingMessage> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(deviceRequestOptions(relay, slug, opts), (res) => {
      req.setTimeout(0);
      resolvePromise(res);
    });
    const timeoutMs = opts.timeoutMs ?? 15_000;
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no response from ${slug} within ${timeoutMs} ms`)));
    req.once('error', reject);
    req.end(opts.body);
  });
}

/** A whole request to the device: resolves with status, headers and the full body. */
export async function deviceRequest(relay: RelayRef, slug: string, opts: DeviceRequestOptions = {}): Promise<DeviceResponse> {
  const res = await deviceStream(relay, slug, opts);
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const chunks: Buffer[] = [];
  await new Promise<void>((resolvePromise, reject) => {
    const timer = setTimeout(() => res.destroy(new Error(`body from ${slug} not done within ${timeoutMs} ms`)), timeoutMs);
    res.on('data', (c: Buffer) => chunks.push(c));
    res.once('end', () => {
      clearTimeout(timer);
      resolvePromise();
    });
    res.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    res.once('close', () => {
      clearTimeout(timer);
      if (!res.complete) reject(new Error(`response from ${slug} cut after ${Buffer.concat(chunks).length} bytes`));
    });
  });
  const body = Buffer.concat(chunks);
  return {
    status: res.statusCode ?? 0,
    headers: res.headers,
    body,
    text: () => body.toString('utf8'),
    json: <T>() => JSON.parse(body.toString('utf8')) as T,
  };
}
