// What the TLS cipher costs the agent: AES-256-GCM (Node's first choice) against ChaCha20-Poly1305,
// on this CPU as it is and with its AES instructions hidden from OpenSSL (OPENSSL_ia32cap), which
// is what a Raspberry Pi 3 or 4 is like: no AES instructions, so AES runs in software.
// Two processes on 127.0.0.1, one TLS 1.3 connection, bytes one way; CPU seconds per GiB of each.
// `node bench/dist/tls-ciphers.js [--quick] [--size MiB] [--json FILE] [--markdown FILE]`.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { benchMain, verdict } from './lib/cli.js';
import { fmt, markdownTable, median, textTable } from './lib/stats.js';
import { machine, type Machine } from './lib/machine.js';

const MiB = 1024 * 1024;
const CIPHERS = { 'AES-256-GCM': 'TLS_AES_256_GCM_SHA384', 'ChaCha20-Poly1305': 'TLS_CHACHA20_POLY1305_SHA256' } as const;
/** OpenSSL's capability mask with AES-NI and PCLMULQDQ cleared (x86). */
const NO_AES = '~0x200000200000000';

export interface TlsCipherOptions {
  sizeMiB?: number;
  repeats?: number;
}

export interface TlsCipherRow {
  cipher: keyof typeof CIPHERS;
  cpu: 'AES instructions' | 'no AES instructions';
  mbps: number;
  senderCpuPerGiB: number;
  receiverCpuPerGiB: number;
}

export interface TlsCipherResult {
  date: string;
  durationSeconds: number;
  environment: Machine;
  options: Required<TlsCipherOptions>;
  rows: TlsCipherRow[];
  goals: { description: string; pass: boolean | undefined; detail: string }[];
}

interface EndReport {
  cpuSeconds: number;
  bytes: number;
  seconds: number;
  cipher: string;
}

/** One end, in its own process (the CPU mask must be in place before OpenSSL starts). */
async function childEnd(role: string, port: number, dir: string, cipher: string, bytes: number): Promise<void> {
  const report = (r: EndReport) => process.stdout.write(`${JSON.stringify(r)}\n`);
  if (role === 'receiver') {
    const server = tls.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (s) => {
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      let got = 0;
      s.on('data', (c: Buffer) => {
        got += c.length;
      });
      s.on('end', () => {
        const u = process.cpuUsage(cpu0);
        report({ cpuSeconds: (u.user + u.system) / 1e6, bytes: got, seconds: Number(process.hrtime.bigint() - t0) / 1e9, cipher: s.getCipher().name });
        s.end();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => process.stdout.write(`port ${(server.address() as AddressInfo).port}\n`));
    return;
  }
  const chunk = Buffer.alloc(64 * 1024, 7);
  const s = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(join(dir, 'cert.pem')), servername: 'localhost', ciphers: cipher }, () => {
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end(() => {
        const u = process.cpuUsage(cpu0);
        report({ cpuSeconds: (u.user + u.system) / 1e6, bytes: sent, seconds: Number(process.hrtime.bigint() - t0) / 1e9, cipher: s.getCipher().name });
      });
    };
    pump();
  });
  s.resume();
}

function runChild(args: string[], env: NodeJS.ProcessEnv, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--end', ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`tls-ciphers ${args[0]} exited with ${code}`));
    });
  });
}

async function once(dir: string, cipher: string, bytes: number, env: NodeJS.ProcessEnv): Promise<{ sender: EndReport; receiver: EndReport }> {
  let receiver: EndReport | undefined;
  let sender: EndReport | undefined;
  let portReady!: (p: number) => void;
  const port = new Promise<number>((r) => (portReady = r));
  const rx = runChild(['receiver', '0', dir, cipher, String(bytes)], env, (line) => {
    if (line.startsWith('port ')) portReady(Number(line.slice(5)));
    else receiver = JSON.parse(line) as EndReport;
  });
  const tx = runChild(['sender', String(await port), dir, cipher, String(bytes)], env, (line) => {
    sender = JSON.parse(line) as EndReport;
  });
  await Promise.all([rx, tx]);
  if (sender === undefined || receiver === undefined) throw new Error('an end reported nothing');
  if (receiver.bytes !== bytes) throw new Error(`received ${receiver.bytes} of ${bytes} bytes`);
  if (receiver.cipher !== cipher) throw new Error(`negotiated ${receiver.cipher}, not ${cipher}`);
  return { sender, receiver };
}

export async function benchTlsCiphers(opts: TlsCipherOptions = {}): Promise<TlsCipherResult> {
  const started = Date.now();
  const o: Required<TlsCipherOptions> = { sizeMiB: opts.sizeMiB ?? 512, repeats: opts.repeats ?? 3 };
  const bytes = o.sizeMiB * MiB;
  const dir = mkdtempSync(join(tmpdir(), 'porthole-bench-tls-'));
  const rows: TlsCipherRow[] = [];
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
    ], { stdio: 'ignore' });
    for (const cpu of ['AES instructions', 'no AES instructions'] as const) {
      const env = { ...process.env, ...(cpu === 'no AES instructions' ? { OPENSSL_ia32cap: NO_AES } : {}) };
      for (const [name, cipher] of Object.entries(CIPHERS) as [keyof typeof CIPHERS, string][]) {
        const runs = [];
        for (let i = 0; i < o.repeats; i++) runs.push(await once(dir, cipher, bytes, env));
        const gib = bytes / 2 ** 30;
        rows.push({
          cipher: name,
          cpu,
          mbps: median(runs.map((r) => bytes / 1e6 / r.receiver.seconds)),
          senderCpuPerGiB: median(runs.map((r) => r.sender.cpuSeconds / gib)),
          receiverCpuPerGiB: median(runs.map((r) => r.receiver.cpuSeconds / gib)),
        });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const cost = (cipher: string, cpu: string) => {
    const r = rows.find((x) => x.cipher === cipher && x.cpu === cpu);
    return r === undefined ? NaN : (r.senderCpuPerGiB + r.receiverCpuPerGiB) / 2;
  };
  const aes = cost('AES-256-GCM', 'no AES instructions');
  const chacha = cost('ChaCha20-Poly1305', 'no AES instructions');
  return {
    date: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    environment: machine(),
    options: o,
    rows,
    goals: [
      {
        description: 'without AES instructions, ChaCha20-Poly1305 (what the agent asks for there) costs less CPU per GiB than AES-256-GCM',
        pass: Number.isFinite(aes) && Number.isFinite(chacha) ? chacha < aes : undefined,
        detail: `${fmt(chacha)} vs ${fmt(aes)} CPU s/GiB per end (${fmt(aes / chacha)}× cheaper)`,
      },
    ],
  };
}

function table(res: TlsCipherResult): { header: string[]; rows: string[][] } {
  return {
    header: ['CPU as OpenSSL sees it', 'cipher', 'MB/s', 'sender CPU s/GiB', 'receiver CPU s/GiB'],
    rows: res.rows.map((r) => [r.cpu, r.cipher, fmt(r.mbps), fmt(r.senderCpuPerGiB), fmt(r.receiverCpuPerGiB)]),
  };
}

function describe(res: TlsCipherResult): string {
  return (
    `${res.options.sizeMiB} MiB one way over one TLS 1.3 connection between two Node processes on 127.0.0.1, median of ${res.options.repeats}; ` +
    `"no AES instructions" hides AES-NI and PCLMULQDQ from OpenSSL (OPENSSL_ia32cap=${NO_AES}), as on a Raspberry Pi 3 or 4, whose cores lack ` +
    `the Armv8 crypto extensions. The agent asks for ChaCha20-Poly1305 first on such a CPU and the relay grants it ` +
    `(apps/agent/src/connection/ciphers.ts, apps/relay/src/tls/ciphers.ts); Node's default would be AES-256-GCM. ` +
    `${res.environment.cpus}× ${res.environment.cpuModel}, Node ${res.environment.node}, Linux ${res.environment.kernel}; ${res.date}, ${Math.round(res.durationSeconds)} s.`
  );
}

export function renderTlsCiphersMarkdown(res: TlsCipherResult): string {
  const t = table(res);
  return [
    '### TLS cipher cost on the agent',
    '',
    describe(res),
    '',
    markdownTable(t.header, t.rows),
    '',
    ...res.goals.map((g) => `- **${verdict(g.pass)}** ${g.description}: ${g.detail}`),
  ].join('\n');
}

if (process.argv[2] === '--end') {
  const [role = '', port = '0', dir = '', cipher = '', bytes = '0'] = process.argv.slice(3);
  void childEnd(role, Number(port), dir, cipher, Number(bytes));
} else {
  benchMain(import.meta.url, {
    name: 'tls-ciphers',
    usage: '[--size MiB] [--repeats N]',
    flags: {
      '--size': (o: TlsCipherOptions, v) => (o.sizeMiB = Number(v())),
      '--repeats': (o: TlsCipherOptions, v) => (o.repeats = Number(v())),
    },
    quick: { sizeMiB: 128, repeats: 1 },
    limitMs: 15 * 60_000,
    run: benchTlsCiphers,
    text: (r) => {
      const t = table(r);
      return ['Porthole TLS cipher benchmark', describe(r), '', textTable(t.header, t.rows), '', ...r.goals.map((g) => `${verdict(g.pass)}  ${g.description}: ${g.detail}`)].join('\n');
    },
    markdown: renderTlsCiphersMarkdown,
  });
}
