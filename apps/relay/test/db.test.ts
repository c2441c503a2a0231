import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RelayConfig } from '../src/config.js';
import { DEFAULT_MIGRATIONS_DIR, migrate, openDatabase, readMigrations, type Database } from '../src/db/index.js';
import { RelayError } from '../src/errors.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);

/** Everything in a SQLite file: schema and every row of every table. */
function snapshot(file: string): unknown {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    const schema = db
      .prepare(`SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name`)
      .all() as { type: string; name: string }[];
    const rows = Object.fromEntries(
      schema.filter((s) => s.type === 'table').map((t) => [t.name, db.prepare(`SELECT * FROM "${t.name}" ORDER BY rowid`).all()]),
    );
    return { schema, rows };
  } finally {
    db.close();
  }
}

/** Tables, columns, indexes and foreign keys, compared by structure rather than SQL text. */
function structure(file: string): unknown {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    const tables = (
      db
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_prisma_migrations' ORDER BY name`)
        .all() as { name: string }[]
    ).map((t) => t.name);
    return tables.map((t) => ({
      table: t,
      columns: db.pragma(`table_info("${t}")`),
      indexes: (db.pragma(`index_list("${t}")`) as { name: string; unique: number }[])
        .map((i) => ({ name: i.name, unique: i.unique, columns: db.pragma(`index_info("${i.name}")`) }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      foreignKeys: db.pragma(`foreign_key_list("${t}")`),
    }));
  } finally {
    db.close();
  }
}

function migrationRows(file: string) {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    return db.prepare('SELECT * FROM "_prisma_migrations" ORDER BY "started_at"').all() as {
      migration_name: string;
      checksum: string;
      finished_at: string | null;
      applied_steps_count: number;
    }[];
  } finally {
    db.close();
  }
}

async function rejection(p: Promise<unknown>): Promise<RelayError> {
  const e = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RelayError);
  return e as RelayError;
}

describe('openDatabase', () => {
  let tmp: ReturnType<typeof tempDir>;
  let config: RelayConfig;
  let file: string;
  const open: Database[] = [];
  const openDb = async (migrationsDir?: string) => {
    const { log, lines } = memoryLogger();
    const db = await openDatabase(config, log, { migrationsDir });
    open.push(db);
    return { db, lines };
  };

  beforeEach(() => {
    tmp = tempDir();
    config = testConfig(path.join(tmp.dir, 'data'));
    file = path.join(tmp.dir, 'data', 'porthole.db');
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((db) => db.close()));
    tmp.cleanup();
  });

  /** The committed migrations plus the ones given, in a directory of their own. */
  let dirs = 0;
  const migrationsWith = (extra: Record<string, string>) => {
    const dir = path.join(tmp.dir, `migrations-${++dirs}`);
    cpSync(DEFAULT_MIGRATIONS_DIR, dir, { recursive: true });
    for (const [name, sql] of Object.entries(extra)) {
      mkdirSync(path.join(dir, name), { recursive: true });
      writeFileSync(path.join(dir, name, 'migration.sql'), sql);
    }
    return dir;
  };

  it('creates the data directory (0700) and a database file (0600), in WAL mode, fully migrated', async () => {
    const { db, lines } = await openDb();
    expect(db.file).toBe(file);
    expect(statSync(config.dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const committed = readMigrations();
    expect(committed.length).toBeGreaterThan(0);
    expect(db.migrations).toEqual({ applied: committed.map((m) => m.name), total: committed.length });
    expect(lines.filter((l) => l.msg === 'migration applied').map((l) => l.migration)).toEqual(committed.map((m) => m.name));

    // Recorded as Prisma records them.
    const rows = migrationRows(file);
    expect(rows.map((r) => [r.migration_name, r.checksum, r.applied_steps_count])).toEqual(
      committed.map((m) => [m.name, m.checksum, 1]),
    );
    expect(rows.every((r) => r.finished_at !== null && /^\d{4}-\d\d-\d\dT.*\+00:00$/.test(r.finished_at))).toBe(true);

    const raw = new BetterSqlite3(file, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();

    // The Prisma connection works, with foreign keys enforced.
    expect(await db.prisma.device.count()).toBe(0);
    const fk = await db.prisma.$queryRawUnsafe<{ foreign_keys: bigint | number }[]>('PRAGMA foreign_keys');
    expect(Number(fk[0]?.foreign_keys)).toBe(1);
  });

  it('is idempotent across restarts and keeps the data', async () => {
    const first = await openDb();
    await first.db.prisma.device.create({ data: { name: 'A', slug: 'a', credentialId: '0'.repeat(16), credentialHash: 'x' } });
    await first.db.close();
    const before = migrationRows(file);

    const second = await openDb();
    expect(second.db.migrations.applied).toEqual([]);
    expect(second.lines.some((l) => l.msg === 'migration applied')).toBe(false);
    expect(migrationRows(file)).toEqual(before);
    expect(await second.db.prisma.device.count()).toBe(1);
  });

  it('applies only the new migrations, in name order', async () => {
    await (await openDb()).db.close();
    const dir = migrationsWith({
      '29990102000000_second': 'CREATE TABLE "T2" ("id" TEXT NOT NULL PRIMARY KEY, "t1" TEXT NOT NULL REFERENCES "T1"("id"));',
      '29990101000000_first': 'CREATE TABLE "T1" ("id" TEXT NOT NULL PRIMARY KEY);',
    });
    const { db } = await openDb(dir);
    expect(db.migrations.applied).toEqual(['29990101000000_first', '29990102000000_second']);
    expect(migrationRows(file).map((r) => r.migration_name).slice(-2)).toEqual(db.migrations.applied);
  });

  it('rolls a failing migration back, leaves the database as it was, and says which one failed', async () => {
    const first = await openDb();
    await first.db.prisma.device.create({ data: { name: 'A', slug: 'a', credentialId: '0'.repeat(16), credentialHash: 'x' } });
    await first.db.close();
    const before = snapshot(file);

    const broken = `CREATE TABLE "Extra" ("id" TEXT NOT NULL PRIMARY KEY);
ALTER TABLE "Device" ADD COLUMN "extra" TEXT;
UPDATE "Device" SET "name" = 'changed';
DROP INDEX "Device_slug_key";
INSERT INTO "NoSuchTable" VALUES (1);`;
    const good = { '29990101000000_good': 'CREATE TABLE "Good" ("id" TEXT NOT NULL PRIMARY KEY);' };
    const dir = migrationsWith(good);
    const withBroken = migrationsWith({ ...good, '29990102000000_broken': broken });

    const e = await rejection(openDatabase(config, memoryLogger().log, { migrationsDir: withBroken }));
    expect(e.code).toBe('RELAY_MIGRATION_FAILED');
    expect(e.message).toContain('29990102000000_broken');
    expect(e.message).toContain('no such table: NoSuchTable');
    expect(e.message).toContain('Rolled back');

    // The good migration before it stays applied; everything the broken one did is undone.
    const after = snapshot(file) as { schema: { name: string }[] };
    expect(after.schema.map((s) => s.name)).toContain('Good');
    const reopened = await openDb(dir);
    expect(reopened.db.migrations.applied).toEqual([]);
    await reopened.db.close();
    const withoutGood = snapshot(file) as { schema: { name: string }[]; rows: Record<string, unknown[]> };
    withoutGood.schema = withoutGood.schema.filter((s) => s.name !== 'Good');
    delete withoutGood.rows.Good;
    withoutGood.rows._prisma_migrations = withoutGood.rows._prisma_migrations!.filter(
      (r) => (r as { migration_name: string }).migration_name !== '29990101000000_good',
    );
    expect(withoutGood).toEqual(before);

    // Fixed, it applies on the next start.
    const fixed = migrationsWith({ '29990102000000_broken': 'CREATE TABLE "Extra" ("id" TEXT NOT NULL PRIMARY KEY);' });
    const { db } = await openDb(fixed);
    expect(db.migrations.applied).toEqual(['29990102000000_broken']);
  });

  it('leaves a fresh database empty when its first migration fails', async () => {
    const dir = path.join(tmp.dir, 'bad-migrations');
    mkdirSync(path.join(dir, '20000101000000_init'), { recursive: true });
    writeFileSync(path.join(dir, '20000101000000_init', 'migration.sql'), 'CREATE TABLE "A" ("id" TEXT);\nCREATE TABLE "A" ("id" TEXT);');
    const e = await rejection(openDatabase(config, memoryLogger().log, { migrationsDir: dir }));
    expect(e.message).toMatch(/20000101000000_init: table "A" already exists/);
    expect(snapshot(file)).toEqual({ schema: [], rows: {} });
  });

  it('refuses a migration that leaves broken foreign keys', async () => {
    const dir = migrationsWith({
      '29990101000000_fk': `CREATE TABLE "P" ("id" TEXT NOT NULL PRIMARY KEY);
CREATE TABLE "C" ("id" TEXT NOT NULL PRIMARY KEY, "p" TEXT NOT NULL REFERENCES "P"("id"));
INSERT INTO "C" VALUES ('c', 'missing');`,
    });
    const e = await rejection(openDatabase(config, memoryLogger().log, { migrationsDir: dir }));
    expect(e.message).toContain('29990101000000_fk');
    expect(e.message).toContain('foreign keys');
    expect((snapshot(file) as { schema: { name: string }[] }).schema.map((s) => s.name)).not.toContain('C');
  });

  it('refuses a migration with its own COMMIT', async () => {
    const dir = migrationsWith({ '29990101000000_commit': 'CREATE TABLE "X" ("id" TEXT);\nCOMMIT;' });
    const e = await rejection(openDatabase(config, memoryLogger().log, { migrationsDir: dir }));
    expect(e.message).toContain('must not contain BEGIN/COMMIT');
  });

  it('refuses to start over a migration Prisma left unfinished', async () => {
    await (await openDb()).db.close();
    const raw = new BetterSqlite3(file);
    raw
      .prepare(`INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name", "started_at") VALUES ('x', 'y', '29990101000000_half', '2026-01-01')`)
      .run();
    raw.close();
    const e = await rejection(openDatabase(config, memoryLogger().log));
    expect(e.code).toBe('RELAY_MIGRATION_FAILED');
    expect(e.message).toContain('29990101000000_half');
    expect(e.message).toContain('prisma migrate resolve');
  });

  it('warns, and goes on, when an applied migration changed or is unknown', async () => {
    const dir = migrationsWith({});
    const { db } = await openDb(dir);
    await db.close();
    const name = readMigrations(dir)[0]!.name;
    writeFileSync(path.join(dir, name, 'migration.sql'), `${readFileSync(path.join(dir, name, 'migration.sql'), 'utf8')}\n-- edited\n`);
    const raw = new BetterSqlite3(file);
    raw
      .prepare(`INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name", "started_at", "finished_at", "applied_steps_count") VALUES ('x', 'y', '29990101000000_future', '2026-01-01', '2026-01-01', 1)`)
      .run();
    raw.close();
    const again = await openDb(dir);
    expect(again.db.migrations.applied).toEqual([]);
    const warnings = again.lines.filter((l) => l.level === 40).map((l) => [l.migration, l.msg]);
    expect(warnings).toEqual(
      expect.arrayContaining([
        [name, 'migration.sql changed after it was applied'],
        ['29990101000000_future', 'database has a migration this relay does not know (newer relay?)'],
      ]),
    );
  });

  it('names a missing migrations directory, a missing migration.sql and a foreign provider', async () => {
    let e = await rejection(openDatabase(config, memoryLogger().log, { migrationsDir: path.join(tmp.dir, 'nope') }));
    expect(e.message).toContain('does not exist');
    const dir = migrationsWith({});
    mkdirSync(path.join(dir, '29990101000000_empty'));
    e = await rejection(openDatabase(config, memoryLogger().log, { migrationsDir: dir }));
    expect(e.message).toContain('29990101000000_empty');
    const pg = migrationsWith({});
    writeFileSync(path.join(pg, 'migration_lock.toml'), 'provider = "postgresql"\n');
    e = await rejection(openDatabase(config, memoryLogger().log, { migrationsDir: pg }));
    expect(e.message).toContain('postgresql');
  });

  it('reports a database it cannot create', async () => {
    writeFileSync(path.join(tmp.dir, 'blocker'), '');
    const blocked = testConfig(path.join(tmp.dir, 'blocker', 'data'));
    const e = await rejection(openDatabase(blocked, memoryLogger().log));
    expect(e.code).toBe('RELAY_DATABASE_ERROR');
  });

  it('close() is safe to call twice', async () => {
    const { db } = await openDb();
    await db.close();
    await db.close();
  });
});

describe('migrate() on a raw connection', () => {
  it('records nothing twice when run again on the same connection', () => {
    const db = new BetterSqlite3(':memory:');
    const first = migrate(db);
    expect(first.applied.length).toBe(first.total);
    expect(migrate(db).applied).toEqual([]);
    db.close();
  });
});

// The relay's runner and the Prisma CLI must agree on the same database, and the committed
// migrations must produce exactly what schema.prisma describes.
describe('agreement with the Prisma CLI', { timeout: 60_000 }, () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.cleanup());

  const prisma = (args: string[], dbFile: string) =>
    run(process.execPath, [path.join(root, 'node_modules/prisma/build/index.js'), ...args], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: `file:${dbFile}`, CHECKPOINT_DISABLE: '1', NO_COLOR: '1' },
    });

  it('prisma migrate status finds a database migrated by the relay up to date', async () => {
    const config = testConfig(path.join(tmp.dir, 'data'));
    await (await openDatabase(config, memoryLogger().log)).close();
    const { stdout } = await prisma(['migrate', 'status'], path.join(tmp.dir, 'data', 'porthole.db'));
    expect(stdout).toContain('Database schema is up to date');
  });

  it('the relay finds a database deployed by prisma migrate deploy up to date', async () => {
    const file = path.join(tmp.dir, 'data', 'porthole.db');
    mkdirSync(path.dirname(file));
    await prisma(['migrate', 'deploy'], file);
    const db = await openDatabase(testConfig(path.join(tmp.dir, 'data')), memoryLogger().log);
    expect(db.migrations.applied).toEqual([]);
    await db.close();
  });

  it('the committed migrations match schema.prisma', async () => {
    const migrated = path.join(tmp.dir, 'migrated.db');
    const raw = new BetterSqlite3(migrated);
    migrate(raw);
    raw.close();

    const { stdout: sql } = await prisma(
      ['migrate', 'diff', '--from-empty', '--to-schema-datamodel', 'prisma/schema.prisma', '--script'],
      path.join(tmp.dir, 'scratch.db'),
    );
    const fromSchema = path.join(tmp.dir, 'from-schema.db');
    const fresh = new BetterSqlite3(fromSchema);
    fresh.exec(sql);
    fresh.close();

    expect(structure(migrated)).toEqual(structure(fromSchema));
  });
});
