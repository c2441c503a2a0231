import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { BUSY_TIMEOUT_MS } from '../db/index.js';
import { RelayError } from '../errors.js';

export interface BackupResult {
  /** The backup file written. */
  file: string;
  bytes: number;
  pages: number;
  ms: number;
}

/**
 * Copies the live SQLite database to `dest` with SQLite's online backup API, safe while the relay
 * runs and writes: every page is copied in one step, inside one read transaction, so the copy is
 * the database as of one instant (in WAL mode writers carry on meanwhile). The copy is written
 * beside `dest`, checked (integrity_check), switched to a plain rollback journal so it is one
 * self-contained file, fsynced, made 0600, and only then renamed to `dest`.
 */
export async function backupDatabase(source: string, dest: string): Promise<BackupResult> {
  const started = Date.now();
  const target = path.resolve(dest);
  if (!existsSync(source)) throw new RelayError('RELAY_DATABASE_ERROR', [`no database at ${source} (wrong --config or data directory?)`]);
  if (path.resolve(source) === target) throw new RelayError('RELAY_BAD_REQUEST', ['the backup cannot replace the database itself']);
  const dir = path.dirname(target);
  if (!existsSync(dir)) throw new RelayError('RELAY_BAD_REQUEST', [`the directory ${dir} does not exist`]);
  const tmp = path.join(dir, `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`);

  let db: BetterSqlite3.Database;
  try {
    db = new BetterSqlite3(source, { fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    throw new RelayError('RELAY_DATABASE_ERROR', [`cannot open ${source}: ${(err as Error).message}`], { cause: err });
  }
  try {
    // All remaining pages per step: one step, one snapshot (a step-by-step copy restarts
    // whenever another connection writes, and might never finish on a busy relay).
    const result = await db.backup(tmp, { progress: () => 0x7fffffff });
    const copy = new BetterSqlite3(tmp, { fileMustExist: true });
    try {
      const check = copy.pragma('integrity_check', { simple: true });
      if (check !== 'ok') throw new Error(`the copy fails integrity_check: ${String(check)}`);
      copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
    }
    chmodSync(tmp, 0o600);
    const fd = openSync(tmp, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
    return { file: target, bytes: statSync(target).size, pages: result.totalPages, ms: Date.now() - started };
  } catch (err) {
    rmSync(tmp, { force: true });
    for (const suffix of ['-wal', '-shm', '-journal']) rmSync(`${tmp}${suffix}`, { force: true });
    if (err instanceof RelayError) throw err;
    throw new RelayError('RELAY_DATABASE_ERROR', [`backup failed: ${(err as Error).message}`], { cause: err });
  } finally {
    db.close();
  }
}
