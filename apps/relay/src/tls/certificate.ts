import { createPrivateKey, X509Certificate } from 'node:crypto';

/** What the relay needs to know about a certificate it serves. */
export interface CertificateInfo {
  /** DNS names of the subject alternative name extension, lowercase. */
  readonly names: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 fingerprint of the leaf (AA:BB:…), as Node prints it. */
  readonly fingerprint256: string;
  readonly serialNumber: string;
  readonly issuer: string;
}

/** A certificate chain and its key, PEM, checked to belong together. */
export interface KeyPair {
  /** Leaf first, then the intermediates. */
  readonly cert: string;
  readonly key: string;
  readonly info: CertificateInfo;
}

/**
 * Reads the leaf of a PEM chain and checks that `key` is its private key. Throws with a reason
 * a person can act on (not PEM, wrong key).
 */
export function inspectKeyPair(cert: string, key: string): KeyPair {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (e) {
    throw new Error(`not a PEM certificate: ${(e as Error).message}`, { cause: e });
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new Error(`not a PEM private key: ${(e as Error).message}`, { cause: e });
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new Error('the private key does not belong to the certificate');
  return { cert, key, info: certificateInfo(leaf) };
}

export function certificateInfo(leaf: X509Certificate): CertificateInfo {
  return Object.freeze({
    names: Object.freeze(dnsNames(leaf.subjectAltName)),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    fingerprint256: leaf.fingerprint256,
    serialNumber: leaf.serialNumber,
    issuer: leaf.issuer.replace(/\n/g, ', '),
  });
}

/** `DNS:a.example, DNS:*.a.example, IP Address:…` → the DNS names. */
function dnsNames(san: string | undefined): string[] {
  if (san === undefined) return [];
  return san
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
}

/** The names the relay needs: its own domain and every device subdomain. */
export function namesFor(domain: string): [string, string] {
  return [domain, `*.${domain}`];
}

/** Whether the certificate is for the domain and its wildcard. */
export function coversDomain(info: CertificateInfo, domain: string): boolean {
  return namesFor(domain).every((n) => info.names.includes(n));
}

/** The moment renewal starts: two thirds into the certificate's lifetime. */
export function renewalTime(info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>): number {
  const from = info.notBefore.getTime();
  return from + ((info.notAfter.getTime() - from) * 2) / 3;
}

/** The moment an expiry counts as close: the last sixth of the lifetime (15 days of a 90-day certificate). */
export function alarmTime(info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>): number {
  const to = info.notAfter.getTime();
  return to - (to - info.notBefore.getTime()) / 6;
}
