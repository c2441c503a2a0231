import { EventEmitter } from 'node:events';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { inspectKeyPair, type KeyPair } from './certificate.js';
import { NO_PROGRESS, type SourceProgress } from './status.js';

export interface FileCertificatesOptions {
  certFile: string;
  keyFile: string;
  log: Logger;
  now: () => number;
  /** How often the files' modification times are polled. */
  pollMs: number;
}

export interface FileCertificatesEvents {
  certificate: [KeyPair];
  failure: [Error];
}

/**
 * The operator's certificate and key files (certbot, a corporate CA…), served as they are and
 * reloaded when either changes. A pair that does not load (half-written, key and certificate
 * out of step) is logged and the previous one kept until the next change.
 *
 * Polling (fs.watchFile) rather than fs.watch: certbot replaces files by renaming symlinks,
 * which inotify watches on the old inode miss.
 */
export class FileCertificates extends EventEmitter<FileCertificatesEvents> {
  private readonly opts: FileCertificatesOptions;
  private currentPair: KeyPair | undefined;
  private loadedAt: number | undefined;
  private lastAttemptAt: number | undefined;
  private lastError: string | undefined;
  private failures = 0;
  private debounce: NodeJS.Timeout | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private readonly onChange = (curr: Stats, prev: Stats) => {
    if (curr.mtimeMs === prev.mtimeMs && curr.ino === prev.ino && curr.size === prev.size) return;
    clearTimeout(this.debounce);
    // The other file of the pair usually follows within moments.
    this.debounce = setTimeout(() => void this.reload(), Math.min(500, this.opts.pollMs));
  };

  constructor(opts: FileCertificatesOptions) {
    super();
    this.opts = opts;
  }

  get current(): KeyPair | undefined {
    return this.currentPair;
  }

  /** Loads the pair (rejects when it cannot: the relay does not start on a broken pair) and starts watching. */
  async start(): Promise<void> {
    const pair = await this.load();
    this.use(pair);
    this.opts.log.info({ names: pair.info.names, notAfter: pair.info.notAfter, certFile: this.opts.certFile }, 'serving the certificate files');
    for (const f of [this.opts.certFile, this.opts.keyFile]) watchFile(f, { interval: this.opts.pollMs, persistent: false }, this.onChange);
  }

  /** Reloads now (also what a change triggers). */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(async () => {
      this.lastAttemptAt = this.opts.now();
      let pair: KeyPair;
      try {
        pair = await this.load();
      } catch (e) {
        this.failures += 1;
        this.lastError = (e as Error).message;
        this.opts.log.warn({ err: e }, 'certificate files changed but do not load; still serving the previous certificate');
        this.emit('failure', e as Error);
        return;
      }
      if (pair.info.fingerprint256 === this.currentPair?.info.fingerprint256) return;
      this.use(pair);
      this.opts.log.info({ names: pair.info.names, notAfter: pair.info.notAfter }, 'certificate files reloaded');
    });
    return this.reloading;
  }

  check(): Promise<void> {
    return Promise.resolve();
  }

  progress(): SourceProgress {
    const at = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms));
    return {
      ...NO_PROGRESS,
      lastRenewalAt: at(this.loadedAt),
      lastAttemptAt: at(this.lastAttemptAt),
      lastRenewalError: this.lastError,
      consecutiveFailures: this.failures,
    };
  }

  async close(): Promise<void> {
    clearTimeout(this.debounce);
    for (const f of [this.opts.certFile, this.opts.keyFile]) unwatchFile(f, this.onChange);
    await this.reloading;
  }

  private use(pair: KeyPair): void {
    this.currentPair = pair;
    this.loadedAt = this.opts.now();
    this.failures = 0;
    this.lastError = undefined;
    this.emit('certificate', pair);
  }

  private async load(): Promise<KeyPair> {
    const read = async (file: string, what: string) => {
      try {
        return await readFile(file, 'utf8');
      } catch (e) {
        throw new Error(`cannot read the ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
      }
    };
    const [cert, key] = await Promise.all([read(this.opts.certFile, 'certificate'), read(this.opts.keyFile, 'key')]);
    try {
      return inspectKeyPair(cert, key);
    } catch (e) {
      throw new Error(`${this.opts.certFile} and ${this.opts.keyFile}: ${(e as Error).message}`, { cause: e });
    }
  }
}
