// Backups while the relay runs and another process keeps writing: the copy is consistent, holds
// every row committed before it started, and a relay restored from it starts and knows its devices.
import { copyFileSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { addDevice, relayCommand, spawnManaged, startRelay, stopAll, tempDir } from './src/procs.js';

afterAll(async () => {
  await stopAll();
});

const sqlitePath = createRequire(import.meta.url).resolve('better-sqlite3');

/** A writer in its own process: fills the audit table, then commits one row at a time until killed. */
const WRITER = `
const Database = require(${JSON.stringify(sqlitePath)});
const db = new Database(process.argv[2], { timeout: 5000 });
const pad = 'x'.repeat(2000);
const insert = db.prepare("INSERT INTO AuditEvent (id, at, kind, detail) VALUES (?, ?, 'backup.test', ?)");
let seq = 0;
const row = () => { seq++; insert.run('bk-' + seq, Date.now(), JSON.stringify({ seq, pad })); };
db.transaction(() => { for (let i = 0; i < 5000; i++) row(); })();
console.log('ready ' + seq);
for (;;) row();
`;

describe('porthole-relay backup', () => {
  it('copies the database while writes go on; the copy holds every committed row and restores', async () => {
    const relay = await startRelay();
    await relayCommand(relay, ['user', 'add', '--username', 'keeper', '--password-stdin'], 30_000, 'backups are boring');
    const device = await addDevice(relay, { name: 'Backed-up printer', slug: 'kept', owner: 'keeper' });
    const dbFile = join(relay.dataDir, 'porthole.db');

    const dir = await tempDir('porthole-backup-', true);
    const script = join(dir, 'writer.cjs');
    writeFileSync(script, WRITER);
    const writer = spawnManaged('writer', process.execPath, [script, dbFile]);
    await writer.waitForLog(/^ready \d+$/, 30_000);

    const count = (file: string, upTo?: number): number => {
      const db = new BetterSqlite3(file, { readonly: true, timeout: 5_000 });
      try {
        const where = upTo === undefined ? '' : ` AND CAST(substr(id, 4) AS INTEGER) <= ${upTo}`;
        return (db.prepare(`SELECT count(*) AS n FROM AuditEvent WHERE kind = 'backup.test'${where}`).get() as { n: number }).n;
      } finally {
        db.close();
      }
    };
    await new Promise((r) => setTimeout(r, 200));
    // Rows commit in order, one per transaction: what a new reader sees is rows 1..n.
    const committed = count(dbFile);
    expect(committed).toBeGreaterThan(5000);

    const backup = join(dir, 'porthole-backup.db');
    const out = await relayCommand(relay, ['backup', backup]);
    const after = count(dbFile);
    writer.kill('SIGKILL');
    expect(out.stdout).toMatch(/^Backed up the database to .*porthole-backup\.db \(\d+ bytes, \d+ ms\)/);
    // The writer kept going while the backup ran.
    expect(after).toBeGreaterThan(committed);

    const copy = new BetterSqlite3(backup, { readonly: true });
    try {
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(copy.pragma('journal_mode', { simple: true })).toBe('delete');
      expect((copy.prepare('SELECT slug FROM Device').all() as Array<{ slug: string }>).map((d) => d.slug)).toEqual(['kept']);
    } finally {
      copy.close();
    }
    expect(count(backup, committed)).toBe(committed);
    expect(count(backup)).toBeGreaterThanOrEqual(committed);
    expect(statSync(backup).mode & 0o777).toBe(0o600);
    expect(existsSync(`${backup}-wal`)).toBe(false);

    // Restore: the database and the session key into a fresh data directory.
    const restored = await tempDir('porthole-restored-', true);
    copyFileSync(backup, join(restored, 'porthole.db'));
    copyFileSync(join(relay.dataDir, 'session.key'), join(restored, 'session.key'));
    await relay.close();
    const again = await startRelay({ dataDir: restored });
    const devices = JSON.parse((await relayCommand(again, ['device', 'list', '--json'])).stdout) as Array<{ id: string; slug: string }>;
    expect(devices).toEqual([expect.objectContaining({ id: device.id, slug: 'kept' })]);
    expect((await relayCommand(again, ['user', 'list'])).stdout).toContain('keeper');
    await again.close();
  });

  it('says what is wrong instead of writing a bad copy', async () => {
    const dataDir = await tempDir('porthole-nodb-', true);
    const relay = { env: { ...process.env, PORTHOLE_DATA_DIR: dataDir } };
    await expect(relayCommand(relay, ['backup', join(dataDir, 'b.db')])).rejects.toThrow(/no database at .*porthole\.db/);
    await expect(relayCommand(relay, ['backup'])).rejects.toThrow(/backup needs FILE/);
  });
});
