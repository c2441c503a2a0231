import { constants } from 'node:crypto';

/**
 * Options every secure context of the relay carries (at creation and on each certificate swap:
 * `setSecureContext` starts from scratch). Node's server picks ciphers in its own order, AES-256-GCM
 * first; a client without AES instructions (a Raspberry Pi 3 or 4 agent, many cheaper phones)
 * runs that in software several times slower than ChaCha20-Poly1305. With PRIORITIZE_CHACHA the
 * server keeps its order except that a client asking for ChaCha20 first gets it (Go's and
 * BoringSSL's servers do the same).
 */
export const TLS_SERVER_OPTIONS = Object.freeze({ secureOptions: constants.SSL_OP_PRIORITIZE_CHACHA });
