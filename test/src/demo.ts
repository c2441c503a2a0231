// `npm run demo`: a demo printer (a small printer-like web UI with live temperatures over a
// WebSocket and a webcam), a relay, a device 'demo' and an agent, all on this machine.
// Open the printed http://demo.localhost:PORT/ in a browser; Ctrl-C stops everything.
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { WebSocketServer } from 'ws';
import { startFfmpegCamera } from './camera.js';
import type { FfmpegCamera } from './camera.js';
import { makeMjpegSource, printerStatus, serveMjpeg } from './origin.js';
import { addDevice, agentConfig, relayCommand, startAgent, startRelay, tempDir } from './procs.js';
import type { AgentProcess, RelayProcess } from './procs.js';

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<title>Demo printer</title>
<style>
  :root { color-scheme: dark; --bg: #111418; --card: #1c2128; --fg: #e6e9ee; --mute: #8b95a3; --hot: #ff7a45; --bed: #4fa3ff; --ok: #3ecf8e; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--fg); font: 16px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { display: flex; align-items: center; justify-content: space-between; padding: 12px 16px; padding-top: max(12px, env(safe-area-inset-top)); }
  h1 { font-size: 18px; margin: 0; }
  .pill { font-size: 13px; padding: 3px 10px; border-radius: 999px; background: var(--card); color: var(--mute); }
  .pill.live { color: var(--ok); }
  main { max-width: 560px; margin: 0 auto; padding: 0 12px 24px; display: grid; gap: 12px; }
  .cam { position: relative; background: #000; border-radius: 12px; overflow: hidden; aspect-ratio: 4 / 3; }
  .cam img { display: block; width: 100%; height: 100%; object-fit: contain; }
  .cam span { position: absolute; left: 8px; top: 8px; font-size: 12px; background: #0008; padding: 2px 8px; border-radius: 6px; }
  .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
  .card { background: var(--card); border-radius: 12px; padding: 12px 14px; }
  .label { font-size: 13px; color: var(--mute); }
  .temp { font-size: 30px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .temp small { font-size: 14px; color: var(--mute); font-weight: 400; }
  #tool .temp { color: var(--hot); }
  #bed .temp { color: var(--bed); }
  .bar { height: 8px; background: #2a313b; border-radius: 4px; overflow: hidden; margin-top: 8px; }
  .bar div { height: 100%; width: 0; background: var(--ok); transition: width .5s; }
  footer { color: var(--mute); font-size: 12px; text-align: center; }
</style>
</head>
<body>
<header><h1>Demo printer</h1><span id="conn" class="pill">connecting…</span></header>
<main>
  <div class="cam"><img src="/webcam/?action=stream" alt="Webcam"><span>webcam</span></div>
  <div class="grid">
    <div class="card" id="tool"><div class="label">Hotend</div><div class="temp"><b>–</b> <small>/ – °C</small></div></div>
    <div class="card" id="bed"><div class="label">Bed</div><div class="temp"><b>–</b> <small>/ – °C</small></div></div>
  </div>
  <div class="card">
    <div class="label" id="state">–</div>
    <div id="file">–</div>
    <div class="bar"><div id="progress"></div></div>
  </div>
  <footer id="time">Status is pushed over a WebSocket every second.</footer>
</main>
<script>
  const $ = (s) => document.querySelector(s);
  function show(s) {
    for (const [id, t] of [['#tool', s.temperature.tool0], ['#bed', s.temperature.bed]]) {
      $(id + ' b').textContent = t.actual.toFixed(1);
      $(id + ' small').textContent = '/ ' + t.target + ' °C';
    }
    $('#state').textContent = s.state.text;
    $('#file').textContent = s.job.file + ' — ' + s.job.progress.toFixed(1) + '%';
    $('#progress').style.width = s.job.progress + '%';
    $('#time').textContent = 'Last update ' + new Date(s.time).toLocaleTimeString();
  }
  function connect() {
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/websocket');
    ws.onopen = () => { $('#conn').textContent = 'live'; $('#conn').className = 'pill live'; };
    ws.onmessage = (e) => show(JSON.parse(e.data));
    ws.onclose = () => { $('#conn').textContent = 'reconnecting…'; $('#conn').className = 'pill'; setTimeout(connect, 2000); };
  }
  fetch('/api/status').then((r) => r.json()).then(show).catch(() => {});
  connect();
</script>
</body>
</html>
`;

export interface DemoPrinter {
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * The demo printer's web UI: `/` (the page), `/api/status`, a WebSocket at `/websocket` that
 * pushes the status every second, and a Node MJPEG test pattern at `?action=stream|snapshot`
 * (any path, so it also works as the webcam service behind a stripped `/webcam/` prefix).
 */
export async function startDemoPrinter(): Promise<DemoPrinter> {
  const source = await makeMjpegSource('ffmpeg');
  const stops = new Set<() => void>();
  const sockets = new Set<Socket>();
  const page = Buffer.from(PAGE);
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    const u = new URL(req.url ?? '/', 'http://printer.invalid');
    const action = u.searchParams.get('action');
    if (action === 'stream') {
      const stop = serveMjpeg(res, source, 10);
      stops.add(stop);
      res.on('close', () => stops.delete(stop));
      return;
    }
    if (action === 'snapshot') {
      const jpeg = source.next();
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length, 'cache-control': 'no-store' });
      res.end(jpeg);
      return;
    }
    if (u.pathname === '/api/status') {
      const body = Buffer.from(JSON.stringify(printerStatus()));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'cache-control': 'no-store' });
      res.end(body);
      return;
    }
    if (u.pathname === '/' || u.pathname === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': page.length });
      res.end(page);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if ((req.url ?? '').split('?')[0] !== '/websocket') {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const push = () => ws.send(JSON.stringify(printerStatus()));
      push();
      const timer = setInterval(push, 1000);
      ws.on('close', () => clearInterval(timer));
      ws.on('error', () => clearInterval(timer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const stop of stops) stop();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/** Is 127.0.0.1:port free to listen on? */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function hasFfmpeg(): boolean {
  try {
    execFileSync('ffmpeg', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const printerOnly = process.argv.includes('--printer-only');
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const cleanups: (() => Promise<unknown>)[] = [];
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nStopping…');
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  try {
    const printer = await startDemoPrinter();
    cleanups.push(() => printer.close());
    say(`• demo printer (web UI, status WebSocket, test-pattern webcam) on ${printer.url}`);

    let camera: FfmpegCamera | undefined;
    if (hasFfmpeg()) {
      camera = await startFfmpegCamera({ fps: 15, width: 640, height: 480 });
      cleanups.push(() => (camera as FfmpegCamera).close());
      say(`• webcam: ffmpeg test source, 640×480 at 15 fps, on ${camera.url}`);
    } else {
      say('• webcam: ffmpeg not found, the demo printer serves a Node test pattern instead');
    }
    if (printerOnly) {
      say(`\nPrinter only (no relay): open ${printer.url}/   Ctrl-C stops.`);
      return;
    }

    const dataDir = await tempDir('porthole-demo-');
    cleanups.unshift(() => rm(dataDir, { recursive: true, force: true }));
    const port = (await portFree(8080)) ? 8080 : undefined;
    const relay: RelayProcess = await startRelay({ dataDir, port });
    cleanups.push(() => relay.stop());
    say(`• relay listening on ${relay.url} (data in ${dataDir})`);

    // An owner account with a fresh random password: the demo is access-controlled like the real thing.
    const password = randomBytes(9).toString('base64url');
    await relayCommand(relay, ['user', 'add', '--username', 'demo', '--password-stdin'], 30_000, password);
    const device = await addDevice(relay, { name: 'Demo printer', slug: 'demo', owner: 'demo' });
    say(`• device 'demo' added, owned by user 'demo'`);

    const agent: AgentProcess = await startAgent({
      config: agentConfig({ relay, credential: device.credential, ui: printer.url, webcam: camera?.url ?? printer.url }),
    });
    cleanups.push(() => agent.close());
    say('• agent started; tunnel connected');

    for (const [name, p] of [['relay', relay], ['agent', agent]] as const) {
      void p.waitExit().then((e) => {
        if (stopping) return;
        say(`\n${name} exited unexpectedly (code ${e.code}, signal ${e.signal}). Last log lines:\n${p.tail(20)}`);
        void shutdown(1);
      });
    }

    const url = `http://demo.localhost:${relay.port}/`;
    say('');
    say('  ┌──────────────────────────────────────────────────────────────');
    say(`  │  Open the demo printer through Porthole:  ${url}`);
    say(`  │  Sign in as:                              demo / ${password}`);
    say(`  │  Relay's own pages:                       http://localhost:${relay.port}/`);
    say('  └──────────────────────────────────────────────────────────────');
    say('  Browser → relay → WebSocket tunnel → agent → demo printer (page, status WebSocket, webcam).');
    say('  *.localhost resolves to this machine in browsers; the printer asks you to sign in first.');
    say('  Ctrl-C stops everything.');
  } catch (err) {
    say(`\nDemo failed: ${err instanceof Error ? err.message : String(err)}`);
    say('Is everything built? Try: npm run build. To see the printer alone: node test/dist/demo.js --printer-only');
    await shutdown(1);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void main();
