// The agent as shipped to a Pi — one bundled file — under Debian's own Node 18 (what Raspberry
// Pi OS bookworm runs), against the real relay: a smoke test of everything through the tunnel.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { signInToDevice } from './src/auth.js';
import { deterministicBlocks, expectedSha256 } from './src/bytes.js';
import { startOrigin, type Origin } from './src/origin.js';
import {
  addDevice,
  agentBundle,
  agentConfig,
  deviceDefaults,
  deviceHost,
  deviceRequest,
  deviceRequestOptions,
  deviceStream,
  relayCommand,
  repoRoot,
  startAgent,
  startRelay,
  stopAll,
  type AgentProcess,
  type RelayProcess,
} from './src/procs.js';

const SLUG = 'pi18';
const PASSWORD = 'node eighteen on a pi 3';
let node18: string;
let origin: Origin;
let relay: RelayProcess;
let agent: AgentProcess;

/** Runs the bundle under Node 18; resolves with the exit code and output. */
function bundle(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(node18, [agentBundle, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  // Debian's Node 18 beside the machine's own (see the script); CI provisions it in .ci/run.
  node18 = execFileSync('sh', [join(repoRoot, 'test/scripts/debian-node18.sh')], { encoding: 'utf8', timeout: 120_000 }).trim();
  origin = await startOrigin({ frames: 'tiny' });
  relay = await startRelay();
  await relayCommand(relay, ['user', 'add', '--username', 'maker', '--password-stdin'], 30_000, PASSWORD);
  const device = await addDevice(relay, { name: 'Pi on Node 18', slug: SLUG, owner: 'maker' });
  agent = await startAgent({
    node: node18,
    cli: agentBundle,
    config: agentConfig({ relay, credential: device.credential, ui: origin.url, webcam: origin.url }),
  });
  const { cookie } = await signInToDevice(relay, { username: 'maker', password: PASSWORD, slug: SLUG });
  deviceDefaults.headers.cookie = cookie;
}, 180_000);

afterAll(async () => {
  deviceDefaults.headers = {};
  await stopAll();
  await origin?.close();
});

describe('the bundled agent on Debian\'s Node 18', () => {
  it('is one self-contained file, and the interpreter really is Node 18', () => {
    expect(execFileSync(node18, ['--version'], { encoding: 'utf8' })).toMatch(/^v18\./);
    const text = readFileSync(agentBundle, 'utf8');
    // Nothing loaded from node_modules or the workspace at run time, nothing native.
    expect(text).not.toMatch(/require\(["'](ws|pino|zod|@porthole\/protocol)["']\)/);
    expect(text).not.toMatch(/\.node["']\)/);
    expect(statSync(agentBundle).size).toBeLessThan(4 * 1024 * 1024);
    const started = agent.findLogs('agent starting')[0]?.json;
    expect(started?.node).toMatch(/^v18\./);
    expect(agent.findLogs('tunnel connected')).toHaveLength(1);
  });

  it('serves the printer\'s page and a download with its checksum', async () => {
    const page = await deviceRequest(relay, SLUG, { path: '/' });
    expect(page.status).toBe(200);
    expect(page.text()).toContain('<h1>Test printer</h1>');

    const n = 3 * 1024 * 1024 + 5;
    const res = await deviceStream(relay, SLUG, { path: `/bytes?n=${n}&seed=n18` });
    const h = createHash('sha256');
    let bytes = 0;
    for await (const c of res as AsyncIterable<Buffer>) {
      h.update(c);
      bytes += c.length;
    }
    expect(res.statusCode).toBe(200);
    expect(bytes).toBe(n);
    expect(h.digest('hex')).toBe(expectedSha256(n, 'n18'));
  });

  it('carries an upload whole, checksum and all', async () => {
    const n = 2 * 1024 * 1024 + 3;
    const req = http.request(
      deviceRequestOptions(relay, SLUG, { method: 'POST', path: '/upload?case=n18', headers: { 'content-type': 'application/octet-stream', 'content-length': String(n) } }),
    );
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req.on('response', (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
    });
    for (const block of deterministicBlocks(n, 'up18')) {
      if (!req.write(block)) await new Promise((r) => req.once('drain', r));
    }
    req.end();
    const r = await answer;
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ bytes: n, sha256: expectedSha256(n, 'up18') });
    expect(origin.find('/upload?case=n18')[0]?.state).toBe('complete');
  });

  it('echoes WebSocket messages, text and binary', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${relay.port}/websocket`, { headers: { host: deviceHost(relay, SLUG), ...deviceDefaults.headers } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const echo = (data: string | Buffer) =>
      new Promise<{ data: Buffer; binary: boolean }>((resolve) => {
        ws.once('message', (d: Buffer, binary: boolean) => resolve({ data: d, binary }));
        ws.send(data);
      });
    const text = await echo('{"jsonrpc":"2.0","method":"printer.info","id":7}');
    expect(text).toMatchObject({ binary: false });
    expect(text.data.toString()).toBe('{"jsonrpc":"2.0","method":"printer.info","id":7}');
    const bin = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) & 255));
    const got = await echo(bin);
    expect(got.binary).toBe(true);
    expect(got.data.equals(bin)).toBe(true);
    ws.close();
  });

  it('runs doctor and detect under Node 18 too', async () => {
    const doctor = await bundle(['doctor', '--config', agent.configPath]);
    expect(doctor.stdout).toContain('the relay accepts this printer\'s credential');
    expect(doctor.stdout).toContain('All good.');
    expect(doctor.code).toBe(0);
    // The check did not replace the running agent's tunnel.
    expect(agent.findLogs('tunnel connected')).toHaveLength(1);
    expect(agent.running).toBe(true);

    const detect = await bundle(['detect', '--json', '--port', String(origin.port)]);
    expect(detect.code).toBe(0);
    const found = JSON.parse(detect.stdout) as { findings: Array<{ kind: string }> };
    expect(found.findings).toEqual([expect.objectContaining({ kind: 'mjpeg' })]);
    expect((await bundle(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('stops cleanly on SIGTERM (exit 0), as systemd stops it', async () => {
    const exit = await agent.stop();
    expect(exit).toEqual({ code: 0, signal: null });
  });

  it('a revoked credential: doctor says so, and the agent stops for good (exit 78)', async () => {
    const revoked = await relayCommand(relay, ['device', 'revoke', SLUG]);
    expect(revoked.stdout).toContain(`Revoked ${SLUG}`);
    const doctor = await bundle(['doctor', '--config', agent.configPath]);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toMatch(/FAIL {2}the relay refused this credential: it was revoked \(HTTP 403\)\. Pair again: porthole-agent pair --relay http:\/\/127\.0\.0\.1:\d+ --force/);
    expect(doctor.stdout).toContain('1 problem found.');
    const again = await startAgent({ node: node18, cli: agentBundle, configPath: agent.configPath, waitFor: false });
    expect(await again.waitExit(15_000)).toEqual({ code: 78, signal: null });
  });
});
