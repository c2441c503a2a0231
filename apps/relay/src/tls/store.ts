import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inspectKeyPair, type KeyPair } from './certificate.js';

/** What `certificate.json` holds: the chain and key together, so one rename replaces both. */
interface StoredCertificate {
  v: 1;
  /** The ACME directory it came from: a staging certificate is never reused against production. */
  directoryUrl: string;
  cert: string;
  key: string;
  obtainedAt: string;
}

export interface LoadedCertificate extends KeyPair {
  readonly directoryUrl: string;
  readonly obtainedAt: Date;
}

/**
 * The ACME state under `<dataDir>/tls/` (0700): the account key and the current certificate,
 * every file 0600, written to a temporary name and renamed so a crash never leaves half a file.
 */
export class TlsStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'tls');
  }

  get accountKeyFile(): string {
    return path.join(this.dir, 'account-key.pem');
  }

  get certificateFile(): string {
    return path.join(this.dir, 'certificate.json');
  }

  /** ACME account URLs by directory URL (the CA's name for the account key). */
  get accountsFile(): string {
    return path.join(this.dir, 'accounts.json');
  }

  async accountUrl(directoryUrl: string): Promise<string | undefined> {
    const url = (await this.accounts())[directoryUrl];
    return typeof url === 'string' ? url : undefined;
  }

  /** Records (or, with undefined, forgets) the account URL the CA gave for our key. */
  async setAccountUrl(directoryUrl: string, accountUrl: string | undefined): Promise<void> {
    const all = await this.accounts();
    if (accountUrl === undefined) delete all[directoryUrl];
    else all[directoryUrl] = accountUrl;
    await this.write(this.accountsFile, `${JSON.stringify(all, null, 2)}\n`);
  }

  private async accounts(): Promise<Record<string, unknown>> {
    const text = await readIfExists(this.accountsFile);
    if (text === undefined) return {};
    try {
      const v: unknown = JSON.parse(text);
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
    } catch {
      return {}; // registering again finds the same account
    }
  }

  /** The ACME account key, created once with `create` and kept. */
  async accountKey(create: () => Promise<string>): Promise<string> {
    const existing = await readIfExists(this.accountKeyFile);
    if (existing !== undefined) return existing;
    const key = await create();
    await this.write(this.accountKeyFile, key);
    return key;
  }

  /** The stored certificate, or undefined when there is none or it cannot be used (reason in `onProblem`). */
  async loadCertificate(onProblem: (reason: string) => void): Promise<LoadedCertificate | undefined> {
    const text = await readIfExists(this.certificateFile);
    if (text === undefined) return undefined;
    try {
      const stored = JSON.parse(text) as Partial<StoredCertificate>;
      if (stored.v !== 1 || typeof stored.cert !== 'string' || typeof stored.key !== 'string' || typeof stored.directoryUrl !== 'string') {
        throw new Error('unknown format');
      }
      const pair = inspectKeyPair(stored.cert, stored.key);
      return { ...pair, directoryUrl: stored.directoryUrl, obtainedAt: new Date(stored.obtainedAt ?? pair.info.notBefore) };
    } catch (e) {
      onProblem(`${this.certificateFile}: ${(e as Error).message}`);
      return undefined;
    }
  }

  async saveCertificate(pair: KeyPair, directoryUrl: string, obtainedAt: Date): Promise<void> {
    const stored: StoredCertificate = { v: 1, directoryUrl, cert: pair.cert, key: pair.key, obtainedAt: obtainedAt.toISOString() };
    await this.write(this.certificateFile, `${JSON.stringify(stored, null, 2)}\n`);
  }

  private async write(file: string, data: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, data, { mode: 0o600, flag: 'wx' });
      await rename(tmp, file);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
