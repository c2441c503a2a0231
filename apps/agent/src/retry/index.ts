export { Backoff, BACKOFF_DEFAULTS, type BackoffOptions } from './backoff.js';
