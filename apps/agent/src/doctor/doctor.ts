import { randomBytes } from 'node:crypto';
import dns from 'node:dns';
import { statSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { ConfigError, helloFor, lanOnlyLookup, loadConfig, readCa, type AgentConfig } from '../config/index.js';
import { agentUrl, dialHeaders } from '../connection/index.js';
import { httpGet, plainNetError, tcpProbe } from '../probe/http.js';
import { AGENT_VERSION } from '../version.js';

/**
 * `porthole-agent doctor`: what stands between this printer and the phone, checked in order, in
 * plain words. Config (valid? only its owner can read it?), each local service (listening? what
 * does it answer?), the relay (name resolves? port reachable? certificate trusted? credential
 * accepted?). A later check that depends on a failed one is skipped, and the credential is never
 * sent over a TLS connection that did not verify.
 */

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';
export type CheckSection = 'config' | 'services' | 'relay';

export interface CheckResult {
  section: CheckSection;
  status: CheckStatus;
  /** Stable identifier of the check and outcome, e.g. `service.down`, `relay.revoked`. */
  code: string;
  text: string;
}

/** Asks the relay to check the credential without opening a tunnel (the relay answers 204), so a
 * running agent's connection is not replaced. Same name as the relay's (apps/relay/src/tunnel/agent-endpoint.ts). */
export const CHECK_HEADER = 'porthole-check';

export interface DoctorOptions {
  configPath: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** Per network step. Default 5 s. */
  timeoutMs?: number;
  now?: () => number;
  /** Certificates closer than this to expiry are a warning. Default 14 days. */
  expiryWarnDays?: number;
}

const DAY = 86_400_000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(Object.assign(new Error(`${what}: no answer within ${ms} ms`), { code: 'ETIMEDOUT' })), ms);
    }),
  ]);
}

/** A TLS verification error code in plain words. */
export function plainTlsError(code: string, host: string): string {
  switch (code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'the relay presents a self-signed certificate, which this Pi does not trust (a relay with a private CA needs "caFile" in the config)';
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
      return 'the relay\'s certificate is signed by an authority this Pi does not know, or the relay does not send its intermediate certificate';
    case 'CERT_HAS_EXPIRED':
      return 'the relay\'s certificate has expired (is its automatic renewal working? or is this Pi\'s clock wrong?)';
    case 'CERT_NOT_YET_VALID':
      return 'the relay\'s certificate is not valid yet: this Pi\'s clock is probably wrong (check timedatectl)';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `the relay's certificate is for other names, not ${host}`;
    case 'CERT_REVOKED':
      return 'the relay\'s certificate was revoked';
    default:
      return `the relay's certificate does not verify (${code})`;
  }
}

export async function runDoctor(opts: DoctorOptions, report: (r: CheckResult) => void = () => undefined): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const now = opts.now ?? Date.now;
  const add = (section: CheckSection, status: CheckStatus, code: string, text: string) => {
    const r = { section, status, code, text };
    results.push(r);
    report(r);
  };

  // ---- config ----
  let mode: number;
  try {
    mode = statSync(opts.configPath).mode & 0o777;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    add(
      'config',
      'fail',
      'config.missing',
      code === 'ENOENT'
        ? `there is no config at ${opts.configPath}: pair this printer first (porthole-agent pair --relay URL)`
        : `cannot read ${opts.configPath} (${code ?? (e as Error).message}): run doctor as the agent's user or as root`,
    );
    return results;
  }
  let config: AgentConfig;
  let ca: Buffer | undefined;
  try {
    config = loadConfig(opts.configPath, opts.env ?? {});
    ca = readCa(config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    add('config', 'fail', 'config.invalid', `the config does not work: ${e.message}`);
    return results;
  }
  add('config', 'ok', 'config.valid', `valid: relay ${config.relay}, services ${Object.keys(config.services).join(', ')}`);
  if ((mode & 0o077) !== 0) {
    add(
      'config',
      'fail',
      'config.mode',
      `mode ${mode.toString(8).padStart(4, '0')}: other users on this machine can read the printer's credential. Run: chmod 600 ${opts.configPath}`,
    );
  } else {
    add('config', 'ok', 'config.mode', `mode ${mode.toString(8).padStart(4, '0')}: only its owner can read the credential`);
  }

  // ---- local services ----
  await Promise.all(
    Object.values(config.services).map(async (svc) => {
      const at = config.routes.filter((r) => r.service === svc.name).map((r) => r.path);
      const label = `${svc.name} (${svc.url}${at.length > 0 ? `, at ${at.join(' ')}` : ', no route'})`;
      const open = await tcpProbe({ host: svc.host, port: svc.port, timeoutMs, lookup: lanOnlyLookup });
      if (!open.ok) {
        add('services', 'fail', 'service.down', `${label}: ${plainNetError(open.code, open.message)}. Is it running?`);
        return;
      }
      const got = await httpGet({ host: svc.host, port: svc.port, path: '/', hostHeader: svc.hostHeader, timeoutMs, headOnly: true, lookup: lanOnlyLookup });
      if (!got.ok) {
        add('services', 'fail', 'service.no-http', `${label}: accepts connections but ${plainNetError(got.code, got.message)}`);
        return;
      }
      const server = got.headers.server !== undefined ? `, Server: ${String(got.headers.server).slice(0, 80)}` : '';
      const status = `${got.status} ${http.STATUS_CODES[got.status] ?? ''}`.trim();
      if (got.status >= 500) {
        add('services', 'fail', 'service.error', `${label}: answers GET / with ${status}${server}: the service behind it is failing`);
      } else {
        add('services', 'ok', 'service.ok', `${label}: answers GET / with ${status}${server}`);
      }
    }),
  );

  // ---- the relay ----
  const url = new URL(agentUrl(config.relay));
  const secure = url.protocol === 'wss:';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port !== '' ? Number(url.port) : secure ? 443 : 80;
  const skip = (code: string, why: string) => add('relay', 'skip', code, why);

  const loopback = host === 'localhost' || host.endsWith('.localhost') || host === '::1' || host.startsWith('127.');
  if (!secure && !loopback) {
    add('relay', 'warn', 'relay.cleartext', `${config.relay} is not TLS (ws://): the credential crosses the network in clear`);
  }
  if (net.isIP(host) === 0) {
    try {
      const addrs = await withTimeout(dns.promises.lookup(host, { all: true }), timeoutMs, 'DNS');
      add('relay', 'ok', 'relay.dns', `DNS: ${host} resolves to ${addrs.map((a) => a.address).join(', ')}`);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'ERROR';
      add('relay', 'fail', 'relay.dns', `DNS: ${host} ${code === 'ENOTFOUND' ? 'does not resolve (ENOTFOUND)' : `cannot be resolved: ${plainNetError(code, (e as Error).message)}`}. Check "relay" in the config, and the relay's DNS records`);
      skip('relay.tcp', 'connection, TLS and credential not checked: the name does not resolve');
      return results;
    }
  }

  const open = await tcpProbe({ host, port, timeoutMs });
  if (!open.ok) {
    add('relay', 'fail', 'relay.tcp', `cannot connect to ${host} port ${port}: ${plainNetError(open.code, open.message)}. Is the relay running, and its firewall open?`);
    skip('relay.tls', 'TLS and credential not checked: no connection');
    return results;
  }
  add('relay', 'ok', 'relay.tcp', `${host} port ${port} accepts connections (${open.address})`);

  if (secure) {
    const t = await tlsCheck(host, port, ca, timeoutMs);
    if (!t.ok) {
      add('relay', 'fail', 'relay.tls', `TLS: ${t.text}`);
      skip('relay.credential', 'credential not checked: it is never sent over a connection that does not verify');
      return results;
    }
    const days = Math.floor((t.validTo - now()) / DAY);
    const until = new Date(t.validTo).toISOString().slice(0, 10);
    const text = `TLS: certificate for ${host} valid until ${until} (${days} day${days === 1 ? '' : 's'}), issued by ${t.issuer}`;
    if (days < (opts.expiryWarnDays ?? 14)) add('relay', 'warn', 'relay.tls-expiry', `${text}: renewal is due; is the relay renewing it?`);
    else add('relay', 'ok', 'relay.tls', text);
  }

  const answer = await credentialCheck(config, url, ca, timeoutMs);
  const again = `Pair again: porthole-agent pair --relay ${config.relay.replace(/^ws/, 'http')} --force`;
  if (answer.kind === 'error') {
    add('relay', 'fail', 'relay.credential-error', `credential not checked: ${answer.text}`);
  } else if (answer.status === 204 || answer.status === 101) {
    add('relay', 'ok', 'relay.credential', 'the relay accepts this printer\'s credential');
  } else if (answer.status === 401) {
    add('relay', 'fail', 'relay.credential-unknown', `the relay does not know this credential (HTTP 401): the device was removed there, or this config is for another relay. ${again}`);
  } else if (answer.status === 403) {
    add('relay', 'fail', 'relay.credential-revoked', `the relay refused this credential: it was revoked (HTTP 403). ${again}`);
  } else if (answer.status === 400) {
    add('relay', 'fail', 'relay.hello', 'the relay refused the agent\'s description of its services and routes (HTTP 400): is the relay older than this agent?');
  } else if (answer.status === 404) {
    add('relay', 'fail', 'relay.endpoint', `there is no Porthole agent endpoint at ${url.origin}${url.pathname} (HTTP 404): is this the relay's address? A proxy in front of it must pass WebSocket upgrades`);
  } else {
    add('relay', 'fail', 'relay.status', `the relay answered HTTP ${answer.status} ${http.STATUS_CODES[answer.status] ?? ''}: busy or failing; the agent keeps retrying`.replace(/ :/, ':'));
  }
  return results;
}

type TlsOutcome = { ok: true; validTo: number; issuer: string } | { ok: false; text: string };

function tlsCheck(host: string, port: number, ca: Buffer | undefined, timeoutMs: number): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    let done = false;
    // Verification is done here rather than by the handshake, to say what is wrong and with which certificate.
    const socket = tls.connect({
      host,
      port,
      ...(net.isIP(host) === 0 ? { servername: host } : {}),
      ...(ca !== undefined ? { ca } : {}),
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    const finish = (r: TlsOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, text: `no TLS handshake within ${timeoutMs} ms (is the port plain HTTP? then the relay URL should be ws://)` }), timeoutMs);
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      const code = !socket.authorized
        ? String(socket.authorizationError ?? 'UNKNOWN')
        : tls.checkServerIdentity(host, cert) !== undefined
          ? 'ERR_TLS_CERT_ALTNAME_INVALID'
          : undefined;
      if (code !== undefined) {
        const names = code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? ` (it names ${cert.subjectaltname ?? cert.subject?.CN ?? 'nothing'})` : '';
        finish({ ok: false, text: `${plainTlsError(code, host)}${names}` });
        return;
      }
      const issuer = cert.issuer?.O ?? cert.issuer?.CN ?? 'an unnamed issuer';
      finish({ ok: true, validTo: Date.parse(cert.valid_to), issuer: Array.isArray(issuer) ? issuer.join(', ') : issuer });
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? 'ERROR';
      finish({
        ok: false,
        text: /^ERR_SSL|EPROTO/.test(code)
          ? `the TLS handshake failed (${code}): is the port plain HTTP? then the relay URL should be ws://`
          : plainNetError(code, e.message),
      });
    });
  });
}

type CredentialAnswer = { kind: 'status'; status: number } | { kind: 'error'; text: string };

/** The agent's own upgrade request, with the check header: 204 accepted, 401 unknown, 403 revoked. */
function credentialCheck(config: AgentConfig, url: URL, ca: Buffer | undefined, timeoutMs: number): Promise<CredentialAnswer> {
  return new Promise((resolve) => {
    const secure = url.protocol === 'wss:';
    const host = url.hostname.replace(/^\[|\]$/g, '');
    let done = false;
    const req = (secure ? https : http).request({
      host,
      port: url.port !== '' ? Number(url.port) : secure ? 443 : 80,
      path: url.pathname,
      method: 'GET',
      agent: false,
      headers: {
        ...dialHeaders(config.credential, helloFor(config, AGENT_VERSION)),
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        [CHECK_HEADER]: '1',
      },
      ...(secure ? { ...(net.isIP(host) === 0 ? { servername: host } : {}), ...(ca !== undefined ? { ca } : {}) } : {}),
    });
    const finish = (a: CredentialAnswer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(a);
    };
    const timer = setTimeout(() => finish({ kind: 'error', text: `the relay did not answer within ${timeoutMs} ms` }), timeoutMs);
    // An older relay opens the tunnel (101): close it at once.
    req.once('upgrade', (_res, socket) => {
      socket.destroy();
      finish({ kind: 'status', status: 101 });
    });
    req.once('response', (res) => {
      res.resume();
      finish({ kind: 'status', status: res.statusCode ?? 0 });
    });
    req.once('error', (e: NodeJS.ErrnoException) => finish({ kind: 'error', text: plainNetError(e.code ?? 'ERROR', e.message) }));
    req.end();
  });
}
