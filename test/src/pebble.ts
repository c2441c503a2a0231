// Pebble, Let's Encrypt's test ACME server, and pebble-challtestsrv, its mock DNS server, from
// Debian's `pebble` package, on 127.0.0.1: every name resolves to 127.0.0.1 (so Pebble's HTTP-01
// check reaches the relay's HTTP port), TXT records are set through challtestsrv's API.
// Used by the relay's TLS tests (in process) and the end-to-end TLS test (real processes).
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnManaged, tempDir, type ManagedProcess } from './procs.js';

const run = promisify(execFile);

export const PEBBLE_BIN = process.env.PORTHOLE_PEBBLE ?? '/usr/bin/pebble';
export const CHALLTESTSRV_BIN = process.env.PORTHOLE_CHALLTESTSRV ?? '/usr/bin/pebble-challtestsrv';

export interface PebbleOptions {
  /** The port Pebble sends HTTP-01 validations to: the relay's plain-HTTP port. */
  httpPort: number;
  /** Share of valid authorizations Pebble reuses in a new order (0–100). Default 0: every order validates. */
  authzReuse?: number;
  echo?: boolean;
}

export interface Pebble {
  /** ACME directory URL (https, Pebble's own test certificate). */
  directoryUrl: string;
  /** PEM file of the certificate Pebble's ACME and management endpoints serve: trust it to talk to Pebble. */
  apiCaFile: string;
  /** PEM of the root that issues the certificates (new on every Pebble start): trust it to reach the relay. */
  rootPem: string;
  rootFile: string;
  /** pebble-challtestsrv's management API origin. */
  challtestsrvUrl: string;
  httpPort: number;
  /** Orders Pebble has accepted so far (counted from its log). */
  orders(): number;
  pebble: ManagedProcess;
  challtestsrv: ManagedProcess;
  dir: string;
  close(): Promise<void>;
}

/** A self-signed certificate (EC P-256) for `names` (DNS names or IPv4 addresses), via openssl. */
export async function selfSignedCertificate(dir: string, cn: string, names: string[], days = 2): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(dir, `${cn}.pem`);
  const keyFile = join(dir, `${cn}.key`);
  const san = names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', String(days), '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`,
  ]);
  return { certFile, keyFile };
}

/** `n` distinct ports that were free a moment ago on 127.0.0.1 (held together, so never the same twice). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function waitForPort(port: number, proc: ManagedProcess, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!proc.running || Date.now() > end) throw new Error(`${proc.name} is not listening on ${port}\n${proc.tail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function getText(url: string, ca: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode} ${body}`))));
      })
      .once('error', reject);
  });
}

/** Starts challtestsrv and Pebble on free ports; close() stops both and removes their files. */
export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  const dir = await tempDir('porthole-pebble-', true);
  const [acmePort, mgmtPort, dnsPort, ctsPort, tlsPort] = (await freePorts(5)) as [number, number, number, number, number];
  const api = await selfSignedCertificate(dir, 'pebble-api', ['127.0.0.1', 'localhost']);
  const configFile = join(dir, 'pebble-config.json');
  await writeFile(
    configFile,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: api.certFile,
        privateKey: api.keyFile,
        httpPort: opts.httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  const challtestsrv = spawnManaged(
    'challtestsrv',
    CHALLTESTSRV_BIN,
    ['-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${ctsPort}`],
    { echo: opts.echo },
  );
  const pebble = spawnManaged('pebble', PEBBLE_BIN, ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`, '-strict=false'], {
    env: {
      ...process.env,
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: '0',
      PEBBLE_AUTHZREUSE: String(opts.authzReuse ?? 0),
    },
    echo: opts.echo,
    keepLines: 2_000,
  });
  let orders = 0;
  pebble.onLine((line) => {
    if (/Added order "/.test(line.text)) orders += 1;
  });
  const close = async () => {
    await Promise.all([pebble.stop(2_000), challtestsrv.stop(2_000)]);
  };
  try {
    await Promise.all([waitForPort(ctsPort, challtestsrv), waitForPort(acmePort, pebble), waitForPort(mgmtPort, pebble)]);
    const apiCa = await readFile(api.certFile);
    const rootPem = await getText(`https://127.0.0.1:${mgmtPort}/roots/0`, apiCa);
    const rootFile = join(dir, 'pebble-root.pem');
    await writeFile(rootFile, rootPem);
    return {
      directoryUrl: `https://127.0.0.1:${acmePort}/dir`,
      apiCaFile: api.certFile,
      rootPem,
      rootFile,
      challtestsrvUrl: `http://127.0.0.1:${ctsPort}`,
      httpPort: opts.httpPort,
      orders: () => orders,
      pebble,
      challtestsrv,
      dir,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
