import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type BetterSqlite3 from 'better-sqlite3';
import { RelayError } from '../errors.js';
import { LogField, type Logger } from '../log.js';

/**
 * Applies the committed Prisma migrations (prisma/migrations/<name>/migration.sql) at start-up,
 * without the Prisma CLI, and records them in Prisma's own `_prisma_migrations` table exactly as
 * `prisma migrate deploy` does, so `prisma migrate status` and `deploy` agree with the relay.
 *
 * Unlike `migrate deploy`, each migration runs in one transaction: a failing migration leaves the
 * database as it was (SQLite DDL is transactional) and nothing is recorded.
 */

/** prisma/migrations at the repository root, from src/db/ and dist/db/ alike. */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../../../prisma/migrations', import.meta.url));

export interface Migration {
  /** Directory name, e.g. `20261123104343_devices`; migrations apply in name order. */
  readonly name: string;
  readonly sql: string;
  /** SHA-256 hex of migration.sql's bytes, as Prisma computes it. */
  readonly checksum: string;
}

export interface MigrateOptions {
  migrationsDir?: string;
  log?: Logger;
  /** Clock for the recorded timestamps. */
  now?: () => Date;
}

export interface MigrateResult {
  /** Names applied by this call, in order. */
  readonly applied: readonly string[];
  /** Migrations found on disk. */
  readonly total: number;
}

/** Prisma's table, byte for byte what its SQLite connector creates. */
const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
)`;

interface AppliedRow {
  migration_name: string;
  checksum: string;
  finished_at: string | null;
  rolled_back_at: string | null;
}

/** Reads the migrations directory: one sub-directory per migration, sorted by name. */
export function readMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): Migration[] {
  if (!existsSync(dir)) throw failed(`migrations directory ${dir} does not exist`);
  const lock = path.join(dir, 'migration_lock.toml');
  if (existsSync(lock)) {
    const provider = /^\s*provider\s*=\s*"([^"]*)"/m.exec(readFileSync(lock, 'utf8'))?.[1];
    if (provider !== undefined && provider !== 'sqlite') {
      throw failed(`${lock} says the migrations are for "${provider}", this database is SQLite`);
    }
  }
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort()
    .map((name) => {
      const file = path.join(dir, name, 'migration.sql');
      if (!existsSync(file)) throw failed(`${name}: ${file} is missing`);
      const bytes = readFileSync(file);
      return { name, sql: bytes.toString('utf8'), checksum: createHash('sha256').update(bytes).digest('hex') };
    });
}

/**
 * Applies every migration not yet recorded as finished, each in its own IMMEDIATE transaction
 * (so two relays starting at once on one file cannot both apply it). Throws
 * RELAY_MIGRATION_FAILED naming the migration; the database is then as before that migration.
 */
export function migrate(db: BetterSqlite3.Database, opts: MigrateOptions = {}): MigrateResult {
  const log = opts.log;
  const now = opts.now ?? (() => new Date());
  const migrations = readMigrations(opts.migrationsDir);
  const onDisk = new Map(migrations.map((m) => [m.name, m]));

  const rows = readApplied(db);
  const stuck = rows.filter((r) => r.finished_at === null && r.rolled_back_at === null);
  if (stuck.length > 0) {
    const names = stuck.map((r) => r.migration_name).join(', ');
    throw failed(
      `${names} is recorded as started but never finished (a failed \`prisma migrate deploy\`?). ` +
        'Repair the database, then mark it with `prisma migrate resolve --applied` or `--rolled-back`',
    );
  }
  const finished = rows.filter((r) => r.finished_at !== null && r.rolled_back_at === null);
  for (const row of finished) {
    const m = onDisk.get(row.migration_name);
    if (!m) {
      log?.warn({ [LogField.migration]: row.migration_name }, 'database has a migration this relay does not know (newer relay?)');
    } else if (m.checksum !== row.checksum) {
      log?.warn({ [LogField.migration]: m.name }, 'migration.sql changed after it was applied');
    }
  }

  const done = new Set(finished.map((r) => r.migration_name));
  const applied: string[] = [];
  for (const m of migrations) {
    if (done.has(m.name)) continue;
    const started = Date.now();
    if (applyOne(db, m, now)) {
      applied.push(m.name);
      log?.info({ [LogField.migration]: m.name, [LogField.ms]: Date.now() - started }, 'migration applied');
    }
  }
  if (applied.length === 0) log?.debug({ migrations: migrations.length }, 'database schema up to date');
  return { applied, total: migrations.length };
}

/** Runs one migration in a transaction; false if another process applied it meanwhile. */
function applyOne(db: BetterSqlite3.Database, m: Migration, now: () => Date): boolean {
  // SQLite ignores `PRAGMA foreign_keys` inside a transaction, and table redefinitions (what
  // Prisma writes for most ALTERs) need it off: turn it off around the transaction and check
  // the keys before committing instead, as https://sqlite.org/lang_altertable.html prescribes.
  db.pragma('foreign_keys = OFF');
  try {
    db.exec('BEGIN IMMEDIATE');
    db.exec(CREATE_MIGRATIONS_TABLE);
    const already = db
      .prepare(
        'SELECT 1 FROM "_prisma_migrations" WHERE "migration_name" = ? AND "finished_at" IS NOT NULL AND "rolled_back_at" IS NULL',
      )
      .get(m.name);
    if (already) {
      db.exec('ROLLBACK');
      return false;
    }
    const startedAt = timestamp(now());
    db.exec(m.sql);
    if (!db.inTransaction) {
      throw failed(
        `${m.name}: migration.sql must not contain BEGIN/COMMIT/ROLLBACK (the relay runs each migration in ` +
          'its own transaction); what ran before the COMMIT is in the database, the migration is not recorded',
      );
    }
    const violations = db.pragma('foreign_key_check') as unknown[];
    if (violations.length > 0) {
      throw new Error(`it leaves ${violations.length} row(s) violating foreign keys: ${JSON.stringify(violations.slice(0, 3))}`);
    }
    db.prepare(
      `INSERT INTO "_prisma_migrations"
         ("id", "checksum", "finished_at", "migration_name", "logs", "rolled_back_at", "started_at", "applied_steps_count")
       VALUES (?, ?, ?, ?, NULL, NULL, ?, 1)`,
    ).run(randomUUID(), m.checksum, timestamp(now()), m.name, startedAt);
    db.exec('COMMIT');
    return true;
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    if (err instanceof RelayError) throw err;
    throw failed(`${m.name}: ${(err as Error).message}. Rolled back: the database is as it was before it`, err);
  } finally {
    db.pragma('foreign_keys = ON');
  }
}

function readApplied(db: BetterSqlite3.Database): AppliedRow[] {
  const table = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_prisma_migrations'`).get();
  if (!table) return [];
  return db
    .prepare('SELECT "migration_name", "checksum", "finished_at", "rolled_back_at" FROM "_prisma_migrations" ORDER BY "started_at"')
    .all() as AppliedRow[];
}

/** The format Prisma's SQLite adapter writes DateTime values in. */
function timestamp(d: Date): string {
  return d.toISOString().replace('Z', '+00:00');
}

function failed(detail: string, cause?: unknown): RelayError {
  return new RelayError('RELAY_MIGRATION_FAILED', [detail], cause === undefined ? undefined : { cause });
}
