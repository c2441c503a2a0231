import { describe, expect, it } from 'vitest';
import { ACME_DIRECTORIES, loadConfig } from '../src/config.js';
import { RelayError } from '../src/errors.js';

const cwd = '/srv/porthole';
const load = (env: Record<string, string>) => loadConfig({ cwd, env });

function invalid(env: Record<string, string>, ...fragments: string[]): void {
  let caught: unknown;
  try {
    load(env);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(RelayError);
  for (const f of fragments) expect((caught as Error).message).toContain(f);
}

const ACME = {
  PORTHOLE_TLS: 'acme',
  PORTHOLE_DOMAIN: 'relay.example.com',
  PORTHOLE_DNS_PROVIDER: 'cloudflare',
  PORTHOLE_CLOUDFLARE_API_TOKEN: 'tok',
};

describe('TLS settings', () => {
  it('are off by default: plain HTTP on 8080, as before', () => {
    expect(load({})).toMatchObject({ tls: 'off', port: 8080, httpPort: 80, publicUrl: 'http://localhost:8080', acmeDirectoryUrl: ACME_DIRECTORIES.production });
  });

  it('acme: HTTPS on 443 with port 80 beside it, and https:// as the public URL', () => {
    expect(load(ACME)).toMatchObject({ tls: 'acme', port: 443, httpPort: 80, publicUrl: 'https://relay.example.com' });
    expect(load({ ...ACME, PORTHOLE_PORT: '8443', PORTHOLE_HTTP_PORT: '8080' })).toMatchObject({ port: 8443, httpPort: 8080, publicUrl: 'https://relay.example.com:8443' });
  });

  it('staging and production are one setting; any https:// directory works', () => {
    expect(load({ ...ACME, PORTHOLE_ACME_DIRECTORY_URL: 'staging' }).acmeDirectoryUrl).toBe('https://acme-staging-v02.api.letsencrypt.org/directory');
    expect(load({ ...ACME, PORTHOLE_ACME_DIRECTORY_URL: 'production' }).acmeDirectoryUrl).toBe('https://acme-v02.api.letsencrypt.org/directory');
    expect(load({ ...ACME, PORTHOLE_ACME_DIRECTORY_URL: 'https://ca.internal:9000/acme/dir' }).acmeDirectoryUrl).toBe('https://ca.internal:9000/acme/dir');
    invalid({ ...ACME, PORTHOLE_ACME_DIRECTORY_URL: 'http://ca.internal/dir' }, 'acmeDirectoryUrl', 'https://');
    invalid({ ...ACME, PORTHOLE_ACME_DIRECTORY_URL: 'letsencrypt-ish' }, 'acmeDirectoryUrl');
  });

  it('acme needs a public name and a DNS provider with its settings', () => {
    invalid({ PORTHOLE_TLS: 'acme' }, 'domain', 'public DNS name', 'dnsProvider');
    invalid({ ...ACME, PORTHOLE_DNS_PROVIDER: '' }, 'dnsProvider', '*.relay.example.com');
    invalid({ ...ACME, PORTHOLE_CLOUDFLARE_API_TOKEN: '' }, 'cloudflareApiToken', 'required');
    invalid({ ...ACME, PORTHOLE_DNS_PROVIDER: 'route53' }, 'dnsProvider (from PORTHOLE_DNS_PROVIDER)');
    invalid({ ...ACME, PORTHOLE_DNS_PROVIDER: 'challtestsrv' }, 'challtestsrvUrl', 'required');
    invalid({ ...ACME, PORTHOLE_CLOUDFLARE_ZONE_ID: 'example.com' }, 'cloudflareZoneId', '32-character');
    invalid({ ...ACME, PORTHOLE_PORT: '80' }, 'httpPort', 'must differ');
  });

  it('files: both paths, made absolute', () => {
    expect(load({ PORTHOLE_TLS: 'files', PORTHOLE_TLS_CERT_FILE: 'tls/fullchain.pem', PORTHOLE_TLS_KEY_FILE: '/etc/tls/key.pem' })).toMatchObject({
      tls: 'files',
      tlsCertFile: '/srv/porthole/tls/fullchain.pem',
      tlsKeyFile: '/etc/tls/key.pem',
      publicUrl: 'https://localhost',
    });
    invalid({ PORTHOLE_TLS: 'files' }, 'tlsCertFile', 'tlsKeyFile');
  });

  it('rejects an unknown mode', () => {
    invalid({ PORTHOLE_TLS: 'on' }, 'tls (from PORTHOLE_TLS)');
  });
});
