// The relay killed (SIGKILL) in the middle of a stream of writes — share links and user accounts
// made through its API by concurrent clients — restarts with every acknowledged row intact and a
// database that passes SQLite's integrity check. Real relay process, real SQLite file.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from './src/client.js';
import { addDevice, freePort, relayCommand, startRelay, stopAll, tempDir, type DeviceInfo, type RelayProcess } from './src/procs.js';

let relay: RelayProcess;
let relayPort: number;
let dataDir: string;
let device: DeviceInfo;
let admin: Client;
const ADMIN_PASSWORD = 'keep every committed row';

const base = () => `http://localhost:${relayPort}`;
/** Each signed-in client's CSRF token (from the login answer). */
const csrf = new WeakMap<Client, string>();
const post = (client: Client, path: string, json: unknown) =>
  client.request(`${base()}${path}`, { method: 'POST', json, headers: { origin: base(), 'x-csrf-token': csrf.get(client) ?? '' }, timeoutMs: 10_000 });

async function login(username: string, password: string): Promise<Client> {
  const c = new Client(relayPort);
  const r = await c.request(`${base()}/api/login`, { method: 'POST', json: { username, password }, headers: { origin: base() } });
  if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${r.text()}`);
  csrf.set(c, r.json<{ csrf: string }>().csrf);
  return c;
}

beforeAll(async () => {
  [relayPort, dataDir] = await Promise.all([freePort(), tempDir('porthole-dbfault-', true)]);
  relay = await startRelay({ port: relayPort, dataDir });
  await relayCommand(relay, ['user', 'add', '--admin', '--username', 'root', '--password-stdin'], 30_000, ADMIN_PASSWORD);
  device = await addDevice(relay, { name: 'Ledger MK3', slug: 'ledger', owner: 'root' });
  admin = await login('root', ADMIN_PASSWORD);
}, 60_000);

afterAll(async () => {
  await stopAll();
});

describe('the database when the relay is killed during writes', () => {
  it('keeps every acknowledged row, passes the integrity check, and serves afterwards', async () => {
    const acked = { shares: new Set<string>(), users: new Map<string, string>() };
    let unanswered = 0;
    let stop = false;
    /** Set just before the kill: from then on a failed request is expected (the relay is gone). */
    let killing = false;

    // Four writers of share links (one INSERT each, fast) and one of users (argon2, slow).
    const shareWriter = async (w: number) => {
      for (let n = 0; !stop; n++) {
        try {
          const r = await post(admin, `/api/devices/${device.id}/shares`, { expiresIn: '1d', label: `w${w}-${n}` });
          if (r.status === 201) acked.shares.add(r.json<{ id: string }>().id);
          else throw new Error(`share: ${r.status} ${r.text()}`);
        } catch (e) {
          if (!killing) throw e;
          unanswered++;
          return;
        }
      }
    };
    const userWriter = async () => {
      for (let n = 0; !stop; n++) {
        const username = `crash${n}`;
        const password = `${randomBytes(12).toString('base64url')} horse battery`;
        try {
          const r = await post(admin, '/api/users', { username, password });
          if (r.status === 201) acked.users.set(username, password);
          else throw new Error(`user: ${r.status} ${r.text()}`);
        } catch (e) {
          if (!killing) throw e;
          unanswered++;
          return;
        }
      }
    };
    const killed = relay.waitExit();
    let failed: unknown;
    const writers = Promise.all(
      [0, 1, 2, 3].map(shareWriter).concat(userWriter()).map((p) =>
        p.catch((e: unknown) => {
          failed ??= e;
          stop = true;
        }),
      ),
    );
    // Kill in the thick of it: once a good number of writes were acknowledged.
    const end = Date.now() + 30_000;
    while (acked.shares.size < 150 || acked.users.size < 3) {
      if (Date.now() > end) throw new Error(`writes too slow: ${acked.shares.size} shares, ${acked.users.size} users`);
      if (!relay.running) throw new Error(`relay died on its own\n${relay.tail()}`);
      if (failed !== undefined) throw failed as Error;
      await new Promise((r) => setTimeout(r, 10));
    }
    killing = true;
    relay.kill('SIGKILL');
    await killed;
    // Writers end by themselves: their next request is refused (the relay is gone).
    await writers;
    expect(failed).toBeUndefined();
    const ackedShares = [...acked.shares];
    const ackedUsers = [...acked.users.keys()];

    // The file as the crash left it: SQLite recovers the WAL on open, and the result is sound.
    const db = new Database(join(dataDir, 'porthole.db'));
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      const haveShares = new Set((db.prepare('SELECT id FROM ShareLink').all() as { id: string }[]).map((r) => r.id));
      expect(ackedShares.filter((id) => !haveShares.has(id))).toEqual([]);
      const haveUsers = new Set((db.prepare('SELECT username FROM User').all() as { username: string }[]).map((r) => r.username));
      expect(ackedUsers.filter((u) => !haveUsers.has(u))).toEqual([]);
      console.log(
        `db fault figures: ${JSON.stringify({ ackedShares: ackedShares.length, ackedUsers: ackedUsers.length, unanswered, rowsShares: haveShares.size, rowsUsers: haveUsers.size - 1 })}`,
      );
    } finally {
      db.close();
    }

    const t0 = Date.now();
    relay = await startRelay({ port: relayPort, dataDir });
    console.log(`db fault figures: relay back after ${Date.now() - t0} ms`);

    // Through the relay: the admin's session (a committed row too) still works and lists every share.
    const listed = await admin.request(`${base()}/api/devices/${device.id}/shares`);
    expect(listed.status).toBe(200);
    const listedIds = new Set(listed.json<Array<{ id: string }>>().map((s) => s.id));
    expect(ackedShares.filter((id) => !listedIds.has(id))).toEqual([]);

    // Every acknowledged account can sign in with the password it was given.
    const sample = ackedUsers.slice(-3);
    for (const u of sample) await login(u, acked.users.get(u)!);

    // And the relay takes new writes and other users as usual.
    const fresh = await post(admin, `/api/devices/${device.id}/shares`, { expiresIn: '1h', label: 'after the crash' });
    expect(fresh.status).toBe(201);
    const other = await login(ackedUsers[0]!, acked.users.get(ackedUsers[0]!)!);
    const me = await other.request(`${base()}/api/me`);
    expect(me.status).toBe(200);
  });
});
