/**
 * Publishes the TXT record of an ACME DNS-01 challenge (`_acme-challenge.DOMAIN`), which the
 * wildcard `*.DOMAIN` needs. One implementation per DNS host, in this folder; see
 * apps/relay/README.md ("Adding a DNS provider").
 */
export interface DnsProvider<Handle = unknown> {
  /** For logs: `cloudflare`, `challtestsrv`. */
  readonly name: string;
  /** How long to wait after createTxt before the CA may look (the provider's own propagation). */
  readonly propagationMs: number;
  /**
   * Adds a TXT record `name` (a fully qualified name without the trailing dot) holding `value`,
   * next to any record already there (a renewal may overlap another's challenge). Resolves with
   * whatever removeTxt needs to remove exactly this record.
   */
  createTxt(name: string, value: string): Promise<Handle>;
  /** Removes the record createTxt added. */
  removeTxt(handle: Handle): Promise<void>;
}

/** The TXT record name of the DNS-01 challenge for `domain` (RFC 8555 §8.4). */
export function challengeRecordName(domain: string): string {
  return `_acme-challenge.${domain.replace(/^\*\./, '')}`;
}
