export { agentCiphers, cpuHasAes } from './ciphers.js';
export { agentUrl, dial, dialHeaders, DIAL_DEFAULTS, fixedLookup, Tunnel, type DialOptions } from './dial.js';
export {
  errorFromClose,
  errorFromNetwork,
  errorFromStatus,
  isPermanent,
  parseRetryAfter,
  PermanentError,
  TransientError,
  TunnelError,
  TunnelErrorCode,
} from './errors.js';
