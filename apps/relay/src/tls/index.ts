// HTTPS for the relay: certificates from ACME or files, the port-80 listener, the status.
export { TlsService, HSTS_HEADER, type TlsOptions, type TlsServiceEvents } from './service.js';
export type { TlsStatus } from './status.js';
export type { CertificateInfo, KeyPair } from './certificate.js';
export type { DnsProvider } from './dns/index.js';
