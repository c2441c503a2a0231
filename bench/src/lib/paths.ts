// The ways to reach the origin that the proxy benchmark compares: direct, a throwaway nginx
// reverse proxy, `ssh -L` through a throwaway sshd, and Porthole (relay + agent). Each starts
// on 127.0.0.1 only, and stop() leaves no process or temp file behind.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { cpuMeter, rssBytes, treeRssBytes } from './cpu.js';
import type { CpuMeter } from './cpu.js';
import { waitReady } from './load.js';
import type { Target } from './load.js';
import { signIn } from './signin.js';
import { installedAgentEnv } from './agent-unit.js';
import { addDevice, agentConfig, relayCommand, spawnManaged, startAgent, startRelay, tempDir } from '@porthole/e2e/procs';
import type { AgentProcess, ManagedProcess, RelayProcess } from '@porthole/e2e/procs';

export type PathName = 'direct' | 'nginx' | 'ssh' | 'porthole' | 'porthole-tls';

export interface CpuSide {
  /** What is measured, e.g. 'sshd (printer side)'. */
  label: string;
  meter: CpuMeter;
  /** Resident memory in bytes now (the process or its tree). */
  rss?: () => number;
}

export interface ProxyPath {
  name: PathName;
  label: string;
  target: Target;
  /** The tunnel's far end, the side that runs on the printer's Pi. */
  farEnd?: CpuSide;
  /** The other side (ssh client, relay, or the proxy itself for nginx). */
  nearEnd?: CpuSide;
  notes: string[];
  stop(): Promise<void>;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Resolves when something accepts TCP connections on 127.0.0.1:port. */
export async function waitListening(port: number, timeoutMs = 10_000, proc?: ManagedProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && !proc.running) throw new Error(`${proc.name} exited (${JSON.stringify(proc.exit)})\n${proc.tail()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms${proc ? `\n${proc.tail()}` : ''}`);
}

export function directPath(originPort: number, originPid: number): ProxyPath {
  return {
    name: 'direct',
    label: 'direct',
    target: { port: originPort },
    nearEnd: { label: 'origin', meter: cpuMeter(() => [originPid]) },
    notes: [],
    async stop() {
      /* nothing started */
    },
  };
}

export const NGINX_BIN = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'];

/** A throwaway nginx (1 worker, proxy_buffering off, keep-alive upstream) in a temp prefix. */
export async function nginxPath(originPort: number): Promise<ProxyPath> {
  const bin = NGINX_BIN.find((b) => existsSync(b));
  if (!bin) throw new Error('nginx not installed (apt-get install -y nginx)');
  const dir = await tempDir('porthole-bench-nginx-');
  const port = await freePort();
  const isRoot = process.getuid?.() === 0;
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir, d));
  const conf = `
${isRoot ? 'user root;' : ''}
worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream origin {
    server 127.0.0.1:${originPort};
    keepalive 64;
  }
  map $http_upgrade $connection_upgrade {
    default upgrade;
    '' '';
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_buffer_size 64k;
      proxy_buffers 8 64k;
      proxy_busy_buffers_size 128k;
      client_max_body_size 0;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
    }
  }
}
`;
  await writeFile(join(dir, 'nginx.conf'), conf);
  const proc = spawnManaged('nginx', bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], {
    group: true,
  });
  const stop = async () => {
    await proc.stop(3_000);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitListening(port, 10_000, proc);
    await waitReady({ port });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    name: 'nginx',
    label: 'nginx',
    target: { port },
    nearEnd: { label: 'nginx', meter: cpuMeter(() => [proc.pid], true) },
    notes: ['nginx: 1 worker, proxy_buffering and proxy_request_buffering off, proxy_buffer_size 64k, keep-alive upstream, WebSocket upgrade passed, access log off'],
    stop,
  };
}

/**
 * `ssh -L` through a throwaway sshd: host and client keys made with ssh-keygen in a temp dir,
 * sshd -D on a free port, then ssh -N -L localport:127.0.0.1:originport. The sshd side is
 * what would run on the printer's Pi.
 */
export async function sshPath(originPort: number): Promise<ProxyPath> {
  const sshd = '/usr/sbin/sshd';
  if (!existsSync(sshd)) throw new Error('sshd not installed (apt-get install -y openssh-server)');
  const dir = await tempDir('porthole-bench-ssh-');
  const procs: ManagedProcess[] = [];
  const stop = async () => {
    for (const p of procs.reverse()) await p.stop(2_000);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const user = userInfo().username;
    if (process.getuid?.() === 0 && !existsSync('/run/sshd')) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_ed25519')]);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_ed25519')]);
    await run('cp', [join(dir, 'client_ed25519.pub'), join(dir, 'authorized_keys')]);
    const sshdPort = await freePort();
    const config = [
      `ListenAddress 127.0.0.1`,
      `HostKey ${dir}/host_ed25519`,
      `PidFile ${dir}/sshd.pid`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      'PermitRootLogin yes',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'UseDNS no',
      'AllowTcpForwarding yes',
      'PermitOpen any',
      'PrintMotd no',
      'LogLevel ERROR',
      '',
    ].join('\n');
    await writeFile(join(dir, 'sshd_config'), config);
    const server = spawnManaged('sshd', sshd, ['-D', '-e', '-f', join(dir, 'sshd_config'), '-p', String(sshdPort)], {
      group: true,
    });
    procs.push(server);
    await waitListening(sshdPort, 10_000, server);
    const localPort = await freePort();
    const client = spawnManaged(
      'ssh',
      'ssh',
      [
        '-N', '-F', '/dev/null',
        '-L', `127.0.0.1:${localPort}:127.0.0.1:${originPort}`,
        '-p', String(sshdPort),
        '-i', join(dir, 'client_ed25519'),
        '-o', 'IdentitiesOnly=yes',
        '-o', 'StrictHostKeyChecking=no',
        '-o', 'UserKnownHostsFile=/dev/null',
        '-o', 'BatchMode=yes',
        '-o', 'ExitOnForwardFailure=yes',
        // -v: to read the negotiated cipher from the debug log
        '-v',
        `${user}@127.0.0.1`,
      ],
      {},
    );
    procs.push(client);
    await waitListening(localPort, 15_000, client);
    await waitReady({ port: localPort });
    const kex = client.findLogs(/kex: server->client cipher:/)[0]?.text ?? '';
    const cipher = /cipher: (\S+)/.exec(kex)?.[1] ?? 'default cipher';
    return {
      name: 'ssh',
      label: 'ssh -L',
      target: { port: localPort },
      // the listener's tree: the per-connection sshd processes that carry the forwarding
      farEnd: { label: 'sshd', meter: cpuMeter(() => [server.pid], true), rss: () => treeRssBytes(server.pid) },
      nearEnd: { label: 'ssh client', meter: cpuMeter(() => [client.pid]) },
      notes: [`ssh -L: OpenSSH defaults (${cipher}, no compression)`],
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface TlsFiles {
  dir: string;
  caFile: string;
  caPem: string;
  certFile: string;
  keyFile: string;
}

/**
 * A throwaway CA and a certificate for `domain` and `*.domain` (ECDSA P-256, 2 days), made with
 * openssl in `dir`. Bench-time only: never committed, removed with the directory.
 */
export async function makeTlsFiles(dir: string, domain: string): Promise<TlsFiles> {
  const f = (n: string) => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=Porthole bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', f('key.pem'), '-out', f('req.csr'), '-subj', `/CN=${domain}`]);
  await writeFile(f('ext.cnf'), `subjectAltName=DNS:${domain},DNS:*.${domain}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  await run('openssl', ['x509', '-req', '-in', f('req.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('cert.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
  return { dir, caFile: f('ca.pem'), caPem: await readFile(f('ca.pem'), 'utf8'), certFile: f('cert.pem'), keyFile: f('key.pem') };
}

export const TLS_DOMAIN = 'porthole.test';

export interface PortholePathOptions {
  slug?: string;
  /** HTTPS on the relay (a throwaway CA's certificate in `files` mode), wss:// for the agent. */
  tls?: boolean;
  /** Extra environment for the relay. */
  relayEnv?: Record<string, string>;
  /** Extra environment for the agent, over the installed unit's (lib/agent-unit.ts). */
  agentEnv?: Record<string, string>;
  /** Start the agent with the systemd unit's Environment= lines, as installed on a Pi. Default true. */
  agentUnitEnv?: boolean;
  /** The address the relay binds and the agent and clients reach it on; default 127.0.0.1. */
  relayAddress?: string;
  /** The port the agent dials instead of the relay's (a link emulator in front of it), given the relay's. */
  agentVia?: (relayPort: number) => Promise<number>;
  /** Runs the agent with this command line prefix, e.g. ['ip', 'netns', 'exec', NS] (then node). */
  agentWrap?: string[];
  /** The Node.js and the agent script; default this process's and apps/agent/dist/cli.js. */
  agentNode?: string;
  agentCli?: string;
  /** Services beside `ui` (e.g. a webcam at /webcam/). */
  webcam?: string;
}

export interface PortholePath extends ProxyPath {
  relay: RelayProcess;
  agent: AgentProcess;
}

/**
 * Porthole: a relay and an agent as child processes, the device's Host on the relay's port,
 * requests made as a signed-in owner (every request pays for the access check, as in real use).
 */
export async function portholePath(originPort: number, opts: PortholePathOptions = {}): Promise<PortholePath> {
  const slug = opts.slug ?? 'demo';
  let relay: RelayProcess | undefined;
  let agent: AgentProcess | undefined;
  let tlsDir: string | undefined;
  const stop = async () => {
    await agent?.close();
    await relay?.close();
    if (tlsDir !== undefined) await rm(tlsDir, { recursive: true, force: true });
  };
  try {
    const address = opts.relayAddress ?? '127.0.0.1';
    let tls: TlsFiles | undefined;
    const env: Record<string, string> = { PORTHOLE_HOST: address, ...opts.relayEnv };
    if (opts.tls === true) {
      tlsDir = await tempDir('porthole-bench-tls-');
      tls = await makeTlsFiles(tlsDir, TLS_DOMAIN);
      Object.assign(env, {
        PORTHOLE_TLS: 'files',
        PORTHOLE_TLS_CERT_FILE: tls.certFile,
        PORTHOLE_TLS_KEY_FILE: tls.keyFile,
        PORTHOLE_HTTP_PORT: String(await freePort()),
      });
    }
    const domain = tls !== undefined ? TLS_DOMAIN : 'localhost';
    relay = await startRelay({ env, domain });
    const password = 'measure twice, print once';
    await relayCommand(relay, ['user', 'add', '--username', 'bench', '--password-stdin'], 30_000, password);
    const device = await addDevice(relay, { name: slug, slug, owner: 'bench' });
    const dialPort = opts.agentVia !== undefined ? await opts.agentVia(relay.port) : relay.port;
    const config = {
      ...agentConfig({
        relay: tls !== undefined ? `wss://${TLS_DOMAIN}:${dialPort}` : `ws://${address}:${dialPort}`,
        credential: device.credential,
        ui: `http://127.0.0.1:${originPort}`,
        webcam: opts.webcam,
      }),
      ...(tls !== undefined ? { caFile: tls.caFile, relayAddress: address } : {}),
    };
    agent = await startAgentWrapped(config, opts);
    const target = await signIn({ port: relay.port, address, ca: tls?.caPem, domain, username: 'bench', password, slug });
    await waitReady(target);
    const a = agent;
    const r = relay;
    return {
      name: tls !== undefined ? 'porthole-tls' : 'porthole',
      label: tls !== undefined ? 'Porthole TLS' : 'Porthole',
      target,
      farEnd: { label: 'agent', meter: cpuMeter(() => [a.pid], true), rss: () => treeRssBytes(a.pid) },
      nearEnd: { label: 'relay', meter: cpuMeter(() => [r.pid], true), rss: () => rssBytes(r.pid) },
      notes: tls !== undefined ? ['Porthole TLS: HTTPS phone → relay and wss:// agent → relay, a throwaway ECDSA P-256 CA made with openssl at bench time'] : [],
      relay: r,
      agent: a,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** startAgent, optionally run through a wrapper command (a network namespace) or another Node. */
async function startAgentWrapped(config: Record<string, unknown>, opts: PortholePathOptions): Promise<AgentProcess> {
  const node = opts.agentNode ?? process.execPath;
  const env = { ...(opts.agentUnitEnv === false ? {} : installedAgentEnv()), ...opts.agentEnv };
  if (opts.agentWrap === undefined || opts.agentWrap.length === 0) {
    return startAgent({ config: config as never, env, node, cli: opts.agentCli });
  }
  // startAgent runs `node cli run --config F`: make "node" the wrapper (a tiny shell script).
  const dir = await tempDir('porthole-bench-wrap-', true);
  const wrapper = join(dir, 'node');
  const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
  await writeFile(wrapper, `#!/bin/sh\nexec ${[...opts.agentWrap, node].map(quote).join(' ')} "$@"\n`, { mode: 0o755 });
  return startAgent({ config: config as never, env, node: wrapper, cli: opts.agentCli });
}
