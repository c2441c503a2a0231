// relayAddress: connect to an IP while TLS names and verifies the relay URL's host (like curl
// --resolve), and verification that no environment variable turns off.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { HELLO_VERSION } from '@porthole/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { dial, fixedLookup } from '../src/connection/index.js';

const base = {
  relay: 'wss://relay.test',
  credential: 'pdc_abc',
  services: { ui: { url: 'http://127.0.0.1:5000' } },
  routes: [{ path: '/', service: 'ui' }],
};

describe('relayAddress', () => {
  it('is an optional IP address', () => {
    expect(parseConfig(base).relayAddress).toBeUndefined();
    expect(parseConfig({ ...base, relayAddress: '203.0.113.7' }).relayAddress).toBe('203.0.113.7');
    expect(parseConfig({ ...base, relayAddress: '2001:db8::7' }).relayAddress).toBe('2001:db8::7');
    expect(() => parseConfig({ ...base, relayAddress: 'relay.lan' })).toThrow(/relayAddress: must be an IP address/);
  });

  it('answers every lookup with the address, in both callback shapes', async () => {
    const lookup = fixedLookup('192.0.2.1') as unknown as (h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void) => void;
    const one = await new Promise((r) => lookup('relay.test', {}, (...a) => r(a)));
    expect(one).toEqual([null, '192.0.2.1', 4]);
    const all = await new Promise((r) => lookup('relay.test', { all: true }, (...a) => r(a)));
    expect(all).toEqual([null, [{ address: '192.0.2.1', family: 4 }]]);
    expect(() => fixedLookup('relay.test')).toThrow(TypeError);
  });
});

describe('dialling a wss:// relay by name at a fixed address', () => {
  const dir = mkdtempSync(join(tmpdir(), 'porthole-agent-tls-'));
  let server: https.Server;
  let port: number;
  let ca: Buffer;
  const seen: (string | false | null)[] = [];

  beforeAll(async () => {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=relay.test', '-addext', 'subjectAltName=DNS:relay.test',
    ], { stdio: 'ignore' });
    ca = readFileSync(join(dir, 'cert.pem'));
    // Refuses every upgrade with 401: enough to see the handshake and the name it was made for.
    server = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, (req, res) => {
      seen.push((req.socket as TLSSocket).servername);
      res.writeHead(401).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const attempt = (relay: string, opts: { ca?: Buffer; relayAddress?: string }) =>
    dial({
      relay,
      credential: 'pdc_abc',
      hello: { v: HELLO_VERSION, agent: 'test', services: [{ name: 'ui' }], routes: [{ path: '/', service: 'ui', stripPrefix: false }] },
      onStream: () => undefined,
      handshakeTimeoutMs: 5_000,
      ...opts,
    }).then(
      () => 'connected',
      (e: Error) => e.message,
    );

  it('reaches 127.0.0.1, sends the name as SNI and verifies the certificate for it', async () => {
    // 401 comes from the server: the TLS handshake for relay.test verified.
    expect(await attempt(`wss://relay.test:${port}`, { ca, relayAddress: '127.0.0.1' })).toMatch(/401|credential/i);
    expect(seen).toEqual(['relay.test']);
  });

  it('refuses a certificate for another name, and one from an unknown CA', async () => {
    expect(await attempt(`wss://other.test:${port}`, { ca, relayAddress: '127.0.0.1' })).toMatch(/altnames/);
    expect(await attempt(`wss://relay.test:${port}`, { relayAddress: '127.0.0.1' })).toMatch(/self-signed certificate/);
    expect(seen).toEqual(['relay.test']);
  });

  it('ignores NODE_TLS_REJECT_UNAUTHORIZED=0', async () => {
    const before = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    try {
      expect(await attempt(`wss://relay.test:${port}`, { relayAddress: '127.0.0.1' })).toMatch(/self-signed certificate/);
    } finally {
      if (before === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = before;
    }
    expect(seen).toEqual(['relay.test']);
  });
});
