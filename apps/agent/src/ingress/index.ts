export { Ingress, INGRESS_DEFAULTS, type IngressOptions } from './ingress.js';
export { join, resetSocket, type JoinResult } from './pipe.js';
export { PooledReader, ReadPool } from './read-pool.js';
