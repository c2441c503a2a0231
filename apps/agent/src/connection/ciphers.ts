import { readFileSync } from 'node:fs';
import tls from 'node:tls';

/**
 * Whether the CPU has AES instructions, from /proc/cpuinfo's `flags` (x86) or `Features` (Arm)
 * lines; undefined when that cannot be told (no such file, no such line).
 */
export function cpuHasAes(cpuinfo?: string): boolean | undefined {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const lines = text.split('\n').filter((l) => /^(flags|Features)\s*:/.test(l));
  if (lines.length === 0) return undefined;
  return lines.every((l) => /\saes(\s|$)/.test(l.slice(l.indexOf(':') + 1) + ' '));
}

/** ChaCha20-Poly1305 first (TLS 1.3, then 1.2), AES-128 before AES-256. */
const CHACHA_FIRST = [
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
];

/**
 * The cipher list the agent offers a wss:// relay, or undefined for Node's default. A CPU without
 * AES instructions (the Raspberry Pi 3's and 4's Cortex-A53/A72: no Armv8 crypto extensions)
 * runs AES-GCM in software several times slower than ChaCha20-Poly1305, yet Node's default puts
 * AES-256-GCM first, and relays pick the client's first choice. So without AES instructions the
 * agent asks for ChaCha20 first, as ssh does and as BoringSSL clients do; with them (or when
 * unknown) it keeps Node's default. Nothing weaker is added: the rest is Node's list.
 */
export function agentCiphers(hasAes: boolean | undefined = cpuHasAes()): string | undefined {
  if (hasAes !== false) return undefined;
  const rest = tls.DEFAULT_CIPHERS.split(':').filter((c) => !CHACHA_FIRST.includes(c));
  return [...CHACHA_FIRST, ...rest].join(':');
}
