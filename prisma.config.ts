// Prisma CLI configuration: `prisma generate`, `migrate diff`, `migrate deploy`, `migrate status`.
//
// The JavaScript schema engine reaches SQLite through the same driver adapter the relay uses, so
// no native engine is ever downloaded. The relay itself never reads this file: it applies the
// committed migrations on start-up (apps/relay/src/db/migrate.ts).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PrismaBetterSQLite3 } from '@prisma/adapter-better-sqlite3';
import { defineConfig } from 'prisma/config';

const root = import.meta.dirname;

// The relay's default (apps/relay/src/config.ts): PORTHOLE_DATABASE_URL, else
// <PORTHOLE_DATA_DIR, default ./data>/porthole.db. DATABASE_URL, Prisma's habit, wins.
function databaseUrl(): string {
  const url = process.env.DATABASE_URL || process.env.PORTHOLE_DATABASE_URL;
  if (url) return url;
  return `file:${path.resolve(process.env.PORTHOLE_DATA_DIR || 'data', 'porthole.db')}`;
}

// The schema's `url = env("DATABASE_URL")` must resolve, or `prisma generate` decides it needs
// a native query engine and tries to download one.
process.env.DATABASE_URL ||= databaseUrl();
// No phoning home from a self-hosted tool (and no waiting on it offline).
process.env.CHECKPOINT_DISABLE ||= '1';

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  schema: path.join(root, 'prisma/schema.prisma'),
  migrations: { path: path.join(root, 'prisma/migrations') },
  async adapter() {
    const url = process.env.DATABASE_URL ?? databaseUrl();
    const file = url.replace(/^file:/, '');
    if (file !== ':memory:') mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
    return new PrismaBetterSQLite3({ url });
  },
});
