import type { RelayConfig } from '../../config.js';
import { ChalltestsrvDns } from './challtestsrv.js';
import { CloudflareDns } from './cloudflare.js';
import type { DnsProvider } from './provider.js';

export { challengeRecordName, type DnsProvider } from './provider.js';
export { ChalltestsrvDns } from './challtestsrv.js';
export { CLOUDFLARE_API, CloudflareApiError, CloudflareDns, type CloudflareRecord } from './cloudflare.js';

type DnsConfig = Pick<RelayConfig, 'dnsProvider' | 'dnsPropagationMs' | 'cloudflareApiToken' | 'cloudflareZoneId' | 'challtestsrvUrl'>;

/** The configured DNS-01 provider (the config schema has checked its settings are there). */
export function createDnsProvider(config: DnsConfig): DnsProvider {
  const propagation = config.dnsPropagationMs !== undefined ? { propagationMs: config.dnsPropagationMs } : {};
  switch (config.dnsProvider) {
    case 'cloudflare':
      return new CloudflareDns({
        apiToken: config.cloudflareApiToken ?? '',
        ...(config.cloudflareZoneId !== undefined ? { zoneId: config.cloudflareZoneId } : {}),
        ...propagation,
      });
    case 'challtestsrv':
      return new ChalltestsrvDns({ url: config.challtestsrvUrl ?? '', ...propagation });
    case undefined:
      throw new Error('no DNS provider configured (dnsProvider)');
  }
}
