import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import http from 'node:http';
import tls from 'node:tls';

export interface Peer {
  authorized: boolean;
  authorizationError: string | undefined;
  /** DNS names of the certificate the relay served. */
  names: string[];
  fingerprint256: string;
  validTo: string;
  /** The negotiated cipher suite, e.g. TLS_AES_256_GCM_SHA384. */
  cipher: string;
}

/** A TLS handshake with 127.0.0.1:port naming `servername` (SNI); resolves with what was served. */
export function tlsPeer(port: number, servername: string, ca?: string | Buffer, ciphers?: string): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const opts = { host: '127.0.0.1', port, servername, ...(ca !== undefined ? { ca } : {}), ...(ciphers !== undefined ? { ciphers } : {}) };
    const socket = tls.connect({ ...opts, rejectUnauthorized: false }, () => {
      const cert = socket.getPeerCertificate();
      resolve({
        authorized: socket.authorized,
        authorizationError: socket.authorizationError === null ? undefined : String(socket.authorizationError),
        names: (cert.subjectaltname ?? '')
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s.startsWith('DNS:'))
          .map((s) => s.slice(4)),
        fingerprint256: cert.fingerprint256,
        validTo: cert.valid_to,
        cipher: socket.getCipher().name,
      });
      socket.end();
    });
    socket.once('error', reject);
  });
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** Whether the request went over a connection used before (keep-alive). */
  reused: boolean;
  /** Fingerprint of the certificate on the connection that carried it (https only). */
  fingerprint256: string | undefined;
}

/** GET over https to 127.0.0.1:port with Host `host` and SNI from it; verified against `ca`. */
export function httpsGet(port: number, host: string, path: string, opts: { ca: string | Buffer | (string | Buffer)[]; agent?: https.Agent }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path,
        servername: host,
        headers: { host: `${host}:${port}` },
        ca: opts.ca,
        agent: opts.agent ?? false,
      },
      (res) => {
        const fingerprint256 = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, reused: req.reusedSocket, fingerprint256 }));
      },
    );
    req.once('error', reject);
    req.end();
  });
}

/** Plain-HTTP request to 127.0.0.1:port with a Host header. */
export function httpGet(port: number, host: string, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, reused: false, fingerprint256: undefined }));
    });
    req.once('error', reject);
    req.end();
  });
}

/** Polls `fn` until it returns true. */
export async function until(fn: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
