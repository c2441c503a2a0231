import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { PrismaBetterSQLite3 } from '@prisma/adapter-better-sqlite3';
import BetterSqlite3 from 'better-sqlite3';
import { sqliteFile, type RelayConfig } from '../config.js';
import { RelayError } from '../errors.js';
import { PrismaClient } from '../generated/prisma/client.js';
import { LogField, type Logger } from '../log.js';
import { migrate, type MigrateResult } from './migrate.js';

export { PrismaClient, Prisma } from '../generated/prisma/client.js';
export { DEFAULT_MIGRATIONS_DIR, migrate, readMigrations } from './migrate.js';
export type { Migration, MigrateOptions, MigrateResult } from './migrate.js';

/** How long a statement waits for another connection's write lock before SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5_000;

export interface Database {
  readonly prisma: PrismaClient;
  /** Absolute path of the SQLite file. */
  readonly file: string;
  /** What start-up migration did. */
  readonly migrations: MigrateResult;
  /** Disconnects; safe to call twice. */
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** Defaults to the repository's prisma/migrations (tests point it elsewhere). */
  migrationsDir?: string;
}

/**
 * Creates the data directory (mode 0700), applies pending migrations, and connects Prisma through
 * the better-sqlite3 driver adapter. The file is in WAL mode; every connection has foreign keys
 * on and a busy timeout. Throws RELAY_MIGRATION_FAILED or RELAY_DATABASE_ERROR.
 */
export async function openDatabase(
  config: Pick<RelayConfig, 'dataDir' | 'databaseUrl'>,
  log: Logger,
  opts: OpenDatabaseOptions = {},
): Promise<Database> {
  const file = sqliteFile(config);
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new RelayError('RELAY_DATABASE_ERROR', [`cannot create ${path.dirname(file)}: ${(err as Error).message}`], {
      cause: err,
    });
  }

  let migrations: MigrateResult;
  let sqlite: BetterSqlite3.Database;
  try {
    const fresh = !existsSync(file);
    sqlite = new BetterSqlite3(file, { timeout: BUSY_TIMEOUT_MS });
    // Owner only; SQLite gives the -wal and -shm files the same mode.
    if (fresh) chmodSync(file, 0o600);
  } catch (err) {
    throw new RelayError('RELAY_DATABASE_ERROR', [`cannot open ${file}: ${(err as Error).message}`], { cause: err });
  }
  try {
    // WAL is a property of the file: set once here, every later connection uses it.
    const mode = sqlite.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') log.warn({ journalMode: mode }, 'SQLite refused WAL mode; writers will block readers');
    sqlite.pragma('foreign_keys = ON');
    migrations = migrate(sqlite, { migrationsDir: opts.migrationsDir, log });
  } finally {
    sqlite.close();
  }

  const adapter = new PrismaBetterSQLite3({ url: file, timeout: BUSY_TIMEOUT_MS });
  const prisma = new PrismaClient({ adapter });
  try {
    await prisma.$connect();
    // Per connection, and the adapter holds exactly one.
    await prisma.$executeRawUnsafe('PRAGMA foreign_keys = ON');
  } catch (err) {
    await prisma.$disconnect().catch(() => {});
    throw new RelayError('RELAY_DATABASE_ERROR', [`cannot connect to ${file}: ${(err as Error).message}`], { cause: err });
  }
  log.debug({ file, [LogField.migration]: migrations.applied }, 'database open');

  let closing: Promise<void> | undefined;
  return {
    prisma,
    file,
    migrations,
    close: () => (closing ??= prisma.$disconnect()),
  };
}
