// The TLS cipher the agent asks a wss:// relay for: ChaCha20-Poly1305 first on a CPU without AES
// instructions (a Pi 3 or 4), Node's default otherwise; checked in a real handshake.
import { execFileSync } from 'node:child_process';
import { constants } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls, { type TLSSocket } from 'node:tls';
import { HELLO_VERSION } from '@porthole/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentCiphers, cpuHasAes, dial } from '../src/connection/index.js';

// Trimmed from real machines' /proc/cpuinfo.
const PI3 = `processor\t: 0\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU part\t: 0xd03\n\nprocessor\t: 1\nFeatures\t: fp asimd evtstrm crc32 cpuid\n`;
const PI3_32BIT = `processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n`;
const PI5 = `processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n`;
const X86 = `processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 pclmulqdq aes avx avx2\n\nprocessor\t: 1\nflags\t\t: fpu vme sse sse2 pclmulqdq aes avx\n`;
const X86_NO_AES = `processor\t: 0\nflags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 aes_like_but_not avx\n`;

describe('cpuHasAes', () => {
  it('reads Arm Features and x86 flags lines', () => {
    expect(cpuHasAes(PI3)).toBe(false);
    expect(cpuHasAes(PI3_32BIT)).toBe(false);
    expect(cpuHasAes(PI5)).toBe(true);
    expect(cpuHasAes(X86)).toBe(true);
    expect(cpuHasAes(X86_NO_AES)).toBe(false);
  });

  it('says it cannot tell when there is no such line', () => {
    expect(cpuHasAes('')).toBeUndefined();
    expect(cpuHasAes('processor\t: 0\nmodel name\t: something\n')).toBeUndefined();
  });
});

describe('agentCiphers', () => {
  it("keeps Node's default with AES instructions or when unknown", () => {
    expect(agentCiphers(true)).toBeUndefined();
    expect(agentCiphers(undefined)).toBeUndefined();
  });

  it("puts ChaCha20-Poly1305 first without them, and adds nothing outside Node's list", () => {
    const list = agentCiphers(false)!.split(':');
    expect(list.slice(0, 3)).toEqual(['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384']);
    expect(new Set(list).size).toBe(list.length);
    const node = new Set(tls.DEFAULT_CIPHERS.split(':'));
    // The two TLS 1.2 ChaCha suites are part of Node's HIGH; everything else is Node's own entry.
    for (const c of list) if (!c.includes('CHACHA20')) expect(node.has(c)).toBe(true);
    for (const c of node) expect(list).toContain(c);
  });
});

describe('the handshake with a relay', () => {
  const dir = mkdtempSync(join(tmpdir(), 'porthole-agent-ciphers-'));
  let server: https.Server;
  let port: number;
  let ca: Buffer;
  const seen: string[] = [];

  beforeAll(async () => {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
    ], { stdio: 'ignore' });
    ca = readFileSync(join(dir, 'cert.pem'));
    // TLS as the relay serves it (apps/relay/src/tls/ciphers.ts: its own order, but ChaCha20 for a
    // client that asks for it first); records the cipher and refuses the upgrade.
    const secureOptions = constants.SSL_OP_PRIORITIZE_CHACHA;
    server = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca, secureOptions }, (req, res) => {
      seen.push((req.socket as TLSSocket).getCipher().name);
      res.writeHead(401).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const attempt = (ciphers: string | undefined) =>
    dial({
      relay: `wss://localhost:${port}`,
      credential: 'pdc_abc',
      hello: { v: HELLO_VERSION, agent: 'test', services: [{ name: 'ui' }], routes: [{ path: '/', service: 'ui', stripPrefix: false }] },
      onStream: () => undefined,
      handshakeTimeoutMs: 5_000,
      ca,
      relayAddress: '127.0.0.1',
      ...(ciphers !== undefined ? { ciphers } : {}),
    }).then(
      () => 'connected',
      (e: Error) => e.message,
    );

  it('gets ChaCha20-Poly1305 from a relay when the CPU has no AES instructions', async () => {
    expect(await attempt(agentCiphers(false))).toMatch(/401|credential/i);
    expect(seen.pop()).toBe('TLS_CHACHA20_POLY1305_SHA256');
  });

  it("gets Node's first choice, AES-256-GCM, with AES instructions", async () => {
    expect(await attempt(tls.DEFAULT_CIPHERS)).toMatch(/401|credential/i);
    expect(seen.pop()).toBe('TLS_AES_256_GCM_SHA384');
  });

  it("uses this machine's choice when none is given", async () => {
    expect(await attempt(undefined)).toMatch(/401|credential/i);
    expect(seen.pop()).toBe(cpuHasAes() === false ? 'TLS_CHACHA20_POLY1305_SHA256' : 'TLS_AES_256_GCM_SHA384');
  });
});
